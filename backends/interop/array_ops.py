"""Every interop entry, written once over an array namespace `xp`.

`to_torch` and `to_jax` compute a smelt op with the same entry: a function of `xp`, the
backend's array namespace (torch_namespace.py or jax_namespace.py), the node's operands and
its attributes. `bind(xp)` makes a backend's table (`TORCH_OPS`, `JAX_OPS`) from the one table
here, once, at import: nothing looks a namespace up inside code that torch.compile traces.
A namespace is the Python array API standard (`xp.astype`, `xp.clip`, `xp.where`,
`xp.sum(x, axis=, keepdims=)`, `xp.bitwise_right_shift`, ...) plus the functions whose torch and
JAX forms differ (convolution, pooling, normalization kernels, truncating division, gather,
scatter-add, padding), under the same names in both, and `xp.dtype(name)`, the array dtype of
a smelt dtype.

Two kinds of entry:
- `LIBRARY`: ops each library computes with one function of the same meaning (add, exp,
  softmax, conv2d, ...), found in the namespace by the name given; the node's attributes are
  that function's keyword arguments.
- `FORMULAS`: ops whose array math is written here.

Each entry computes what the op's numpy reference (ir/ops/) computes, in the node's dtype; a
Python number combines with an array in the array's dtype in both libraries, so float16 math
stays float16. The formulas:
- activations: relu6 = clip(x, 0, 6); hardsigmoid = clip(x + 3, 0, 6) / 6; hardswish =
  x clip(x + 3, 0, 6) / 6, in that order; leaky_relu = where(x >= 0, x, alpha x) (-0 and NaN
  leave either branch unchanged); gelu = 0.5 x (1 + erf(x / sqrt 2)), as the reference
  writes it (torch's float32 kernel gives NaN at +inf, where x Phi(x) is inf), or
  0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
- clamp: an integer bound saturates to x's dtype, so a bound past the range clamps nothing.
- cast: int4/uint4 live in int8/uint8 and wrap modulo 16: trunc(x) & 15 in int64, minus 16
  where >= 8 for int4 (neither library has 4-bit arithmetic).
- reductions keep x's dtype: an integer sum wraps to it (summed in the library's wide integer,
  cast back); an integer mean is taken in float64 and truncated, as the reference's astype
  does (JAX without x64 takes float64 as float32, its own rule).
- math (ir/ops/math.py): sign = (x > 0) - (x < 0) in x's dtype (torch's: NaN and -0.0 give
  +0.0); remainder = fmod(a, b) + b where that is nonzero and signed unlike b; integer fmod
  and remainder divide by 1 where the divisor is 0 or -1 (the reference's 0 there, where
  torch raises or overflows); elu = where(x > 0, scale x, expm1(input_scale x) alpha scale);
  cumsum, cumprod and prod wrap integers back to x's dtype; sort is stable, NaN above +inf.
- fused ops are their unfused chain in the same order: the contraction, + bias, + residual,
  then the activation's own entry (ir/ops/fused.ACTIVATION_OPS).
- data movement: flatten, squeeze and unsqueeze are reshapes to the shape the reference
  gives; slice and split are Python slices; take gathers with negative indices counted from
  the end (out of range: torch raises, JAX clips, since traced JAX cannot raise).
- indexing: gather is take_along_axis over x's leading part, scatter the library's
  scatter-reduce (JAX: .at[] updates; a mean divides the sum by the count, flooring
  integers), index is x[key] and index_put the library's index_put, with key holding the
  index tensors at `axes` and whole slices elsewhere (numpy's placement in both). Negative
  indices count from the end; out of range, torch raises, JAX clips reads and drops writes.
- quantized ops, in float64 and int64 (JAX needs x64 for them; jax_function.NEEDS_X64):
  quantize = clip(rhe(x / scale) + zero_point, qmin, qmax), the quotient in float64 (rhe:
  round half to even; NaN quantizes to zero_point); dequantize = (q - zp) scale in float64,
  rounded once to float32. Integer contractions (qconv2d, qlinear, qmatmul) run in float64,
  exact while |accumulator| < 2^53; a result outside int32 wraps (the reference raises
  AccumulatorOverflowError, which traced code cannot). requantize =
  clip(rhe(acc multiplier / 2^(31 + shift)) + out_zp, qmin, qmax) in int64: with p = acc m
  and n = 31 + shift, q = p >> n (arithmetic: floor) and r = p - (q << n); up when
  r > 2^(n-1), or r = 2^(n-1) and q odd.
- qadd, qmul and qmean (ir/ops/qarith.py), as the reference: int64 numerators from `rescale_plan`
  divided with rounding to nearest, ties to even (q = floor(n / d), r = n - q d; up when
  2r > d, or 2r = d and q is odd), then the zero point and the clamp.
- qlookup (ir/ops/lookup.py): the table taken at x minus the least value of x's type.
- linear_w4 (ir/ops/int4.py): the nibbles sign-extended with integer ops (low nibble first),
  each times its group's scale in float64 (exact), rounded once to x's dtype, then `linear`.
- linear24 (ir/ops/sparse.py): the compressed weight scattered with add (as the reference)
  into a dense (N, K) weight, then `linear`. Slot r of row n lands in column
  4 (r // 2) + ((meta[n, r // 4] >> 2 (r % 4)) & 3). With `to_torch(trainable=True)` the kept
  values are the parameters, so a fine-tune keeps the 2:4 mask by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import accumulate
from types import ModuleType
from typing import Any

import numpy as np

from smelt.ir.op_table import OPS
from smelt.ir.ops.common import norm_axis, prod
from smelt.ir.ops.fused import ACTIVATION_OPS, split_operands
from smelt.ir.ops.qarith import qmul_plan, rescale_plan
from smelt.ir.ops.quant import INT_RANGES, channel, clamp_bounds
from smelt.ir.ops.resample import resize_plan

Array = Any
#: ops the builders handle themselves (graph inputs, constants), not by a table entry
STRUCTURAL = frozenset({"input", "constant"})
#: the array API standard's functions the entries call; a namespace takes them from its
#: library's standard namespace (array-api-compat's torch, jax.numpy)
STANDARD = (
    "abs", "add", "argmax", "asarray", "astype", "bitwise_left_shift", "bitwise_right_shift",
    "broadcast_to", "clip", "concat", "cos", "equal", "exp", "floor", "floor_divide",
    "greater", "greater_equal", "iinfo", "isdtype", "isnan", "less", "less_equal", "log",
    "logical_and", "logical_not", "logical_or", "max", "maximum", "mean", "min", "minimum",
    "multiply", "negative", "not_equal", "ones_like", "permute_dims", "pow", "repeat",
    "reshape", "round", "sin", "sqrt", "stack", "subtract", "sum", "tanh", "trunc", "where",
    "acos", "acosh", "all", "any", "asin", "asinh", "atan", "atan2", "atanh", "bitwise_and",
    "bitwise_invert", "bitwise_or", "bitwise_xor", "ceil", "cosh", "expm1", "isinf", "log10",
    "log1p", "log2", "logical_xor", "prod", "sinh", "tan",
)
#: the functions a namespace defines itself: the standard lacks them, or torch and JAX
#: compute them differently (each namespace's docstring says how)
BACKEND = (
    "dtype", "trunc_divide", "relu", "sigmoid", "silu", "erf", "rsqrt", "reciprocal", "softmax",
    "log_softmax", "conv2d", "linear", "matmul", "batch_norm", "layer_norm", "max_pool2d",
    "avg_pool2d", "adaptive_avg_pool2d", "take", "row_scatter_add", "pad",
    "take_along_axis", "scatter", "index_put",
    "fmod", "cumsum", "cumprod", "sort",
    "conv3d", "conv_transpose", "max_pool3d", "avg_pool3d", "adaptive_avg_pool3d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "grid_sample",
)


def is_float(xp: ModuleType, x: Array) -> bool:
    return xp.isdtype(x.dtype, "real floating")


def pair(v: tuple[int, ...]) -> tuple[int, int]:
    """A 2-D attribute (kernel, stride, ...): one value for both axes, or one per axis."""
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


# -- elementwise ---------------------------------------------------------------------------
def relu6(xp: ModuleType, x: Array) -> Array:
    return xp.clip(x, 0, 6)


def hardsigmoid(xp: ModuleType, x: Array) -> Array:
    return xp.clip(x + 3, 0, 6) / 6


def hardswish(xp: ModuleType, x: Array) -> Array:
    return x * xp.clip(x + 3, 0, 6) / 6


def leaky_relu(xp: ModuleType, x: Array, *, alpha: float) -> Array:
    return xp.where(x >= 0, x, x * alpha)


def gelu(xp: ModuleType, x: Array, *, approximate: str) -> Array:
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1 + xp.tanh(inner))
    return 0.5 * x * (1 + xp.erf(x * (1 / math.sqrt(2.0))))


def _clamp_bound(xp: ModuleType, x: Array, v: float | None) -> float | int | None:
    """A clamp bound as x's kind; an integer bound saturates to x's dtype."""
    if v is None or is_float(xp, x):
        return v
    info = xp.iinfo(x.dtype)
    return int(min(max(v, info.min), info.max))


def clamp(xp: ModuleType, x: Array, *, min: float | None, max: float | None) -> Array:
    return xp.clip(x, _clamp_bound(xp, x, min), _clamp_bound(xp, x, max))


def cast(xp: ModuleType, x: Array, *, dtype: str) -> Array:
    """x converted to `dtype` (float to int truncates); int4/uint4 wrap modulo 16."""
    if dtype not in ("int4", "uint4"):
        return xp.astype(x, xp.dtype(dtype), copy=False)
    wide = xp.dtype("int64")
    low = xp.astype(xp.trunc(x) if is_float(xp, x) else x, wide) & 15
    if dtype == "int4":
        low = low - 16 * xp.astype(low >= 8, wide)
    return xp.astype(low, xp.dtype(dtype))


# -- math (ir/ops/math.py) ------------------------------------------------------------------
def sign(xp: ModuleType, x: Array) -> Array:
    """torch's (x > 0) - (x < 0): NaN and -0.0 give +0.0."""
    return xp.astype(x > 0, x.dtype) - xp.astype(x < 0, x.dtype)


