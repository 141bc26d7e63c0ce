#!/usr/bin/env bash
# One GPU session of the CUDA rasterizer: build, conformance/tests, benchmark. Run from the repo root on
# the device machine:  bash bench/gpu_session.sh
# Kaolin's conformance data travels with the repo (test/data/conformance/).
# Everything is logged to $OUT/gpu_session.log; the benchmark JSONs land in $OUT.
set -uo pipefail
OUT="${OUT:-$(pwd)/out/gpu_session}"
mkdir -p "$OUT"

session() {
  set -x
  export PYTHONPATH=.
  export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-/tmp/dibr_torch_ext}"

  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
  nvcc --version | tail -1

  # Build (verbose, so a compiler error is in the log in full).
  if ! time DIBR_ROS_EXT_VERBOSE=1 python3 -c \
      'from dibr_ros.render import _ext; assert _ext.has_cuda_kernels(), _ext.build_error(); print("CUDA kernels built")'; then
    echo "BUILD FAILED"
    return 1
  fi

  # Correctness: CUDA tests + the backend-agnostic rasterizer tests (no rclpy/open3d needed).
  time python3 -m pytest -q -p no:cacheprovider -rfE test/test_rasterize_cuda.py test/test_rasterize.py
  local test_rc=$?

  # Speed and memory: the CUDA backend first (quick, always lands), then every backend.
  time timeout 240 python3 bench/render_bench.py --backends cuda --no-thread-check --json "$OUT/render_bench_cuda.json"
  time timeout 300 python3 bench/render_bench.py --json "$OUT/render_bench.json"

  echo "pytest exit code: $test_rc"
  return "$test_rc"
}

session 2>&1 | tee "$OUT/gpu_session.log"
exit "${PIPESTATUS[0]}"
