"""lax convolution and window primitives -> smelt (entries of jax_converters.CONVERTERS).

- conv_general_dilated, 1 to 3 spatial axes in any layout: transposes to N C spatial x
  O I spatial (a constant kernel is folded), the op, and the result transposed to the
  requested output layout. 2-d is conv2d; 1-d is conv2d on a unit axis (so every conv2d pass
  and kernel applies); 3-d is conv3d.
- with input dilation (lhs_dilation, as lax.conv_transpose and jax.vjp of a strided conv
  write a transposed convolution): conv_transpose. A convolution over x dilated by s and
  padded by (lo, hi) with kernel w is conv_transpose of x with w flipped and its in / out
  channels swapped within each group, padding d (k - 1) - lo, output_padding hi - lo. Where
  those fall outside conv_transpose's range (padding < 0, output_padding < 0 or past the
  stride and dilation), the uncropped transposed convolution is padded with zeros (no tap
  reaches there) and sliced instead.
- reduce_window_max / reduce_window_sum over 1 to 3 spatial axes of a channels-first or
  channels-last input: max_pool2d / avg_pool2d times the window size (1-d through a unit
  axis), max_pool3d / avg_pool3d with divisor 1. A padding that the pooling op cannot take
  (uneven, or past half the window) is an explicit pad with the window's identity (-inf, the
  integer minimum, 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .jax_builder import Converter, _Builder, _cast, _out_dtype, _reshape, _slice, _transpose
from .node import Node
from .ops.common import prod
from .types import is_float


def _kernel_oi(b: _Builder, rhs: Node, rhs_spec) -> Node:
    """The kernel as (O, I, spatial...), folded when constant."""
    if rhs.is_constant:
        return b.fold(rhs, rhs_spec, [rhs.shape[d] for d in rhs_spec])
    return _transpose(b, rhs, rhs_spec)


def _transposed_kernel(b: _Builder, w: Node, groups: int) -> Node:
    """(O, I / g, k...) -> (I, O / g, k...) flipped: conv_transpose's weight for the same
    products."""
    o, ig, *k = w.shape
    n = len(k)
    if w.is_constant:
        v = np.asarray(w.value).reshape(groups, o // groups, ig, *k).swapaxes(1, 2)
        v = np.flip(v.reshape(groups * ig, o // groups, *k), axis=tuple(range(2, 2 + n)))
        return b.const(np.ascontiguousarray(v), w.dtype)
    y = _reshape(b, w, (groups, o // groups, ig, *k))
    y = _transpose(b, y, (0, 2, 1, *range(3, 3 + n)))
    y = _reshape(b, y, (groups * ig, o // groups, *k))
    for axis in range(2, 2 + n):
        backwards = b.const(np.arange(y.shape[axis] - 1, -1, -1, dtype=np.int64), "int64")
        y = b.make("take", y, backwards, axis=axis)
    return y


def _conv_transposed(b: _Builder, x: Node, w: Node, p: dict, pads) -> Node:
    """conv_general_dilated with lhs_dilation as conv_transpose (see the module docstring)."""
    n = len(pads)
    s, d = tuple(int(v) for v in p["lhs_dilation"]), tuple(int(v) for v in p["rhs_dilation"])
    if any(v != 1 for v in p["window_strides"]):
        raise b.unsupported("conv_general_dilated", "input and window strides together have "
                            "no smelt op")
    groups = int(p["feature_group_count"])
    k = w.shape[2:]
    wt = _transposed_kernel(b, w, groups)
    reach = [d[i] * (k[i] - 1) for i in range(n)]
    pad = tuple(reach[i] - pads[i][0] for i in range(n))
    extra = tuple(pads[i][1] - pads[i][0] for i in range(n))
    if all(v >= 0 for v in pad) and all(0 <= e < max(s[i], d[i]) for i, e in enumerate(extra)):
        return b.make("conv_transpose", x, wt, stride=s, padding=pad, output_padding=extra,
                      dilation=d, groups=groups)
    y = b.make("conv_transpose", x, wt, stride=s, padding=(0,), output_padding=(0,),
               dilation=d, groups=groups)
    for i in range(n):  # output j reads the uncropped result at j + reach - lo
        axis, full = 2 + i, y.shape[2 + i]
        size = (x.shape[axis] - 1) * s[i] + 1 + pads[i][0] + pads[i][1] - reach[i]
        start = pad[i]
        before, after = max(0, -start), max(0, start + size - full)
        if before or after:
            widths = [0] * (2 * len(y.shape))
            widths[2 * axis], widths[2 * axis + 1] = before, after
            y = b.make("pad", y, pads=tuple(widths))
        y = _slice(b, y, axis, start + before, start + before + size)
    return y


def _conv(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    """conv_general_dilated in 1 to 3 spatial axes (see the module docstring)."""
    p = eqn.params
    lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
    n = len(lhs_spec) - 2
    pads = [tuple(int(v) for v in pair) for pair in p["padding"]]
    if not 1 <= n <= 3:
        raise b.unsupported("conv_general_dilated", f"{n}-d convolution; smelt maps 1-d, "
                            "2-d and 3-d")
    if p["batch_group_count"] != 1:
        raise b.unsupported("conv_general_dilated", "batch_group_count > 1 has no smelt op")
    dtype = _out_dtype(eqn)
    lhs, rhs = (_cast(b, x, dtype) for x in xs)
    x, w = _transpose(b, lhs, lhs_spec), _kernel_oi(b, rhs, rhs_spec)
    if any(v != 1 for v in p["lhs_dilation"]):
        y = _conv_transposed(b, x, w, p, pads)
        return _transpose(b, y, np.argsort(out_spec).tolist())
    if any(v < 0 for pair in pads for v in pair):
        raise b.unsupported("conv_general_dilated", "negative padding; slice the input first")
    stride, dilation = tuple(p["window_strides"]), tuple(p["rhs_dilation"])
    groups = int(p["feature_group_count"])
    lo, hi = tuple(a for a, _ in pads), tuple(c for _, c in pads)
    if n == 3:
        y = b.make("conv3d", x, w, stride=stride, padding=lo + hi, dilation=dilation,
                   groups=groups)
    elif n == 2:
        y = b.make("conv2d", x, w, stride=stride, padding=lo + hi, dilation=dilation,
                   groups=groups)
    else:
        w2 = (b.fold(w, range(3), (*w.shape[:2], 1, w.shape[2])) if w.is_constant
              else _reshape(b, w, (*w.shape[:2], 1, w.shape[2])))
        y = b.make("conv2d", b.make("unsqueeze", x, axes=(2,)), w2, stride=(1, *stride),
                   padding=(0, lo[0], 0, hi[0]), dilation=(1, *dilation), groups=groups)
        y = b.make("squeeze", y, axes=(2,))
    return _transpose(b, y, np.argsort(out_spec).tolist())


# -- windows -------------------------------------------------------------------------------
def _window_layout(b: _Builder, eqn: Any, x: Node) -> tuple[tuple[int, ...], list[int]]:
    """(perm to channels-first, the spatial axes) for a window over the trailing axes of a
    rank 3 to 5 input (N, C, ...) or the middle ones of (N, ..., C)."""
    p = eqn.params
    name, rank = eqn.primitive.name, len(x.shape)
    if not 3 <= rank <= 5 or any(d != 1 for d in p["base_dilation"]):
        raise b.unsupported(name, "only 1-d to 3-d windows over a rank 3 to 5 input, without "
                            "base dilation, map to smelt pooling")
    active = {i for i in range(rank) if p["window_dimensions"][i] != 1
              or p["window_strides"][i] != 1 or tuple(p["padding"][i]) != (0, 0)
              or p["window_dilation"][i] != 1}
    first = set(range(2, rank))
    if active <= first:
        return tuple(range(rank)), sorted(first)
    if active <= set(range(1, rank - 1)):
        return (0, rank - 1, *range(1, rank - 1)), list(range(1, rank - 1))
    raise b.unsupported(name, f"the window covers axes {sorted(active)}; smelt pools the "
                        "spatial axes of a channels-first or channels-last input only")


def _fill(kind: str, x: Node) -> float:
    if kind == "sum":
        return 0.0
    return -np.inf if is_float(x.dtype) else float(np.iinfo(np.dtype(x.dtype)).min)


def _pool(b: _Builder, kind: str, y: Node, kernel, stride, dilation, padding) -> Node:
    """The pooling op over y's spatial axes (channels first), 1-d through a unit axis."""
    if len(kernel) == 1:
        z = _pool(b, kind, b.make("unsqueeze", y, axes=(2,)), (1, *kernel), (1, *stride),
                  (1, *dilation), (0, *padding))
        return b.make("squeeze", z, axes=(2,))
    if kind == "max":
        return b.make(f"max_pool{len(kernel)}d", y, kernel=kernel, stride=stride,
                      padding=padding, dilation=dilation)
    if len(kernel) == 3:
        return b.make("avg_pool3d", y, kernel=kernel, stride=stride, padding=padding,
                      count_include_pad=True, divisor=1)
    y = b.make("avg_pool2d", y, kernel=kernel, stride=stride, padding=padding,
               count_include_pad=True)
    return b.make("mul", y, b.const(prod(kernel), y.dtype))


