"""The CUDA toolchain: which GPU architecture to build for, and the nvcc that builds it.

`smelt.compile(graph, "cuda", arch="sm_90")` generates CUDA C with TVM and compiles it here,
ahead of time, with nvcc into a fatbin (SASS for `arch` plus its PTX, so newer GPUs can JIT
it). The GPU host then needs no compiler, only TVM's runtime. So this module checks, before
any work is done, that nvcc exists and that it knows the requested architecture (it asks
`nvcc --list-gpu-arch`, so the check follows the installed CUDA, e.g. CUDA 13 dropped sm_70).
Whether a CUDA device is present is a separate question, asked only when a module is run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import tvm

from smelt.ir.errors import SmeltError

from ..targets import TargetError

#: where nvcc is looked for when it is not on PATH (the CUDA toolkit's default prefix)
NVCC_FALLBACKS = ("/usr/local/cuda/bin/nvcc",)
DEFAULT_ARCH = "sm_90"


class NvccNotFoundError(TargetError):
    """The CUDA target needs nvcc on the machine that compiles, and none was found."""


class CUDABuildError(TargetError):
    """nvcc rejected the generated CUDA code (the message carries its output)."""


class NoCUDADeviceError(SmeltError):
    """A CUDA module was called on a machine with no CUDA device (or no CUDA runtime)."""


def find_nvcc(search: tuple[str, ...] = ("nvcc", *NVCC_FALLBACKS)) -> Path:
    """The nvcc to build with: the one on PATH, else the CUDA toolkit's default install."""
    for c in search:
        found = shutil.which(c)
        if found:
            return Path(found)
    raise NvccNotFoundError(
        f"the CUDA target compiles kernels with nvcc, and there is none on PATH or at "
        f"{', '.join(search[1:]) or 'the default prefix'}. Install the CUDA toolkit (e.g. "
        "`apt-get install cuda-nvcc-13-0` from NVIDIA's repository, or the runfile from "
        "developer.nvidia.com/cuda-downloads) and put its bin/ on PATH. A GPU is not needed "
        "to compile.")


@lru_cache(maxsize=4)
def nvcc_archs(nvcc: Path) -> tuple[str, ...]:
    """The real architectures this nvcc can build SASS for, e.g. ('sm_75', ..., 'sm_90')."""
    out = subprocess.run([str(nvcc), "--list-gpu-arch"], capture_output=True, text=True,
                         check=False).stdout
    return tuple(f"sm_{m}" for m in re.findall(r"compute_(\d+a?)", out))


def check_arch(arch: str, nvcc: Path) -> str:
    if not re.fullmatch(r"sm_\d+a?", arch):
        raise TargetError(f"arch={arch!r} is not a CUDA architecture; write it as nvcc does, "
                          f"e.g. 'sm_90' (H100/H200), 'sm_80' (A100), 'sm_89' (L4/RTX 40xx)")
    known = nvcc_archs(nvcc)
    if known and arch.rstrip("a") not in known:
        raise TargetError(f"{nvcc} cannot build for {arch}; it knows {', '.join(known)}. "
                          "Pick one of those or install a CUDA toolkit that supports it.")
    return arch


def cuda_target(arch: str | None = None) -> tvm.target.Target:
    """TVM's CUDA target for `arch` (default sm_90), after checking nvcc can build it."""
    arch = check_arch(arch or DEFAULT_ARCH, find_nvcc())
    return tvm.target.Target({"kind": "cuda", "arch": arch},
                             host=tvm.target.Target({"kind": "llvm"}))


def has_cuda_device() -> bool:
    """True where TVM's runtime can reach a CUDA device (false without GPU, driver or runtime)."""
    try:
        return bool(tvm.cuda(0).exist)
    except Exception:  # no CUDA runtime library in this TVM build
        return False


def no_device_error(what: str = "this module") -> NoCUDADeviceError:
    return NoCUDADeviceError(
        f"{what} was compiled for CUDA, and this machine has no CUDA device TVM can use. "
        "Export it (`module.export('model.so')` writes the library with its fatbin, and "
        "model.json), copy both to a GPU host with TVM's runtime (libtvm_runtime + "
        "libtvm_runtime_cuda + tvm_ffi; no compiler needed), and run it there with "
        "`smelt.load_compiled('model.so')` or benchmarks/gpu_latency.py.")
