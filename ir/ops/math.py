"""Elementwise math, bitwise ops, and the reductions and scans of core ATen beyond sum/mean/max.

Each reference computes what PyTorch computes (its definition is cited beside each), in the
input's dtype; float16 goes through numpy's float32 loops and rounds once, as torch's CPU
kernels do. Binary ops take equal dtypes (frontends insert casts).

- Inverse, hyperbolic and logarithmic functions are the C library's (numpy and torch call
  the same functions): NaN in gives NaN out, and a domain error (acos(2), log1p(-2)) NaN.
- sign is torch's: sign(NaN) = 0 and sign(-0.0) = +0 (JAX keeps NaN and -0.0; its
  frontend adds that).
- fmod truncates (C's fmod, the dividend's sign); remainder floors (Python's %, the
  divisor's sign): r = fmod(a, b), plus b where r != 0 and r, b differ in sign, as torch's
  kernel (so remainder(-0.0, 1) = -0.0, where numpy gives +0.0). An integer divisor of 0,
  which torch rejects, gives 0, as does the signed minimum modulo -1 (C would trap).
- reduce_any / reduce_all take bool (frontends compare with 0 first): empty axes give
  False / True. reduce_prod keeps the dtype (integers wrap; torch promotes integers to
  int64 first, which the frontend does).
- cumsum / cumprod keep the dtype and run in order along the axis (torch promotes
  integers to int64 first, the frontend does).
- sort is stable and orders NaN above +inf (torch's rule, stable=True): ascending puts NaN
  last, descending first; -0.0 and 0.0 are equal; among equal values the lower index comes
  first in both directions. It gives (values, int64 indices).
"""

from __future__ import annotations

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType, TupleType, is_float
from .common import broadcast, float_unary, norm_axes, norm_axis, prod, same_dtype

NARROW = ("int4", "uint4")


def _f(x, v):
    """A python scalar as an array of x's dtype, so float32 math stays float32."""
    return np.asarray(v, dtype=x.dtype)


# -- unary ---------------------------------------------------------------------------------
def _float_fn(name: str, fn, doc: str) -> None:
    def ref(x):
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN, +-inf
            return np.asarray(fn(x)).astype(x.dtype, copy=False)

    ref.__doc__ = doc
    defop(name, ("x",), float_unary, category="elementwise")(ref)


for _name, _fn, _doc in [
    ("acos", np.arccos, "torch.acos: arccos x, NaN outside [-1, 1]"),
    ("acosh", np.arccosh, "torch.acosh: arcosh x, NaN below 1"),
    ("asin", np.arcsin, "torch.asin: arcsin x, NaN outside [-1, 1]"),
    ("asinh", np.arcsinh, "torch.asinh: arsinh x"),
    ("atan", np.arctan, "torch.atan: arctan x"),
    ("atanh", np.arctanh, "torch.atanh: artanh x, +-inf at +-1, NaN outside"),
    ("cosh", np.cosh, "torch.cosh"),
    ("sinh", np.sinh, "torch.sinh"),
    ("tan", np.tan, "torch.tan"),
    ("expm1", np.expm1, "torch.expm1: e^x - 1, accurate near 0"),
    ("log1p", np.log1p, "torch.log1p: ln(1 + x), accurate near 0"),
    ("log2", np.log2, "torch.log2"),
    ("log10", np.log10, "torch.log10"),
    ("ceil", np.ceil, "torch.ceil (integers: the frontend keeps the tensor)"),
    ("trunc", np.trunc, "torch.trunc: rounds toward zero, -0.5 -> -0.0"),
]:
    _float_fn(_name, _fn, _doc)


def _numeric(types: list[TensorType], attrs: dict) -> TensorType:
    t = types[0]
    if t.dtype == "bool":
        raise TypeInferenceError("needs a numeric input, got bool")
    return TensorType(t.shape, t.dtype)


@defop("sign", ("x",), _numeric, category="elementwise")
def sign(x):
    """torch.sign: 1, 0 or -1 in x's dtype; sign(NaN) = 0 and sign(-0.0) = +0.0
    (torch's kernel is (0 < x) - (x < 0))."""
    one = _f(x, 1)
    pos = np.where(x > 0, one, _f(x, 0))
    if np.issubdtype(x.dtype, np.unsignedinteger):
        return pos
    return np.where(x < 0, -one, pos)


def _float_test(types: list[TensorType], attrs: dict) -> TensorType:
    float_unary(types, attrs)
    return TensorType(types[0].shape, "bool")


@defop("isnan", ("x",), _float_test, category="elementwise")
def isnan(x):
    """torch.isnan (integer tensors: the frontend gives False)."""
    return np.isnan(x)


@defop("isinf", ("x",), _float_test, category="elementwise")
def isinf(x):
    """torch.isinf: +inf or -inf."""
    return np.isinf(x)