def bitwise_not(xp: ModuleType, x: Array) -> Array:
    return xp.logical_not(x) if xp.isdtype(x.dtype, "bool") else xp.bitwise_invert(x)


def elu(xp: ModuleType, x: Array, *, alpha: float, scale: float, input_scale: float) -> Array:
    return xp.where(x > 0, x * scale, xp.expm1(x * input_scale) * (alpha * scale))


def _safe_divisor(xp: ModuleType, b: Array) -> Array:
    """An integer divisor with 0 and (signed) -1 replaced by 1: the reference's result for
    both is 0 (torch raises on 0, and the signed minimum % -1 overflows)."""
    bad = b == 0
    if xp.isdtype(b.dtype, "signed integer"):
        bad = bad | (b == -1)
    return xp.where(bad, xp.ones_like(b), b)


def fmod(xp: ModuleType, a: Array, b: Array) -> Array:
    return xp.fmod(a, b if is_float(xp, a) else _safe_divisor(xp, b))


def remainder(xp: ModuleType, a: Array, b: Array) -> Array:
    """fmod, plus b where it is nonzero with a sign other than b's."""
    if not is_float(xp, a):
        b = _safe_divisor(xp, b)
    r = xp.fmod(a, b)
    return xp.where((r != 0) & xp.logical_xor(r < 0, b < 0), r + b, r)


