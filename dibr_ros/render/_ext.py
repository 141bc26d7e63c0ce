"""Just-in-time build of the C++/CUDA kernels in ``csrc/``.

The extension is compiled on first use with :func:`torch.utils.cpp_extension.load` and ninja into
torch's extension cache (``TORCH_EXTENSIONS_DIR`` when set, else ``~/.cache/torch_extensions``).
CPU sources are always built; CUDA sources only when this torch has CUDA and ``nvcc`` exists.
The operators register under ``torch.ops.dibr_ros`` (ATen headers + ``TORCH_LIBRARY``, which
compiles ~3x faster than ``torch/extension.h``).

If the build fails (no compiler, no ninja, broken toolchain), :func:`ops` returns ``None`` and
logs one warning; callers then fall back to the pure-PyTorch reference implementation.
Set ``DIBR_ROS_NO_EXT=1`` to skip the build entirely.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import sys
import threading
import warnings

import torch

__all__ = ["csrc_dir", "ops", "has_cuda_kernels", "build_error"]

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict = {"tried": False, "ops": None, "cuda": False, "error": None}


def csrc_dir() -> str:
    """Directory holding the C++/CUDA sources (source tree, colcon install or pip install)."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, "..", "..", "csrc")]  # source checkout / develop install
    try:  # installed by colcon: share/dibr_ros/csrc
        from ament_index_python.packages import get_package_share_directory

        candidates.append(os.path.join(get_package_share_directory("dibr_ros"), "csrc"))
    except Exception:  # ament index absent or package not indexed
        pass
    candidates.append(os.path.join(sys.prefix, "share", "dibr_ros", "csrc"))
    for c in candidates:
        if os.path.isfile(os.path.join(c, "dibr_ops.cpp")):
            return os.path.normpath(c)
    raise FileNotFoundError("dibr_ros C++ sources (csrc/dibr_ops.cpp) not found in " + ", ".join(candidates))


def _want_cuda() -> bool:
    from torch.utils.cpp_extension import CUDA_HOME

    return torch.version.cuda is not None and torch.cuda.is_available() and CUDA_HOME is not None


def _build() -> None:
    from torch.utils.cpp_extension import load

    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler found (CXX={cxx}); install g++ to build the kernels")
    src = csrc_dir()
    sources = [os.path.join(src, "dibr_ops.cpp")] + sorted(glob.glob(os.path.join(src, "cpu", "*.cpp")))
    cuda = _want_cuda()
    if cuda:
        sources += sorted(glob.glob(os.path.join(src, "cuda", "*.cu")))
    if shutil.which("ninja") is None:
        # pip's ninja lives next to the interpreter; torch only searches PATH.
        bindir = os.path.dirname(sys.executable)
        if not os.path.exists(os.path.join(bindir, "ninja")):
            raise RuntimeError("ninja not found on PATH; pip install ninja")
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    # OpenMP in both compile and link flags, else at::parallel_for runs on one thread.
    flags = ["-O3", "-fopenmp"]
    load(
        name="dibr_ros_ext_cuda" if cuda else "dibr_ros_ext_cpu",
        sources=sources,
        extra_cflags=flags,
        extra_ldflags=["-fopenmp"],
        extra_cuda_cflags=["-O3", "--use_fast_math"] if cuda else None,
        extra_include_paths=[src],
        is_python_module=False,
        verbose=os.environ.get("DIBR_ROS_EXT_VERBOSE", "") == "1",
    )
    _state["cuda"] = cuda


def _one_line(exc: Exception) -> str:
    """The most telling line of a build failure (compiler errors first, else the first line)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for key in ("error:", "fatal error", "not found", "No such file"):
        hit = next((ln for ln in lines if key in ln), None)
        if hit:
            return f"{type(exc).__name__}: {hit[:300]}"
    return f"{type(exc).__name__}: {(lines[0] if lines else '')[:300]}"


def ops():
    """Return ``torch.ops.dibr_ros`` once the extension is loaded, or ``None`` if it cannot be built."""
    if _state["tried"]:
        return _state["ops"]
    with _lock:
        if _state["tried"]:
            return _state["ops"]
        if os.environ.get("DIBR_ROS_NO_EXT", "") == "1":
            _state["error"] = "disabled by DIBR_ROS_NO_EXT=1"
        else:
            try:
                _build()
                _state["ops"] = torch.ops.dibr_ros
            except Exception as exc:  # any build failure means: fall back
                _state["error"] = _one_line(exc)
        if _state["error"] is not None:
            warnings.warn(
                f"dibr_ros: C++/CUDA extension unavailable ({_state['error']}); "
                "using the pure-PyTorch reference rasterizer (slower).",
                RuntimeWarning,
                stacklevel=2,
            )
        _state["tried"] = True
        return _state["ops"]


def has_cuda_kernels() -> bool:
    """True when the loaded extension includes the CUDA kernels."""
    return ops() is not None and _state["cuda"]


def build_error() -> str | None:
    """Why the extension is unavailable (``None`` when it loaded or was not tried yet)."""
    return _state["error"]
