"""The CPU build: a graph through smelt's lowering, kernels and schedules to a module the
Relax VM runs on this machine.

    to_relax(graph, "cpu")      the lowering table with the CPU's own entries (lowering_*.py,
                                requantize.py): VNNI int8 kernels, W4A16 and 2:4 panels
    fuse_kernels(LEGALIZE)      TVM's legalization, with the contractions on smelt's packed
                                kernels (legalize.py); constants folded (the weight packing
                                among them); elementwise epilogues fused into producers
    schedule_cpu                every kernel scheduled by the first rule that takes it
                                (schedule.py)
    tune_kernels                only with tune=N: MetaSchedule raced against those schedules
                                (tuning.py)
    producers_write_padded      producers write their consumers' padded int8 inputs in place
                                (pad_in_producer.py)
    finish_for_vm, tvm.compile  memory planning, VM lowering, LLVM

`schedule=False` builds the lowered module with TVM's default pipeline instead (nothing
scheduled: a baseline for benchmarks).
"""

from __future__ import annotations

from pathlib import Path

import tvm

from smelt.ir.graph import Graph

from ..compiled import CompiledModule, graph_signature
from ..lowering import to_relax
from ..relax_pipeline import finish_for_vm, fuse_kernels
from . import lowering_int8, lowering_packed, requantize  # noqa: F401  (the CPU's entries)
from .legalize import LEGALIZE
from .pad_in_producer import producers_write_padded
from .schedule import kernel_rules, schedule_cpu
from .tuning import tune_kernels


def fused_kernels(graph: Graph, target: tvm.target.Target) -> tvm.IRModule:
    """`graph` lowered for the CPU and fused into its (unscheduled) TIR kernels, the Relax
    main a sequence of calls to them."""
    with tvm.transform.PassContext(opt_level=3), target:
        return fuse_kernels(LEGALIZE)(to_relax(graph, "cpu"))


def build(graph: Graph, target: tvm.target.Target, schedule: bool, tune: int,
          work_dir: Path) -> CompiledModule:
    kernels: dict[str, str | None] = {}
    tuning: dict[str, dict] = {}
    with tvm.transform.PassContext(opt_level=3), target:
        if schedule:
            mod = fused_kernels(graph, target)
            unscheduled = copy_module(mod)  # schedule_cpu updates the module it is given
            mod = schedule_cpu(mod)
            if tune:
                mod, tuning = tune_kernels(unscheduled, mod, target, tune, work_dir)
            mod = producers_write_padded(mod)
            kernels = kernel_rules(mod)
            executable = tvm.compile(finish_for_vm()(mod), target, relax_pipeline=None)
        else:
            executable = tvm.compile(to_relax(graph, "cpu"), target)
    meta = {**graph_signature(graph), "target": "cpu",
            "threads": int(target.attrs["num-cores"])}
    return CompiledModule(executable, meta, kernels=kernels, tuning=tuning)


def copy_module(mod: tvm.IRModule) -> tvm.IRModule:
    """A new IRModule holding the same functions (a pass that updates in place leaves it)."""
    return tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs,
                        global_infos=mod.global_infos)
