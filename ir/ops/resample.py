"""Resampling: `resize` (torch's upsample_* kernels) and `grid_sample` (grid_sampler_2d).

resize(x, size, mode, align_corners, scales) resizes the trailing 1 to 3 axes of (N, C, ...)
to `size`, one axis after another (the interpolations are separable): output position o of an
axis reads input taps idx[t][o] with weights w[t][o], out = sum_t w[t] x[idx[t]].
`resize_taps` computes the taps with torch's CPU formulas (aten/src/ATen/native/UpSample.h):

- scale: align_corners: (in - 1) / (out - 1) (0 when out = 1); else 1 / scales[i] where a
  scale is given (torch's scale_factor), else in / out.
- nearest: in float32, as torch computes it for every dtype: idx = min(floor(o * scale),
  in - 1); in 2-d, out = in copies and out = 2 in takes o >> 1 (the exact cases of torch's
  2-d kernel; its 1-d and 3-d kernels apply the formula there too).
- nearest_exact: idx = min(floor(float32((o + 0.5) * scale)), in - 1), scale in float32.
- linear: src = scale o (align_corners) or max(scale (o + 0.5) - 0.5, 0); i0 = min(floor(src),
  in - 1), i1 = i0 + 1 below the last index (else i0), l1 = clip(src - i0, 0, 1); weights
  (1 - l1, l1). out = in copies (weights (1, 0)).
- cubic: src as linear without the clamp at 0; i0 = min(floor(src), in - 1), t = clip(src -
  i0, 0, 1); taps i0 - 1 .. i0 + 2 clamped into [0, in - 1], Keys' weights with A = -0.75:
  (c2(t + 1), c1(t), c1(1 - t), c2(2 - t)), c1(x) = ((A + 2) x - (A + 3)) x^2 + 1,
  c2(x) = ((A x - 5 A) x + 8 A) x - 4 A.
Coordinates and weights are computed in float64 (linear, cubic) once per shape; the weights
are rounded to x's dtype, and the sums run in x's dtype.

grid_sample(x, grid, mode, padding_mode, align_corners) samples NCHW x at the (x, y) points of
grid (N, Ho, Wo, 2) in [-1, 1], as torch's grid_sampler_2d (GridSampler.h):
- unnormalize: align_corners: (g + 1) / 2 (size - 1); else ((g + 1) size - 1) / 2.
- padding: zeros reads 0 outside; border clips the coordinate into [0, size - 1];
  reflection reflects it about the borders (about -0.5 and size - 0.5 without align_corners),
  then clips.
- bilinear: the four neighbours of floor(ix), floor(iy), weighted by the opposite areas;
  nearest: the pixel at round-half-to-even (ix, iy); bicubic: the 4 x 4 neighbours with the
  weights above, each tap's coordinate padded (not the point's).
Coordinates and weights are computed in float64 whatever x's dtype (so the nearest pixel is
the one exact arithmetic picks); weights are rounded to x's dtype and the sums run in it.
"""

from __future__ import annotations

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType, is_float
from .common import prod, same_dtype

RESIZE_MODES = ("nearest", "nearest_exact", "linear", "cubic")
CUBIC_A = -0.75


def _float32_scale(size_in: int, size_out: int, scale: float | None) -> np.float32:
    if scale:
        return np.float32(1.0 / scale)
    return np.float32(size_in) / np.float32(size_out)


