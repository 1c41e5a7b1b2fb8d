"""The Relax pipeline smelt compiles CUDA modules with, ending in an nvcc fatbin.

The shared Relax stages (backends/relax_pipeline.py) around GPU scheduling:
1. `to_relax(graph, "cuda")` (the generic entries: the CPU's packed kernels are for AVX-512),
   then `fuse_kernels()`: TVM's default legalization, constant folding, operator fusion ->
   one PrimFunc per fused kernel.
2. `schedule_cuda`: each kernel gets the first GPU schedule rule that accepts it, in the order
   of `GPU_RULES` (dlight: Matmul, GEMV, Reduction, GeneralReduction, then Fallback, which
   binds any loop nest to blocks and threads). The rule is recorded per kernel; a rule that
   raises is passed over for the next, and its error recorded too. A kernel no
   rule accepts would build into a CUDA function with unbound threads, which TVM rejects with
   a message about memory access; we raise `UnscheduledKernelError` naming it instead.
3. `finish_for_vm(cuda_graph=True)`: memory planning, CUDA graph rewrite, VM lowering.
4. `tvm.compile` generates CUDA C. This TVM build has no CUDA runtime, so it keeps the source
   in a placeholder module; `build_fatbin` compiles that source with nvcc, here, into a fatbin
   for the target's arch (SASS + PTX). module.py puts the fatbin into exported libraries.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tvm
import tvm_ffi
from tvm.s_tir import dlight as dl

from smelt.ir.errors import SmeltError

from ..float_literals import mark_module, unmark
from ..relax_pipeline import finish_for_vm, fuse_kernels
from .loop_fallback import LoopFallback
from .toolchain import CUDABuildError

#: tried in order, first accepting rule wins; dlight's Fallback takes any nest it can
#: normalize, LoopFallback (loop_fallback.py) every other one
GPU_RULES = (dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(),
             dl.gpu.Fallback(), LoopFallback())

#: nvcc flags beside -gencode; no --use_fast_math: its exp/div/erf miss the 1e-4 budget
NVCC_FLAGS = ("--fatbin", "-O3", "--expt-relaxed-constexpr",
              "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
              "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__")


class UnscheduledKernelError(SmeltError):
    """A kernel no GPU schedule rule accepted: it would run on unbound threads."""


@dataclass
class CudaBuild:
    """What `build_cuda` produced: the VM executable, and the nvcc-built kernels."""

    executable: Any
    source: str  # CUDA C of all kernels
    fatbin: bytes
    arch: str
    kernels: dict[str, str] = field(default_factory=dict)  # PrimFunc -> schedule rule
    cuda_kernels: list[str] = field(default_factory=list)  # __global__ names in the fatbin
    nvcc_seconds: float = 0.0
    #: kernel -> {rule: error} for the rules that raised on it before one took it
    rule_failures: dict[str, dict[str, str]] = field(default_factory=dict)


def schedule_cuda(mod: tvm.IRModule, target: tvm.target.Target, rules: tuple = GPU_RULES,
                  check_build: bool = False
                  ) -> tuple[tvm.IRModule, dict[str, str], dict[str, dict[str, str]]]:
    """Schedule every kernel with the first rule that accepts it. A rule that raises on a
    kernel (dlight's Matmul on a convolution with a pad epilogue did) is passed over for the
    next one, and what it raised is kept; with `check_build`, so is a rule whose schedule
    TVM then fails to build (dlight's Fallback inlining a reduction into a select did).
    Returns the module (updated in place), kernel -> rule, and kernel -> {rule: its error's
    last line} for the rules that failed."""
    used: dict[str, str] = {}
    failed: dict[str, dict[str, str]] = {}
    updates = {}
    for gv, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        name = gv.name_hint
        if func.attrs is not None and func.attrs.get("tirx.is_scheduled", False):
            used[name] = "prescheduled"
            continue
        for rule in rules:
            try:
                space = rule.apply(func, target, False)
            except Exception as e:  # a bug of that rule on this kernel: the next rule tries
                lines = str(e).strip().splitlines() or [type(e).__name__]
                failed.setdefault(name, {})[type(rule).__name__] = lines[-1][:300]
                continue
            if space is None:
                continue
            sch = space[0] if isinstance(space, list) else space
            scheduled = sch.mod["main"].with_attr("tirx.is_scheduled", True)
            why = _build_error(name, scheduled, target) if check_build else None
            if why is not None:
                failed.setdefault(name, {})[type(rule).__name__] = why
                continue
            updates[gv] = scheduled
            used[name] = type(rule).__name__
            break
        else:
            errors = "".join(f"; {r} raised: {e}" for r, e in failed.get(name, {}).items())
            raise UnscheduledKernelError(
                f"no GPU schedule rule accepts kernel {name} (tried "
                f"{', '.join(type(r).__name__ for r in rules)}{errors}); it would run on "
                f"unbound threads. Add a rule to GPU_RULES in backends/cuda/pipeline.py.\n"
                f"{func}")
    for gv, func in updates.items():
        mod[gv] = func
    return mod, used, failed


def _build_error(name: str, func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> str | None:
    """Why TVM cannot build the scheduled kernel alone for `target` (None: it can)."""
    bound: list = []
    tvm_ffi.structural_walk(func.body, [(tvm.tirx.For, lambda f: bound.append(
        f.kind == tvm.tirx.ForKind.THREAD_BINDING))], order="post")
    if not any(bound):  # alone it would build as host code; in the model it runs on the GPU
        return "no loop is bound to GPU threads"
    try:
        kernel = func.with_attr("global_symbol", name).with_attr("target", target)
        tvm.compile(tvm.IRModule({name: kernel}), target=target)
    except Exception as e:  # TVM raises TypeError, RuntimeError... on a bad schedule
        lines = str(e).strip().splitlines() or [type(e).__name__]
        return lines[-1][:300]
    return None


def build_cuda(mod: tvm.IRModule, target: tvm.target.Target, nvcc: Path) -> CudaBuild:
    """A Relax module (from `to_relax`) -> VM executable + fatbin built with `nvcc`. Where
    the scheduled module does not build, every kernel is scheduled again with its schedule
    checked by building it alone, so a rule whose schedule breaks is passed over."""
    with tvm.transform.PassContext(opt_level=3), target:
        unscheduled = fuse_kernels()(mod)
        mod, kernels, failed = schedule_cuda(_copy(unscheduled), target)
        try:
            executable = tvm.compile(finish_for_vm(cuda_graph=True)(mark_module(mod)), target,
                                     relax_pipeline=None)
        except Exception:  # a schedule TVM cannot build: find it, and take the next rule
            mod, kernels, failed = schedule_cuda(_copy(unscheduled), target, check_build=True)
            executable = tvm.compile(finish_for_vm(cuda_graph=True)(mark_module(mod)), target,
                                     relax_pipeline=None)
    source = cuda_source(executable.mod)  # as TVM wrote it: the record the export swaps
    arch = str(target.attrs["arch"])
    start = time.perf_counter()
    fatbin = build_fatbin(unmark(source), arch, nvcc)  # float constants exact
    return CudaBuild(executable, source, fatbin, arch, kernels, global_kernels(source),
                     time.perf_counter() - start, failed)


def _copy(mod: tvm.IRModule) -> tvm.IRModule:
    return tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs,
                        global_infos=mod.global_infos)


def device_module(lib: Any) -> Any:
    """The CUDA module among `lib`'s imports (None if the graph needed no kernel)."""
    stack = list(lib.imports)
    while stack:
        m = stack.pop()
        if m.kind == "cuda":
            return m
        stack.extend(m.imports)
    return None


def cuda_source(lib: Any) -> str:
    m = device_module(lib)
    return "" if m is None else str(m.inspect_source(""))


def global_kernels(source: str) -> list[str]:
    return re.findall(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(',
                      source)


def build_fatbin(source: str, arch: str, nvcc: Path) -> bytes:
    """nvcc `source` -> fatbin with SASS for `arch` and its PTX (for JIT on newer GPUs)."""
    if not source:
        return b""
    num = arch.removeprefix("sm_")
    with tempfile.TemporaryDirectory(prefix="smelt-cuda-") as tmp:
        src, out = Path(tmp) / "kernels.cu", Path(tmp) / "kernels.fatbin"
        src.write_text(source)
        cmd = [str(nvcc), *NVCC_FLAGS, "-gencode", f"arch=compute_{num},code=[sm_{num},"
               f"compute_{num}]", "-o", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise CUDABuildError(f"nvcc failed building the kernels for {arch} "
                                 f"({' '.join(cmd)}):\n{proc.stdout}{proc.stderr}")
        return out.read_bytes()