def cumsum(xp: ModuleType, x: Array, *, axis: int) -> Array:
    return xp.astype(xp.cumsum(x, axis=axis), x.dtype, copy=False)


def cumprod(xp: ModuleType, x: Array, *, axis: int) -> Array:
    return xp.astype(xp.cumprod(x, axis=axis), x.dtype, copy=False)


# -- contractions --------------------------------------------------------------------------
def _epilogue(xp: ModuleType, y: Array, res: Array | None, activation: str,
              alpha: float) -> Array:
    """act(y + residual), the activation computed by its own op's entry."""
    if res is not None:
        y = y + res
    if activation == "none":
        return y
    op, attrs = ACTIVATION_OPS[activation]
    return call(xp, op, y, **attrs({"alpha": alpha}))


def fused_matmul(xp: ModuleType, a: Array, b: Array, *rest: Array, activation: str,
                 alpha: float, residual: bool) -> Array:
    """act(a @ b + bias + residual)."""
    bias, res = split_operands(rest, residual)
    y = xp.matmul(a, b)
    return _epilogue(xp, y if bias is None else y + bias, res, activation, alpha)


def fused_linear(xp: ModuleType, x: Array, w: Array, *rest: Array, activation: str,
                 alpha: float, residual: bool) -> Array:
    """act(linear(x, w, bias) + residual)."""
    bias, res = split_operands(rest, residual)
    return _epilogue(xp, xp.linear(x, w, bias), res, activation, alpha)


