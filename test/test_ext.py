"""The C++ extension plumbing: JIT build into TORCH_EXTENSIONS_DIR, op registration, fallback when unbuildable."""

import os
import subprocess
import sys

import pytest
import torch

from dibr_ros.render import _ext

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_extension_builds_and_registers_ops():
    ops = _ext.ops()
    assert ops is not None, _ext.build_error()
    for name in ("pixel_centers", "rasterize_forward", "rasterize_backward", "soft_mask_forward",
                 "soft_mask_backward"):
        assert hasattr(ops, name), name


def test_pixel_centers_match_the_ndc_convention():
    """x = (2w + 1 - W) / W, y = (H - 2h - 1) / H: row 0 at the top, +y up."""
    H, W = 5, 7
    got = _ext.ops().pixel_centers(H, W)
    assert got.shape == (H, W, 2) and got.dtype == torch.float32
    for h in range(H):
        for w in range(W):
            assert abs(got[h, w, 0].item() - (2 * w + 1 - W) / W) < 1e-6
            assert abs(got[h, w, 1].item() - (H - 2 * h - 1) / H) < 1e-6


def test_build_lands_in_torch_extensions_dir():
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if not root:
        pytest.skip("TORCH_EXTENSIONS_DIR not set (make test sets it)")
    assert _ext.ops() is not None
    assert os.path.isfile(os.path.join(root, "dibr_ros_ext_cpu", "build.ninja")) or _ext.has_cuda_kernels()


def _run(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("compiler", ["no-such-compiler", "/bin/false"])
def test_unusable_compiler_gives_one_line_warning_and_reference_fallback(tmp_path, compiler):
    code = (
        "from dibr_ros.render import _ext\n"
        "assert _ext.ops() is None\n"
        "assert _ext.ops() is None\n"  # second call: no second build attempt, no second warning
        "print('ERROR=' + _ext.build_error())\n"
    )
    cxx = compiler if compiler.startswith("/") else str(tmp_path / compiler)
    out = _run(code, CXX=cxx, TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"))
    assert out.returncode == 0, out.stderr[-3000:]
    warnings = [ln for ln in out.stderr.splitlines() if "dibr_ros: C++/CUDA extension unavailable" in ln]
    assert len(warnings) == 1, out.stderr[-3000:]
    assert "reference" in warnings[0]
    assert "ERROR=" in out.stdout and "\n" not in out.stdout.split("ERROR=", 1)[1].strip()


def test_disable_switch_skips_the_build(tmp_path):
    out = _run("from dibr_ros.render import _ext; assert _ext.ops() is None; print(_ext.build_error())",
               DIBR_ROS_NO_EXT="1", TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "DIBR_ROS_NO_EXT" in out.stdout
    assert not (tmp_path / "ext").exists()
