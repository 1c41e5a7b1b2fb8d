"""The array namespace `to_jax` computes in: jax.numpy, which follows the Python array API
standard, plus the functions whose torch and JAX forms differ.

array_ops.py writes every entry once over a namespace `xp`; this module is `xp` for JAX, with
the names torch_namespace.py defines for torch. The standard's functions the entries call
(array_ops.STANDARD) are jax.numpy's own, bound here at import.

Defined here (array_ops.BACKEND), as JAX computes them:
- `dtype(name)`: the JAX dtype of a smelt dtype after JAX's 64-bit rule (with
  `jax_enable_x64` off, float64 and int64 are float32 and int32); int4/uint4 live in
  int8/uint8, bfloat16 is jnp.bfloat16.
- functions the standard lacks: jax.nn's relu, sigmoid, silu, softmax, log_softmax;
  jax.scipy's erf; lax.rsqrt; jnp.reciprocal; `trunc_divide` (lax.div: integers truncate
  toward zero, as the reference).
- math: jnp.fmod, jnp.cumsum, jnp.cumprod, and `sort` (jnp.argsort, stable, of a key with
  -0.0 made 0.0 and every NaN the positive one, then the values gathered by it).
- contractions at `Precision.HIGHEST` (XLA may otherwise round float32 operands to bfloat16
  on accelerators): conv2d through lax.conv_general_dilated, linear, matmul.
- normalization written out: batch_norm and layer_norm (JAX has no kernel of its own).
- pooling through lax.reduce_window, with torch's rules as the reference has them: the
  window count of a ceil-mode overhang, the divisor with or without padding, adaptive bins
  [floor(i L / n), ceil((i + 1) L / n)).
- `take` (jnp.take clipping: traced JAX cannot raise on an index out of range),
  `row_scatter_add` (.at[].add), `pad` (jnp.pad).
"""

from __future__ import annotations

import builtins
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from smelt.backends.interop.array_ops import STANDARD, pair
from smelt.ir.ops.nn import _pads, windows
from smelt.ir.ops.pool import pool_out_size

# the standard's functions, as module attributes; abs, max, min, pow, round and sum shadow
# Python's here (builtins.max where Python's is meant)
globals().update((name, getattr(jnp, name)) for name in STANDARD)

JAX_DTYPES: dict[str, Any] = {
    "float64": jnp.float64, "float32": jnp.float32, "float16": jnp.float16,
    "bfloat16": jnp.bfloat16, "int64": jnp.int64, "int32": jnp.int32, "int16": jnp.int16,
    "int8": jnp.int8, "uint8": jnp.uint8, "int4": jnp.int8, "uint4": jnp.uint8,
    "bool": jnp.bool_,
}
HIGHEST = lax.Precision.HIGHEST

relu = jax.nn.relu
sigmoid = jax.nn.sigmoid
silu = jax.nn.silu
erf = jax.scipy.special.erf
rsqrt = lax.rsqrt
reciprocal = jnp.reciprocal
softmax = jax.nn.softmax
log_softmax = jax.nn.log_softmax


def dtype(name: str) -> np.dtype:
    """The JAX dtype of smelt dtype `name`, after JAX's 64-bit rule."""
    return jax.dtypes.canonicalize_dtype(JAX_DTYPES[name])


fmod = jnp.fmod
cumsum = jnp.cumsum
cumprod = jnp.cumprod


def sort(x: jax.Array, *, axis: int, descending: bool) -> tuple[jax.Array, jax.Array]:
    """The stable order of a canonical key: XLA orders -0.0 before 0.0 and a negative NaN
    first, where the reference ties the zeros and ranks every NaN above +inf."""
    key = x
    if jnp.isdtype(x.dtype, "real floating"):
        key = jnp.where(jnp.isnan(x), jnp.nan, jnp.where(x == 0, 0, x))
    order = jnp.argsort(key, axis=axis, stable=True, descending=descending)
    return jnp.take_along_axis(x, order, axis=axis), order.astype(dtype("int64"))


def trunc_divide(a: jax.Array, b: jax.Array) -> jax.Array:
    """a / b; lax.div truncates integers toward zero."""
    a, b = jnp.broadcast_arrays(a, b)
    return lax.div(a, b)


