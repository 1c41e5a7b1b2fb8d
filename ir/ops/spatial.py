"""Convolution and pooling past the 2-d ops of nn.py and pool.py: 3-d convolution, transposed
convolution in 1, 2 and 3 dimensions, 3-d max / average / adaptive average pooling, and
adaptive max pooling in 2 and 3 dimensions.

1-d convolution and pooling are the 2-d ops on a unit axis (the frontends map them so), so
every conv2d pass and kernel applies to them. The attribute conventions are nn.py's and
pool.py's, one value per spatial axis (or one for all): `stride`, `dilation`, `padding`
([p], one per axis, or for conv3d all the befores then all the afters), pooling's `kernel`,
`stride` [] meaning the kernel, `ceil_mode` and `count_include_pad`.

conv_transpose follows torch's ConvTranspose: weight (C_in, C_out / groups, k...), input
position i feeds output positions i * stride + j * dilation - padding for each kernel tap j,
and `output_padding` extends the high end of each axis (torch's rule: smaller than the stride
or the dilation). Its output size is (L - 1) stride - 2 padding + dilation (k - 1) +
output_padding + 1.

Adaptive bins follow torch: bin i of n over size L spans [floor(i L / n), ceil((i + 1) L / n)).
Max pooling propagates NaN, as torch does (np.max).
"""

from __future__ import annotations

import itertools
import string

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType, is_float
from .common import prod, same_dtype
from .nn import _pair, conv_out_size
from .pool import pool_out_size


def axes_of(name: str, v: tuple[int, ...], n: int) -> tuple[int, ...]:
    """An n-axis attribute given as one value for all axes or one per axis."""
    return _pair(name, tuple(v), n)


