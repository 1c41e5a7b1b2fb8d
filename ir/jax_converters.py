"""lax primitive -> smelt conversions: one table, `CONVERTERS`, keyed by primitive name."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import TypeInferenceError, UnsupportedOpError  # noqa: F401
from .jax_builder import (  # noqa: F401
    _SUMMARY,
    Converter,
    _Builder,
    _cast,
    _out_dtype,
    _reshape,
    _scalar,
    _slice,
    _transpose,
    smelt_dtype,
    source_line,
)
from .jax_indexing import CONVERTERS_INDEXING
from .jax_math import CONVERTERS_MATH
from .jax_spatial import CONVERTERS_SPATIAL
from .node import Node
from .ops.common import prod
from .types import is_float


# -- elementwise ---------------------------------------------------------------------------
def _arith(op: str) -> Converter:
    def convert(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
        dtype = _out_dtype(eqn)
        return b.make(op, *(_cast(b, x, dtype) for x in xs))

    convert.__name__ = f"convert_{op}"
    return convert


def _compare(op: str) -> Converter:
    def convert(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
        x, y = xs
        return b.make(op, x, _cast(b, y, x.dtype))

    convert.__name__ = f"convert_{op}"
    return convert


def _unary(op: str) -> Converter:
    def convert(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
        return b.make(op, xs[0])

    convert.__name__ = f"convert_{op}"
    return convert


def _pow(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    x, y = xs
    return b.make("pow", x, _cast(b, y, x.dtype))


def _square(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    return b.make("mul", xs[0], xs[0])


def _integer_pow(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    """x ** y by repeated squaring (as XLA expands it); negative y takes the reciprocal."""
    x, y = xs[0], eqn.params["y"]
    if y == 0:
        return b.make("expand", b.const(1, x.dtype), shape=x.shape)
    acc, base, n = None, x, abs(y)
    while n:
        if n & 1:
            acc = base if acc is None else b.make("mul", acc, base)
        n >>= 1
        if n:
            base = b.make("mul", base, base)
    return b.make("reciprocal", acc) if y < 0 else acc


def _erfc(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    # erfc(x) = 1 - erf(x): exact in real arithmetic; absolute (not relative) float accuracy
    return b.make("sub", b.const(1, xs[0].dtype), b.make("erf", xs[0]))


def _ceil(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    return b.make("neg", b.make("floor", b.make("neg", xs[0])))  # ceil x = -floor(-x)


def _round(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    if int(eqn.params["rounding_method"]) != 1:  # 1 = TO_NEAREST_EVEN
        raise b.unsupported("round", "smelt's round is half-to-even; use jnp.round, or "
                            "lax.round(x, lax.RoundingMethod.TO_NEAREST_EVEN)")
    return b.make("round", xs[0])


def _identity(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    return xs[0]


def _convert_element_type(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    return _cast(b, xs[0], smelt_dtype(eqn.params["new_dtype"], b.source))


def _select_n(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    """select_n(p, c0, c1, ...) picks case p; a bool p picks c1 where true."""
    pred, *cases = xs
    dtype = _out_dtype(eqn)
    cases = [_cast(b, c, dtype) for c in cases]
    if len(cases) == 1:
        return cases[0]
    if pred.dtype == "bool":
        return b.make("where", pred, cases[1], cases[0])
    out = cases[-1]
    for i in range(len(cases) - 2, -1, -1):
        out = b.make("where", b.make("equal", pred, b.const(i, pred.dtype)), cases[i], out)
    return out


def _clamp(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    lo, x, hi = xs
    low, high = _scalar(lo), _scalar(hi)
    if is_float(x.dtype) and low is not None and high is not None:
        return b.make("clamp", x, min=float(low), max=float(high))
    return b.make("minimum", b.make("maximum", x, _cast(b, lo, x.dtype)), _cast(b, hi, x.dtype))


# -- contractions ----------------------------------------------------------------------------
def _dot_general(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    """Free and contracted axes grouped by transposes and reshapes into linear (a constant
    right operand without batch axes) or batched matmul. jax's output order is
    batch, lhs free, rhs free."""
    dtype = _out_dtype(eqn)
    lhs, rhs = (_cast(b, x, dtype) for x in xs)
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lf = [d for d in range(len(lhs.shape)) if d not in lc and d not in lb]
    rf = [d for d in range(len(rhs.shape)) if d not in rc and d not in rb]
    batch = [lhs.shape[d] for d in lb]
    m, n = [lhs.shape[d] for d in lf], [rhs.shape[d] for d in rf]
    k = prod([lhs.shape[d] for d in lc])
    out_shape = batch + m + n
    if not lb and rhs.is_constant:
        x = _reshape(b, _transpose(b, lhs, lf + list(lc)), m + [k])
        w = b.fold(rhs, rf + list(rc), (prod(n), k))
        return _reshape(b, b.make("linear", x, w), out_shape)
    x = _reshape(b, _transpose(b, lhs, list(lb) + lf + list(lc)), batch + [prod(m), k])
    y = _reshape(b, _transpose(b, rhs, list(rb) + list(rc) + rf), batch + [k, prod(n)])
    return _reshape(b, b.make("matmul", x, y), out_shape)


# -- reductions ----------------------------------------------------------------------------
def _reduce(op: str) -> Converter:
    def convert(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
        axes = tuple(eqn.params["axes"])
        return b.make(op, xs[0], axes=axes) if axes else xs[0]  # smelt's () means all axes

    convert.__name__ = f"convert_{op}"
    return convert


def _argmax(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    (axis,) = eqn.params["axes"]
    out = b.make("argmax", xs[0], axis=int(axis))
    return _cast(b, out, smelt_dtype(eqn.params["index_dtype"], b.source))


# -- shapes -------------------------------------------------------------------------------
def _broadcast_in_dim(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    """Operand axis i goes to output axis dims[i]: reshape in the size-1 axes, then expand."""
    x, shape, dims = xs[0], b.shape(eqn.params["shape"]), eqn.params["broadcast_dimensions"]
    kept = [1] * len(shape)
    for i, d in enumerate(dims):
        kept[d] = x.shape[i]
    y = _reshape(b, x, kept)
    return y if y.shape == shape else b.make("expand", y, shape=shape)


def _reshape_prim(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    if eqn.params.get("dimensions") is not None:
        raise b.unsupported("reshape", "reshape with `dimensions` (a fused transpose); "
                            "transpose explicitly first")
    return _reshape(b, xs[0], b.shape(eqn.params["new_sizes"]))


def _transpose_prim(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    return _transpose(b, xs[0], eqn.params["permutation"])


def _squeeze(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    axes = tuple(eqn.params["dimensions"])
    return b.make("squeeze", xs[0], axes=axes) if axes else xs[0]


def _concatenate(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    dtype = _out_dtype(eqn)
    return b.make("concat", *(_cast(b, x, dtype) for x in xs), axis=eqn.params["dimension"])


def _split(b: _Builder, eqn: Any, xs: list[Node]) -> list[Node]:
    sizes = tuple(int(s) for s in eqn.params["sizes"])
    parts = b.make("split", xs[0], axis=int(eqn.params["axis"]), sizes=sizes)
    return [b.make("project", parts, index=i) for i in range(len(sizes))]


def _slice_prim(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    p, y = eqn.params, xs[0]
    strides = p["strides"] or (1,) * len(y.shape)
    for axis, (lo, hi, step) in enumerate(zip(p["start_indices"], p["limit_indices"], strides,
                                              strict=True)):
        y = _slice(b, y, axis, int(lo), int(hi), int(step))
    return y


def _dynamic_slice(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    """Constant start indices only; clamped into range as XLA does."""
    y, starts = xs[0], [_scalar(i) for i in xs[1:]]
    if any(s is None for s in starts):
        raise b.unsupported("dynamic_slice", "start indices must be constants; smelt graphs "
                            "have static slices")
    for axis, (s, size) in enumerate(zip(starts, eqn.params["slice_sizes"], strict=True)):
        start = min(max(int(s), 0), y.shape[axis] - int(size))
        y = _slice(b, y, axis, start, start + int(size))
    return y


def _iota(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    p = eqn.params
    shape, axis = tuple(p["shape"]), int(p["dimension"])
    dtype = smelt_dtype(p["dtype"], b.source)
    line = np.arange(shape[axis]).reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return b.const(np.broadcast_to(line, shape), dtype)


# -- calls ---------------------------------------------------------------------------------
_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _inline(b: _Builder, eqn: Any, xs: list[Node]) -> list[Node]:
    """Evaluate the inner jaxpr in place; its outputs take the call's name when public."""
    from jax.extend.core import ClosedJaxpr

    key = next((k for k in _CALL_PARAMS if k in eqn.params), None)
    if key is None:
        raise b.unsupported(eqn.primitive.name, "a call without an inner jaxpr")
    inner = eqn.params[key]
    jaxpr, consts = (inner.jaxpr, inner.consts) if isinstance(inner, ClosedJaxpr) else (inner, ())
    outs = b.run(jaxpr, consts, xs, b.source)
    name = str(eqn.params.get("name", ""))
    if name.isidentifier() and not name.startswith("_"):
        for node in outs:
            if not (node.is_constant or node.op == "input"):
                b.names.setdefault(node, name)
    return outs