# -- contractions, normalization -----------------------------------------------------------
def conv2d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *,
           stride: tuple[int, ...], padding: tuple[int, ...], dilation: tuple[int, ...],
           groups: int) -> jax.Array:
    top, left, bottom, right = _pads(padding)
    out = lax.conv_general_dilated(x, w, pair(stride), ((top, bottom), (left, right)),
                                   rhs_dilation=pair(dilation),
                                   dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                   feature_group_count=groups, precision=HIGHEST)
    return out if b is None else out + b.reshape(1, -1, 1, 1)


def linear(x: jax.Array, w: jax.Array, b: jax.Array | None = None) -> jax.Array:
    out = jnp.matmul(x, w.T, precision=HIGHEST)
    return out if b is None else out + b


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, precision=HIGHEST)


def _s(x: jax.Array, v: float) -> jax.Array:
    """A python number as a 0-d array of x's dtype, so float16 math stays float16."""
    return jnp.asarray(v, dtype=x.dtype)


def batch_norm(x: jax.Array, mean: jax.Array, var: jax.Array, weight: jax.Array | None = None,
               bias: jax.Array | None = None, *, eps: float) -> jax.Array:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = 1 / jnp.sqrt(var + _s(x, eps))
    if weight is not None:
        inv = inv * weight
    y = (x - mean.reshape(shape)) * inv.reshape(shape)
    return y if bias is None else y + bias.reshape(shape)


