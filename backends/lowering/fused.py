"""Lowering of smelt's fused ops: the unfused chain (ir/ops/fused.py `unfused`), each node
through the lowering table of the same target. TVM's FuseOps then puts the chain back into
one kernel (on the CPU with the epilogue in the contraction's register tile,
backends/cpu/sched_tiles.py)."""

from __future__ import annotations

from tvm import relax

from smelt.ir.node import Node
from smelt.ir.ops.fused import unfused

from .registry import lowering


def lower_unfused(bb: relax.BlockBuilder, n: Node, xs: list[relax.Expr],
                  target: str | None) -> relax.Expr:
    env: dict[int, relax.Expr] = {id(i): x for i, x in zip(n.inputs, xs, strict=True)}
    order: list[Node] = []
    stack, seen = [unfused(n)], set(env)
    while stack:  # post-order over the chain, stopping at the fused node's inputs
        m = stack[-1]
        pending = [i for i in m.inputs if id(i) not in seen]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        if id(m) not in seen:
            seen.add(id(m))
            order.append(m)
    out = None
    for m in order:
        out = lowering(m.op, target)(bb, m, [env[id(i)] for i in m.inputs])
        env[id(m)] = out if m is order[-1] else bb.emit(out)
    return out
