"""lax math, bitwise, reduction, scan and sort primitives -> smelt (entries of
jax_converters.CONVERTERS).

- asin, acos, atan, asinh, acosh, atanh, sinh, cosh, tan, log1p, expm1, atan2: the smelt op
  of the same name; exp2 is pow(2, x); is_finite is not (isnan or isinf).
- sign: smelt's sign is torch's (sign(NaN) = 0, sign(-0.0) = +0.0); XLA's keeps NaN and
  -0.0, so a float sign is where(sign(x) == 0, x, sign(x)).
- rem: `fmod` (XLA's remainder is C's: the dividend's sign; jnp's % adds the floor
  correction around it). An integer divisor of 0 gives 0 in smelt.
- and, or, xor, not: logical ops on bool, bitwise ops on integers.
- reduce_prod, reduce_or, reduce_and (bool; jnp.any / jnp.all) -> reduce_prod, reduce_any,
  reduce_all. argmin: argmax of -x (floats, NaN first as XLA), ~x (integers), not x (bool).
- cumsum, cumprod (reverse: flipped, scanned, flipped back); cummax, cummin and
  cumlogsumexp have no smelt op.
- sort with one key: smelt's stable sort of the key; the other operands follow it (an iota
  beside the key, as jnp.argsort writes, is the sort's own indices). top_k: a descending
  sort, its first k. One difference: XLA orders -0.0 before 0.0 and a negative NaN first,
  where smelt (as torch) ties the zeros and ranks every NaN above +inf.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .jax_builder import Converter, _Builder, _cast, _out_dtype, _slice, smelt_dtype
from .node import Node
from .types import is_float


# -- elementwise ---------------------------------------------------------------------------
def _unary(op: str) -> Converter:
    def convert(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
        return b.make(op, xs[0])

    convert.__name__ = f"convert_{op}"
    return convert


def _binary(op: str) -> Converter:
    def convert(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
        dtype = _out_dtype(eqn)
        return b.make(op, *(_cast(b, x, dtype) for x in xs))

    convert.__name__ = f"convert_{op}"
    return convert


def _bitwise(logical: str, bitwise: str) -> Converter:
    """The logical op on bool operands, the bitwise one on integers."""
    def convert(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
        if is_float(xs[0].dtype):
            raise b.unsupported(eqn.primitive.name, "bitwise ops take integers or bool")
        return b.make(logical if xs[0].dtype == "bool" else bitwise, *xs)

    convert.__name__ = f"convert_{bitwise}"
    return convert


def _sign(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    x = xs[0]
    s = b.make("sign", x)
    if not is_float(x.dtype):
        return s
    return b.make("where", b.make("equal", s, b.const(0, x.dtype)), x, s)  # NaN, -0.0 kept


def _is_finite(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    x = xs[0]
    return b.make("logical_not", b.make("logical_or", b.make("isnan", x), b.make("isinf", x)))


def _exp2(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    return b.make("pow", b.const(2, xs[0].dtype), xs[0])


# -- reductions ----------------------------------------------------------------------------
def _reduce(op: str, bool_only: bool = False) -> Converter:
    def convert(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
        x, axes = xs[0], tuple(int(a) for a in eqn.params["axes"])
        if bool_only and x.dtype != "bool":
            raise b.unsupported(eqn.primitive.name, "smelt reduces bool values only (any / "
                                "all); a bitwise reduction of integers has no smelt op")
        return b.make(op, x, axes=axes) if axes else x  # smelt's () means every axis

    convert.__name__ = f"convert_{op}"
    return convert


def _argmin(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    """argmax of an order-reversing map that keeps ties: -x, ~x = -x - 1, not x."""
    x = xs[0]
    (axis,) = eqn.params["axes"]
    flipped = b.make("neg" if is_float(x.dtype) else
                     "logical_not" if x.dtype == "bool" else "bitwise_not", x)
    out = b.make("argmax", flipped, axis=int(axis))
    return _cast(b, out, smelt_dtype(eqn.params["index_dtype"], b.source))


# -- scans and sorting ---------------------------------------------------------------------
def _flip(b: _Builder, x: Node, axis: int) -> Node:
    n = x.shape[axis]
    return b.make("take", x, b.const(np.arange(n - 1, -1, -1, dtype=np.int64), "int64"),
                  axis=axis)


def _scan(op: str) -> Converter:
    def convert(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
        x, axis = xs[0], int(eqn.params["axis"]) % len(xs[0].shape)
        if x.dtype == "bool":
            x = _cast(b, x, _out_dtype(eqn))
        if not eqn.params.get("reverse", False):
            return b.make(op, x, axis=axis)
        return _flip(b, b.make(op, _flip(b, x, axis), axis=axis), axis)

    convert.__name__ = f"convert_{op}"
    return convert


def _no_scan(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    raise b.unsupported(eqn.primitive.name, "smelt's scans are cumsum and cumprod; a running "
                        "maximum, minimum or log-sum-exp has no smelt op")


def _is_iota(x: Node, axis: int) -> bool:
    """Whether x is the constant 0, 1, ... along axis (jnp.argsort's second operand)."""
    if x.op != "constant":
        return False
    shape = [1] * len(x.shape)
    shape[axis] = x.shape[axis]
    line = np.arange(x.shape[axis]).reshape(shape)
    return bool(np.array_equal(np.asarray(x.value), np.broadcast_to(line, x.shape)))


def _sorted(b: _Builder, x: Node, axis: int, descending: bool) -> tuple[Node, Node]:
    parts = b.make("sort", x, axis=axis, descending=descending)
    return b.make("project", parts, index=0), b.make("project", parts, index=1)


def _sort(b: _Builder, eqn: Any, xs: list[Node]) -> list[Node]:
    if int(eqn.params["num_keys"]) != 1:
        raise b.unsupported("sort", "sorting by more than one key (lexicographic) has no "
                            "smelt op; sort by one key")
    axis = int(eqn.params["dimension"]) % len(xs[0].shape)
    values, order = _sorted(b, xs[0], axis, descending=False)
    outs = [values]
    for operand in xs[1:]:
        if _is_iota(operand, axis):
            outs.append(_cast(b, order, operand.dtype))
        else:
            outs.append(b.make("gather", operand, order, axis=axis))
    return outs


def _top_k(b: _Builder, eqn: Any, xs: list[Node]) -> list[Node]:
    x, k = xs[0], int(eqn.params["k"])
    axis = int(eqn.params.get("axis", -1)) % len(x.shape)
    values, order = _sorted(b, x, axis, descending=True)
    index_dtype = smelt_dtype(eqn.outvars[1].aval.dtype, b.source)
    return [_slice(b, values, axis, 0, k), _cast(b, _slice(b, order, axis, 0, k), index_dtype)]


# -- the table -------------------------------------------------------------------------------
CONVERTERS_MATH: dict[str, Converter] = {
    **{p: _unary(p) for p in ("asin", "acos", "atan", "asinh", "acosh", "atanh", "sinh",
                              "cosh", "tan", "log1p", "expm1")},
    "sign": _sign, "is_finite": _is_finite, "exp2": _exp2,
    "atan2": _binary("atan2"), "rem": _binary("fmod"),
    "and": _bitwise("logical_and", "bitwise_and"), "or": _bitwise("logical_or", "bitwise_or"),
    "xor": _bitwise("logical_xor", "bitwise_xor"), "not": _bitwise("logical_not", "bitwise_not"),
    "reduce_prod": _reduce("reduce_prod"), "reduce_or": _reduce("reduce_any", bool_only=True),
    "reduce_and": _reduce("reduce_all", bool_only=True), "argmin": _argmin,
    "cumsum": _scan("cumsum"), "cumprod": _scan("cumprod"), "cummax": _no_scan,
    "cummin": _no_scan, "cumlogsumexp": _no_scan,
    "sort": _sort, "top_k": _top_k,
}
