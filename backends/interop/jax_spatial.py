"""The spatial ops' JAX functions (jax_namespace.py imports them into the namespace), as the
reference computes them:

- conv3d: lax.conv_general_dilated over NCDHW x OIDHW at Precision.HIGHEST.
- conv_transpose: the same over the input dilated by the stride (lhs_dilation), padded by
  dilation (k - 1) - padding (plus output_padding at the high end), with the kernel flipped
  and its in / out channels swapped within each group.
- max_pool3d, avg_pool3d: lax.reduce_window over the reference's padding (pool_pads: the
  ceil-mode overhang included), the average divided by the reference's own counts
  (pool_counts) or the divisor.
- adaptive pooling: a mean or max per bin, torch's bins.
- grid_sample: the reference's own sample_grid over jax.numpy (coordinates in the grid's
  dtype: float32 unless x64 is on).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

from smelt.ir.ops.resample import sample_grid
from smelt.ir.ops.spatial import (
    adaptive_bins,
    axes_of,
    conv_pads,
    pool_counts,
    pool_out_shape,
    pool_pads,
    pool_params,
)

HIGHEST = lax.Precision.HIGHEST
_SPECS = {1: ("NCH", "OIH", "NCH"), 2: ("NCHW", "OIHW", "NCHW"),
          3: ("NCDHW", "OIDHW", "NCDHW")}


def _bias(y: jax.Array, b: jax.Array | None) -> jax.Array:
    return y if b is None else y + b.reshape((1, -1) + (1,) * (y.ndim - 2))


def conv3d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride, padding,
           dilation, groups) -> jax.Array:
    lo, hi = conv_pads(padding, 3)
    pads = tuple(zip(lo, hi, strict=True))
    y = lax.conv_general_dilated(x, w, axes_of("stride", stride, 3), pads,
                                 rhs_dilation=axes_of("dilation", dilation, 3),
                                 dimension_numbers=_SPECS[3], feature_group_count=groups,
                                 precision=HIGHEST)
    return _bias(y, b)


def conv_transpose(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride, padding,
                   output_padding, dilation, groups) -> jax.Array:
    n = x.ndim - 2
    s, p, op, d = (axes_of(name, v, n) for name, v in (
        ("stride", stride), ("padding", padding), ("output_padding", output_padding),
        ("dilation", dilation)))
    c, og, *k = w.shape
    wg = w.reshape(groups, c // groups, og, *k)
    wg = jnp.swapaxes(wg, 1, 2).reshape(groups * og, c // groups, *k)
    wg = jnp.flip(wg, axis=tuple(range(2, 2 + n)))
    pads = tuple((d[i] * (k[i] - 1) - p[i], d[i] * (k[i] - 1) - p[i] + op[i]) for i in range(n))
    y = lax.conv_general_dilated(x, wg, (1,) * n, pads, lhs_dilation=s, rhs_dilation=d,
                                 dimension_numbers=_SPECS[n], feature_group_count=groups,
                                 precision=HIGHEST)
    return _bias(y, b)


def _pool(x: jax.Array, attrs: dict, init, op) -> tuple[jax.Array, tuple]:
    k, s, p, d = pool_params(attrs, 3)
    out = pool_out_shape(x.shape, attrs, 3)
    pads = pool_pads(x.shape, k, s, p, d, out)
    y = lax.reduce_window(x, jnp.asarray(init, dtype=x.dtype), op, (1, 1) + k, (1, 1) + s,
                          ((0, 0), (0, 0)) + pads, window_dilation=(1, 1) + d)
    return y[(slice(None), slice(None)) + tuple(slice(0, o) for o in out)], (k, s, p, out)


def max_pool3d(x: jax.Array, *, kernel, stride, padding, dilation, ceil_mode) -> jax.Array:
    init = -math.inf if jnp.isdtype(x.dtype, "real floating") else jnp.iinfo(x.dtype).min
    attrs = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                 ceil_mode=ceil_mode)
    return _pool(x, attrs, init, lax.max)[0]


def avg_pool3d(x: jax.Array, *, kernel, stride, padding, ceil_mode, count_include_pad,
               divisor) -> jax.Array:
    attrs = dict(kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    total, (k, s, p, out) = _pool(x, attrs, 0, lax.add)
    if divisor is not None:
        return total / jnp.asarray(divisor, dtype=x.dtype)
    count = pool_counts(x.shape, k, s, p, out, count_include_pad)
    return total / jnp.asarray(count, dtype=x.dtype)


def _adaptive(x: jax.Array, output_size, nd: int, reduce) -> jax.Array:
    out = axes_of("output_size", output_size, nd)
    bins = [adaptive_bins(x.shape[2 + i], out[i]) for i in range(nd)]
    axes = tuple(range(-nd, 0))
    cells = [reduce(x[(slice(None), slice(None)) + tuple(slice(*bins[i][j])
                                                         for i, j in enumerate(idx))],
                    axis=axes)
             for idx in itertools.product(*(range(o) for o in out))]
    return jnp.stack(cells, axis=-1).reshape(x.shape[:2] + out).astype(x.dtype)


def adaptive_avg_pool3d(x: jax.Array, *, output_size) -> jax.Array:
    return _adaptive(x, output_size, 3, jnp.mean)


def adaptive_max_pool2d(x: jax.Array, *, output_size) -> jax.Array:
    return _adaptive(x, output_size, 2, jnp.max)


def adaptive_max_pool3d(x: jax.Array, *, output_size) -> jax.Array:
    return _adaptive(x, output_size, 3, jnp.max)


def grid_sample(x: jax.Array, grid: jax.Array, *, mode: str, padding_mode: str,
                align_corners: bool) -> jax.Array:
    return sample_grid(x, grid, mode, padding_mode, align_corners, jnp).astype(x.dtype)


NAMES = ("conv3d", "conv_transpose", "max_pool3d", "avg_pool3d", "adaptive_avg_pool3d",
         "adaptive_max_pool2d", "adaptive_max_pool3d", "grid_sample")
