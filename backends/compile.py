"""`smelt.compile(graph, target="cpu", **options)`: look the target up and hand over.

The registry (targets.py) knows each target by name; the target's folder does the whole
build and checks its own options:

    cpu   backends/cpu/target.py    LLVM for this host's CPU: smelt's kernels and schedules
                                    (mcpu=, num_cores=, schedule=, tune=, tuning_dir=,
                                    cache_dir=) -> CompiledModule
    cuda  backends/cuda/target.py   CUDA C built with nvcc into a fatbin (arch=, cache_dir=)
                                    -> CudaModule
    c     backends/mcu/target.py    a C project for a Cortex-M board or the host, built and
                                    measured (board=, out_dir=) -> CModule

`smelt.targets()` lists what is installed; another package adds a target through the
`smelt.targets` entry-point group.
"""

from __future__ import annotations

from typing import Any

from smelt.ir.dims import symbols
from smelt.ir.graph import Graph

from .targets import TargetError, get_target


def compile_graph(graph: Graph, target: str = "cpu", **options: Any) -> Any:
    """The compiled module of `graph` for `target` (see the module docstring for options)."""
    spec = get_target(target)
    syms = sorted({f"{d.name} in [{d.lo}, {d.hi}]" for x in graph.inputs
                   for d in symbols(x.shape)})
    if syms:
        raise TargetError(f"the {target} target compiles graphs of concrete sizes; this one "
                          f"has {', '.join(syms)}: compile smelt.specialize(graph, "
                          "{name: size, ...}) for each size you serve")
    return spec.compile(graph, **options)
