"""`smelt.compile(graph, target="cpu")`: lower to Relax, build with TVM, return a module.

The CPU build runs smelt's pipeline (backends/cpu/pipeline.py): its own kernels with packed
weights, epilogues fused, every kernel scheduled by a named rule. `schedule=False` builds
with TVM's default pipeline instead (nothing scheduled: a baseline for benchmarks).
Builds are cached in memory by (graph content hash, target, options), so compiling the same
graph twice is instant.
"""

from __future__ import annotations

from typing import Any

import tvm

from smelt.ir.graph import Graph

from .compiled import CompiledModule
from .cpu.pipeline import finish, lower_to_kernels
from .cpu.schedule import kernel_rules, schedule_cpu
from .relax_module import to_relax
from .targets import make_target

_CACHE: dict[tuple[str, str, bool], CompiledModule] = {}


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


def compile_graph(graph: Graph, target: str = "cpu", *, schedule: bool = True,
                  **options: Any) -> CompiledModule:
    tgt = make_target(target, **options)
    key = (graph_key(graph), str(tgt), schedule)
    if key in _CACHE:
        return _CACHE[key]
    mod = to_relax(graph)
    kernels: dict[str, str | None] = {}
    with tvm.transform.PassContext(opt_level=3), tgt:
        if schedule:
            mod = schedule_cpu(lower_to_kernels(tgt)(mod))
            kernels = kernel_rules(mod)
            executable = tvm.compile(finish(tgt)(mod), tgt, relax_pipeline=None)
        else:
            executable = tvm.compile(mod, tgt)
    module = CompiledModule(executable, signature(graph), kernels=kernels)
    _CACHE[key] = module
    return module