def _bitwise(types: list[TensorType], attrs: dict) -> TensorType:
    dtype = same_dtype(types)
    if is_float(dtype) or dtype in NARROW:
        raise TypeInferenceError(f"bitwise ops take integer or bool inputs, got {dtype}"
                                 + ("; cast to int8/uint8 first" if dtype in NARROW else ""))
    return TensorType(broadcast([t.shape for t in types]), dtype)


@defop("bitwise_not", ("x",), _bitwise, category="elementwise")
def bitwise_not(x):
    """torch.bitwise_not: ~x (two's complement: -x - 1); on bool, not x."""
    return np.invert(x)


@defop("elu", ("x",), float_unary, category="elementwise",
       attrs={"alpha": AttrSpec("float", 1.0), "scale": AttrSpec("float", 1.0),
              "input_scale": AttrSpec("float", 1.0)})
def elu(x, *, alpha, scale, input_scale):
    """torch._refs.nn.functional.elu: where(x > 0, scale x,
    (alpha scale) expm1(x input_scale)), alpha scale taken in float64 and rounded once.
    selu is elu with torch's alpha and scale constants; celu is scale 1, input_scale 1/alpha."""
    with np.errstate(over="ignore", invalid="ignore"):
        negative = np.expm1(x * _f(x, input_scale)).astype(x.dtype) * _f(x, alpha * scale)
    return np.where(x > 0, x * _f(x, scale), negative)


# -- binary --------------------------------------------------------------------------------
def _binary_infer(types: list[TensorType], attrs: dict) -> TensorType:
    return TensorType(broadcast([t.shape for t in types]), same_dtype(types))


def _float_binary(types: list[TensorType], attrs: dict) -> TensorType:
    out = _binary_infer(types, attrs)
    if not is_float(out.dtype):
        raise TypeInferenceError(f"needs floating-point inputs, got {out.dtype}; cast first")
    return out


def _numeric_binary(types: list[TensorType], attrs: dict) -> TensorType:
    out = _binary_infer(types, attrs)
    if out.dtype == "bool" or out.dtype in NARROW:
        raise TypeInferenceError(f"needs numeric inputs, got {out.dtype}; cast first")
    return out


@defop("atan2", ("a", "b"), _float_binary, category="elementwise")
def atan2(a, b):
    """torch.atan2: the angle of (b, a), in (-pi, pi], signed zeros as C's atan2."""
    return np.arctan2(a, b)


def _safe_divisor(a, b):
    """b with 0 (undefined) and, for signed types, -1 (min % -1 traps in C) replaced by 1:
    x % 1 = x % -1 = 0, the result the reference gives for both."""
    bad = b == 0
    if np.issubdtype(b.dtype, np.signedinteger):
        bad = bad | (b == -1)
    return np.where(bad, _f(b, 1), b)


@defop("fmod", ("a", "b"), _numeric_binary, category="elementwise")
def fmod(a, b):
    """torch.fmod: a - trunc(a / b) b, the sign of a (C's fmod; integers: C's %)."""
    if np.issubdtype(a.dtype, np.integer):
        return np.fmod(a, _safe_divisor(a, b)).astype(a.dtype, copy=False)
    with np.errstate(invalid="ignore"):  # fmod(x, 0) and fmod(inf, y) are NaN
        return np.fmod(a, b)


@defop("remainder", ("a", "b"), _numeric_binary, category="elementwise")
def remainder(a, b):
    """torch.remainder: a - floor(a / b) b, the sign of b (Python's %). As torch's kernel:
    r = fmod(a, b); r + b where r != 0 and (r < 0) != (b < 0)."""
    r = fmod(a, b)
    b = np.broadcast_to(b, r.shape)
    if np.issubdtype(a.dtype, np.integer):
        b = _safe_divisor(a, b)
    flip = (r != 0) & ((r < 0) != (b < 0))
    with np.errstate(invalid="ignore"):  # inf + -inf where flip is false
        return np.where(flip, r + b, r).astype(r.dtype, copy=False)


for _name, _fn, _doc in [("bitwise_and", np.bitwise_and, "torch.bitwise_and: a & b"),
                         ("bitwise_or", np.bitwise_or, "torch.bitwise_or: a | b"),
                         ("bitwise_xor", np.bitwise_xor, "torch.bitwise_xor: a ^ b")]:
    defop(_name, ("a", "b"), _bitwise, category="elementwise", commutative=True)(
        lambda a, b, _fn=_fn: _fn(a, b))


def _logical_infer(types: list[TensorType], attrs: dict) -> TensorType:
    for t in types:
        if t.dtype != "bool":
            raise TypeInferenceError(f"logical ops take bool inputs, got {t.dtype}")
    return TensorType(broadcast([t.shape for t in types]), "bool")


@defop("logical_xor", ("a", "b"), _logical_infer, category="elementwise", commutative=True)
def logical_xor(a, b):
    """torch.logical_xor on bool tensors (frontends compare other dtypes with 0 first)."""
    return np.logical_xor(a, b)