def fused_conv2d(xp: ModuleType, x: Array, w: Array, *rest: Array, stride: tuple[int, ...],
                 padding: tuple[int, ...], dilation: tuple[int, ...], groups: int,
                 activation: str, alpha: float, residual: bool) -> Array:
    """act(conv2d(x, w, bias) + residual)."""
    bias, res = split_operands(rest, residual)
    y = xp.conv2d(x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return _epilogue(xp, y, res, activation, alpha)


# -- reductions ----------------------------------------------------------------------------
def _reduced(reduce: Callable[..., Array], xp: ModuleType, x: Array, src: Array,
             axes: tuple[int, ...], keepdims: bool) -> Array:
    """reduce(src) over `axes` (all when empty), as x's dtype."""
    axis = tuple(axes) if axes else tuple(range(x.ndim))
    return xp.astype(reduce(src, axis=axis, keepdims=keepdims), x.dtype, copy=False)


def reduce_sum(xp: ModuleType, x: Array, *, axes: tuple[int, ...], keepdims: bool) -> Array:
    return _reduced(xp.sum, xp, x, x, axes, keepdims)


def reduce_mean(xp: ModuleType, x: Array, *, axes: tuple[int, ...], keepdims: bool) -> Array:
    src = x if is_float(xp, x) else xp.astype(x, xp.dtype("float64"))
    return _reduced(xp.mean, xp, x, src, axes, keepdims)


def reduce_max(xp: ModuleType, x: Array, *, axes: tuple[int, ...], keepdims: bool) -> Array:
    return _reduced(xp.max, xp, x, x, axes, keepdims)


def reduce_min(xp: ModuleType, x: Array, *, axes: tuple[int, ...], keepdims: bool) -> Array:
    return _reduced(xp.min, xp, x, x, axes, keepdims)


def reduce_prod(xp: ModuleType, x: Array, *, axes: tuple[int, ...], keepdims: bool) -> Array:
    return _reduced(xp.prod, xp, x, x, axes, keepdims)


def reduce_any(xp: ModuleType, x: Array, *, axes: tuple[int, ...], keepdims: bool) -> Array:
    return _reduced(xp.any, xp, x, x, axes, keepdims)


def reduce_all(xp: ModuleType, x: Array, *, axes: tuple[int, ...], keepdims: bool) -> Array:
    return _reduced(xp.all, xp, x, x, axes, keepdims)


def argmax(xp: ModuleType, x: Array, *, axis: int, keepdims: bool) -> Array:
    wide = xp.dtype("int64")
    src = x if is_float(xp, x) else xp.astype(x, wide)
    return xp.astype(xp.argmax(src, axis=axis, keepdims=keepdims), wide, copy=False)


# -- data movement -------------------------------------------------------------------------
def flatten(xp: ModuleType, x: Array, *, start_axis: int, end_axis: int) -> Array:
    if x.ndim == 0:
        return xp.reshape(x, (1,))
    s, e = norm_axis(start_axis, x.ndim), norm_axis(end_axis, x.ndim)
    shape = tuple(x.shape)
    return xp.reshape(x, shape[:s] + (prod(shape[s: e + 1]),) + shape[e + 1:])


def transpose(xp: ModuleType, x: Array, *, perm: tuple[int, ...]) -> Array:
    return xp.permute_dims(x, tuple(perm))


def concat(xp: ModuleType, *xs: Array, axis: int) -> Array:
    return xp.concat(xs, axis=axis)


def _along(x: Array, axis: int, part: slice) -> Array:
    index = [slice(None)] * x.ndim
    index[axis] = part
    return x[tuple(index)]


def slice_(xp: ModuleType, x: Array, *, axis: int, start: int, stop: int, step: int) -> Array:
    """Python slice rules along `axis` (bounds clamp, negatives count from the end)."""
    lo, hi, _ = slice(start, stop, step).indices(x.shape[axis])
    return _along(x, axis, slice(lo, max(lo, hi), step))


def split(xp: ModuleType, x: Array, *, axis: int, sizes: tuple[int, ...]) -> tuple[Array, ...]:
    """Consecutive slices of `sizes` along axis (offsets in Python, which Dynamo folds)."""
    ends = accumulate(sizes)
    return tuple(_along(x, axis, slice(end - size, end))
                 for size, end in zip(sizes, ends, strict=True))


def squeeze(xp: ModuleType, x: Array, *, axes: tuple[int, ...]) -> Array:
    shape = tuple(x.shape)
    drop = ({norm_axis(a, x.ndim) for a in axes} if axes
            else {i for i, n in enumerate(shape) if n == 1})
    return xp.reshape(x, tuple(n for i, n in enumerate(shape) if i not in drop))


def unsqueeze(xp: ModuleType, x: Array, *, axes: tuple[int, ...]) -> Array:
    rank = x.ndim + len(axes)
    at = {norm_axis(a, rank) for a in axes}
    dims = iter(tuple(x.shape))
    return xp.reshape(x, tuple(1 if i in at else next(dims) for i in range(rank)))


def take(xp: ModuleType, x: Array, indices: Array, *, axis: int) -> Array:
    """Gather along axis; negative indices count from the end."""
    axis = axis % x.ndim
    n = x.shape[axis]
    flat = xp.astype(xp.reshape(indices, (-1,)), xp.dtype("int64"))
    flat = xp.where(flat < 0, flat + n, flat)
    shape = tuple(x.shape)
    return xp.reshape(xp.take(x, flat, axis=axis),
                      shape[:axis] + tuple(indices.shape) + shape[axis + 1:])


def pad(xp: ModuleType, x: Array, *, pads: tuple[int, ...], value: float, mode: str) -> Array:
    """pads[2i] before and pads[2i+1] after axis i; an integer fill truncates."""
    if x.ndim == 0:
        return x
    widths = tuple((pads[2 * i], pads[2 * i + 1]) for i in range(x.ndim))
    return xp.pad(x, widths, mode=mode, value=value if is_float(xp, x) else int(value))


def project(xp: ModuleType, parts: tuple[Array, ...], *, index: int) -> Array:
    return parts[index]


# -- indexing (ir/ops/indexing.py) ----------------------------------------------------------
def _from_end(xp: ModuleType, indices: Array, n: int) -> Array:
    """int64 indices with negatives counted from the end of an axis of size n."""
    idx = xp.astype(indices, xp.dtype("int64"))
    return xp.where(idx < 0, idx + n, idx)


def gather(xp: ModuleType, x: Array, indices: Array, *, axis: int) -> Array:
    """take_along_axis over x's leading part (indices may be shorter on the other axes)."""
    axis = axis % x.ndim
    part = tuple(slice(None) if d == axis else slice(0, s) for d, s in enumerate(indices.shape))
    return xp.take_along_axis(x[part], _from_end(xp, indices, x.shape[axis]), axis=axis)


def scatter(xp: ModuleType, x: Array, indices: Array, src: Array, *, axis: int, reduce: str,
            include_self: bool) -> Array:
    """src's leading part (indices' shape) combined into x along axis (scatter_reduce)."""
    axis = axis % x.ndim
    part = src[tuple(slice(0, s) for s in indices.shape)]
    return xp.scatter(x, _from_end(xp, indices, x.shape[axis]), part, axis=axis, reduce=reduce,
                      include_self=include_self)


def _index_key(xp: ModuleType, x: Array, indices: tuple[Array, ...],
               axes: tuple[int, ...]) -> tuple:
    """The advanced-indexing key: int64 indices at `axes`, whole slices elsewhere (both
    libraries count negatives from the end and place the result axes as numpy does)."""
    key: list[Any] = [slice(None)] * x.ndim
    for a, i in zip(axes, indices, strict=True):
        key[a % x.ndim] = xp.astype(i, xp.dtype("int64"))
    return tuple(key)


def index(xp: ModuleType, x: Array, *indices: Array, axes: tuple[int, ...]) -> Array:
    return x[_index_key(xp, x, indices, axes)]


def index_put(xp: ModuleType, x: Array, values: Array, *indices: Array, axes: tuple[int, ...],
              accumulate: bool) -> Array:
    return xp.index_put(x, _index_key(xp, x, indices, axes), values, accumulate=accumulate)


# -- quantized ops ------------------------------------------------------------------------
def _channel(xp: ModuleType, values: tuple, axis: int | None, rank: int, dtype: type) -> Array:
    """Per-tensor values as a 0-d array, per-channel ones shaped to broadcast along axis."""
    return xp.asarray(channel(values, axis, rank, dtype))


def quantize(xp: ModuleType, x: Array, *, scale: tuple[float, ...],
             zero_point: tuple[int, ...], axis: int | None, bits: int, signed: bool,
             qmin: int | None, qmax: int | None) -> Array:
    out, lo, hi = clamp_bounds({"bits": bits, "signed": signed, "qmin": qmin, "qmax": qmax})
    v = xp.round(xp.astype(x, xp.dtype("float64")) / _channel(xp, scale, axis, x.ndim,
                                                                np.float64))
    v = xp.where(xp.isnan(v), 0.0, v) + _channel(xp, zero_point, axis, x.ndim, np.float64)
    return xp.astype(xp.clip(v, lo, hi), xp.dtype(out))


def dequantize(xp: ModuleType, q: Array, *, scale: tuple[float, ...],
               zero_point: tuple[int, ...], axis: int | None) -> Array:
    d = xp.astype(q, xp.dtype("int64")) - _channel(xp, zero_point, axis, q.ndim, np.int64)
    real = xp.astype(d, xp.dtype("float64")) * _channel(xp, scale, axis, q.ndim, np.float64)
    return xp.astype(real, xp.dtype("float32"))


def _int32(xp: ModuleType, acc: Array) -> Array:
    return xp.astype(xp.astype(acc, xp.dtype("int64")), xp.dtype("int32"))


def _f64(xp: ModuleType, x: Array) -> Array:
    return xp.astype(x, xp.dtype("float64"))


def qconv2d(xp: ModuleType, x: Array, w: Array, b: Array | None = None, *, x_zp: int,
            w_zp: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...],
            dilation: tuple[int, ...], groups: int) -> Array:
    ws = _f64(xp, w) - _channel(xp, w_zp, 0, 4, np.float64)
    acc = xp.conv2d(_f64(xp, x) - x_zp, ws, None, stride=stride, padding=padding,
                    dilation=dilation, groups=groups)
    return _int32(xp, acc if b is None else acc + xp.reshape(_f64(xp, b), (1, -1, 1, 1)))