def conv_pads(padding: tuple[int, ...], n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(befores, afters) from [p], one per axis, or all the befores then all the afters."""
    if len(padding) in (1, n):
        p = axes_of("padding", padding, n)
        return p, p
    if len(padding) == 2 * n:
        return tuple(padding[:n]), tuple(padding[n:])
    raise TypeInferenceError(f"padding must have 1, {n} or {2 * n} values, got {list(padding)}")


def windows_nd(x: np.ndarray, k: tuple[int, ...], stride: tuple[int, ...],
               dilation: tuple[int, ...]) -> np.ndarray:
    """Sliding windows of the last len(k) axes: (..., O1..On, k1..kn), no copy."""
    n = len(k)
    span = tuple((kk - 1) * d + 1 for kk, d in zip(k, dilation, strict=True))
    v = np.lib.stride_tricks.sliding_window_view(x, span, axis=tuple(range(-n, 0)))
    return v[(Ellipsis, *(slice(None, None, s) for s in stride),
              *(slice(None, None, d) for d in dilation))]


def _check_channels(c: int, o: int, g: int) -> None:
    if g < 1 or c % g or o % g:
        raise TypeInferenceError(f"groups={g} must divide in channels {c} and out channels {o}")


def _check_bias(types: list[TensorType], o: int) -> None:
    if len(types) == 3 and types[2].shape != (o,):
        raise TypeInferenceError(f"bias must have shape [{o}], got {list(types[2].shape)}")


# -- 3-d convolution -----------------------------------------------------------------------
def _conv3d_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, w = types[0], types[1]
    dtype = same_dtype(types)
    if x.rank != 5 or w.rank != 5:
        raise TypeInferenceError(
            f"conv3d takes an NCDHW input and an OIDHW weight, got ranks {x.rank} and {w.rank}")
    o, ig, *k = w.shape
    g = attrs["groups"]
    _check_channels(x.shape[1], o, g)
    if ig != x.shape[1] // g:
        raise TypeInferenceError(
            f"weight has {ig} input channels per group, input has {x.shape[1]} channels / "
            f"{g} groups")
    _check_bias(types, o)
    s, d = axes_of("stride", attrs["stride"], 3), axes_of("dilation", attrs["dilation"], 3)
    lo, hi = conv_pads(attrs["padding"], 3)
    if min(s + d) < 1 or min(lo + hi) < 0:
        raise TypeInferenceError("stride and dilation must be >= 1 and padding >= 0")
    out = tuple(conv_out_size(x.shape[2 + i], k[i], s[i], lo[i], hi[i], d[i]) for i in range(3))
    if min(out) < 1:
        raise TypeInferenceError(f"output would be empty ({out}); the kernel is too large")
    return TensorType((x.shape[0], o) + out, dtype)


def _conv_macs(types, out, attrs) -> int:
    return prod(out.shape) * prod(types[1].shape[1:])


def conv_nd(x, w, b, stride, before, after, dilation, groups):
    """N-d cross-correlation over the trailing axes: (N, C, *L) x (O, C / groups, *k)."""
    n = w.ndim - 2
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(zip(before, after, strict=True)))
    win = windows_nd(xp, w.shape[2:], stride, dilation)
    batch, c = x.shape[:2]
    out = win.shape[2:2 + n]
    o = w.shape[0]
    win = win.reshape(batch, groups, c // groups, *out, *w.shape[2:])
    wg = w.reshape(groups, o // groups, c // groups, *w.shape[2:])
    sp, ks = string.ascii_uppercase[:n], "uvw"[:n]
    y = np.einsum(f"ngc{sp}{ks},goc{ks}->ngo{sp}", win, wg, optimize=True)
    y = y.reshape(batch, o, *out)
    if b is not None:
        y = y + b.reshape((1, o) + (1,) * n)
    return y.astype(x.dtype, copy=False)


@defop("conv3d", ("x", "w", "b?"), _conv3d_infer, category="contraction", macs=_conv_macs,
       attrs={"stride": AttrSpec("ints", (1, 1, 1)), "padding": AttrSpec("ints", (0, 0, 0)),
              "dilation": AttrSpec("ints", (1, 1, 1)), "groups": AttrSpec("int", 1)})
def conv3d(x, w, b=None, *, stride, padding, dilation, groups):
    """3-D cross-correlation, NCDHW x OIDHW; padding [p], [pd, ph, pw] or
    [d0, h0, w0, d1, h1, w1] (befores, then afters)."""
    lo, hi = conv_pads(padding, 3)
    return conv_nd(x, w, b, axes_of("stride", stride, 3), lo, hi,
                   axes_of("dilation", dilation, 3), groups)


# -- transposed convolution ----------------------------------------------------------------
def _transpose_params(attrs: dict, n: int):
    return tuple(axes_of(k, attrs[k], n)
                 for k in ("stride", "padding", "output_padding", "dilation"))


def transposed_size(size: int, k: int, s: int, p: int, op: int, d: int) -> int:
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


def _conv_transpose_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, w = types[0], types[1]
    dtype = same_dtype(types)
    n = x.rank - 2
    if not 1 <= n <= 3 or w.rank != x.rank:
        raise TypeInferenceError(
            "conv_transpose takes an (N, C, *L) input with 1 to 3 spatial axes and a "
            f"(C, O / groups, *k) weight of the same rank, got ranks {x.rank} and {w.rank}")
    c, og, *k = w.shape
    g = attrs["groups"]
    if c != x.shape[1]:
        raise TypeInferenceError(f"weight has {c} input channels, input has {x.shape[1]}")
    _check_channels(c, og * g, g)
    _check_bias(types, og * g)
    s, p, op, d = _transpose_params(attrs, n)
    if min(s + d) < 1 or min(p + op) < 0:
        raise TypeInferenceError("stride and dilation must be >= 1, padding and "
                                 "output_padding >= 0")
    if any(o >= max(si, di) for o, si, di in zip(op, s, d, strict=True)):
        raise TypeInferenceError(f"output_padding {list(op)} must be smaller than the stride "
                                 f"{list(s)} or the dilation {list(d)} (torch's rule)")
    out = tuple(transposed_size(x.shape[2 + i], k[i], s[i], p[i], op[i], d[i])
                for i in range(n))
    if min(out) < 1:
        raise TypeInferenceError(f"output would be empty ({out}); the padding is too large")
    return TensorType((x.shape[0], og * g) + out, dtype)


def _conv_transpose_macs(types, out, attrs) -> int:
    x, w = types[0], types[1]
    return prod(x.shape) * prod(w.shape[1:])


@defop("conv_transpose", ("x", "w", "b?"), _conv_transpose_infer, category="contraction",
       macs=_conv_transpose_macs,
       attrs={"stride": AttrSpec("ints", (1,)), "padding": AttrSpec("ints", (0,)),
              "output_padding": AttrSpec("ints", (0,)), "dilation": AttrSpec("ints", (1,)),
              "groups": AttrSpec("int", 1)})
def conv_transpose(x, w, b=None, *, stride, padding, output_padding, dilation, groups):
    """Transposed convolution over 1 to 3 trailing axes (torch's ConvTranspose1d/2d/3d):
    each input element times each kernel tap, added at i * stride + j * dilation, then
    `padding` cropped from both ends (output_padding extends the high end)."""
    n = x.ndim - 2
    s, p, op, d = _transpose_params(dict(stride=stride, padding=padding,
                                         output_padding=output_padding, dilation=dilation), n)
    batch, c, *size = x.shape
    _, og, *k = w.shape
    full = [(size[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 + op[i] for i in range(n)]
    acc = np.zeros((batch, groups, og, *full), x.dtype)
    xg = x.reshape(batch, groups, c // groups, *size)
    wg = w.reshape(groups, c // groups, og, *k)
    sp = string.ascii_uppercase[:n]
    for tap in itertools.product(*(range(kk) for kk in k)):
        part = np.einsum(f"ngc{sp},gco->ngo{sp}", xg, wg[(Ellipsis, *tap)], optimize=True)
        at = tuple(slice(tap[i] * d[i], tap[i] * d[i] + (size[i] - 1) * s[i] + 1, s[i])
                   for i in range(n))
        acc[(slice(None),) * 3 + at] += part
    out = [full[i] - 2 * p[i] for i in range(n)]
    y = acc[(slice(None),) * 3 + tuple(slice(p[i], p[i] + out[i]) for i in range(n))]
    y = y.reshape(batch, groups * og, *out)
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * n)
    return y.astype(x.dtype, copy=False)


# -- 3-d pooling ---------------------------------------------------------------------------
def pool_params(attrs: dict, n: int):
    """(kernel, stride, padding, dilation), n values each; stride [] means the kernel."""
    k = axes_of("kernel", attrs["kernel"], n)
    s = axes_of("stride", attrs["stride"] or attrs["kernel"], n)
    p = axes_of("padding", attrs["padding"], n)
    d = axes_of("dilation", attrs.get("dilation", (1,)), n)
    return k, s, p, d


def pool_out_shape(x_shape: tuple[int, ...], attrs: dict, n: int) -> tuple[int, ...]:
    k, s, p, d = pool_params(attrs, n)
    if min(k + s + d) < 1:
        raise TypeInferenceError("kernel, stride and dilation must be >= 1")
    if any(2 * pi > ki for pi, ki in zip(p, k, strict=True)):
        raise TypeInferenceError(f"padding {list(p)} must be at most half the kernel {list(k)}")
    out = tuple(pool_out_size(x_shape[2 + i], k[i], s[i], p[i], d[i], attrs["ceil_mode"])
                for i in range(n))
    if min(out) < 1:
        raise TypeInferenceError("the pooling window is larger than the padded input")
    return out


def _pool3d_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    if x.rank != 5:
        raise TypeInferenceError(f"3-D pooling takes an NCDHW input, got rank {x.rank}")
    if x.dtype == "bool":
        raise TypeInferenceError("pooling takes numeric inputs; cast bool first")
    if "divisor" in attrs:
        if not is_float(x.dtype):
            raise TypeInferenceError(f"avg_pool3d takes a float input, got {x.dtype}")
        if attrs["divisor"] == 0:
            raise TypeInferenceError("divisor must not be zero")
    return TensorType(x.shape[:2] + pool_out_shape(x.shape, attrs, 3), x.dtype)


def pool_pads(x_shape, k, s, p, d, out) -> tuple[tuple[int, int], ...]:
    """Per spatial axis (before, after): p on both sides, plus on the high side what the last
    ceil-mode window needs past the padded input."""
    pads = []
    for i in range(len(k)):
        need = (out[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1
        pads.append((p[i], p[i] + max(0, need - (x_shape[2 + i] + 2 * p[i]))))
    return tuple(pads)


def pool_counts(x_shape, k, s, p, out, count_include_pad: bool) -> np.ndarray:
    """Each window's divisor: its elements inside the input (and inside the padding with
    count_include_pad), never the ceil-mode overhang. Shape `out`."""
    n = len(k)
    pads = pool_pads(x_shape, k, s, p, (1,) * n, out)
    size = x_shape[2:]
    if count_include_pad:
        mask = np.ones(tuple(size[i] + 2 * p[i] for i in range(n)))
        mask = np.pad(mask, tuple((0, pads[i][1] - p[i]) for i in range(n)))
    else:
        mask = np.pad(np.ones(size), pads)
    win = windows_nd(mask, k, s, (1,) * n)[tuple(slice(0, o) for o in out)]
    return win.sum(axis=tuple(range(-n, 0)))


def _window_macs(types, out, attrs) -> int:
    return prod(out.shape) * prod(axes_of("kernel", attrs["kernel"], out.rank - 2))


_POOL3D_ATTRS = {
    "kernel": AttrSpec("ints"),
    "stride": AttrSpec("ints", ()),
    "padding": AttrSpec("ints", (0,)),
    "ceil_mode": AttrSpec("bool", False),
}


def _pooled(x, attrs, n, fill):
    """The windows of x padded with `fill`: (N, C, *out, *k)."""
    k, s, p, d = pool_params(attrs, n)
    out = pool_out_shape(x.shape, attrs, n)
    pads = pool_pads(x.shape, k, s, p, d, out)
    xp = np.pad(x, ((0, 0), (0, 0)) + pads, constant_values=fill)
    return windows_nd(xp, k, s, d)[(slice(None), slice(None)) + tuple(slice(0, o) for o in out)]


def lowest(dtype: np.dtype):
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


@defop("max_pool3d", ("x",), _pool3d_infer, category="pool", macs=_window_macs,
       attrs={**_POOL3D_ATTRS, "dilation": AttrSpec("ints", (1,))})
def max_pool3d(x, *, kernel, stride, padding, dilation, ceil_mode):
    """Maximum over each NCDHW window (NaN wins); padding counts as -inf."""
    attrs = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                 ceil_mode=ceil_mode)
    return _pooled(x, attrs, 3, lowest(x.dtype)).max(axis=(-3, -2, -1))


@defop("avg_pool3d", ("x",), _pool3d_infer, category="pool", macs=_window_macs,
       attrs={**_POOL3D_ATTRS, "count_include_pad": AttrSpec("bool", True),
              "divisor": AttrSpec("int?", None)})
def avg_pool3d(x, *, kernel, stride, padding, ceil_mode, count_include_pad, divisor):
    """Sum over each NCDHW window divided by `divisor` when given (torch's divisor_override),
    else by the window's count (pool_counts: count_include_pad as avg_pool2d)."""
    attrs = dict(kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    total = _pooled(x, attrs, 3, 0).sum(axis=(-3, -2, -1))
    if divisor is not None:
        return (total / np.asarray(divisor, x.dtype)).astype(x.dtype, copy=False)
    k, s, p, _ = pool_params(attrs, 3)
    count = pool_counts(x.shape, k, s, p, total.shape[2:], count_include_pad)
    return (total / count.astype(x.dtype)).astype(x.dtype, copy=False)


# -- adaptive pooling ----------------------------------------------------------------------
def adaptive_bins(size: int, n: int) -> list[tuple[int, int]]:
    """torch's bins: bin i spans [floor(i size / n), ceil((i + 1) size / n))."""
    return [((i * size) // n, -((-(i + 1) * size) // n)) for i in range(n)]


def _adaptive_infer(nd: int):
    def infer(types: list[TensorType], attrs: dict) -> TensorType:
        x = types[0]
        if x.rank != nd + 2:
            raise TypeInferenceError(f"{nd}-D adaptive pooling takes a rank-{nd + 2} input "
                                     f"(N, C and {nd} spatial axes), got rank {x.rank}")
        out = axes_of("output_size", attrs["output_size"], nd)
        if min(out) < 1:
            raise TypeInferenceError("output_size must be >= 1")
        if min(x.shape[2:]) < 1:
            raise TypeInferenceError(f"adaptive pooling of an empty input {list(x.shape)}")
        if x.dtype == "bool":
            raise TypeInferenceError("pooling takes numeric inputs; cast bool first")
        return TensorType(x.shape[:2] + out, x.dtype)

    return infer


def adaptive_pool(x: np.ndarray, output_size, nd: int, reduce) -> np.ndarray:
    """`reduce(window, axes)` over each adaptive bin of the last nd axes."""
    out = axes_of("output_size", output_size, nd)
    bins = [adaptive_bins(x.shape[2 + i], out[i]) for i in range(nd)]
    y = np.empty(x.shape[:2] + out, x.dtype)
    axes = tuple(range(-nd, 0))
    for idx in itertools.product(*(range(o) for o in out)):
        window = x[(slice(None), slice(None)) + tuple(slice(*bins[i][j])
                                                      for i, j in enumerate(idx))]
        y[(slice(None), slice(None)) + idx] = reduce(window, axis=axes)
    return y


def _adaptive_macs(types, out, attrs) -> int:
    return prod(types[0].shape)


@defop("adaptive_avg_pool3d", ("x",), _adaptive_infer(3), category="pool",
       macs=_adaptive_macs, attrs={"output_size": AttrSpec("ints")})
def adaptive_avg_pool3d(x, *, output_size):
    """Mean over each adaptive bin of NCDHW (torch's bins)."""
    return adaptive_pool(x, output_size, 3, np.mean)


def _adaptive_max(nd: int):
    def ref(x, *, output_size):
        return adaptive_pool(x, output_size, nd, np.max)

    ref.__doc__ = f"Maximum over each adaptive bin of the last {nd} axes (NaN wins)."
    defop(f"adaptive_max_pool{nd}d", ("x",), _adaptive_infer(nd), category="pool",
          macs=_adaptive_macs, attrs={"output_size": AttrSpec("ints")})(ref)


_adaptive_max(2)
_adaptive_max(3)
