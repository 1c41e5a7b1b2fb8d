"""The `cpu` target: LLVM for this host's CPU (detected, with a safe fallback), built by
smelt's own pipeline (build.py).

    smelt.compile(graph, "cpu", mcpu=None, num_cores=None, schedule=True, tune=0,
                  tuning_dir=None, cache_dir=None) -> CompiledModule

- `mcpu`: LLVM's CPU name (default: this machine's, e.g. "znver4"); `num_cores`: the threads
  the module runs on (default: all cores).
- `schedule=False` builds with TVM's default pipeline instead (nothing scheduled: a
  baseline for benchmarks).
- `tune=N` lets MetaSchedule try N schedules of each contraction kernel and keeps whichever
  of its best and smelt's own is faster (tuning.py); records are kept on disk in
  `tuning_dir` (default: the per-user cache) and reused, and `module.tuning` reports per
  kernel.
- Builds are cached in memory by (graph content, target, options), so compiling the same
  graph twice is instant; with `cache_dir=` (a directory, or True for the per-user cache)
  also on disk, so a later process loads the library instead of building it
  (backends/build_cache.py); `module.cache` says "built", "memory" or "disk".
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import tvm

from smelt.ir.graph import Graph

from ..build_cache import cached_build
from ..compiled import CompiledModule, load_library
from ..targets import Target, check_options
from .build import build
from .tuning import TuningError, default_tuning_dir

OPTIONS = ("mcpu", "num_cores", "schedule", "tune", "tuning_dir", "cache_dir")


@lru_cache(maxsize=1)
def host_cpu() -> str:
    """LLVM's name for this machine's CPU (e.g. 'znver4'), or 'x86-64' if LLVM cannot tell."""
    try:
        from tvm.target import codegen

        cpu = str(codegen.llvm_get_system_cpu())
        triple = str(codegen.llvm_get_system_triple())
        if cpu and cpu != "generic" and codegen.llvm_is_valid_cpu(cpu, triple):
            return cpu
    except Exception:  # an old or odd LLVM: fall back
        pass
    return "x86-64"


def cpu_target(mcpu: str | None = None, num_cores: int | None = None) -> tvm.target.Target:
    """TVM's LLVM target for `mcpu` (default: this machine's) and `num_cores` threads."""
    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu or host_cpu(),
                              "num-cores": int(num_cores or os.cpu_count() or 1)})


def compile_cpu(graph: Graph, *, mcpu: str | None = None, num_cores: int | None = None,
                schedule: bool = True, tune: int = 0, tuning_dir: str | Path | None = None,
                cache_dir: str | Path | bool | None = None, **unknown: Any) -> CompiledModule:
    check_options("cpu", unknown, OPTIONS)
    if isinstance(tune, bool) or not isinstance(tune, int) or tune < 0:
        raise TuningError(f"tune= is the number of MetaSchedule trials per kernel (an int >= 0, "
                          f"0: no tuning), got {tune!r}")
    if tune and not schedule:
        raise TuningError("tune= races MetaSchedule against smelt's schedules: it needs "
                          "schedule=True")
    target = cpu_target(mcpu, num_cores)
    work_dir = Path(tuning_dir) if tuning_dir is not None else default_tuning_dir()
    options: dict[str, Any] = {"schedule": schedule, "tune": tune,
                               "tuning_dir": str(work_dir) if tune else None}
    return cached_build(graph, target, options,
                        lambda: build(graph, target, schedule, tune, work_dir), cache_dir)


def _tvm_target(mcpu: str | None = None, num_cores: int | None = None,
                **options: Any) -> tvm.target.Target:
    check_options("cpu", options, OPTIONS)
    return cpu_target(mcpu, num_cores)


CPU = Target("cpu", "LLVM for this machine's CPU, with smelt's kernels and schedules",
             compile=compile_cpu, tvm_target=_tvm_target, load=load_library)