def qlinear(xp: ModuleType, x: Array, w: Array, b: Array | None = None, *, x_zp: int,
            w_zp: tuple[int, ...]) -> Array:
    ws = _f64(xp, w) - _channel(xp, w_zp, 0, 2, np.float64)
    acc = xp.matmul(_f64(xp, x) - x_zp, ws.T)
    return _int32(xp, acc if b is None else acc + _f64(xp, b))


def qmatmul(xp: ModuleType, a: Array, b: Array, *, a_zp: int, b_zp: int) -> Array:
    return _int32(xp, xp.matmul(_f64(xp, a) - a_zp, _f64(xp, b) - b_zp))


def requantize(xp: ModuleType, acc: Array, *, multiplier: tuple[int, ...],
               shift: tuple[int, ...], out_zp: int, out_scale: float, axis: int | None,
               bits: int, signed: bool, qmin: int | None, qmax: int | None) -> Array:
    """clip(rhe(acc * multiplier / 2^(31 + shift)) + out_zp, qmin, qmax) in int64."""
    out, lo, hi = clamp_bounds({"bits": bits, "signed": signed, "qmin": qmin, "qmax": qmax})
    wide = xp.dtype("int64")
    p = xp.astype(acc, wide) * _channel(xp, multiplier, axis, acc.ndim, np.int64)
    n = 31 + _channel(xp, shift, axis, acc.ndim, np.int64)
    q = xp.bitwise_right_shift(p, n)  # arithmetic: floor
    r = p - xp.bitwise_left_shift(q, n)
    half = xp.bitwise_right_shift(xp.bitwise_left_shift(xp.ones_like(n), n), 1)
    up = (r > half) | ((r == half) & (n > 0) & ((q & 1) == 1))
    return xp.astype(xp.clip(q + xp.astype(up, wide) + out_zp, lo, hi), xp.dtype(out))


