"""The generic lowering of the spatial ops (ir/ops/spatial.py, resample.py) to TVM Relax.

- conv3d and conv_transpose: Relax's conv3d and conv1d/2d/3d_transpose (matched against
  the reference in tests/test_backend_ops.py), the bias added after.
- max_pool3d and adaptive max pooling: TE kernels with the NaN-propagating, -inf-based max
  of te_kernels.py (TVM's max drops NaN and starts from the lowest finite value).
- avg_pool3d: a TE window sum over the zero-padded input, divided by the reference's own
  divisors (pool_counts, or the divisor attribute) bound as a constant.
- adaptive_avg_pool3d: a TE sum over each bin divided by the bin's size (TVM's own kernel has
  no GPU schedule).
- resize: per axis, gathers at the reference's constant tap indices times its constant
  weights (resize_plan), the same sums in the same order as the reference.
- grid_sample: a TE kernel computing the reference's coordinates in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tvm import relax, te, tirx

from smelt.ir.node import Node
from smelt.ir.ops.resample import CUBIC_A
from smelt.ir.ops.resample import resize_plan as _resize_plan
from smelt.ir.ops.spatial import (
    adaptive_bins,
    axes_of,
    conv_pads,
    lowest,
    pool_counts,
    pool_pads,
    pool_params,
)
from smelt.ir.types import numpy_dtype

from . import te_kernels as K
from .registry import lowers

R = relax.op


def _bias(bb, y, xs, rank: int):
    if len(xs) < 3:
        return y
    return R.add(bb.emit(y), bb.emit(R.reshape(xs[2], (1, -1) + (1,) * (rank - 2))))


@lowers("conv3d")
def _conv3d(bb, n: Node, xs):
    a = n.attrs
    lo, hi = conv_pads(a["padding"], 3)
    y = R.nn.conv3d(xs[0], xs[1], strides=axes_of("stride", a["stride"], 3), padding=lo + hi,
                    dilation=axes_of("dilation", a["dilation"], 3), groups=a["groups"])
    return _bias(bb, y, xs, 5)


_TRANSPOSED = {1: R.nn.conv1d_transpose, 2: R.nn.conv2d_transpose, 3: R.nn.conv3d_transpose}


@lowers("conv_transpose")
def _conv_transpose(bb, n: Node, xs):
    a = n.attrs
    nd = len(n.shape) - 2
    s, p, op, d = (axes_of(k, a[k], nd) for k in ("stride", "padding", "output_padding",
                                                   "dilation"))
    conv = _TRANSPOSED[nd]
    if all(o < si for o, si in zip(op, s, strict=True)):
        y = conv(xs[0], xs[1], strides=s, padding=p + p, output_padding=op, dilation=d,
                 groups=a["groups"])
        return _bias(bb, y, xs, nd + 2)
    # Relax wants output_padding below the stride (torch: below the stride or the dilation):
    # the uncropped result, zeros past its end (no tap reaches there), then the crop
    y = bb.emit(conv(xs[0], xs[1], strides=s, padding=(0,) * (2 * nd), dilation=d,
                     groups=a["groups"]))
    y = bb.emit(R.nn.pad(y, [0, 0, 0, 0] + [v for o in op for v in (0, o)]))
    y = R.strided_slice(y, axes=list(range(2, nd + 2)), begin=list(p),
                        end=[pi + size for pi, size in zip(p, n.shape[2:], strict=True)],
                        assume_inbound=True)
    return _bias(bb, y, xs, nd + 2)


# -- pooling -------------------------------------------------------------------------------
def padded(x: te.Tensor, pads, fill) -> te.Tensor:
    """x with its spatial axes (2, 3, ...) padded by pads[i] = (before, after) with `fill`."""
    if not any(a or b for a, b in pads):
        return x
    shape = [int(v) for v in x.shape]
    out = shape[:2] + [shape[2 + i] + a + b for i, (a, b) in enumerate(pads)]

    def pad(*idx):
        sp = idx[2:]
        inside = tirx.all(*(c for i, (a, _) in enumerate(pads)
                            for c in (sp[i] >= a, sp[i] < shape[2 + i] + a)))
        src = (*idx[:2], *(sp[i] - pads[i][0] for i in range(len(pads))))
        return tirx.if_then_else(inside, x[src], fill)

    return te.compute(out, pad, name="pad")


def window_reduce(x: te.Tensor, k, s, d, out, reduce: Callable, name: str) -> te.Tensor:
    """reduce(x[b, c, o * s + r * d]) over the window r, for each output position o."""
    r = [te.reduce_axis((0, kk), f"r{i}") for i, kk in enumerate(k)]

    def body(*idx):
        o = idx[2:]
        src = (*idx[:2], *(o[i] * s[i] + r[i] * d[i] for i in range(len(k))))
        return reduce(x[src], axis=r)

    return te.compute((*x.shape[:2], *out), body, name=name)


def max_pool_nd(x: te.Tensor, k, s, d, pads, out) -> te.Tensor:
    dtype = str(x.dtype)
    xp = padded(x, pads, K.const(lowest(numpy_dtype(dtype)), dtype))
    return window_reduce(xp, k, s, d, out, K.extremum_reducer(dtype, True), "max_pool3d")


def sum_pool_nd(x: te.Tensor, k, s, pads, out) -> te.Tensor:
    xp = padded(x, pads, K.const(0, str(x.dtype)))
    return window_reduce(xp, k, s, (1,) * len(k), out, te.sum, "sum_pool3d")


@lowers("max_pool3d")
def _max_pool3d(bb, n: Node, xs):
    k, s, p, d = pool_params(n.attrs, 3)
    pads = pool_pads(n.inputs[0].shape, k, s, p, d, n.shape[2:])
    return bb.call_te(max_pool_nd, xs[0], k, s, d, pads, n.shape[2:],
                      primfunc_name_hint="max_pool3d")


@lowers("avg_pool3d")
def _avg_pool3d(bb, n: Node, xs):
    k, s, p, _ = pool_params(n.attrs, 3)
    out = n.shape[2:]
    pads = pool_pads(n.inputs[0].shape, k, s, p, (1, 1, 1), out)
    total = bb.emit(bb.call_te(sum_pool_nd, xs[0], k, s, pads, out,
                               primfunc_name_hint="sum_pool3d"))
    dtype = numpy_dtype(n.dtype)
    if n.attrs["divisor"] is not None:
        return R.divide(total, relax.const(np.asarray(n.attrs["divisor"], dtype), n.dtype))
    counts = pool_counts(n.inputs[0].shape, k, s, p, out, n.attrs["count_include_pad"])
    return R.divide(total, relax.const(counts.astype(dtype), n.dtype))


def adaptive_reduce(x: te.Tensor, out, largest: bool) -> te.Tensor:
    """Max (or sum) over each adaptive bin [floor(o L / n), ceil((o + 1) L / n)): a
    reduction over the widest bin, reading -inf (0) past a bin's end."""
    dtype = str(x.dtype)
    sizes = [int(v) for v in x.shape[2:]]
    widest = [max(e - b for b, e in adaptive_bins(L, m)) for L, m in zip(sizes, out,
                                                                         strict=True)]
    r = [te.reduce_axis((0, w), f"r{i}") for i, w in enumerate(widest)]
    fill = K.const(lowest(numpy_dtype(dtype)) if largest else 0, dtype)
    red = K.extremum_reducer(dtype, True) if largest else te.sum

    def body(*idx):
        o = idx[2:]
        pos, inside = [], []
        for i, (L, m) in enumerate(zip(sizes, out, strict=True)):
            start = tirx.floordiv(o[i] * L, m)
            end = tirx.floordiv((o[i] + 1) * L + m - 1, m)
            pos.append(tirx.min(start + r[i], L - 1))
            inside.append(start + r[i] < end)
        return red(tirx.if_then_else(tirx.all(*inside), x[(*idx[:2], *pos)], fill), axis=r)

    return te.compute((*x.shape[:2], *out), body,
                      name="adaptive_max_pool" if largest else "adaptive_sum_pool")