def _reduce_window(kind: str) -> Converter:
    """reduce_window_max -> max pooling; reduce_window_sum -> average pooling's window sum."""

    def convert(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
        p, x = eqn.params, xs[0]
        perm, sp = _window_layout(b, eqn, x)
        kernel = tuple(int(p["window_dimensions"][i]) for i in sp)
        stride = tuple(int(p["window_strides"][i]) for i in sp)
        dilation = tuple(int(p["window_dilation"][i]) for i in sp)
        pads = [tuple(int(v) for v in p["padding"][i]) for i in sp]
        if kind == "sum" and (any(v != 1 for v in dilation) or not is_float(x.dtype)):
            raise b.unsupported(eqn.primitive.name, "window sums map to average pooling, "
                                "which takes float inputs and no window dilation")
        y = _transpose(b, x, perm)
        fits = all(lo == hi and 2 * lo <= k for (lo, hi), k in zip(pads, kernel, strict=True))
        padding = tuple(lo for lo, _ in pads) if fits else (0,) * len(sp)
        if not fits:
            flat = tuple(v for pair in pads for v in pair)
            y = b.make("pad", y, pads=(0, 0, 0, 0) + flat, value=_fill(kind, x))
        y = _pool(b, kind, y, kernel, stride, dilation, padding)
        return _transpose(b, y, np.argsort(perm).tolist())

    convert.__name__ = f"convert_reduce_window_{kind}"
    return convert


CONVERTERS_SPATIAL: dict[str, Converter] = {
    "conv_general_dilated": _conv,
    "reduce_window_max": _reduce_window("max"),
    "reduce_window_sum": _reduce_window("sum"),
}
