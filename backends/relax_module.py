"""A smelt Graph as a TVM Relax IRModule (one dataflow function, weights bound as constants)."""

from __future__ import annotations

import tvm
from tvm import relax

from smelt.ir.errors import SmeltError
from smelt.ir.graph import Graph
from smelt.ir.types import TensorType

from . import (
    int4_lowering,  # noqa: F401  (linear_w4)
    qarith_lowering,  # noqa: F401  (qadd, qmean)
    quant_lowering,  # noqa: F401  (registers the quantized ops' lowerings)
    sparse_lowering,  # noqa: F401  (linear24)
)
from .fused_lowering import LOWERING


class LoweringError(SmeltError):
    """An op has no lowering to Relax, or its lowering failed; names the node."""


def to_relax(graph: Graph, func_name: str = "main") -> tvm.IRModule:
    """Lower `graph` to an IRModule whose `func_name` takes the graph's inputs in order and
    returns a tuple of its outputs."""
    bb = relax.BlockBuilder()
    params = [relax.Var(x.attrs["name"], relax.TensorType(x.shape, x.dtype))
              for x in graph.inputs]
    env: dict[int, relax.Expr] = {id(x): p for x, p in zip(graph.inputs, params, strict=True)}
    with bb.function(func_name, params):
        with bb.dataflow():
            for n in graph.nodes():
                if n.op == "input":
                    continue
                lower = LOWERING.get(n.op)
                if lower is None:
                    raise LoweringError(f"op {n.op!r} has no Relax lowering; add one to "
                                        "backends/relax_lowering.py")
                try:
                    expr = lower(bb, n, [env[id(x)] for x in n.inputs])
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
