"""The last GPU schedule rule: one that takes every kernel, correctly and slowly.

dlight's rules, its Fallback included, start by normalizing a kernel's blocks into
spatial/reduction form, and give up where that fails: a reduction whose extent depends on
the output index (adaptive pooling's windows, TOPI's), or iterators that are not affine in
the loops. Such a kernel would otherwise have no schedule and could not build. This rule
needs no normalization: for each top-level block, the leading loops that drive only its
spatial iterators (their iterations write disjoint outputs) are fused and spread over
blocks and threads; everything inside, reductions included, runs serially in each thread.
A block with no such loop runs in a single thread. It is correct for any kernel TVM's
legalization writes, and it is the schedule of last resort: the kernel report names it.
"""

from __future__ import annotations

import tvm_ffi
from tvm import s_tir, tirx
from tvm.s_tir.dlight.gpu.base import GPUScheduleRule
from tvm.target import Target


def _realizes(func: tirx.PrimFunc) -> dict[str, s_tir.SBlockRealize]:
    found: dict[str, s_tir.SBlockRealize] = {}

    def visit(node) -> None:
        found[node.block.name_hint] = node

    tvm_ffi.structural_walk(func.body, [(s_tir.SBlockRealize, visit)], order="post")
    return found


def _parallel_prefix(sch: s_tir.Schedule, blk, realize: s_tir.SBlockRealize) -> list:
    """The block's leading loops whose variables appear only in its spatial iterators."""
    block = sch.get(blk)
    reduction_vars: set = set()
    for iv, value in zip(block.iter_vars, realize.iter_values, strict=True):
        if iv.iter_type != tirx.IterVar.DataPar:
            tvm_ffi.structural_walk(value, [(tirx.Var, reduction_vars.add)], order="post")
    prefix = []
    for loop in sch.get_loops(blk):
        var = sch.get(loop).loop_var
        if var in reduction_vars or sch.get(loop).thread_binding is not None:
            break
        prefix.append(loop)
    return prefix


class LoopFallback(GPUScheduleRule):
    """Bind each top-level block's parallel loop prefix to blockIdx.x / threadIdx.x."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        threads = int(target.attrs["max_num_threads"]) if "max_num_threads" in target.attrs \
            else 256
        sch = s_tir.Schedule(func)
        realizes = _realizes(sch.mod["main"])
        for blk in sch.get_child_blocks(sch.get_sblock("root")):
            if any(sch.get(loop).thread_binding is not None for loop in sch.get_loops(blk)):
                continue
            name = sch.get(blk).name_hint
            prefix = _parallel_prefix(sch, blk, realizes[name]) if name in realizes else []
            try:
                loop = sch.fuse(*prefix) if len(prefix) > 1 else (
                    prefix[0] if prefix else sch.add_unit_loop(blk))
            except Exception:  # loops with statements between them: the outermost only
                loop = prefix[0]
            bx, tx = sch.split(loop, factors=[None, threads])
            sch.bind(bx, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")
        return sch