def _rounded(xp: ModuleType, n: Array, d: int) -> Array:
    """n / d rounded to nearest, ties to even, in n's integer dtype."""
    q = xp.floor_divide(n, d)
    r2 = (n - q * d) * 2
    up = (r2 > d) | ((r2 == d) & (q % 2 == 1))
    return q + xp.astype(up, n.dtype)


def _requantized(xp: ModuleType, v: Array, attrs: dict[str, Any]) -> Array:
    dtype, lo, hi = clamp_bounds(attrs)
    return xp.astype(xp.clip(v + attrs["out_zp"], lo, hi), xp.dtype(dtype))


def qadd(xp: ModuleType, a: Array, b: Array, **attrs: Any) -> Array:
    (ca, cb), den = rescale_plan((attrs["a_scale"], attrs["b_scale"]), attrs["out_scale"])
    wide = xp.dtype("int64")
    n = (xp.astype(a, wide) - attrs["a_zp"]) * ca + (xp.astype(b, wide) - attrs["b_zp"]) * cb
    return _requantized(xp, _rounded(xp, n, den), attrs)


def qmul(xp: ModuleType, a: Array, b: Array, **attrs: Any) -> Array:
    (c,), den = qmul_plan(attrs)
    wide = xp.dtype("int64")
    n = (xp.astype(a, wide) - attrs["a_zp"]) * (xp.astype(b, wide) - attrs["b_zp"]) * c
    return _requantized(xp, _rounded(xp, n, den), attrs)


