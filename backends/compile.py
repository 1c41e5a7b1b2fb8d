"""`smelt.compile(graph, target="cpu")`: lower to Relax, build with TVM, return a module.

The CPU build runs smelt's pipeline (backends/cpu/pipeline.py): its own kernels with packed
weights, epilogues fused, every kernel scheduled by a named rule. `schedule=False` builds
with TVM's default pipeline instead (nothing scheduled: a baseline for benchmarks).
`tune=N` lets MetaSchedule try N schedules of each contraction kernel and keeps whichever of
its best and smelt's own is faster (backends/tuning.py); records are kept on disk in
`tuning_dir` (default: the per-user cache) and reused, and `module.tuning` reports per kernel.
Builds are cached in memory by (graph content hash, target, options), so compiling the same
graph twice is instant; with `cache_dir=` (a directory, or True for the per-user cache) they
are also kept on disk (backends/disk_cache.py), so a later process loads the library instead
of building it; `module.cache` says "built", "memory" or "disk".
`target="cuda"` (with `arch=`, default sm_90) builds kernels with nvcc into a fatbin instead
(backends/cuda_pipeline.py, cuda_module.py).
`target="c"` (with `board=`, e.g. "mps2-an386", and `out_dir=`) emits, builds and measures a
C project for a microcontroller (backends/mcu/module.py): a `CModule`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tvm

from smelt.ir.graph import Graph

from .compiled import CompiledModule
from .cpu.pad_in_producer import producers_write_padded
from .cpu.pipeline import finish, lower_to_kernels
from .cpu.schedule import kernel_rules, schedule_cpu
from .disk_cache import DiskCache, entry_key
from .relax_module import to_relax
from .targets import make_target
from .tuning import TuningError, default_tuning_dir, tune_kernels

_CACHE: dict[tuple[str, str, bool, int, str | None], CompiledModule] = {}


def graph_key(graph: Graph) -> str:
    import hashlib

    h = hashlib.sha256()
    for x in graph.inputs:
        h.update(f"{x.attrs['name']}:{x.type}".encode())
    for o in graph.outputs:
        h.update(o.content_hash.encode())
    return h.hexdigest()


def signature(graph: Graph) -> dict[str, Any]:
    return {
        "inputs": [{"name": x.attrs["name"], "shape": list(x.shape), "dtype": x.dtype}
                   for x in graph.inputs],
        "outputs": [{"shape": list(o.shape), "dtype": o.dtype} for o in graph.outputs],
    }


def compile_graph(graph: Graph, target: str = "cpu", *, schedule: bool = True, tune: int = 0,
                  tuning_dir: str | Path | None = None, cache_dir: str | Path | bool | None = None,
                  **options: Any) -> CompiledModule:
    if target == "c":  # a C project for a microcontroller board (backends/mcu)
        from .mcu.module import compile_c

        return compile_c(graph, **options)
    if isinstance(tune, bool) or not isinstance(tune, int) or tune < 0:
        raise TuningError(f"tune= is the number of MetaSchedule trials per kernel (an int >= 0, "
                          f"0: no tuning), got {tune!r}")
    if tune and not schedule:
        raise TuningError("tune= races MetaSchedule against smelt's schedules: it needs "
                          "schedule=True")
    tgt = make_target(target, **options)
    work_dir = Path(tuning_dir) if tuning_dir is not None else default_tuning_dir()
    key = (graph_key(graph), str(tgt), schedule, tune, str(work_dir) if tune else None)
    if key in _CACHE:
        _CACHE[key].cache = "memory"
        return _CACHE[key]
    disk = None
    if cache_dir is not None and cache_dir is not False:
        disk = DiskCache(None if cache_dir is True else cache_dir)
        dkey = entry_key(key[0], key[1], {"schedule": schedule, "tune": tune})
        module, _why = disk.load(dkey)
        if module is not None:
            module.cache = "disk"
            _CACHE[key] = module
            return module
    module = _build(graph, tgt, schedule, tune, work_dir)
    if disk is not None:
        disk.store(dkey, module)
    _CACHE[key] = module
    return module


def _build(graph: Graph, tgt: tvm.target.Target, schedule: bool, tune: int,
           work_dir: Path) -> CompiledModule:
    if tgt.kind.name == "cuda":
        from .cuda_module import build_module

        return build_module(graph, tgt, schedule, tune)
    mod = to_relax(graph)
    kernels: dict[str, str | None] = {}
    tuning: dict[str, dict] = {}
    with tvm.transform.PassContext(opt_level=3), tgt:
        if schedule:
            mod = lower_to_kernels(tgt)(mod)
            unscheduled = _copy(mod)  # schedule_cpu updates the module it is given
            mod = schedule_cpu(mod)
            if tune:
                mod, tuning = tune_kernels(unscheduled, mod, tgt, tune, work_dir)
            mod = producers_write_padded(mod)
            kernels = kernel_rules(mod)
            executable = tvm.compile(finish(tgt)(mod), tgt, relax_pipeline=None)
        else:
            executable = tvm.compile(mod, tgt)
    meta = {**signature(graph), "threads": int(tgt.attrs["num-cores"])}
    module = CompiledModule(executable, meta, kernels=kernels, tuning=tuning)
    module.cache = "built"
    return module


def _copy(mod: tvm.IRModule) -> tvm.IRModule:
    return tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs,
                        global_infos=mod.global_infos)
