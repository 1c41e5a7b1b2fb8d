"""The lowering table: how each smelt op becomes Relax, keyed by op and target.

An entry takes the BlockBuilder, the node, and its operands already lowered to Relax
expressions, and returns a Relax expression (emitted by the caller, `to_relax`):

    @lowers("relu")                       # the generic entry: every target
    def _relu(bb, n, xs): ...

    @lowers("qconv2d", target="cpu")      # the CPU's own entry (backends/cpu/)
    def _qconv2d_vnni(bb, n, xs): ...

`lowering(op, target)` gives the target's entry for the op, else the generic one, as JAX's
`register_lowering(prim, rule, platform=...)` does. Generic entries (this folder) are
reference-exact for every target and import nothing target-specific; a target's entries live
in its own folder and may call the generic one for the cases they do not take. What an op
lowers to depends only on (op, target): no global or context switch changes it.
Fused ops have no entry: `to_relax` lowers them as their unfused chain (fused.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tvm import relax

from smelt.ir.errors import SmeltError
from smelt.ir.node import Node
from smelt.ir.op_table import OPS
from smelt.ir.ops.fused import ANCHOR

Lower = Callable[[relax.BlockBuilder, Node, list[Any]], Any]

#: (op, target) -> entry; target None is the generic entry
LOWERINGS: dict[tuple[str, str | None], Lower] = {}
#: ops `to_relax` handles itself (graph inputs; fused ops as their unfused chains)
STRUCTURAL = frozenset({"input", *ANCHOR})


class LoweringError(SmeltError):
    """An op has no lowering to Relax, or its lowering failed; names the node."""


def register(op: str, fn: Lower, target: str | None = None) -> Lower:
    """Make `fn` the entry of `op` for `target` (None: the generic entry)."""
    if op not in OPS:
        raise LoweringError(f"cannot register a lowering for {op!r}: no such op in the op "
                            "table (ir/ops/)")
    LOWERINGS[op, target] = fn
    return fn


def lowers(*ops: str, target: str | None = None) -> Callable[[Lower], Lower]:
    """Decorator: register the function as the entry of each of `ops` for `target`."""
    def wrap(fn: Lower) -> Lower:
        for op in ops:
            register(op, fn, target)
        return fn

    return wrap


def lowering(op: str, target: str | None = None) -> Lower:
    """The entry that lowers `op` for `target`: the target's own, else the generic one."""
    fn = LOWERINGS.get((op, target)) or LOWERINGS.get((op, None))
    if fn is None:
        raise LoweringError(f"op {op!r} has no Relax lowering; add a generic entry with "
                            "@lowers in backends/lowering/")
    return fn


def target_entries(target: str) -> list[str]:
    """The ops `target` lowers with an entry of its own."""
    return sorted(op for op, t in LOWERINGS if t == target)


def missing_lowerings() -> list[str]:
    """Ops of the op table with no generic entry (a test keeps this empty)."""
    return sorted(set(OPS) - {op for op, t in LOWERINGS if t is None} - STRUCTURAL)