def qmean(xp: ModuleType, x: Array, **attrs: Any) -> Array:
    rank = x.ndim
    axes = (tuple(sorted({a % rank for a in attrs["axes"]})) if attrs["axes"]
            else tuple(range(rank)))
    (c,), den = rescale_plan((attrs["x_scale"],), attrs["out_scale"],
                             prod(x.shape[a] for a in axes))
    centered = xp.astype(x, xp.dtype("int64")) - attrs["x_zp"]
    s = xp.sum(centered, axis=axes, keepdims=attrs["keepdims"])
    return _requantized(xp, _rounded(xp, s * c, den), attrs)


def qlookup(xp: ModuleType, x: Array, table: Array, **attrs: Any) -> Array:
    lo = INT_RANGES[str(x.dtype).split(".")[-1]][0]
    flat = xp.astype(xp.reshape(x, (-1,)), xp.dtype("int32")) - lo
    return xp.reshape(xp.take(table, flat, axis=0), tuple(x.shape))


def _unpacked(xp: ModuleType, packed: Array) -> Array:
    """Two signed nibbles per byte, low first: (..., K/2) -> (..., K)."""
    p = xp.astype(packed, xp.dtype("int32"))
    lo = ((p & 15) ^ 8) - 8
    hi = ((p >> 4) ^ 8) - 8
    shape = tuple(p.shape)
    return xp.reshape(xp.stack([lo, hi], axis=-1), shape[:-1] + (2 * shape[-1],))


def linear_w4(xp: ModuleType, x: Array, packed: Array, scales: Array,
              bias: Array | None = None, *, group: int) -> Array:
    s = xp.repeat(_f64(xp, scales), group, axis=1)
    w = xp.astype(_f64(xp, _unpacked(xp, packed)) * s, x.dtype)
    return xp.linear(x, w, bias)


