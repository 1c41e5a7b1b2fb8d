"""2-D pooling over NCHW: max, average (torch's divisor rules), adaptive average.

ceil_mode lets the last window start inside the padded input and run past it; as in torch,
a window may not start in the right padding.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType
from .common import prod
from .nn import _pair, windows


def pool_out_size(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = d * (k - 1) + 1
    num = size + 2 * p - span
    out = (math.ceil(num / s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_params(attrs: dict):
    k = _pair("kernel", attrs["kernel"])
    s = _pair("stride", attrs["stride"] or attrs["kernel"])
    p = _pair("padding", attrs["padding"])
    d = _pair("dilation", attrs.get("dilation", (1, 1)))
    return k, s, p, d


def _pool_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    if x.rank != 4:
        raise TypeInferenceError(f"2-D pooling takes an NCHW input, got rank {x.rank}")
    k, s, p, d = _pool_params(attrs)
    if min(k) < 1 or min(s) < 1 or min(d) < 1:
        raise TypeInferenceError("kernel, stride and dilation must be >= 1")
    if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
        raise TypeInferenceError(f"padding {list(p)} must be at most half the kernel {list(k)}")
    n, c, h, w = x.shape
    ho = pool_out_size(h, k[0], s[0], p[0], d[0], attrs["ceil_mode"])
    wo = pool_out_size(w, k[1], s[1], p[1], d[1], attrs["ceil_mode"])
    if ho < 1 or wo < 1:
        raise TypeInferenceError("the pooling window is larger than the padded input")
    return TensorType((n, c, ho, wo), x.dtype)


def _padded(x, k, s, p, d, out_hw, fill):
    """x padded by p, plus extra on the bottom/right so ceil-mode windows fit."""
    need_h = (out_hw[0] - 1) * s[0] + d[0] * (k[0] - 1) + 1
    need_w = (out_hw[1] - 1) * s[1] + d[1] * (k[1] - 1) + 1
    extra_h = max(0, need_h - (x.shape[2] + 2 * p[0]))
    extra_w = max(0, need_w - (x.shape[3] + 2 * p[1]))
    pads = ((0, 0), (0, 0), (p[0], p[0] + extra_h), (p[1], p[1] + extra_w))
    return np.pad(x, pads, constant_values=fill), pads


def _window_macs(types, out, attrs) -> int:
    return prod(out.shape) * prod(_pair("kernel", attrs["kernel"]))


_POOL_ATTRS = {
    "kernel": AttrSpec("ints"),
    "stride": AttrSpec("ints", ()),
    "padding": AttrSpec("ints", (0, 0)),
    "ceil_mode": AttrSpec("bool", False),
}


@defop("max_pool2d", ("x",), _pool_infer, category="pool", macs=_window_macs,
       attrs={**_POOL_ATTRS, "dilation": AttrSpec("ints", (1, 1))})
def max_pool2d(x, *, kernel, stride, padding, dilation, ceil_mode):
    """Maximum over each window; padding counts as -inf. stride [] means stride = kernel."""
    k, s, p, d = _pool_params(dict(kernel=kernel, stride=stride, padding=padding,
                                   dilation=dilation))
    out_hw = _pool_infer([TensorType(x.shape, "float32")],
                         dict(kernel=kernel, stride=stride, padding=padding,
                              dilation=dilation, ceil_mode=ceil_mode)).shape[2:]
    fill = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
    xp, _ = _padded(x, k, s, p, d, out_hw, fill)
    win = windows(xp, k, s, d)[:, :, : out_hw[0], : out_hw[1]]
    return win.max(axis=(-2, -1))


@defop("avg_pool2d", ("x",), _pool_infer, category="pool", macs=_window_macs,
       attrs={**_POOL_ATTRS, "count_include_pad": AttrSpec("bool", True)})
def avg_pool2d(x, *, kernel, stride, padding, ceil_mode, count_include_pad):
    """Mean over each window. With count_include_pad the divisor counts the zero padding
    (but never the ceil-mode overhang); without it, only real elements."""
    attrs = dict(kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    k, s, p, d = _pool_params(attrs)
    out_hw = _pool_infer([TensorType(x.shape, "float32")], attrs).shape[2:]
    xp, pads = _padded(x, k, s, p, d, out_hw, 0)
    total = windows(xp, k, s, d)[:, :, : out_hw[0], : out_hw[1]].sum(axis=(-2, -1))
    h, w = x.shape[2:]
    if count_include_pad:
        mask = np.ones((h + 2 * p[0], w + 2 * p[1]), x.dtype)
        mask = np.pad(mask, ((0, pads[2][1] - p[0]), (0, pads[3][1] - p[1])))
    else:
        mask = np.pad(np.ones((h, w), x.dtype), (pads[2], pads[3]))
    count = windows(mask, k, s, d)[: out_hw[0], : out_hw[1]].sum(axis=(-2, -1))
    return (total / count).astype(x.dtype, copy=False)


def _adaptive_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    if x.rank != 4:
        raise TypeInferenceError(f"adaptive pooling takes an NCHW input, got rank {x.rank}")
    oh, ow = _pair("output_size", attrs["output_size"])
    if oh < 1 or ow < 1:
        raise TypeInferenceError("output_size must be >= 1")
    return TensorType(x.shape[:2] + (oh, ow), x.dtype)


def _adaptive_macs(types, out, attrs) -> int:
    return prod(types[0].shape)


@defop("adaptive_avg_pool2d", ("x",), _adaptive_infer, category="pool", macs=_adaptive_macs,
       attrs={"output_size": AttrSpec("ints")})
def adaptive_avg_pool2d(x, *, output_size):
    """Bin i of n over size L spans [floor(i L / n), ceil((i + 1) L / n)) (torch's rule)."""
    oh, ow = _pair("output_size", output_size)
    h, w = x.shape[2:]
    out = np.empty(x.shape[:2] + (oh, ow), x.dtype)
    for i in range(oh):
        h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        for j in range(ow):
            w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(-2, -1))
    return out
