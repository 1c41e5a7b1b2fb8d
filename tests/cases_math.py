"""Reference cases of the math ops (ir/ops/math.py), drawn by hypothesis and computed
independently by torch in float64.

Merged into test_ops_reference's CASES (which imports this module after defining Case and
Example), so test_ops_reference, test_backend_ops, test_ops_on_targets and test_interop run
every case here.

- Functions with a domain (acos, asin, atanh on [-1, 1]; acosh from 1; log1p above -1;
  log2, log10 above 0) draw half their examples inside it and half anywhere, so the edge
  (infinities, NaN) is met; all planting NaN, infinities and signed zeros at times. Their
  tolerance is 8 ulps of the result: numpy and torch call accurate library functions.
- fmod is exact (its result is representable); remainder adds b once more, one rounding.
  Integer divisors are never 0 (torch raises there).
- prod and cumprod bound the error by sqrt(K) times the largest product (a product of K
  terms carries K roundings relative to itself); values stay near 1 so float16 does not
  overflow part-way.
- any / all / prod draw empty axes too: False, True and 1 over nothing.
- sort draws integral values (ties) and NaN, -0.0 and 0.0; torch sorts with stable=True.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st
from test_ops_reference import (
    FLOATS,
    INTS,
    NUMERIC,
    Case,
    Example,
    axis_list,
    broadcast_pair,
    signed_axis,
    values,
)

from smelt.rewrite import strategies as sst

BITWISE = INTS + ("bool",)
SORTABLE = FLOATS + ("int32", "int8", "uint8", "bool")


# -- unary ---------------------------------------------------------------------------------
@st.composite
def domain_examples(draw: st.DrawFn, low: float | None, high: float | None,
                    finite_below: float | None = None) -> Example:
    """Half inside [low, high] (x mapped there from a drawn value), half as drawn. Finite
    values beyond +-finite_below are brought to it."""
    dtype = draw(st.sampled_from(FLOATS))
    shape = draw(sst.shapes(0, 4, 1, 5))
    x = draw(values(shape, dtype, specials=True))
    if finite_below is not None:
        far = np.isfinite(x) & (np.abs(x) > finite_below)
        x = np.asarray(np.where(far, np.sign(x) * finite_below, x).astype(dtype))
    if draw(st.booleans()):
        wide = x.astype(np.float64)
        with np.errstate(invalid="ignore"):
            if low is not None and high is not None:  # squash into the interval
                wide = low + (high - low) * (np.tanh(wide) + 1) / 2
            elif low is not None:
                wide = low + np.abs(wide)
        x = np.asarray(wide.astype(dtype))
    return Example((x,))


def unary_case(torch_fn, low: float | None = None, high: float | None = None,
               finite_below: float | None = None) -> Case:
    return Case(domain_examples(low, high, finite_below), torch_fn, term="result")


@st.composite
def numeric_examples(draw: st.DrawFn, dtypes: tuple[str, ...], integral: bool = False) -> Example:
    dtype = draw(st.sampled_from(dtypes))
    x = draw(values(draw(sst.shapes(0, 4, 1, 5)), dtype, integral=integral, specials=True))
    return Example((x,))


@st.composite
def elu_examples(draw: st.DrawFn) -> Example:
    """elu, selu (torch's alpha and scale) and celu-like input scales."""
    ex = draw(numeric_examples(FLOATS))
    alpha = draw(st.sampled_from([1.0, 0.5, 1.6732632423543772, 2.0]))
    scale = draw(st.sampled_from([1.0, 1.0507009873554805, 2.0]))
    input_scale = draw(st.sampled_from([1.0, 0.5, 1 / 1.3]))
    return Example(ex.args, {"alpha": alpha, "scale": scale, "input_scale": input_scale})


def torch_elu(x, *, alpha, scale, input_scale):
    return torch.ops.aten.elu(x, alpha, scale, input_scale)


# -- binary --------------------------------------------------------------------------------
@st.composite
def division_examples(draw: st.DrawFn) -> Example:
    """Floats with specials (b = 0 gives NaN); integers with b != 0, ties of |a| and |b|."""
    dtype = draw(st.sampled_from(NUMERIC))
    sa, sb = broadcast_pair(draw)
    floating = dtype in FLOATS
    a = draw(values(sa, dtype, specials=True, integral=draw(st.booleans())))
    b = draw(values(sb, dtype, specials=True, integral=draw(st.booleans()),
                    scale=draw(st.sampled_from([0.5, 2.0, 7.0]))))
    if not floating:
        b = np.where(b == 0, np.asarray(3, b.dtype), b).astype(b.dtype)
    return Example((a, b))


@st.composite
def bitwise_examples(draw: st.DrawFn, dtypes: tuple[str, ...] = BITWISE) -> Example:
    dtype = draw(st.sampled_from(dtypes))
    sa, sb = broadcast_pair(draw)
    return Example((draw(values(sa, dtype, scale=100.0)), draw(values(sb, dtype, scale=100.0))))


@st.composite
def float_pair_examples(draw: st.DrawFn) -> Example:
    dtype = draw(st.sampled_from(FLOATS))
    sa, sb = broadcast_pair(draw)
    return Example((draw(values(sa, dtype, specials=True)), draw(values(sb, dtype, specials=True))))


# -- reductions and scans ------------------------------------------------------------------
@st.composite
def bool_reduce_examples(draw: st.DrawFn) -> Example:
    """Shapes with empty axes too."""
    shape = draw(sst.shapes(0, 4, 0, 5))
    x = draw(values(shape, "bool"))
    return Example((x,), {"axes": axis_list(draw, len(shape)), "keepdims": draw(st.booleans())})


def _product_term(x: np.ndarray, product: np.ndarray, k: int) -> float:
    """sqrt(K) times the largest product: the bound 8 eps sqrt(K) term then holds the K
    roundings of a product, each relative to it."""
    if not np.issubdtype(x.dtype, np.floating) or product.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        return math.sqrt(k) * float(np.nan_to_num(np.abs(product), posinf=0).max(initial=0))


@st.composite
def prod_examples(draw: st.DrawFn) -> Example:
    dtype = draw(st.sampled_from(FLOATS + ("int32", "int64", "int8")))
    shape = draw(sst.shapes(0, 3, 0, 4))
    floating = dtype in FLOATS
    x = draw(values(shape, dtype, scale=1.0 if floating else 3.0, specials=True))
    axes = axis_list(draw, len(shape))
    ax = tuple(a % len(shape) for a in axes) if axes else tuple(range(len(shape)))
    k = math.prod(shape[a] for a in ax)
    with np.errstate(all="ignore"):
        product = np.prod(x.astype(np.float64), axis=ax)
    return Example((x,), {"axes": axes, "keepdims": draw(st.booleans())}, k=max(k, 1),
                   term=_product_term(x, product, k))


def torch_prod(x, *, axes, keepdims):
    """torch.prod takes one dim at a time."""
    dims = sorted({a % x.dim() for a in axes}, reverse=True) if axes else list(
        reversed(range(x.dim())))
    if x.dim() == 0:
        return x.clone()
    for d in dims:
        x = x.prod(dim=d, keepdim=keepdims)
    return x


def torch_bool_reduce(fn):
    def reduce(x, *, axes, keepdims):
        if x.dim() == 0:
            return x.clone()
        dims = tuple(axes) if axes else tuple(range(x.dim()))
        return fn(x, dim=dims, keepdim=keepdims)

    return reduce


@st.composite
def scan_examples(draw: st.DrawFn, multiply: bool) -> Example:
    dtype = draw(st.sampled_from(NUMERIC))
    shape = draw(sst.shapes(1, 3, 1, 8))
    floating = dtype in FLOATS
    scale = draw(st.sampled_from([0.25, 1.0, 3.0] if multiply else [0.25, 1.0, 3.0, 20.0]))
    x = draw(values(shape, dtype, scale=scale, specials=floating and draw(st.booleans())))
    axis = draw(st.integers(0, len(shape) - 1))
    k = shape[axis]
    term = None
    if multiply:
        with np.errstate(all="ignore"):
            term = _product_term(x, np.cumprod(x.astype(np.float64), axis=axis), k)
    return Example((x,), {"axis": signed_axis(draw, axis, len(shape))}, k=k, term=term)


@st.composite
def sort_examples(draw: st.DrawFn) -> Example:
    dtype = draw(st.sampled_from(SORTABLE))
    shape = draw(sst.shapes(1, 3, 1, 9))
    x = draw(values(shape, dtype, integral=draw(st.booleans()), specials=True,
                    scale=draw(st.sampled_from([1.0, 3.0, 20.0]))))
    axis = signed_axis(draw, draw(st.integers(0, len(shape) - 1)), len(shape))
    return Example((x,), {"axis": axis, "descending": draw(st.booleans())})


def torch_sort(x, *, axis, descending):
    values, indices = torch.sort(x, dim=axis, descending=descending, stable=True)
    return values, indices


# -- the table -----------------------------------------------------------------------------
CASES_MATH: dict[str, Case] = {
    "acos": unary_case(torch.acos, -1.0, 1.0),
    "acosh": unary_case(torch.acosh, 1.0),
    "asin": unary_case(torch.asin, -1.0, 1.0),
    "asinh": unary_case(torch.asinh),
    "atan": unary_case(torch.atan),
    "atanh": unary_case(torch.atanh, -1.0, 1.0),
    "cosh": unary_case(torch.cosh, finite_below=700.0),  # torch's float64 cosh(710) is inf
    "sinh": unary_case(torch.sinh, finite_below=700.0),
    "tan": unary_case(torch.tan),
    "expm1": unary_case(torch.expm1),
    "log1p": unary_case(torch.log1p, -1.0),
    "log2": unary_case(torch.log2, 0.0),
    "log10": unary_case(torch.log10, 0.0),
    "ceil": Case(numeric_examples(FLOATS), torch.ceil, exact=True),
    "trunc": Case(numeric_examples(FLOATS), torch.trunc, exact=True),
    "sign": Case(numeric_examples(NUMERIC, integral=True), torch.sign, exact=True),
    "isnan": Case(numeric_examples(FLOATS), torch.isnan, exact=True),
    "isinf": Case(numeric_examples(FLOATS), torch.isinf, exact=True),
    "bitwise_not": Case(numeric_examples(BITWISE), torch.bitwise_not, exact=True),
    "elu": Case(elu_examples(), torch_elu),
    "atan2": Case(float_pair_examples(), torch.atan2, term="result"),
    "fmod": Case(division_examples(), torch.fmod, exact=True),
    "remainder": Case(division_examples(), torch.remainder, term="result"),
    "bitwise_and": Case(bitwise_examples(), torch.bitwise_and, exact=True),
    "bitwise_or": Case(bitwise_examples(), torch.bitwise_or, exact=True),
    "bitwise_xor": Case(bitwise_examples(), torch.bitwise_xor, exact=True),
    "logical_xor": Case(bitwise_examples(("bool",)), torch.logical_xor, exact=True),
    "reduce_prod": Case(prod_examples(), torch_prod),
    "reduce_any": Case(bool_reduce_examples(), torch_bool_reduce(torch.any), exact=True),
    "reduce_all": Case(bool_reduce_examples(), torch_bool_reduce(torch.all), exact=True),
    "cumsum": Case(scan_examples(multiply=False),
                   lambda x, axis: torch.cumsum(x, dim=axis)),
    "cumprod": Case(scan_examples(multiply=True),
                    lambda x, axis: torch.cumprod(x, dim=axis)),
    "sort": Case(sort_examples(), torch_sort, exact=True),
}