@lowers("adaptive_max_pool2d", "adaptive_max_pool3d")
def _adaptive_max(bb, n: Node, xs):
    return bb.call_te(adaptive_reduce, xs[0], n.shape[2:], True, primfunc_name_hint=n.op)


@lowers("adaptive_avg_pool3d")
def _adaptive_avg3d(bb, n: Node, xs):
    """The bins' sums over their sizes (a constant); TVM's own kernel has no GPU schedule."""
    total = bb.emit(bb.call_te(adaptive_reduce, xs[0], n.shape[2:], False,
                               primfunc_name_hint="adaptive_sum_pool3d"))
    lengths = [[e - b for b, e in adaptive_bins(L, m)]
               for L, m in zip(n.inputs[0].shape[2:], n.shape[2:], strict=True)]
    count = np.einsum("i,j,k->ijk", *(np.asarray(v, np.float64) for v in lengths))
    return R.divide(total, relax.const(count.astype(numpy_dtype(n.dtype)), n.dtype))


# -- resampling ----------------------------------------------------------------------------
@lowers("resize")
def _resize(bb, n: Node, xs):
    x_shape = n.inputs[0].shape
    dtype = numpy_dtype(n.dtype)
    y, out = xs[0], None
    for axis, idx, w in _resize_plan(x_shape, n.attrs):
        if out is not None:
            y = bb.emit(out)
        if w is None:
            out = R.take(y, relax.const(idx[0].astype(np.int64)), axis=axis, mode="clip")
            continue
        shape = [1] * len(x_shape)
        shape[axis] = -1
        out = None
        for t in range(len(idx)):
            part = bb.emit(R.take(y, relax.const(idx[t].astype(np.int64)), axis=axis,
                                   mode="clip"))
            weight = relax.const(w[t].astype(dtype).reshape(shape), n.dtype)
            term = R.multiply(part, weight)
            out = term if out is None else R.add(bb.emit(out), bb.emit(term))
    return out


