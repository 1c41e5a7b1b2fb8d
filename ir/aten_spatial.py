"""ATen convolution, pooling, padding, resizing, normalization and sampling ops -> smelt (the
`ATEN` table of torch_aten.py, filled on import).

What each ATen op becomes (ir/ops/spatial.py and resample.py hold the new smelt ops):
- convolution: 2-d stays conv2d (torch_aten.py); 1-d is conv2d on a unit axis (input
  (N, C, 1, L), weight (O, I, 1, k); a constant weight is reshaped as a constant, so every
  conv2d pass and kernel applies), then the axis squeezed; 3-d is conv3d; transposed
  (1, 2 or 3-d, output_padding, groups, dilation) is conv_transpose.
- max_pool3d(_with_indices) -> max_pool3d; avg_pool3d -> avg_pool3d (divisor_override is
  its `divisor`); avg_pool2d with divisor_override -> avg_pool3d on a unit depth axis;
  _adaptive_avg_pool3d -> adaptive_avg_pool3d; adaptive_max_pool2d/3d -> adaptive_max_pool2d
  /3d (torch's 1-d pooling ops reach these as 2-d ops on a unit axis already). The indices
  results are not computed (using them raises).
- reflection_pad3d, replication_pad3d -> pad (reflect, edge).
- upsample_nearest1d/2d/3d, _upsample_nearest_exact1d/2d/3d, upsample_linear1d,
  upsample_bilinear2d, upsample_trilinear3d, upsample_bicubic2d (.vec and .default) -> resize
  with torch's output size and scale factors.
- native_group_norm: the groups as rows, layer_norm over each row, the affine per channel;
  mean and rstd by reductions when used.
- _native_batch_norm_legit (batch statistics: BatchNorm in training mode, InstanceNorm): the
  channels as rows (a transpose unless N = 1), layer_norm over each row, the affine; mean and
  rstd by reductions. With training=False it is inference batch_norm.
- grid_sampler_2d -> grid_sample.
- _cdist_forward: p = 2 where torch uses its matrix-product form (compute_mode 1, or rows > 25
  with compute_mode 0/None): sqrt(max(|x1|^2 + |x2|^2 - 2 x1 x2^T, 0)); otherwise the direct
  form over the broadcast difference d: sum |d|^p ^ (1/p) (p = 0: the count of nonzeros,
  1: sum |d|, 2: sqrt(sum d^2), inf: max |d|). _pdist_forward: the direct form over all pairs,
  then the upper triangle row by row (a constant take).
- im2col (nn.Unfold): a slice of the zero-padded input per kernel tap, concatenated;
  col2im (nn.Fold): each tap's columns spread to their positions (zeros between strides,
  then padding) and summed, the padding cropped.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .node import Node
from .ops.common import prod
from .ops.nn import conv_out_size
from .torch_aten import _Unsupported, aten, shape_of
from .torch_common import Builder, binary, cast, pad_pairs


def _reshaped(b: Builder, x: Node, shape: tuple[int, ...]) -> Node:
    """x in `shape`; a constant stays a constant (so passes see a constant weight)."""
    if x.shape == shape:
        return x
    if x.op == "constant":
        return Node.constant(np.asarray(x.value).reshape(shape), x.dtype)
    return b.make("reshape", x, shape=shape)


def _as_list(v, n: int) -> tuple[int, ...]:
    v = tuple(v) if isinstance(v, list | tuple) else (v,)
    return v * n if len(v) == 1 else v


# -- convolution ---------------------------------------------------------------------------
def convolution_nd(b: Builder, x: Node, w: Node, bias: Node | None, stride, padding, dilation,
                   transposed: bool, output_padding, groups: int) -> Node:
    """aten.convolution for what conv2d does not take: 1-d, 3-d and transposed."""
    rank = w.tensor_type.rank
    n = rank - 2
    if not 1 <= n <= 3:
        raise _Unsupported(f"{n}-d convolution (smelt maps 1-d, 2-d and 3-d)")
    extra = () if bias is None else (bias,)
    if transposed:
        return b.make("conv_transpose", x, w, *extra, stride=_as_list(stride, n),
                      padding=_as_list(padding, n), output_padding=_as_list(output_padding, n),
                      dilation=_as_list(dilation, n), groups=groups)
    if n == 3:
        return b.make("conv3d", x, w, *extra, stride=_as_list(stride, 3),
                      padding=_as_list(padding, 3), dilation=_as_list(dilation, 3),
                      groups=groups)
    xs = b.make("unsqueeze", x, axes=(2,))
    ws = _reshaped(b, w, w.shape[:2] + (1,) + w.shape[2:])
    y = b.make("conv2d", xs, ws, *extra, stride=(1, *_as_list(stride, 1)),
               padding=(0, *_as_list(padding, 1)), dilation=(1, *_as_list(dilation, 1)),
               groups=groups)
    return b.make("squeeze", y, axes=(2,))


# -- pooling -------------------------------------------------------------------------------
@aten("max_pool3d_with_indices", "max_pool3d")
def _max_pool3d(b: Builder, out, x, kernel, stride=(), padding=0, dilation=1,
                ceil_mode=False):
    y = b.make("max_pool3d", x, kernel=_as_list(kernel, 3), stride=_as_list(stride or kernel, 3),
               padding=_as_list(padding, 3), dilation=_as_list(dilation, 3),
               ceil_mode=ceil_mode)
    return (y, None) if isinstance(out, tuple | list) else y


@aten("avg_pool3d")
def _avg_pool3d(b: Builder, out, x, kernel, stride=(), padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None):
    return b.make("avg_pool3d", x, kernel=_as_list(kernel, 3),
                  stride=_as_list(stride or kernel, 3), padding=_as_list(padding, 3),
                  ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                  divisor=divisor_override)


def avg_pool2d_divisor(b: Builder, x: Node, kernel, stride, padding, ceil_mode: bool,
                       count_include_pad: bool, divisor: int) -> Node:
    """avg_pool2d with torch's divisor_override: avg_pool3d over a unit depth axis."""
    y = b.make("avg_pool3d", b.make("unsqueeze", x, axes=(2,)),
               kernel=(1, *_as_list(kernel, 2)), stride=(1, *_as_list(stride or kernel, 2)),
               padding=(0, *_as_list(padding, 2)), ceil_mode=ceil_mode,
               count_include_pad=count_include_pad, divisor=divisor)
    return b.make("squeeze", y, axes=(2,))


