"""ATen elementwise math, bitwise, reduction, scan and sort ops -> smelt (the `ATEN` table of
torch_aten.py, filled on import).

What each ATen op becomes (ir/ops/math.py holds the new smelt ops):
- acos ... log10, ceil, trunc, sign, isnan, isinf, bitwise_not, elu, atan2, fmod,
  remainder, bitwise_and/or/xor, logical_xor: the smelt op of the same name, operands cast
  to torch's result dtype first (an integer tensor's acos is float32). On integer or bool
  tensors ceil and trunc are the tensor itself, sign of bool too; isnan and isinf are
  False. logical_xor, any and all read a non-bool operand as x != 0 (NaN is true).
- exp2: pow(2, x). rrelu (eval): leaky_relu with slope (lower + upper) / 2, as torch.
- prod -> reduce_prod, cumsum -> cumsum, cumprod -> cumprod, after the cast to torch's
  result dtype (int64 for bool and integers, or the `dtype` argument).
- any / all (.default, .dim, .dims) -> reduce_any / reduce_all (any.dims with an empty list
  reduces nothing, as torch). logical_not of a number is x == 0 (this entry replaces the
  bool-only one of torch_aten.py: torch decomposes all(x) to not any(not x)).
- argmin: argmax of an order-reversing map, exact with its ties: -x for floats (NaN stays
  first, as torch's argmin gives NaN's index), ~x = -x - 1 for integers (no overflow),
  not x for bool.
- var (.correction, and var_mean): mean, x - mean, sum of squares, / max(0, N - correction)
  (torch's two-pass formula); std decomposes to sqrt(var) in torch already.
- sort (.default, .stable) -> sort, which is always stable (a stable order is one torch
  may give for stable=False); topk: sort (descending when largest) and the first k of each
  part. torch leaves topk's order among equal values unspecified; smelt's takes the lower
  index first.
- linalg_vector_norm (ord, dims, keepdim, dtype): ord 2 sqrt(sum x^2), 1 sum |x|, inf max |x|,
  -inf min |x|, 0 the count of nonzeros, else (sum |x|^p)^(1/p).
torch's core decompositions already write softplus, mish, log_sigmoid, hardshrink,
softshrink, celu, logit, xlogy, isfinite, nan_to_num, frac, softsign, glu, prelu in these
and older ops; selu is elu, sgn is sign; special_expit is sigmoid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .node import Node
from .torch_aten import ATEN, _Unsupported, aten
from .torch_common import Builder, binary, cast, norm_dim, smelt_dtype
from .types import is_float

FLOAT_UNARY = ("acos", "acosh", "asin", "asinh", "atan", "atanh", "cosh", "sinh", "tan",
               "expm1", "log1p", "log2", "log10")


def _float_unary(op: str):
    def convert(b: Builder, out, x: Node) -> Node:
        return b.make(op, cast(b, x, smelt_dtype(out.dtype)))

    convert.__name__ = f"convert_{op}"
    return convert


for _op in FLOAT_UNARY:
    ATEN[_op] = _float_unary(_op)


def _rounding(op: str):
    def convert(b: Builder, out, x: Node) -> Node:
        return b.make(op, x) if is_float(x.dtype) else x  # integers and bool: unchanged

    convert.__name__ = f"convert_{op}"
    return convert


ATEN["ceil"] = _rounding("ceil")
ATEN["trunc"] = ATEN["fix"] = _rounding("trunc")


@aten("sign", "sgn")
def _sign(b: Builder, out, x: Node) -> Node:
    return x if x.dtype == "bool" else b.make("sign", x)


def _never(b: Builder, x: Node) -> Node:
    return b.note(Node.constant(np.zeros(x.shape, bool)))


@aten("isnan")
def _isnan(b: Builder, out, x: Node) -> Node:
    return b.make("isnan", x) if is_float(x.dtype) else _never(b, x)


@aten("isinf")
def _isinf(b: Builder, out, x: Node) -> Node:
    return b.make("isinf", x) if is_float(x.dtype) else _never(b, x)


@aten("bitwise_not")
def _bitwise_not(b: Builder, out, x: Node) -> Node:
    return b.make("bitwise_not", x)


@aten("elu")
def _elu(b: Builder, out, x: Node, alpha=1.0, scale=1.0, input_scale=1.0) -> Node:
    return b.make("elu", x, alpha=float(alpha), scale=float(scale),
                  input_scale=float(input_scale))


@aten("rrelu_with_noise_functional")
def _rrelu(b: Builder, out, x: Node, noise: Node, lower=0.125, upper=1.0 / 3.0,
           training=False, generator=None) -> tuple[Node, Node]:
    """nn.RReLU in eval mode: leaky_relu with the mean slope (lower + upper) / 2."""
    if training:
        raise _Unsupported("rrelu in training mode (random slopes); call model.eval()")
    return b.make("leaky_relu", x, alpha=(float(lower) + float(upper)) / 2), noise


@aten("exp2")
def _exp2(b: Builder, out, x: Node) -> Node:
    return binary(b, "pow", 2.0, cast(b, x, smelt_dtype(out.dtype)), smelt_dtype(out.dtype))


def _binary(op: str):
    def convert(b: Builder, out, x: Any, y: Any) -> Node:
        return binary(b, op, x, y, smelt_dtype(out.dtype))

    convert.__name__ = f"convert_{op}"
    return convert


for _op in ("atan2", "fmod", "remainder", "bitwise_and", "bitwise_or", "bitwise_xor"):
    ATEN[_op] = _binary(_op)


@aten("logical_xor")
def _logical_xor(b: Builder, out, x: Any, y: Any) -> Node:
    return binary(b, "logical_xor", x, y, "bool")


# -- reductions ----------------------------------------------------------------------------
def _dims(x: Node, dim: Any) -> tuple[int, ...]:
    """A dim argument (None, an int, a list) as non-negative axes; None is every axis."""
    rank = x.tensor_type.rank
    if dim is None:
        return tuple(range(rank))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(sorted({norm_dim(d, rank) for d in dims}))


def _reduce(b: Builder, op: str, x: Node, axes: tuple[int, ...], keepdim: bool) -> Node:
    """op over `axes`; nothing to reduce (no axes, or a scalar) leaves x as it is."""
    if not axes:
        return x
    return b.make(op, x, axes=axes, keepdims=keepdim)


@aten("prod")
def _prod(b: Builder, out, x: Node, dim=None, keepdim=False, dtype=None) -> Node:
    x = cast(b, x, smelt_dtype(out.dtype))
    return _reduce(b, "reduce_prod", x, _dims(x, dim), keepdim)


def _truthy(b: Builder, x: Node) -> Node:
    return x if x.dtype == "bool" else binary(b, "not_equal", x, 0)


def _any_all(op: str):
    def convert(b: Builder, out, x: Node, dim=None, keepdim=False) -> Node:
        x = _truthy(b, x)
        if isinstance(dim, list | tuple) and not dim:  # any.dims(x, []) reduces nothing
            return x
        return _reduce(b, op, x, _dims(x, dim), keepdim)

    convert.__name__ = f"convert_{op}"
    return convert


@aten("logical_not")
def _logical_not(b: Builder, out, x: Node) -> Node:
    """not x; a number is true when nonzero (torch's rule; all(x) decomposes to
    not any(not x) on the tensor as it is)."""
    return b.make("logical_not", _truthy(b, x))


ATEN["any"] = _any_all("reduce_any")
ATEN["all"] = _any_all("reduce_all")


@aten("argmin")
def _argmin(b: Builder, out, x: Node, dim=None, keepdim=False) -> Node:
    rank = x.tensor_type.rank
    if is_float(x.dtype):
        y = b.make("neg", x)
    else:
        y = b.make("bitwise_not", x)
    if dim is None:
        flat = b.make("reshape", y, shape=(x.tensor_type.size,))
        idx = b.make("argmax", flat, axis=0)
        return b.make("reshape", idx, shape=(1,) * rank) if keepdim else idx
    return b.make("argmax", y, axis=norm_dim(dim, rank), keepdims=keepdim)


def _variance(b: Builder, x: Node, dim, correction, keepdim: bool) -> tuple[Node, Node]:
    """(var, mean) by the two-pass formula torch uses: sum((x - mean)^2) / (N - correction),
    the divisor at least 0 (then inf or NaN, as torch)."""
    if x.tensor_type.rank == 0:  # one term
        x, dim, keepdim = b.make("reshape", x, shape=(1,)), None, False
    axes = _dims(x, None if isinstance(dim, list | tuple) and not dim else dim)
    terms = math.prod(x.shape[a] for a in axes)
    correction = 1 if correction is None else correction
    mean = b.make("reduce_mean", x, axes=axes, keepdims=True)
    centered = binary(b, "sub", x, mean)
    total = b.make("reduce_sum", binary(b, "mul", centered, centered), axes=axes,
                   keepdims=keepdim)
    if not keepdim:
        mean = b.make("reduce_mean", x, axes=axes, keepdims=False)
    return binary(b, "div", total, float(max(0, terms - correction))), mean


@aten("var")
def _var(b: Builder, out, x: Node, dim=None, unbiased=None, keepdim=False, *,
         correction=None) -> Node:
    if isinstance(unbiased, bool):  # var.dim(x, dim, unbiased, keepdim)
        correction = 1 if unbiased else 0
    return _variance(b, x, dim, correction, keepdim)[0]


@aten("var_mean")
def _var_mean(b: Builder, out, x: Node, dim=None, unbiased=None, keepdim=False, *,
              correction=None) -> tuple[Node, Node]:
    if isinstance(unbiased, bool):
        correction = 1 if unbiased else 0
    return _variance(b, x, dim, correction, keepdim)


def _scan(op: str):
    def convert(b: Builder, out, x: Node, dim: int, dtype=None) -> Node:
        x = cast(b, x, smelt_dtype(out.dtype))
        if x.tensor_type.rank == 0:
            return x
        return b.make(op, x, axis=norm_dim(dim, x.tensor_type.rank))

    convert.__name__ = f"convert_{op}"
    return convert


ATEN["cumsum"] = _scan("cumsum")
ATEN["cumprod"] = _scan("cumprod")


def _sorted(b: Builder, x: Node, dim: int, descending: bool) -> tuple[Node, Node]:
    if x.tensor_type.rank == 0:
        return x, b.note(Node.constant(np.zeros((), np.int64)))
    parts = b.make("sort", x, axis=norm_dim(dim, x.tensor_type.rank), descending=descending)
    return b.make("project", parts, index=0), b.make("project", parts, index=1)


@aten("sort")
def _sort(b: Builder, out, x: Node, dim=-1, descending=False, *,
          stable=None) -> tuple[Node, Node]:
    return _sorted(b, x, dim, bool(descending))


@aten("topk")
def _topk(b: Builder, out, x: Node, k: int, dim=-1, largest=True, sorted=True
          ) -> tuple[Node, Node]:
    values, indices = _sorted(b, x, dim, bool(largest))
    if x.tensor_type.rank == 0:
        return values, indices
    axis = norm_dim(dim, x.tensor_type.rank)
    if k == x.shape[axis]:
        return values, indices
    return tuple(b.make("slice", part, axis=axis, start=0, stop=int(k), step=1)
                 for part in (values, indices))


@aten("linalg_vector_norm")
def _vector_norm(b: Builder, out, x: Node, ord=2, dim=None, keepdim=False, *,
                 dtype=None) -> Node:
    x = cast(b, x, smelt_dtype(out.dtype))
    axes = _dims(x, None if dim is None or (isinstance(dim, list | tuple) and not dim)
                 else dim)
    if isinstance(ord, Node):
        raise _Unsupported("a tensor ord")
    ord = float(ord)
    if ord == 2:
        return b.make("sqrt", _reduce(b, "reduce_sum", binary(b, "mul", x, x), axes, keepdim))
    magnitude = b.make("abs", x)
    if ord == 1:
        return _reduce(b, "reduce_sum", magnitude, axes, keepdim)
    if math.isinf(ord):
        return _reduce(b, "reduce_max" if ord > 0 else "reduce_min", magnitude, axes, keepdim)
    if ord == 0:
        nonzero = cast(b, binary(b, "not_equal", x, 0.0), x.dtype)
        return _reduce(b, "reduce_sum", nonzero, axes, keepdim)
    powered = binary(b, "pow", magnitude, ord)
    return binary(b, "pow", _reduce(b, "reduce_sum", powered, axes, keepdim), 1.0 / ord)

