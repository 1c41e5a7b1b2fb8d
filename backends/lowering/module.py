"""A smelt Graph as a TVM Relax IRModule (one dataflow function, weights bound as constants),
lowered for one target: each node through `lowering(op, target)` (registry.py)."""

from __future__ import annotations

import tvm
from tvm import relax

from smelt.ir.graph import Graph
from smelt.ir.ops.fused import ANCHOR
from smelt.ir.types import TensorType

from ..targets import get_target
from .fused import lower_unfused
from .registry import LoweringError, lowering


def to_relax(graph: Graph, target: str | None = None, func_name: str = "main") -> tvm.IRModule:
    """Lower `graph` to an IRModule whose `func_name` takes the graph's inputs in order and
    returns a tuple of its outputs. `target` (a registered target's name) picks that target's
    own entries where it has them; None gives the generic, reference-exact lowering that any
    TVM pipeline can build."""
    if target is not None:
        get_target(target)  # its entries register when its folder loads; unknown: TargetError
    bb = relax.BlockBuilder()
    params = [relax.Var(x.attrs["name"], relax.TensorType(x.shape, x.dtype))
              for x in graph.inputs]
    env: dict[int, relax.Expr] = {id(x): p for x, p in zip(graph.inputs, params, strict=True)}
    with bb.function(func_name, params):
        with bb.dataflow():
            for n in graph.nodes():
                if n.op == "input":
                    continue
                try:
                    operands = [env[id(x)] for x in n.inputs]
                    if n.op in ANCHOR:
                        expr = lower_unfused(bb, n, operands, target)
                    else:
                        expr = lowering(n.op, target)(bb, n, operands)
                except LoweringError:
                    raise
                except Exception as e:  # TVM raises many kinds; name the node either way
                    raise LoweringError(f"lowering {n.op} ({n.type}) failed: {e}") from e
                env[id(n)] = expr if n.op == "constant" else bb.emit(expr)
                _check_type(n, env[id(n)])
            outs = bb.emit_output(relax.Tuple([env[id(o)] for o in graph.outputs]))
        bb.emit_func_output(outs)
    return bb.get()


def _check_type(n, expr) -> None:
    if not isinstance(n.type, TensorType):
        return
    ty = expr.ty
    shape = tuple(int(d) for d in ty.shape.values) if ty.shape is not None else None
    if shape != n.shape or str(ty.dtype) != n.dtype:
        raise LoweringError(f"lowering of {n.op} gave {ty.dtype}{list(shape or [])}, "
                            f"smelt expects {n.type}")
