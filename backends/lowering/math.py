"""The generic lowering of ir/ops/math.py: elementwise math, bitwise ops, prod/any/all, scans
and sort, reference-exact on every target.

- Transcendental functions call the C99 math library by name (`acosf`, `expm1`, ...)
  through `call_pure_extern`: LLVM links libm, CUDA has the same device functions, and the
  C target includes math.h. TVM's own intrinsics are not used: its LLVM lowering of atanh is
  0.5 log((1 + x) / (1 - x)) (16 million ulp off near 0), it has no expm1, and its C
  generator cannot print fabs or fmod. float16 and bfloat16 compute in float32 and round
  once, as torch's CPU kernels do.
- No kernel here uses |x| (tirx.abs prints as fabs, which the C generator lacks) or isinf
  (which TVM lowers through fabs): x == inf or x == -inf instead.
- Integer fmod and remainder divide by a safe divisor: 0 (undefined) and -1 (the signed
  minimum % -1 traps in C) become 1, and both give 0, as the reference does.
- reduce_any / reduce_all are max / min over the bool values as uint8. A reduction over an
  empty axis is its identity (1, False, True) filled in: TVM's reduction kernels never run
  their init when there is nothing to reduce, and leave the output unwritten. An empty
  output is the empty input reshaped (`empty_like`).
- cumsum, cumprod and sort are the row kernels of scan_kernels.py (a merge sort whose
  compare ranks NaN above +inf), not TVM's: its CPU argsort is a runtime library call a
  microcontroller does not have, and orders NaN arbitrarily; its scans have no blocks for
  a schedule to read. sort's values are gathered from x by the indices (so -0.0 stays -0.0).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from tvm import relax, te, tirx

from smelt.ir.node import Node
from smelt.ir.types import is_float

from . import scan_kernels as K_scan
from . import te_kernels as K
from .registry import lowers, register

R = relax.op
PrimExpr = tirx.Expr

#: op -> its C99 math library function (the double form; float adds the suffix f)
LIBM = {"acos": "acos", "acosh": "acosh", "asin": "asin", "asinh": "asinh", "atan": "atan",
        "atanh": "atanh", "cosh": "cosh", "sinh": "sinh", "tan": "tan", "expm1": "expm1",
        "log1p": "log1p", "log2": "log2", "log10": "log10", "atan2": "atan2"}


def pointwise(bb, n: Node, xs, fn: Callable[..., PrimExpr]):
    """The node as one elementwise kernel, out[i] = fn(x0[i], ...), operands broadcast. The
    output is not named after the op: in C a buffer `acos` would hide the function acos."""
    return bb.call_te(K.pointwise(fn, n.shape, f"{n.op}_out"), *xs, primfunc_name_hint=n.op)


def widened(fn: Callable[..., PrimExpr]) -> Callable[..., PrimExpr]:
    """fn computed in float32 for float16/bfloat16 operands, rounded once to their dtype."""
    def wide(*xs: PrimExpr) -> PrimExpr:
        dt = K.dtype_of(xs[0])
        if dt in ("float32", "float64"):
            return fn(*xs)
        return fn(*(x.astype("float32") for x in xs)).astype(dt)

    return wide


def libm(name: str) -> Callable[..., PrimExpr]:
    """The C library's `name` (float or double form by the operand's dtype)."""
    def call(*xs: PrimExpr) -> PrimExpr:
        dt = K.dtype_of(xs[0])
        return tirx.call_pure_extern(dt, name + ("f" if dt == "float32" else ""), *xs)

    return widened(call)


def is_inf(x: PrimExpr) -> PrimExpr:
    dt = K.dtype_of(x)
    return tirx.Or(tirx.EQ(x, K.const(math.inf, dt)), tirx.EQ(x, K.const(-math.inf, dt)))


def elementwise(op: str, fn: Callable[..., PrimExpr]) -> None:
    """Register `op` as the elementwise kernel of the scalar formula `fn`."""
    register(op, lambda bb, n, xs: pointwise(bb, n, xs, fn))


# -- unary ---------------------------------------------------------------------------------
for _op, _name in LIBM.items():
    elementwise(_op, libm(_name))
for _op, _fn in (("ceil", tirx.ceil), ("trunc", tirx.trunc), ("isnan", tirx.isnan),
                 ("isinf", is_inf)):
    elementwise(_op, _fn)


def sign(x: PrimExpr) -> PrimExpr:
    """1 above 0, -1 below, else +0: NaN and -0.0 fail both compares."""
    dt = K.dtype_of(x)
    zero = K.const(0, dt)
    pos = tirx.Select(x > zero, K.const(1, dt), zero)
    return pos if dt.startswith(("uint", "bool")) else tirx.Select(x < zero, K.const(-1, dt), pos)


elementwise("sign", sign)


def bitwise_not(x: PrimExpr) -> PrimExpr:
    return tirx.Not(x) if K.dtype_of(x) == "bool" else tirx.bitwise_not(x)


elementwise("bitwise_not", bitwise_not)


@lowers("elu")
def _elu(bb, n: Node, xs):
    """where(x > 0, scale x, expm1(input_scale x) alpha scale). The three coefficients are
    0-d constant operands, not literals: TVM's C generator prints a literal with 7 digits
    (1.050701e+00 for selu's scale), and its simplifier folds x * 0 to 0 (inf * 0 is NaN)."""
    a = n.attrs
    wide = "float64" if n.dtype == "float64" else "float32"
    coefficients = [relax.const(np.asarray(c, wide), wide)
                    for c in (a["input_scale"], a["scale"], a["alpha"] * a["scale"])]
    expm1 = libm("expm1")

    def fn(x: PrimExpr, inner: PrimExpr, positive: PrimExpr, negative: PrimExpr) -> PrimExpr:
        dt = K.dtype_of(x)
        v = x if dt == wide else x.astype(wide)
        y = tirx.Select(v > K.const(0, wide), v * positive, expm1(v * inner) * negative)
        return y if dt == wide else y.astype(dt)

    return pointwise(bb, n, [xs[0], *coefficients], fn)


# -- binary --------------------------------------------------------------------------------
def safe_divisor(b: PrimExpr) -> PrimExpr:
    """b, with 0 and (signed) -1 replaced by 1."""
    dt = K.dtype_of(b)
    bad = tirx.EQ(b, K.const(0, dt))
    if not dt.startswith("uint"):
        bad = tirx.Or(bad, tirx.EQ(b, K.const(-1, dt)))
    return tirx.Select(bad, K.const(1, dt), b)


def fmod(a: PrimExpr, b: PrimExpr) -> PrimExpr:
    if is_float(K.dtype_of(a)):
        return libm("fmod")(a, b)
    return tirx.truncmod(a, safe_divisor(b))


def remainder(a: PrimExpr, b: PrimExpr) -> PrimExpr:
    """fmod, plus b where the result is nonzero and its sign differs from b's. In float32
    for float16, where r + b rounds once more (r and b are float16 values: r + b is within
    an ulp of the result)."""
    dt = K.dtype_of(a)
    if dt in ("float16", "bfloat16"):
        return remainder(a.astype("float32"), b.astype("float32")).astype(dt)
    if not is_float(dt):
        b = safe_divisor(b)
    r = fmod(a, b)
    zero = K.const(0, dt)
    differ = logical_xor(r < zero, b < zero)
    return tirx.Select(tirx.And(tirx.NE(r, zero), differ), r + b, r)


elementwise("fmod", fmod)
elementwise("remainder", remainder)


def logical_xor(a: PrimExpr, b: PrimExpr) -> PrimExpr:
    return tirx.Or(tirx.And(a, tirx.Not(b)), tirx.And(tirx.Not(a), b))


def _bitwise(ints: Callable, bools: Callable) -> Callable:
    def fn(a: PrimExpr, b: PrimExpr) -> PrimExpr:
        return bools(a, b) if K.dtype_of(a) == "bool" else ints(a, b)

    return fn


for _op, _fn in (("bitwise_and", _bitwise(tirx.bitwise_and, tirx.And)),
                 ("bitwise_or", _bitwise(tirx.bitwise_or, tirx.Or)),
                 ("bitwise_xor", _bitwise(tirx.bitwise_xor, logical_xor)),
                 ("logical_xor", logical_xor)):
    elementwise(_op, _fn)


# -- reductions and scans ------------------------------------------------------------------
def _axes(n: Node) -> list[int] | None:
    return list(n.attrs["axes"]) or None


def _over_nothing(n: Node) -> bool:
    """Whether the reduction has no terms: TVM's reductions then never run their init, and
    leave the output unwritten."""
    shape = n.inputs[0].shape
    return any(shape[a] == 0 for a in (_axes(n) or range(len(shape))))


IDENTITY = {"reduce_prod": 1, "reduce_any": False, "reduce_all": True}


def empty_like(bb, n: Node, x):
    """n's empty output from the empty x of its dtype in one reshape, a view on the CPU and
    in CUDA (no zero-size constant: it would not serialize; no reduction kernel: one over
    nothing fails in C). Relax reads a 0 in a reshape's shape as "x's size at that index",
    right where x is empty there too; one other empty axis is written -1."""
    x_shape = n.inputs[0].shape
    shape = [d if d or (i < len(x_shape) and x_shape[i] == 0) else -1
             for i, d in enumerate(n.shape)]
    if shape.count(-1) <= 1:
        return R.reshape(x, shape)
    return bb.call_te(lambda t: te.compute(n.shape, lambda *i: K.const(0, n.dtype),
                                           name=f"{n.op}_out"), x, primfunc_name_hint=n.op)


@lowers("reduce_prod", "reduce_any", "reduce_all")
def _reduce(bb, n: Node, xs):
    if n.tensor_type.size == 0:  # an empty output, from the empty input
        return empty_like(bb, n, xs[0])
    if _over_nothing(n):
        return R.full(n.shape, relax.const(IDENTITY[n.op], n.dtype), n.dtype)
    axes, keep = _axes(n), n.attrs["keepdims"]
    if n.op == "reduce_prod":
        return R.prod(xs[0], axis=axes, keepdims=keep)
    reduce = R.max if n.op == "reduce_any" else R.min
    as_bytes = bb.emit(R.astype(xs[0], "uint8"))
    return R.astype(bb.emit(reduce(as_bytes, axis=axes, keepdims=keep)), "bool")


def _rows(n: Node, axis: int) -> tuple[int, int, int]:
    """x's shape as (before, n, after) around `axis`."""
    shape = n.inputs[0].shape
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _call_rows(bb, func, name: str, x, rows: tuple[int, int, int], dtype: str):
    """func over x (not empty) viewed as rows (before, n, after), a (before, n, after)
    result."""
    gv = bb.add_func(func, name)
    flat = bb.emit(R.reshape(x, rows))
    out = bb.emit(relax.call_tir(gv, [flat], relax.TensorType(rows, dtype)))
    return out


@lowers("cumsum", "cumprod")
def _scan(bb, n: Node, xs):
    if n.tensor_type.size == 0:
        return xs[0]
    rows = _rows(n, n.attrs["axis"] % n.tensor_type.rank)
    func = K_scan.scan(*rows, n.dtype, multiply=n.op == "cumprod")
    return R.reshape(_call_rows(bb, func, n.op, xs[0], rows, n.dtype), n.shape)


@lowers("sort")
def _sort(bb, n: Node, xs):
    x = n.inputs[0].tensor_type
    axis = n.attrs["axis"] % x.rank
    if x.size == 0:  # (no zero-size constant: it would not serialize)
        return relax.Tuple([xs[0], bb.emit(R.astype(xs[0], "int64"))])
    rows = _rows(n, axis)
    keys = xs[0] if x.dtype != "bool" else bb.emit(R.astype(xs[0], "uint8"))  # no bool <
    func = K_scan.merge_sort(*rows, "uint8" if x.dtype == "bool" else x.dtype,
                             n.attrs["descending"])
    order = bb.emit(R.reshape(_call_rows(bb, func, "merge_sort", keys, rows, "int64"), x.shape))
    values = bb.emit(R.gather_elements(xs[0], order, axis=axis))
    return relax.Tuple([values, order])