F64 = "float64"
OPAQUE = 8  # TVM's kOpaque op pattern: FuseOps leaves the kernel on its own


def _f64(v: float) -> tirx.PrimExpr:
    return K.const(v, F64)


def _let(value, body):
    """body(v) with v bound once to value (a Let, so the expression does not repeat it)."""
    v = tirx.Var("v", value.ty if hasattr(value, "ty") else F64)
    return tirx.Let(v, value, body(v))


def _clip(c, lo: float, hi: float):
    return _let(c, lambda v: tirx.Select(v < _f64(lo), _f64(lo),
                                         tirx.Select(v > _f64(hi), _f64(hi), v)))


def _unnormalize(g, size: int, align_corners: bool):
    g = g.astype(F64)
    if align_corners:
        return (g + _f64(1)) / _f64(2) * _f64(size - 1)
    return ((g + _f64(1)) * _f64(size) - _f64(1)) / _f64(2)


def _reflect(c, twice_low: int, twice_high: int):
    """torch's reflect_coordinates, t = |c - low| folded by span: flips = floor(t / span)
    and extra = fmod(t, span) = t - span flips, exact (span is integral), plus one span when
    the rounded quotient came out one too large (the remainder is then negative)."""
    if twice_low == twice_high:
        return _f64(0)
    low, span = _f64(twice_low / 2), _f64((twice_high - twice_low) / 2)

    def folded(t):
        def by_flips(flips):
            def by_rest(r):
                extra = tirx.Select(r < _f64(0), r + span, r)
                even = tirx.EQ(flips - _f64(2) * tirx.floor(flips / _f64(2)), _f64(0))
                return _let(extra, lambda e: tirx.Select(even, e + low, span - e + low))

            return _let(t - span * flips, by_rest)

        return _let(tirx.floor(t / span), by_flips)

    return _let(tirx.abs(c - low), folded)


def _pad_coordinate(c, size: int, padding_mode: str, align_corners: bool):
    if padding_mode == "zeros":
        return c
    if padding_mode == "reflection":
        c = _reflect(c, 0, 2 * (size - 1)) if align_corners else _reflect(c, -1, 2 * size - 1)
    return _clip(c, 0, size - 1)


def _cubic_weight(t, tap: int):
    """Keys' weight (A = -0.75) of tap -1, 0, 1 or 2 (`tap` 0..3) at fraction t."""
    a, one, two = _f64(CUBIC_A), _f64(1), _f64(2)
    if tap in (1, 2):
        v = t if tap == 1 else one - t
        return ((a + two) * v - (a + _f64(3))) * v * v + one
    v = t + one if tap == 0 else two - t
    return ((a * v - _f64(5) * a) * v + _f64(8) * a) * v - _f64(4) * a


def _by_tap(shape, fn, name: str) -> te.Tensor:
    """A (*shape, 4) stage whose last index q holds fn(*index, q), q = 0..3."""
    def body(*idx):
        *at, q = idx
        v = [fn(*at, tap) for tap in range(4)]
        return tirx.Select(q == 0, v[0], tirx.Select(q == 1, v[1],
                                                     tirx.Select(q == 2, v[2], v[3])))

    return te.compute((*shape, 4), body, name=name)


