"""Reference cases of the spatial ops (ir/ops/spatial.py, resample.py), drawn by hypothesis
and computed independently by torch in float64.

Merged into test_ops_reference's CASES (which imports this module after defining Case and
Example), so test_ops_reference, test_backend_ops, test_ops_on_targets and test_interop run
every case here.

- conv3d and conv_transpose draw groups (dense, depthwise, grouped), kernel sizes, strides,
  dilations and paddings (conv3d's asymmetric too; conv_transpose's output_padding below the
  stride or dilation, as torch requires) over 1 to 3 spatial axes; K is the products summed
  per output element.
- pooling draws torch's padding rule (at most half the kernel), ceil mode, dilation (max),
  count_include_pad and divisor_override (average); max pooling plants NaN and infinities.
- resize calls torch's upsample kernels directly (torch.ops.aten.upsample_*), whose output
  size and scale factors are independent arguments, as resize's are: sizes 1 to 12 from
  inputs 1 to 8, scale factors drawn around in / out, half the time none.
- grid_sample draws grid points on a lattice of 1/64 (so every coordinate is exact in float32
  and float64 and the nearest pixel is the same in both) within [-1.3, 1.3], so border,
  reflection and zeros padding all act.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from test_ops_reference import Case, Example, values

FLOAT = st.sampled_from(["float32", "float32", "float64"])


def _dot_term(*arrays: np.ndarray) -> float:
    return math.prod(float(np.abs(a).max(initial=0)) for a in arrays[:2]) + (
        float(np.abs(arrays[2]).max(initial=0)) if len(arrays) > 2 else 0.0)


def _per_axis(draw: st.DrawFn, n: int, lo: int, hi: int) -> list[int]:
    """One value for all axes, or one per axis."""
    if draw(st.booleans()):
        return [draw(st.integers(lo, hi))]
    return [draw(st.integers(lo, hi)) for _ in range(n)]


def _full(v: list[int], n: int) -> list[int]:
    return v * n if len(v) == 1 else v


# -- convolution ---------------------------------------------------------------------------
@st.composite
def conv3d_examples(draw: st.DrawFn) -> Example:
    groups = draw(st.integers(1, 2))
    cin_g = 1 if draw(st.booleans()) else draw(st.integers(1, 2))
    out_g = draw(st.integers(1, 2))
    k = [draw(st.integers(1, 3)) for _ in range(3)]
    dil = _per_axis(draw, 3, 1, 2)
    form = draw(st.sampled_from([1, 3, 6]))
    padding = [draw(st.integers(0, 2)) for _ in range(form)]
    lo = padding * 3 if form == 1 else padding[:3]
    hi = padding * 3 if form == 1 else (padding[:3] if form == 3 else padding[3:])
    d = _full(dil, 3)
    size = [draw(st.integers(max(1, d[i] * (k[i] - 1) + 1 - lo[i] - hi[i]), 6))
            for i in range(3)]
    dtype = draw(FLOAT)
    x = draw(values((draw(st.integers(1, 2)), groups * cin_g, *size), dtype))
    w = draw(values((groups * out_g, cin_g, *k), dtype))
    args = (x, w) + ((draw(values((groups * out_g,), dtype)),) if draw(st.booleans()) else ())
    attrs = {"stride": _per_axis(draw, 3, 1, 2), "padding": padding, "dilation": dil,
             "groups": groups}
    return Example(args, attrs, k=cin_g * math.prod(k), term=_dot_term(*args))


def torch_conv3d(x, w, b=None, *, stride, padding, dilation, groups):
    lo = padding * 3 if len(padding) == 1 else padding[:3]
    hi = padding * 3 if len(padding) == 1 else (padding[:3] if len(padding) == 3 else
                                                padding[3:])
    x = F.pad(x, (lo[2], hi[2], lo[1], hi[1], lo[0], hi[0]))
    return F.conv3d(x, w, b, stride=_full(stride, 3), dilation=_full(dilation, 3),
                    groups=groups)


@st.composite
def conv_transpose_examples(draw: st.DrawFn) -> Example:
    n = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cin_g, out_g = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k = [draw(st.integers(1, 3)) for _ in range(n)]
    s, d = _per_axis(draw, n, 1, 3), _per_axis(draw, n, 1, 2)
    sf, df = _full(s, n), _full(d, n)
    size = [draw(st.integers(1, 5 if n < 3 else 3)) for _ in range(n)]
    # padding: the output, (L - 1) s + d (k - 1) + 1 - 2 p + op, must stay >= 1
    pmax = min((size[i] - 1) * sf[i] + df[i] * (k[i] - 1) for i in range(n)) // 2
    p = _per_axis(draw, n, 0, pmax)
    op = [draw(st.integers(0, max(sf[i], df[i]) - 1)) for i in range(n)]
    dtype = draw(FLOAT)
    x = draw(values((draw(st.integers(1, 2)), groups * cin_g, *size), dtype))
    w = draw(values((groups * cin_g, out_g, *k), dtype))
    args = (x, w) + ((draw(values((groups * out_g,), dtype)),) if draw(st.booleans()) else ())
    attrs = {"stride": s, "padding": p, "output_padding": op, "dilation": d, "groups": groups}
    return Example(args, attrs, k=cin_g * math.prod(k), term=_dot_term(*args))


def torch_conv_transpose(x, w, b=None, *, stride, padding, output_padding, dilation, groups):
    n = x.dim() - 2
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
    return fn(x, w, b, _full(stride, n), _full(padding, n), _full(output_padding, n), groups,
              _full(dilation, n))


# -- pooling -------------------------------------------------------------------------------
@st.composite
def pool3d_examples(draw: st.DrawFn, op: str) -> Example:
    dilated = op == "max_pool3d"
    kernel = [draw(st.integers(1, 3)) for _ in range(3)]
    pad = [draw(st.integers(0, kk // 2)) for kk in kernel]
    dil = [draw(st.integers(1, 2)) if dilated else 1 for _ in kernel]
    # torch's avg_pool3d also wants the input at least the kernel, padding aside
    size = [draw(st.integers(max(1, d * (kk - 1) + 1 - 2 * p, 1 if dilated else kk), 6))
            for kk, p, d in zip(kernel, pad, dil, strict=True)]
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), *size)
    x = draw(values(shape, draw(st.sampled_from(["float32", "float64"])), specials=dilated))
    attrs = {"kernel": kernel, "padding": pad, "ceil_mode": draw(st.booleans()),
             "stride": draw(st.sampled_from([[], [1], [2], [1, 2, 1], [2, 1, 3]]))}
    if dilated:
        attrs["dilation"] = dil
    else:
        attrs["count_include_pad"] = draw(st.booleans())
        attrs["divisor"] = draw(st.sampled_from([None, None, 1, 3, 7, -2]))
    return Example((x,), attrs, k=math.prod(kernel))


def torch_max_pool3d(x, *, kernel, stride, padding, dilation, ceil_mode):
    return F.max_pool3d(x, kernel, stride or None, padding, dilation, ceil_mode=ceil_mode)


def torch_avg_pool3d(x, *, kernel, stride, padding, ceil_mode, count_include_pad, divisor):
    return F.avg_pool3d(x, kernel, stride or None, padding, ceil_mode=ceil_mode,
                        count_include_pad=count_include_pad, divisor_override=divisor)


@st.composite
def adaptive_examples(draw: st.DrawFn, nd: int, specials: bool) -> Example:
    spatial = tuple(draw(st.integers(1, 9 if nd == 2 else 6)) for _ in range(nd))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *spatial)
    size = [draw(st.integers(1, s + 2)) for s in spatial]
    x = draw(values(shape, draw(st.sampled_from(["float32", "float64"])), specials=specials))
    k = math.prod(math.ceil(s / o + 1) for s, o in zip(spatial, size, strict=True))
    return Example((x,), {"output_size": size}, k=k)


# -- resizing ------------------------------------------------------------------------------
_UPSAMPLE = {("nearest", 1): "upsample_nearest1d", ("nearest", 2): "upsample_nearest2d",
             ("nearest", 3): "upsample_nearest3d", ("nearest_exact", 1):
             "_upsample_nearest_exact1d", ("nearest_exact", 2): "_upsample_nearest_exact2d",
             ("nearest_exact", 3): "_upsample_nearest_exact3d", ("linear", 1):
             "upsample_linear1d", ("linear", 2): "upsample_bilinear2d", ("linear", 3):
             "upsample_trilinear3d", ("cubic", 2): "upsample_bicubic2d"}


@st.composite
def resize_examples(draw: st.DrawFn) -> Example:
    n = draw(st.integers(1, 3))
    modes = ["nearest", "nearest_exact", "linear"] + (["cubic"] if n == 2 else [])
    mode = draw(st.sampled_from(modes))
    spatial = [draw(st.integers(1, 8 if n < 3 else 5)) for _ in range(n)]
    size = [draw(st.integers(1, 12 if n < 3 else 7)) for _ in range(n)]
    x = draw(values((draw(st.integers(1, 2)), draw(st.integers(1, 2)), *spatial),
                    draw(st.sampled_from(["float32", "float64"]))))
    scales: list[float] = []
    if draw(st.booleans()):  # near out / in (as scale_factor gives them), or any
        scales = [draw(st.sampled_from([o / i, o / i + 0.1, (o + 0.5) / i, 2.0, 0.5, 1.1]))
                  for o, i in zip(size, spatial, strict=True)]
    align = mode in ("linear", "cubic") and draw(st.booleans())
    taps = {"nearest": 1, "nearest_exact": 1, "linear": 2, "cubic": 4}[mode]
    attrs = {"size": size, "mode": mode, "align_corners": align, "scales": scales}
    return Example((x,), attrs, k=taps ** n, term=float(np.abs(x).max()) * 1.6 ** n)


def torch_resize(x, *, size, mode, align_corners, scales):
    fn = getattr(torch.ops.aten, _UPSAMPLE[mode, len(size)]).default
    per_axis = list(scales) if scales else [None] * len(size)
    if mode in ("linear", "cubic"):
        return fn(x, list(size), align_corners, *per_axis)
    return fn(x, list(size), *per_axis)


@st.composite
def grid_sample_examples(draw: st.DrawFn) -> Example:
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    ho, wo = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    x = draw(values((n, c, h, w), dtype))
    ticks = st.integers(-83, 83).map(lambda t: t / 64)  # [-1.3, 1.3] on a 1/64 lattice
    grid = np.array(draw(st.lists(ticks, min_size=n * ho * wo * 2, max_size=n * ho * wo * 2)),
                    dtype).reshape(n, ho, wo, 2)
    mode = draw(st.sampled_from(["bilinear", "nearest", "bicubic"]))
    attrs = {"mode": mode, "padding_mode": draw(st.sampled_from(["zeros", "border",
                                                                 "reflection"])),
             "align_corners": draw(st.booleans())}
    taps = {"bilinear": 4, "nearest": 1, "bicubic": 16}[mode]
    return Example((x, grid), attrs, k=taps, term=float(np.abs(x).max()) * 1.6 ** 2)


def torch_grid_sample(x, grid, *, mode, padding_mode, align_corners):
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode,
                         align_corners=align_corners)


CASES_SPATIAL: dict[str, Case] = {
    "conv3d": Case(conv3d_examples(), torch_conv3d),
    "conv_transpose": Case(conv_transpose_examples(), torch_conv_transpose),
    "max_pool3d": Case(pool3d_examples("max_pool3d"), torch_max_pool3d, exact=True),
    "avg_pool3d": Case(pool3d_examples("avg_pool3d"), torch_avg_pool3d),
    "adaptive_avg_pool3d": Case(adaptive_examples(3, False),
                                lambda x, output_size: F.adaptive_avg_pool3d(x, output_size)),
    "adaptive_max_pool2d": Case(adaptive_examples(2, True),
                                lambda x, output_size: F.adaptive_max_pool2d(x, output_size),
                                exact=True),
    "adaptive_max_pool3d": Case(adaptive_examples(3, True),
                                lambda x, output_size: F.adaptive_max_pool3d(x, output_size),
                                exact=True),
    "resize": Case(resize_examples(), torch_resize),
    "grid_sample": Case(grid_sample_examples(), torch_grid_sample),
}