def _linear_scale(size_in: int, size_out: int, align_corners: bool, scale: float | None):
    if align_corners:
        return (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    return 1.0 / scale if scale else size_in / size_out


def cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution weights of taps -1, 0, 1, 2 at fraction t (a list of 4)."""
    a = CUBIC_A

    def near(v):
        return ((a + 2) * v - (a + 3)) * v * v + 1

    def far(v):
        return ((a * v - 5 * a) * v + 8 * a) * v - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def resize_taps(size_in: int, size_out: int, mode: str, align_corners: bool,
                scale: float | None, exact_cases: bool = False
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """(indices (T, size_out) int64, weights (T, size_out) float64 or None for nearest).
    `exact_cases`: nearest copies when out = in and halves when out = 2 in (torch's 2-d
    kernel does; its 1-d and 3-d kernels use the formula)."""
    o = np.arange(size_out)
    last = size_in - 1
    if mode == "nearest":
        if exact_cases and size_out == size_in:
            return o[None], None
        if exact_cases and size_out == 2 * size_in:
            return (o >> 1)[None], None
        s = _float32_scale(size_in, size_out, scale)
        src = np.floor(o.astype(np.float32) * s).astype(np.int64)
        return np.minimum(src, last)[None], None
    if mode == "nearest_exact":
        s = np.float64(_float32_scale(size_in, size_out, scale))
        src = np.floor(((o + 0.5) * s).astype(np.float32)).astype(np.int64)
        return np.minimum(src, last)[None], None
    ratio = _linear_scale(size_in, size_out, align_corners, scale)
    src = ratio * o if align_corners else ratio * (o + 0.5) - 0.5
    if mode == "linear":
        if size_out == size_in:
            return np.stack([o, o]), np.stack([np.ones(size_out), np.zeros(size_out)])
        src = np.maximum(src, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), last)
        lam = np.clip(src - i0, 0.0, 1.0)
        return np.stack([i0, i0 + (i0 < last)]), np.stack([1.0 - lam, lam])
    i0 = np.minimum(np.floor(src).astype(np.int64), last)
    t = np.clip(src - i0, 0.0, 1.0)
    idx = np.clip(i0[None] + np.arange(-1, 3)[:, None], 0, last)
    return idx, np.stack(cubic_weights(t))


def resize_plan(in_shape: tuple[int, ...], attrs: dict) -> list[tuple[int, np.ndarray,
                                                                      np.ndarray | None]]:
    """(axis, indices, weights) per resized axis, in the order the reference applies them."""
    size, scales = attrs["size"], attrs["scales"] or (None,) * len(attrs["size"])
    n = len(size)
    return [(len(in_shape) - n + i,
             *resize_taps(in_shape[-n + i], size[i], attrs["mode"], attrs["align_corners"],
                          scales[i], exact_cases=n == 2))
            for i in range(n)]


def _resize_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    size, scales, mode = attrs["size"], attrs["scales"], attrs["mode"]
    n = len(size)
    if not 1 <= n <= 3 or x.rank != n + 2:
        raise TypeInferenceError(f"resize takes (N, C) and 1 to 3 spatial axes with one size "
                                 f"each; got rank {x.rank} and size {list(size)}")
    if min(size) < 1 or min(x.shape[2:]) < 1:
        raise TypeInferenceError(f"resize from {list(x.shape)} to {list(size)}: sizes must "
                                 "be >= 1")
    if scales and (len(scales) != n or min(scales) <= 0):
        raise TypeInferenceError(f"scales must be empty or {n} positive numbers, got "
                                 f"{list(scales)}")
    if mode in ("linear", "cubic") and not is_float(x.dtype):
        raise TypeInferenceError(f"{mode} resizing takes a float input, got {x.dtype}")
    if attrs["align_corners"] and mode.startswith("nearest"):
        raise TypeInferenceError("align_corners applies to linear and cubic modes only")
    return TensorType(x.shape[:2] + tuple(size), x.dtype)


def _resize_macs(types, out, attrs) -> int:
    taps = {"linear": 2, "cubic": 4}.get(attrs["mode"], 0)
    return prod(out.shape) * taps * len(attrs["size"])


@defop("resize", ("x",), _resize_infer, category="resample", macs=_resize_macs,
       attrs={"size": AttrSpec("ints"),
              "mode": AttrSpec("str", "nearest", RESIZE_MODES),
              "align_corners": AttrSpec("bool", False),
              "scales": AttrSpec("floats", ())})
def resize(x, *, size, mode, align_corners, scales):
    """The trailing axes resized to `size` one after another: out = sum_t w[t] x[idx[t]]
    with torch's taps (resize_taps); nearest modes gather only."""
    attrs = dict(size=size, mode=mode, align_corners=align_corners, scales=scales)
    y = x
    for axis, idx, w in resize_plan(x.shape, attrs):
        if w is None:
            y = np.take(y, idx[0], axis=axis)
            continue
        shape = [1] * y.ndim
        shape[axis] = -1
        acc = None
        for t in range(len(idx)):
            part = np.take(y, idx[t], axis=axis) * w[t].astype(x.dtype).reshape(shape)
            acc = part if acc is None else acc + part
        y = acc
    return y.astype(x.dtype, copy=False)


# -- grid sampling -------------------------------------------------------------------------
SAMPLE_MODES = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")


def unnormalize(g, size: int, align_corners: bool):
    if align_corners:
        return (g + 1) / 2 * (size - 1)
    return ((g + 1) * size - 1) / 2


def reflect(c, twice_low: int, twice_high: int, xp=np):
    """c reflected into [twice_low / 2, twice_high / 2] (torch's reflect_coordinates)."""
    if twice_low == twice_high:
        return xp.zeros_like(c)
    low, span = twice_low / 2, (twice_high - twice_low) / 2
    c = xp.abs(c - low)
    extra = xp.fmod(c, span)
    flips = xp.floor(c / span)
    return xp.where(xp.fmod(flips, 2) == 0, extra + low, span - extra + low)


def pad_coordinate(c, size: int, padding_mode: str, align_corners: bool, xp=np):
    """torch's compute_coordinates: border clips, reflection reflects then clips."""
    if padding_mode == "zeros":
        return c
    if padding_mode == "reflection":
        twice = (0, 2 * (size - 1)) if align_corners else (-1, 2 * size - 1)
        c = reflect(c, *twice, xp=xp)
    return xp.clip(c, 0, size - 1)


def index_of(c, size: int, xp=np):
    """An integral float coordinate as an integer, clamped to [-4, size + 3] first (every
    tap that far out is outside; the clamp only keeps the conversion defined)."""
    return xp.clip(c, -4, size + 3).astype(np.int64)


def gather(x, iy, ix, xp=np):
    """x[n, :, iy, ix] for index grids (N, Ho, Wo); 0 outside the image. (N, C, Ho, Wo)."""
    _, _, h, w = x.shape
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    rows = np.arange(x.shape[0])[:, None, None]
    v = xp.moveaxis(x[rows, :, xp.clip(iy, 0, h - 1), xp.clip(ix, 0, w - 1)], -1, 1)
    return xp.where(inside[:, None], v, xp.zeros((), x.dtype))


def sample_grid(x, grid, mode: str, padding_mode: str, align_corners: bool, xp=np):
    """grid_sample over array namespace `xp` (numpy for the reference; JAX's interop entry
    calls it with jax.numpy): coordinates in grid's dtype (float64 in the reference)."""
    _, _, h, w = x.shape
    ux = unnormalize(grid[..., 0], w, align_corners)
    uy = unnormalize(grid[..., 1], h, align_corners)
    dt = x.dtype

    def pad(c, size):
        return pad_coordinate(c, size, padding_mode, align_corners, xp)

    def read(cy, cx, weight):
        return gather(x, index_of(cy, h, xp), index_of(cx, w, xp), xp) * weight[:, None]

    if mode == "bicubic":
        x0, y0 = xp.floor(ux), xp.floor(uy)
        wx = [v.astype(dt) for v in cubic_weights(ux - x0)]
        wy = [v.astype(dt) for v in cubic_weights(uy - y0)]
        out = None
        for i in range(4):
            row = None
            for j in range(4):
                tap = read(pad(y0 + (i - 1), h), pad(x0 + (j - 1), w), wx[j])
                row = tap if row is None else row + tap
            term = row * wy[i][:, None]
            out = term if out is None else out + term
        return out
    ix, iy = pad(ux, w), pad(uy, h)
    if mode == "nearest":
        return gather(x, index_of(xp.round(iy), h, xp), index_of(xp.round(ix), w, xp), xp)
    x0, y0 = xp.floor(ix), xp.floor(iy)
    x1, y1 = x0 + 1, y0 + 1
    corners = [(y0, x0, (x1 - ix) * (y1 - iy)), (y0, x1, (ix - x0) * (y1 - iy)),
               (y1, x0, (x1 - ix) * (iy - y0)), (y1, x1, (ix - x0) * (iy - y0))]
    out = None
    for cy, cx, weight in corners:
        term = read(cy, cx, weight.astype(dt))
        out = term if out is None else out + term
    return out


def _grid_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, g = types
    same_dtype(types)
    if x.rank != 4 or g.rank != 4 or g.shape[3] != 2 or g.shape[0] != x.shape[0]:
        raise TypeInferenceError(
            f"grid_sample takes an NCHW input and an (N, Ho, Wo, 2) grid of the same N, got "
            f"{list(x.shape)} and {list(g.shape)}")
    if not is_float(x.dtype):
        raise TypeInferenceError(f"grid_sample takes float inputs, got {x.dtype}")
    if min(x.shape[2:]) < 1:
        raise TypeInferenceError(f"grid_sample of an empty image {list(x.shape)}")
    return TensorType(x.shape[:2] + g.shape[1:3], x.dtype)


def _grid_macs(types, out, attrs) -> int:
    return prod(out.shape) * {"bilinear": 4, "nearest": 0, "bicubic": 16}[attrs["mode"]]


@defop("grid_sample", ("x", "grid"), _grid_infer, category="resample", macs=_grid_macs,
       attrs={"mode": AttrSpec("str", "bilinear", SAMPLE_MODES),
              "padding_mode": AttrSpec("str", "zeros", PADDING_MODES),
              "align_corners": AttrSpec("bool", False)})
def grid_sample(x, grid, *, mode, padding_mode, align_corners):
    """x sampled at grid's normalized (x, y) points (torch's grid_sampler_2d; see the
    module docstring for the coordinate rules)."""
    out = sample_grid(x, grid.astype(np.float64), mode, padding_mode, align_corners)
    return out.astype(x.dtype, copy=False)