@aten("_adaptive_avg_pool3d", "adaptive_avg_pool3d")
def _adaptive_avg3d(b: Builder, out, x, output_size):
    size = _as_list(output_size, 3)
    return x if size == x.shape[2:] else b.make("adaptive_avg_pool3d", x, output_size=size)


@aten("avg_pool1d")
def _avg_pool1d(b: Builder, out, x, kernel, stride=(), padding=0, ceil_mode=False,
                count_include_pad=True):
    """(N, C, L) -> avg_pool2d over (N, C, 1, L) with a unit kernel height, squeezed."""
    y = b.make("avg_pool2d", b.make("unsqueeze", x, axes=(2,)),
               kernel=(1, *_as_list(kernel, 1)), stride=(1, *_as_list(stride or kernel, 1)),
               padding=(0, *_as_list(padding, 1)), ceil_mode=ceil_mode,
               count_include_pad=count_include_pad)
    return b.make("squeeze", y, axes=(2,))


@aten("adaptive_avg_pool1d")
def _adaptive_avg1d(b: Builder, out, x, output_size):
    """(N, C, L) -> adaptive_avg_pool2d over (N, C, 1, L) to (1, size), squeezed."""
    size = _as_list(output_size, 1)
    if size == x.shape[2:]:
        return x
    y = b.make("adaptive_avg_pool2d", b.make("unsqueeze", x, axes=(2,)),
               output_size=(1, *size))
    return b.make("squeeze", y, axes=(2,))


@aten("adaptive_max_pool2d", "adaptive_max_pool3d")
def _adaptive_max(b: Builder, out, x, output_size):
    n = x.tensor_type.rank - 2
    if n not in (2, 3):
        raise _Unsupported(f"adaptive max pooling of a rank-{n + 2} input (an unbatched input; "
                           "add the batch axis)")
    y = b.make(f"adaptive_max_pool{n}d", x, output_size=_as_list(output_size, n))
    return (y, None) if isinstance(out, tuple | list) else y