# -- reductions ----------------------------------------------------------------------------
REDUCE_ATTRS = {"axes": AttrSpec("ints", ()), "keepdims": AttrSpec("bool", False)}


def _reduced(x: TensorType, axes: tuple[int, ...], keepdims: bool) -> TensorType:
    if keepdims:
        return TensorType(tuple(1 if i in axes else d for i, d in enumerate(x.shape)), x.dtype)
    return TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)


def _elements(types, out, attrs) -> int:
    return prod(types[0].shape)


def _axes(x: TensorType, attrs: dict) -> tuple[int, ...]:
    return norm_axes(attrs["axes"], x.rank) if attrs["axes"] else tuple(range(x.rank))


def _prod_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    if x.dtype == "bool" or x.dtype in NARROW:
        raise TypeInferenceError(f"reduce_prod takes numeric inputs, got {x.dtype}; cast first")
    return _reduced(x, _axes(x, attrs), attrs["keepdims"])


@defop("reduce_prod", ("x",), _prod_infer, attrs=REDUCE_ATTRS, category="reduce",
       macs=_elements)
def reduce_prod(x, *, axes, keepdims):
    """torch.prod over `axes` (all axes when empty), in x's dtype: integers wrap, the
    product of nothing is 1."""
    ax = tuple(axes) if axes else None
    return np.asarray(np.prod(x, axis=ax, keepdims=keepdims, dtype=x.dtype))


def _bool_reduce_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    if x.dtype != "bool":
        raise TypeInferenceError(f"reduce_any / reduce_all take bool, got {x.dtype}; compare "
                                 "with 0 first (not_equal)")
    return _reduced(x, _axes(x, attrs), attrs["keepdims"])


@defop("reduce_any", ("x",), _bool_reduce_infer, attrs=REDUCE_ATTRS, category="reduce",
       macs=_elements)
def reduce_any(x, *, axes, keepdims):
    """torch.any over `axes` (all axes when empty); False over nothing."""
    return np.asarray(np.any(x, axis=tuple(axes) if axes else None, keepdims=keepdims))


@defop("reduce_all", ("x",), _bool_reduce_infer, attrs=REDUCE_ATTRS, category="reduce",
       macs=_elements)
def reduce_all(x, *, axes, keepdims):
    """torch.all over `axes` (all axes when empty); True over nothing."""
    return np.asarray(np.all(x, axis=tuple(axes) if axes else None, keepdims=keepdims))


# -- scans and sorting ---------------------------------------------------------------------
def _scan_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    norm_axis(attrs["axis"], x.rank)
    if x.dtype == "bool" or x.dtype in NARROW:
        raise TypeInferenceError(f"scans take numeric inputs, got {x.dtype}; cast first "
                                 "(torch sums bool and integers in int64)")
    return TensorType(x.shape, x.dtype)


@defop("cumsum", ("x",), _scan_infer, attrs={"axis": AttrSpec("int")}, category="reduce",
       macs=_elements)
def cumsum(x, *, axis):
    """torch.cumsum: out[i] = x[0] + ... + x[i] along axis, left to right, in x's dtype
    (integers wrap)."""
    return np.cumsum(x, axis=axis, dtype=x.dtype)


@defop("cumprod", ("x",), _scan_infer, attrs={"axis": AttrSpec("int")}, category="reduce",
       macs=_elements)
def cumprod(x, *, axis):
    """torch.cumprod: out[i] = x[0] * ... * x[i] along axis, in x's dtype."""
    return np.cumprod(x, axis=axis, dtype=x.dtype)


def _sort_infer(types: list[TensorType], attrs: dict) -> TupleType:
    x = types[0]
    norm_axis(attrs["axis"], x.rank)
    if x.dtype in NARROW:
        raise TypeInferenceError(f"sort takes no {x.dtype}; cast to int8/uint8 first")
    return TupleType((TensorType(x.shape, x.dtype), TensorType(x.shape, "int64")))


def sort_order(x: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    """The stable order of x along axis, NaN above every number, ties by index."""
    if not descending:
        return np.argsort(x, axis=axis, kind="stable")  # numpy puts NaN last too
    n = x.shape[axis]
    flipped = np.flip(x, axis=axis)  # ascending over the flipped row, read backwards:
    return (n - 1) - np.flip(np.argsort(flipped, axis=axis, kind="stable"), axis=axis)


@defop("sort", ("x",), _sort_infer, category="reduce",
       attrs={"axis": AttrSpec("int", -1), "descending": AttrSpec("bool", False)})
def sort(x, *, axis, descending):
    """torch.sort(x, dim=axis, descending=descending, stable=True): (values, int64 indices);
    NaN sorts above +inf, equal values keep their order. Read the parts with project."""
    order = sort_order(x, axis, descending).astype(np.int64)
    return np.take_along_axis(x, order, axis=axis), order