def linear24(xp: ModuleType, x: Array, values: Array, meta: Array,
             bias: Array | None = None) -> Array:
    n, slots = values.shape
    r = np.arange(slots)
    byte = xp.astype(meta[:, r // 4], xp.dtype("int64"))
    cols = xp.asarray(r // 2 * 4) + ((byte >> xp.asarray((r % 4) * 2)) & 3)
    w = xp.row_scatter_add((n, x.shape[-1]), cols, values)
    return xp.linear(x, w, bias)


# -- resampling (ir/ops/resample.py) -------------------------------------------------------
def resize(xp: ModuleType, x: Array, *, size: tuple[int, ...], mode: str, align_corners: bool,
           scales: tuple[float, ...]) -> Array:
    """The reference's taps (resize_plan), constants: per axis, sum_t w[t] take(x, idx[t])."""
    attrs = dict(size=size, mode=mode, align_corners=align_corners, scales=scales)
    y = x
    for axis, idx, w in resize_plan(tuple(x.shape), attrs):
        out = None
        for t in range(len(idx)):
            part = xp.take(y, xp.asarray(idx[t]), axis=axis)
            if w is not None:
                shape = [1] * len(x.shape)
                shape[axis] = -1
                part = part * xp.asarray(w[t].reshape(shape), dtype=x.dtype)
            out = part if out is None else out + part
        y = out
    return y


# -- the table -----------------------------------------------------------------------------
#: op -> the namespace function of the same meaning (the array API's name where it has one)
LIBRARY: dict[str, str] = {
    "add": "add", "sub": "subtract", "mul": "multiply", "div": "trunc_divide", "pow": "pow",
    "maximum": "maximum", "minimum": "minimum", "equal": "equal", "not_equal": "not_equal",
    "less": "less", "less_equal": "less_equal", "greater": "greater",
    "greater_equal": "greater_equal", "logical_and": "logical_and",
    "logical_or": "logical_or", "logical_not": "logical_not", "where": "where",
    "neg": "negative", "abs": "abs", "relu": "relu", "sigmoid": "sigmoid", "silu": "silu",
    "tanh": "tanh",
    "exp": "exp", "log": "log", "sqrt": "sqrt", "rsqrt": "rsqrt", "reciprocal": "reciprocal",
    "sin": "sin", "cos": "cos", "erf": "erf", "floor": "floor", "round": "round",
    "conv2d": "conv2d", "linear": "linear", "matmul": "matmul",
    "batch_norm": "batch_norm", "layer_norm": "layer_norm", "softmax": "softmax",
    "log_softmax": "log_softmax", "max_pool2d": "max_pool2d", "avg_pool2d": "avg_pool2d",
    "adaptive_avg_pool2d": "adaptive_avg_pool2d",
    "reshape": "reshape", "expand": "broadcast_to",
    **{op: op for op in ("acos", "acosh", "asin", "asinh", "atan", "atanh", "cosh", "sinh",
                         "tan", "ceil", "trunc", "expm1", "log1p", "log2", "log10", "isnan",
                         "isinf", "atan2", "bitwise_and", "bitwise_or", "bitwise_xor",
                         "logical_xor", "sort")},
    **{op: op for op in ("conv3d", "conv_transpose", "max_pool3d", "avg_pool3d",
                         "adaptive_avg_pool3d", "adaptive_max_pool2d", "adaptive_max_pool3d",
                         "grid_sample")},
}
#: op -> its entry written above, a function of (xp, *operands, **attrs)
FORMULAS: dict[str, Callable[..., Any]] = {
    "relu6": relu6, "hardsigmoid": hardsigmoid, "hardswish": hardswish,
    "leaky_relu": leaky_relu, "gelu": gelu, "clamp": clamp, "cast": cast,
    "fused_matmul": fused_matmul, "fused_linear": fused_linear, "fused_conv2d": fused_conv2d,
    "reduce_sum": reduce_sum, "reduce_mean": reduce_mean, "reduce_max": reduce_max,
    "reduce_min": reduce_min, "argmax": argmax,
    "flatten": flatten, "transpose": transpose, "concat": concat, "split": split,
    "slice": slice_, "squeeze": squeeze, "unsqueeze": unsqueeze, "take": take, "pad": pad,
    "project": project, "gather": gather, "scatter": scatter, "index": index,
    "index_put": index_put,
    "quantize": quantize, "dequantize": dequantize, "qconv2d": qconv2d, "qlinear": qlinear,
    "qmatmul": qmatmul, "requantize": requantize, "qadd": qadd, "qmul": qmul, "qmean": qmean,
    "qlookup": qlookup,
    "linear_w4": linear_w4, "linear24": linear24,
    "sign": sign, "bitwise_not": bitwise_not, "elu": elu, "fmod": fmod, "remainder": remainder,
    "reduce_prod": reduce_prod, "reduce_any": reduce_any, "reduce_all": reduce_all,
    "cumsum": cumsum, "cumprod": cumprod,
    "resize": resize,
}


def call(xp: ModuleType, op: str, *args: Array, **attrs: Any) -> Array:
    """op's entry applied in namespace `xp`."""
    if op in LIBRARY:
        return getattr(xp, LIBRARY[op])(*args, **attrs)
    return FORMULAS[op](xp, *args, **attrs)


def _with_namespace(fn: Callable[..., Any], xp: ModuleType) -> Callable[..., Any]:
    """fn with `xp` bound, named as fn (torch.fx names a call after its function)."""

    def entry(*args: Any, **attrs: Any) -> Any:
        return fn(xp, *args, **attrs)

    entry.__name__ = entry.__qualname__ = fn.__name__
    entry.__module__, entry.__doc__ = fn.__module__, fn.__doc__
    return entry


def bind(xp: ModuleType) -> dict[str, Callable[..., Any]]:
    """Every op's entry in namespace `xp`: a backend's table, keyed by op."""
    table = {op: getattr(xp, name) for op, name in LIBRARY.items()}
    return table | {op: _with_namespace(fn, xp) for op, fn in FORMULAS.items()}


def missing_ops() -> list[str]:
    """Ops of the op table with no interop entry (a test keeps this empty)."""
    return sorted(set(OPS) - set(LIBRARY) - set(FORMULAS) - STRUCTURAL)


__all__ = ["BACKEND", "FORMULAS", "LIBRARY", "STANDARD", "STRUCTURAL", "bind", "call",
           "missing_ops", "pair"]