@aten("reflection_pad3d")
def _reflect3d(b: Builder, out, x, pad):
    return b.make("pad", x, pads=pad_pairs(pad, x.tensor_type.rank), mode="reflect")


@aten("replication_pad3d")
def _replicate3d(b: Builder, out, x, pad):
    return b.make("pad", x, pads=pad_pairs(pad, x.tensor_type.rank), mode="edge")


# -- resizing ------------------------------------------------------------------------------
_SCALE_NAMES = ("scale_factors", "scales", "scales_d", "scales_h", "scales_w")


def _upsample(mode: str, with_align: bool):
    """upsample_*(.vec: input, output_size, [align_corners,] scale_factors; .default: input,
    output_size, [align_corners,] scales per axis) -> resize."""

    def convert(b: Builder, out, x, output_size=None, *rest, **kw):
        rest = list(rest)
        align = kw.pop("align_corners", rest.pop(0) if with_align and rest else False)
        rest += [kw[k] for k in _SCALE_NAMES if k in kw]
        if len(rest) == 1 and isinstance(rest[0], list | tuple):
            rest = list(rest[0])
        scales = [s if s is not None and s > 0 else None for s in rest]
        if all(s is None for s in scales):
            scales = []
        elif any(s is None for s in scales):
            raise _Unsupported("a scale factor given for some axes only")
        size = shape_of(out, b)[2:]
        return b.make("resize", x, size=size, mode=mode, align_corners=bool(align),
                      scales=tuple(float(s) for s in scales))

    convert.__name__ = f"convert_upsample_{mode}"
    return convert


for _nd in (1, 2, 3):
    aten(f"upsample_nearest{_nd}d")(_upsample("nearest", False))
    aten(f"_upsample_nearest_exact{_nd}d")(_upsample("nearest_exact", False))
aten("upsample_linear1d", "upsample_bilinear2d", "upsample_trilinear3d")(
    _upsample("linear", True))
aten("upsample_bicubic2d")(_upsample("cubic", True))


# -- normalization -------------------------------------------------------------------------
def _rows_normalized(b: Builder, rows: Node, eps: float) -> tuple[Node, Node, Node]:
    """(layer_norm of each row, each row's mean, its 1 / sqrt(var + eps)) of a 2-D or 3-D
    `rows` normalized over its last axis; the statistics are built only if used."""
    y = b.make("layer_norm", rows, axis=-1, eps=eps)
    last = rows.tensor_type.rank - 1
    mean = b.make("reduce_mean", rows, axes=(last,), keepdims=True)
    centered = b.make("sub", rows, mean)
    var = b.make("reduce_mean", b.make("mul", centered, centered), axes=(last,))
    rstd = b.make("rsqrt", binary(b, "add", var, float(eps)))
    return y, b.make("squeeze", mean, axes=(last,)), rstd


def _affine(b: Builder, y: Node, weight: Node | None, bias: Node | None) -> Node:
    """y * weight + bias per channel (axis 1)."""
    per_channel = (y.shape[1],) + (1,) * (y.tensor_type.rank - 2)
    if weight is not None:
        y = b.make("mul", y, _reshaped(b, cast(b, weight, y.dtype), per_channel))
    if bias is not None:
        y = b.make("add", y, _reshaped(b, cast(b, bias, y.dtype), per_channel))
    return y