def grid_taps(grid: te.Tensor, size_hw: tuple[int, int], mode: str, padding_mode: str,
              align_corners: bool, dt: str) -> list[te.Tensor]:
    """Per output point: the rows and columns it reads (int32, clamped to [-4, size + 3])
    and their weights in x's dtype: nearest (row, col); bilinear (rows 2, cols 2, weights 4
    in the order nw, ne, sw, se); bicubic (rows 4, cols 4, row weights 4, column weights 4)."""
    h, w = size_hw
    pts = tuple(int(v) for v in grid.shape[:3])

    def coord(b, i, j, a: int):
        size = (w, h)[a]
        c = _unnormalize(grid[b, i, j, a], size, align_corners)
        return c if mode == "bicubic" else _pad_coordinate(c, size, padding_mode,
                                                           align_corners)

    def index(c, size: int):
        return _clip(c, -4, size + 3).astype("int32")

    def taps(a: int, count: int, name: str, fn) -> te.Tensor:
        size = (w, h)[a]
        return te.compute((*pts, count), lambda b, i, j, t: index(fn(coord(b, i, j, a), t),
                                                                  size), name=name)

    if mode == "nearest":
        return [taps(a, 1, "xy"[a], lambda c, t: tirx.nearbyint(c)) for a in (1, 0)]
    if mode == "bilinear":
        ys, xs = (taps(a, 2, "xy"[a], lambda c, t: tirx.floor(c) + t.astype(F64))
                  for a in (1, 0))

        def weights(ix, iy, k):
            x0, y0 = tirx.floor(ix), tirx.floor(iy)
            wx = [x0 + _f64(1) - ix, ix - x0]
            wy = [y0 + _f64(1) - iy, iy - y0]
            v = [(wx[q] * wy[r]).astype(dt) for r in range(2) for q in range(2)]
            return tirx.Select(k == 0, v[0], tirx.Select(k == 1, v[1], tirx.Select(
                k == 2, v[2], v[3])))

        def weight(b, i, j, k):  # each coordinate bound once: a Let may not be repeated
            return _let(coord(b, i, j, 0), lambda ix: _let(coord(b, i, j, 1),
                                                           lambda iy: weights(ix, iy, k)))

        return [ys, xs, te.compute((*pts, 4), weight, name="weights")]

    def tap(a: int):
        size = (w, h)[a]
        return lambda c, t: _pad_coordinate(tirx.floor(c) + t.astype(F64) - _f64(1), size,
                                            padding_mode, align_corners)

    ys, xs = taps(1, 4, "y", tap(1)), taps(0, 4, "x", tap(0))
    wy, wx = (_by_tap(pts, lambda b, i, j, q, a=a: _cubic_weight(
        coord(b, i, j, a) - tirx.floor(coord(b, i, j, a)), q).astype(dt), f"w{'xy'[a]}")
        for a in (1, 0))
    return [ys, xs, wy, wx]


def grid_gather(x: te.Tensor, *taps: te.Tensor) -> te.Tensor:
    """The weighted sum of the taps of grid_taps, in the reference's order."""
    n, c, h, w = (int(v) for v in x.shape)
    ys, xs = taps[:2]
    dt = str(x.dtype)

    def read(b, ch, i, j, r, q):
        iy, ix = ys[b, i, j, r], xs[b, i, j, q]
        inside = tirx.all(ix >= 0, ix < w, iy >= 0, iy < h)
        at = x[b, ch, tirx.min(tirx.max(iy, 0), h - 1), tirx.min(tirx.max(ix, 0), w - 1)]
        return tirx.Select(inside, at, K.const(0, dt))

    def body(b, ch, i, j):
        if len(taps) == 2:
            return read(b, ch, i, j, 0, 0)
        if len(taps) == 3:
            out = None
            for k in range(4):
                term = read(b, ch, i, j, k // 2, k % 2) * taps[2][b, i, j, k]
                out = term if out is None else out + term
            return out
        wy, wx = taps[2:]
        out = None
        for r in range(4):
            row = None
            for q in range(4):
                t = read(b, ch, i, j, r, q) * wx[b, i, j, q]
                row = t if row is None else row + t
            out = row * wy[b, i, j, r] if out is None else out + row * wy[b, i, j, r]
        return out

    return te.compute((n, c, *ys.shape[1:3]), body, name="grid_sample")


@lowers("grid_sample")
def _grid_sample(bb, n: Node, xs):
    """Two kernels: the taps (per output point, shared by every channel) and the gather; the
    taps' kernel is marked opaque, so fusion does not inline its coordinate arithmetic into
    every read of the gather."""
    a = n.attrs
    x_shape = n.inputs[0].shape
    taps = bb.emit(bb.call_te(grid_taps, xs[1], x_shape[2:], a["mode"], a["padding_mode"],
                              a["align_corners"], n.dtype, primfunc_name_hint="grid_taps",
                              primfunc_attrs={"op_pattern": OPAQUE}))
    count = {"nearest": 2, "bilinear": 3, "bicubic": 4}[a["mode"]]
    parts = [bb.emit(relax.TupleGetItem(taps, i)) for i in range(count)]
    return bb.call_te(grid_gather, xs[0], *parts, primfunc_name_hint="grid_sample")
