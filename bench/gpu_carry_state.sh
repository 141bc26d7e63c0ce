#!/usr/bin/env bash
# After a bench/gpu_train.sh device call, here: put its resume state into .gpu_carry/run for the next call.
#   bash bench/gpu_carry_state.sh <files_at of the gpu_train.sh call>
# Copies train_state.pt.part-* + .sha256 (exact resume, ~39 MiB), or, without them, default_candidate.pt. The
# next call carries .gpu_carry + the working tree, at most 64 MiB together: if that would exceed 62 MiB, the
# state parts are replaced by the candidate (next call: fresh optimizer; gpu_train.sh says so). Keep the
# earlier calls' candidates here: the next call's finish step compares only what that call trained.
set -euo pipefail
src="${1:?usage: bash bench/gpu_carry_state.sh <files_at of the gpu_train.sh call>}"
[ -f "$src/default_candidate.pt" ] || { echo "no default_candidate.pt in $src" >&2; exit 2; }
dst=.gpu_carry/run
rm -rf "$dst"
mkdir -p "$dst"
if ls "$src"/train_state.pt.part-* >/dev/null 2>&1; then
  cp "$src"/train_state.pt.part-* "$src/train_state.pt.sha256" "$dst/"
else
  cp "$src/default_candidate.pt" "$dst/"
fi
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carry=$(du -sb .gpu_carry | cut -f1)
total=$(( tree + carry ))
limit=$(( 62 * 1024 * 1024 ))
echo "working tree $(( tree / 1048576 )) MiB + .gpu_carry $(( carry / 1048576 )) MiB = $(( total / 1048576 )) MiB"
if [ "$total" -gt "$limit" ]; then
  rm -f "$dst"/train_state.pt.part-* "$dst/train_state.pt.sha256"
  cp "$src/default_candidate.pt" "$dst/"
  echo "over 62 MiB: dropped the train_state parts; the next call starts from default_candidate.pt (fresh Adam)"
  echo ".gpu_carry now $(( $(du -sb .gpu_carry | cut -f1) / 1048576 )) MiB"
fi