def layer_norm(x: jax.Array, weight: jax.Array | None = None, bias: jax.Array | None = None, *,
               axis: int, eps: float) -> jax.Array:
    axes = tuple(range(axis % x.ndim, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mu) / jnp.sqrt(var + _s(x, eps))
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


# -- pooling -------------------------------------------------------------------------------
def _pool_geometry(x, kernel, stride, padding, dilation, ceil_mode):
    """(kernel, stride, dilation, out_hw, pads of H and W) as the reference pads: p on both
    sides, plus what the last ceil-mode window needs on the bottom/right."""
    k, s = pair(kernel), pair(stride or kernel)
    p, d = pair(padding), pair(dilation)
    size = x.shape[2:]
    out = tuple(pool_out_size(size[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(2))
    pads = []
    for i in range(2):
        need = (out[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1
        pads.append((p[i], p[i] + builtins.max(0, need - (size[i] + 2 * p[i]))))
    return k, s, d, out, pads


def _window_reduce(x, init, op, k, s, d, out, pads):
    y = lax.reduce_window(x, init, op, (1, 1) + k, (1, 1) + s, ((0, 0), (0, 0)) + tuple(pads),
                          window_dilation=(1, 1) + d)
    return y[:, :, : out[0], : out[1]]


def max_pool2d(x: jax.Array, *, kernel, stride, padding, dilation, ceil_mode) -> jax.Array:
    k, s, d, out, pads = _pool_geometry(x, kernel, stride, padding, dilation, ceil_mode)
    init = -math.inf if jnp.isdtype(x.dtype, "real floating") else jnp.iinfo(x.dtype).min
    return _window_reduce(x, jnp.asarray(init, dtype=x.dtype), lax.max, k, s, d, out, pads)


def avg_pool2d(x: jax.Array, *, kernel, stride, padding, ceil_mode,
               count_include_pad) -> jax.Array:
    """Window sums over the zero-padded input, divided by the reference's counts (padding
    counted with count_include_pad, the ceil-mode overhang never)."""
    k, s, d, out, pads = _pool_geometry(x, kernel, stride, padding, (1,), ceil_mode)
    total = _window_reduce(x, jnp.asarray(0, dtype=x.dtype), lax.add, k, s, d, out, pads)
    h, w = x.shape[2:]
    p = pair(padding)
    if count_include_pad:
        mask = np.pad(np.ones((h + 2 * p[0], w + 2 * p[1])),
                      ((0, pads[0][1] - p[0]), (0, pads[1][1] - p[1])))
    else:
        mask = np.pad(np.ones((h, w)), pads)
    count = windows(mask, k, s, d)[: out[0], : out[1]].sum(axis=(-2, -1))
    return total / jnp.asarray(count, dtype=x.dtype)


def adaptive_avg_pool2d(x: jax.Array, *, output_size) -> jax.Array:
    """Bin i of n over size L spans [floor(i L / n), ceil((i + 1) L / n))."""
    oh, ow = pair(output_size)
    h, w = x.shape[2:]
    rows = []
    for i in range(oh):
        h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        cols = [x[:, :, h0:h1, (j * w) // ow: -((-(j + 1) * w) // ow)].mean(axis=(-2, -1))
                for j in range(ow)]
        rows.append(jnp.stack(cols, axis=-1))
    return jnp.stack(rows, axis=-2).astype(x.dtype)


# -- gather, scatter, pad ------------------------------------------------------------------
def take(x: jax.Array, indices: jax.Array, /, *, axis: int) -> jax.Array:
    """x gathered along `axis` at 1-D non-negative `indices`; out of range clips."""
    return jnp.take(x, indices, axis=axis, mode="clip")


def row_scatter_add(shape: tuple[int, int], cols: jax.Array, values: jax.Array) -> jax.Array:
    """A zero (N, K) array with values[n, j] added at [n, cols[n, j]]."""
    n, slots = values.shape
    rows = np.repeat(np.arange(n), slots).reshape(n, slots)
    return jnp.zeros(shape, values.dtype).at[rows, cols].add(values)


def pad(x: jax.Array, widths: tuple[tuple[int, int], ...], *, mode: str,
        value: float | int) -> jax.Array:
    """x padded by widths[i] = (before, after) on axis i; constant, reflect or edge."""
    if mode == "constant":
        return jnp.pad(x, widths, constant_values=_s(x, value))
    return jnp.pad(x, widths, mode=mode)


def take_along_axis(x: jax.Array, indices: jax.Array, /, *, axis: int) -> jax.Array:
    """x gathered along `axis` at non-negative `indices`; out of range clips."""
    return jnp.take_along_axis(x, indices, axis=axis, mode="clip")


def _line_coords(indices: jax.Array, axis: int) -> tuple:
    """The full coordinates scatter writes to: `indices` on the axis, each update's own
    position on the others."""
    coords = list(jnp.indices(indices.shape, sparse=True))
    coords[axis] = indices
    return tuple(coords)


def scatter(x: jax.Array, indices: jax.Array, src: jax.Array, /, *, axis: int, reduce: str,
            include_self: bool) -> jax.Array:
    """.at[] updates at non-negative `indices` (out of range: dropped); with include_self
    False a written element starts from the reduction's identity; a mean is the sum over
    the count (integers floor, as torch)."""
    at = _line_coords(indices, axis)
    if reduce == "none":
        return x.at[at].set(src, mode="drop")
    floaty = jnp.issubdtype(x.dtype, jnp.floating)
    if reduce in ("amax", "amin") and not floaty:
        info = jnp.iinfo(x.dtype)
        start = info.min if reduce == "amax" else info.max
    else:
        start = {"sum": 0, "mean": 0, "prod": 1, "amax": -math.inf, "amin": math.inf}[reduce]
    base = x if include_self else x.at[at].set(jnp.asarray(start, x.dtype), mode="drop")
    update = {"sum": "add", "mean": "add", "prod": "multiply", "amax": "max",
              "amin": "min"}[reduce]
    out = getattr(base.at[at], update)(src, mode="drop")
    if reduce != "mean":
        return out
    count = jnp.zeros(x.shape, jnp.int32).at[at].add(1, mode="drop")
    denom = jnp.astype(count + (1 if include_self else 0), x.dtype)
    mean = out / denom if floaty else jnp.floor_divide(out, denom)
    return jnp.where(count > 0, mean, x)


def index_put(x: jax.Array, key: tuple, values: jax.Array, /, *,
              accumulate: bool) -> jax.Array:
    """x.at[key].set (or .add); out-of-range updates are dropped."""
    at = x.at[key]
    return at.add(values, mode="drop") if accumulate else at.set(values, mode="drop")


# conv3d, conv_transpose, 3-d and adaptive max pooling, grid_sample (jax_spatial.py)
from smelt.backends.interop.jax_spatial import (  # noqa: E402,F401,I001
    adaptive_avg_pool3d,
    adaptive_max_pool2d,
    adaptive_max_pool3d,
    avg_pool3d,
    conv3d,
    conv_transpose,
    grid_sample,
    max_pool3d,
)