@aten("native_group_norm")
def _group_norm(b: Builder, out, x, weight, bias, n, c, hw, group, eps):
    shape = x.shape
    rows = _reshaped(b, x, (shape[0], group, prod(shape[1:]) // group))
    y, mean, rstd = _rows_normalized(b, rows, eps)
    return (_affine(b, _reshaped(b, y, shape), weight, bias), mean, rstd)


@aten("_native_batch_norm_legit")
def _batch_stats_norm(b: Builder, out, x, weight, bias, *rest):
    """.no_stats (x, w, b, training, momentum, eps) or .default (x, w, b, running_mean,
    running_var, training, momentum, eps)."""
    training, eps = rest[-3], rest[-1]
    if not training:
        mean, var = rest[0], rest[1]
        args = [x, mean, var] + ([weight, bias] if weight is not None else [])
        if weight is None and bias is not None:
            raise _Unsupported("batch norm with a bias but no weight")
        return (b.make("batch_norm", *args, eps=eps), None, None)
    shape, rank = x.shape, x.tensor_type.rank
    perm = (1, 0) + tuple(range(2, rank))
    moved = x if shape[0] == 1 else b.make("transpose", x, perm=perm)
    rows = _reshaped(b, moved, (shape[1], prod(shape) // shape[1]))
    y, mean, rstd = _rows_normalized(b, rows, eps)
    y = _reshaped(b, y, moved.shape)
    y = y if shape[0] == 1 else b.make("transpose", y, perm=perm)
    return (_affine(b, y, weight, bias), mean, rstd)


# -- sampling ------------------------------------------------------------------------------
@aten("grid_sampler_2d")
def _grid_sampler(b: Builder, out, x, grid, interpolation_mode, padding_mode, align_corners):
    modes, paddings = ("bilinear", "nearest", "bicubic"), ("zeros", "border", "reflection")
    return b.make("grid_sample", x, cast(b, grid, x.dtype), mode=modes[interpolation_mode],
                  padding_mode=paddings[padding_mode], align_corners=bool(align_corners))


# -- distances -----------------------------------------------------------------------------
def _pnorm_of_difference(b: Builder, d: Node, p: float) -> Node:
    """sum |d|^p ^ (1/p) over the last axis (0: the count of nonzeros, inf: max |d|)."""
    last = (d.tensor_type.rank - 1,)
    if p == 0:
        nonzero = cast(b, binary(b, "not_equal", d, 0.0), d.dtype)
        return b.make("reduce_sum", nonzero, axes=last)
    if p == math.inf:
        return b.make("reduce_max", b.make("abs", d), axes=last)
    if p == 2:
        return b.make("sqrt", b.make("reduce_sum", b.make("mul", d, d), axes=last))
    a = b.make("abs", d)
    if p == 1:
        return b.make("reduce_sum", a, axes=last)
    return binary(b, "pow", b.make("reduce_sum", binary(b, "pow", a, float(p)), axes=last),
                  1.0 / p)


def _swap_last(b: Builder, x: Node) -> Node:
    r = x.tensor_type.rank
    return b.make("transpose", x, perm=tuple(range(r - 2)) + (r - 1, r - 2))


@aten("_cdist_forward")
def _cdist(b: Builder, out, x1, x2, p, compute_mode=None):
    if p < 0:
        raise _Unsupported(f"cdist with p = {p} (torch takes p >= 0)")
    rows = max(x1.shape[-2], x2.shape[-2])
    if p == 2 and (compute_mode == 1 or (compute_mode in (None, 0) and rows > 25)):
        last = (x1.tensor_type.rank - 1,)
        n1 = b.make("reduce_sum", b.make("mul", x1, x1), axes=last, keepdims=True)
        n2 = b.make("reduce_sum", b.make("mul", x2, x2), axes=last, keepdims=True)
        cross = binary(b, "mul", b.make("matmul", x1, _swap_last(b, x2)), -2.0)
        sq = b.make("add", b.make("add", cross, n1), _swap_last(b, n2))
        return b.make("sqrt", b.make("clamp", sq, min=0.0, max=None))
    d = b.make("sub", b.make("unsqueeze", x1, axes=(x1.tensor_type.rank - 1,)),
               b.make("unsqueeze", x2, axes=(x2.tensor_type.rank - 2,)))
    return _pnorm_of_difference(b, d, float(p))


@aten("_pdist_forward")
def _pdist(b: Builder, out, x, p=2.0):
    n = x.shape[0]
    if n < 2:
        raise _Unsupported("pdist of fewer than two rows (an empty result)")
    d = b.make("sub", b.make("unsqueeze", x, axes=(1,)), b.make("unsqueeze", x, axes=(0,)))
    full = _reshaped(b, _pnorm_of_difference(b, d, float(p)), (n * n,))
    pairs = np.array([i * n + j for i in range(n) for j in range(i + 1, n)], np.int64)
    return b.make("take", full, Node.constant(pairs), axis=0)


# -- im2col / col2im -----------------------------------------------------------------------
def _patch_geometry(size, kernel, dilation, padding, stride):
    k, d, p, s = (_as_list(v, 2) for v in (kernel, dilation, padding, stride))
    blocks = tuple(conv_out_size(size[i], k[i], s[i], p[i], p[i], d[i]) for i in range(2))
    return k, d, p, s, blocks


@aten("im2col")
def _im2col(b: Builder, out, x, kernel, dilation, padding, stride):
    if x.tensor_type.rank != 4:
        raise _Unsupported("im2col of an unbatched input (add the batch axis)")
    nb, c = x.shape[:2]
    k, d, p, s, blocks = _patch_geometry(x.shape[2:], kernel, dilation, padding, stride)
    xp = b.make("pad", x, pads=(0, 0, 0, 0, p[0], p[0], p[1], p[1])) if any(p) else x
    taps = []
    for i, j in itertools.product(range(k[0]), range(k[1])):
        t = b.make("slice", xp, axis=2, start=i * d[0], stop=i * d[0] + (blocks[0] - 1) * s[0]
                   + 1, step=s[0])
        t = b.make("slice", t, axis=3, start=j * d[1], stop=j * d[1] + (blocks[1] - 1) * s[1]
                   + 1, step=s[1])
        taps.append(_reshaped(b, t, (nb, c, 1, blocks[0] * blocks[1])))
    cols = taps[0] if len(taps) == 1 else b.make("concat", *taps, axis=2)
    return _reshaped(b, cols, (nb, c * k[0] * k[1], blocks[0] * blocks[1]))


def _spread(b: Builder, t: Node, axis: int, step: int, before: int, total: int) -> Node:
    """t's entries along `axis` placed `step` apart from `before` on, in a zero axis of
    length `total`."""
    n = t.shape[axis]
    if step > 1:  # zeros between entries: a unit axis padded to `step`, merged, trimmed
        u = b.make("unsqueeze", t, axes=(axis + 1,))
        pads = [0] * (2 * u.tensor_type.rank)
        pads[2 * (axis + 1) + 1] = step - 1
        u = b.make("pad", u, pads=tuple(pads))
        shape = t.shape[:axis] + (n * step,) + t.shape[axis + 1:]
        t = b.make("slice", _reshaped(b, u, shape), axis=axis, start=0, stop=(n - 1) * step + 1)
    pads = [0] * (2 * t.tensor_type.rank)
    pads[2 * axis], pads[2 * axis + 1] = before, total - before - t.shape[axis]
    return b.make("pad", t, pads=tuple(pads)) if any(pads) else t


@aten("col2im")
def _col2im(b: Builder, out, x, output_size, kernel, dilation, padding, stride):
    if x.tensor_type.rank != 3:
        raise _Unsupported("col2im of an unbatched input (add the batch axis)")
    size = _as_list(output_size, 2)
    k, d, p, s, blocks = _patch_geometry(size, kernel, dilation, padding, stride)
    nb, ckk, _ = x.shape
    c = ckk // (k[0] * k[1])
    cols = _reshaped(b, x, (nb, c, k[0] * k[1], *blocks))
    padded = (size[0] + 2 * p[0], size[1] + 2 * p[1])
    total = None
    for t, (i, j) in enumerate(itertools.product(range(k[0]), range(k[1]))):
        tap = _reshaped(b, b.make("slice", cols, axis=2, start=t, stop=t + 1), (nb, c, *blocks))
        tap = _spread(b, tap, 2, s[0], i * d[0], padded[0])
        tap = _spread(b, tap, 3, s[1], j * d[1], padded[1])
        total = tap if total is None else b.make("add", total, tap)
    if any(p):
        total = b.make("slice", total, axis=2, start=p[0], stop=p[0] + size[0])
        total = b.make("slice", total, axis=3, start=p[1], stop=p[1] + size[1])
    return total


__all__ = ["avg_pool2d_divisor", "convolution_nd"]