# -- the table -------------------------------------------------------------------------------
CONVERTERS: dict[str, Converter] = {
    # arithmetic and comparisons
    "add": _arith("add"), "sub": _arith("sub"), "mul": _arith("mul"), "div": _arith("div"),
    "max": _arith("maximum"), "min": _arith("minimum"), "pow": _pow,
    "eq": _compare("equal"), "ne": _compare("not_equal"), "lt": _compare("less"),
    "le": _compare("less_equal"), "gt": _compare("greater"), "ge": _compare("greater_equal"),
    # unary math
    "neg": _unary("neg"), "abs": _unary("abs"), "exp": _unary("exp"), "log": _unary("log"),
    "tanh": _unary("tanh"), "logistic": _unary("sigmoid"), "sqrt": _unary("sqrt"),
    "rsqrt": _unary("rsqrt"), "erf": _unary("erf"), "sin": _unary("sin"),
    "cos": _unary("cos"), "floor": _unary("floor"), "ceil": _ceil, "round": _round,
    "erfc": _erfc, "square": _square, "integer_pow": _integer_pow,
    "select_n": _select_n, "clamp": _clamp, "convert_element_type": _convert_element_type,
    # contractions, reductions, windows
    "dot_general": _dot_general,
    "reduce_sum": _reduce("reduce_sum"), "reduce_max": _reduce("reduce_max"),
    "reduce_min": _reduce("reduce_min"), "argmax": _argmax,
    # shapes and data movement
    "broadcast_in_dim": _broadcast_in_dim, "reshape": _reshape_prim,
    "transpose": _transpose_prim, "squeeze": _squeeze, "concatenate": _concatenate,
    "split": _split, "slice": _slice_prim, "dynamic_slice": _dynamic_slice, "iota": _iota,
    # gather, scatters, dynamic_update_slice, rev, pad: jax_indexing.py
    **CONVERTERS_INDEXING,
    # inverse and hyperbolic functions, rem, bitwise ops, prod/any/all/argmin, scans, sort,
    # top_k: jax_math.py
    **CONVERTERS_MATH,
    # conv_general_dilated (1-3 d, input dilation), reduce_window_max/sum (1-3 d):
    # jax_spatial.py
    **CONVERTERS_SPATIAL,
    # identities and calls
    "stop_gradient": _identity, "copy": _identity,  # lax.copy_p is named "copy"
    "optimization_barrier": _identity,
    "pjit": _inline, "jit": _inline, "closed_call": _inline, "core_call": _inline,
    "custom_jvp_call": _inline, "custom_vjp_call": _inline, "custom_vjp_call_jaxpr": _inline,
    "remat": _inline, "remat2": _inline, "checkpoint": _inline,
}


