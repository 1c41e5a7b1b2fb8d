"""Contractions: 2-D convolution (grouped, depthwise, dilated), linear, (batched) matmul.

Weights follow PyTorch's layouts: conv2d weight is (O, I/groups, kh, kw), linear weight is
(out_features, in_features). MACs count one multiply-accumulate per product term.
"""

from __future__ import annotations

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType
from .common import broadcast, prod, same_dtype


def conv_out_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dil: int) -> int:
    return (size + pad_lo + pad_hi - dil * (k - 1) - 1) // stride + 1


def _pair(name: str, v: tuple[int, ...], n: int = 2) -> tuple[int, ...]:
    if len(v) == 1:
        v = v * n
    if len(v) != n:
        raise TypeInferenceError(f"{name} must have {n} values, got {list(v)}")
    return v


def _conv_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, w = types[0], types[1]
    dtype = same_dtype(types)
    if x.rank != 4 or w.rank != 4:
        raise TypeInferenceError(
            f"conv2d takes an NCHW input and an OIHW weight, got ranks {x.rank} and {w.rank}"
        )
    n, c, h, wd = x.shape
    o, ig, kh, kw = w.shape
    g = attrs["groups"]
    if g < 1 or c % g or o % g:
        raise TypeInferenceError(f"groups={g} must divide in channels {c} and out channels {o}")
    if ig != c // g:
        raise TypeInferenceError(
            f"weight has {ig} input channels per group, input has {c} channels / {g} groups"
        )
    if len(types) == 3 and types[2].shape != (o,):
        raise TypeInferenceError(f"bias must have shape [{o}], got {list(types[2].shape)}")
    sh, sw = _pair("stride", attrs["stride"])
    dh, dw = _pair("dilation", attrs["dilation"])
    ph0, pw0, ph1, pw1 = _pads(attrs["padding"])
    if min(sh, sw, dh, dw) < 1 or min(ph0, pw0, ph1, pw1) < 0:
        raise TypeInferenceError("stride and dilation must be >= 1 and padding >= 0")
    ho = conv_out_size(h, kh, sh, ph0, ph1, dh)
    wo = conv_out_size(wd, kw, sw, pw0, pw1, dw)
    if ho < 1 or wo < 1:
        raise TypeInferenceError(f"output would be empty ({ho}x{wo}); the kernel is too large")
    return TensorType((n, o, ho, wo), dtype)


def _pads(padding: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from [p], [ph, pw] or [top, left, bottom, right]."""
    if len(padding) == 1:
        return (padding[0],) * 4
    if len(padding) == 2:
        return padding[0], padding[1], padding[0], padding[1]
    if len(padding) == 4:
        return tuple(padding)  # type: ignore[return-value]
    raise TypeInferenceError(f"padding must have 1, 2 or 4 values, got {list(padding)}")


def _conv_macs(types, out, attrs) -> int:
    w = types[1]
    return prod(out.shape) * prod(w.shape[1:])


def windows(x: np.ndarray, k: tuple[int, int], stride: tuple[int, int],
            dilation: tuple[int, int]) -> np.ndarray:
    """Sliding windows of the last two axes: (..., Ho, Wo, kh, kw), no copy."""
    kh, kw = k
    dh, dw = dilation
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    v = np.lib.stride_tricks.sliding_window_view(x, span, axis=(-2, -1))
    return v[..., :: stride[0], :: stride[1], ::dh, ::dw]


@defop("conv2d", ("x", "w", "b?"), _conv_infer, category="contraction", macs=_conv_macs,
       attrs={"stride": AttrSpec("ints", (1, 1)), "padding": AttrSpec("ints", (0, 0)),
              "dilation": AttrSpec("ints", (1, 1)), "groups": AttrSpec("int", 1)})
def conv2d(x, w, b=None, *, stride, padding, dilation, groups):
    """2-D cross-correlation, NCHW x OIHW; padding [p], [ph, pw] or [t, l, b, r]."""
    t, left, bot, right = _pads(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (t, bot), (left, right)))
    o, ig, kh, kw = w.shape
    win = windows(xp, (kh, kw), _pair("stride", stride), _pair("dilation", dilation))
    n, c, ho, wo = win.shape[:4]
    win = win.reshape(n, groups, c // groups, ho, wo, kh, kw)
    wg = w.reshape(groups, o // groups, ig, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", win, wg, optimize=True).reshape(n, o, ho, wo)
    if b is not None:
        out = out + b.reshape(1, o, 1, 1)
    return out.astype(x.dtype, copy=False)


def _linear_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, w = types[0], types[1]
    dtype = same_dtype(types)
    if w.rank != 2 or x.rank < 1:
        raise TypeInferenceError("linear takes x[..., in] and a weight[out, in]")
    if x.shape[-1] != w.shape[1]:
        raise TypeInferenceError(
            f"x has {x.shape[-1]} features but the weight expects {w.shape[1]}"
        )
    if len(types) == 3 and types[2].shape != (w.shape[0],):
        raise TypeInferenceError(f"bias must have shape [{w.shape[0]}]")
    return TensorType(x.shape[:-1] + (w.shape[0],), dtype)


def _linear_macs(types, out, attrs) -> int:
    return prod(out.shape) * types[1].shape[1]


@defop("linear", ("x", "w", "b?"), _linear_infer, category="contraction", macs=_linear_macs)
def linear(x, w, b=None):
    """x @ w.T + b, with w in (out_features, in_features) layout."""
    out = np.matmul(x, w.T)
    if b is not None:
        out = out + b
    return out.astype(x.dtype, copy=False)


def _matmul_infer(types: list[TensorType], attrs: dict) -> TensorType:
    a, b = types
    dtype = same_dtype(types)
    if a.rank < 1 or b.rank < 1:
        raise TypeInferenceError("matmul needs inputs of rank >= 1")
    if a.rank == 1 or b.rank == 1:  # a vector operand loses its axis (numpy's rule)
        if a.shape[-1] != b.shape[0 if b.rank == 1 else -2]:
            raise TypeInferenceError(f"contracted sizes differ: {a.shape} @ {b.shape}")
        if a.rank == 1:
            return TensorType(b.shape[:-2] + b.shape[-1:] if b.rank > 1 else (), dtype)
        return TensorType(a.shape[:-1], dtype)
    if a.shape[-1] != b.shape[-2]:
        raise TypeInferenceError(
            f"contracted sizes differ: {list(a.shape)} @ {list(b.shape)}"
        )
    batch = broadcast([a.shape[:-2], b.shape[:-2]])
    return TensorType(batch + (a.shape[-2], b.shape[-1]), dtype)


def _matmul_macs(types, out, attrs) -> int:
    return prod(out.shape) * types[0].shape[-1]


@defop("matmul", ("a", "b"), _matmul_infer, category="contraction", macs=_matmul_macs)
def matmul(a, b):
    """numpy/torch matmul: batched over leading axes with broadcasting."""
    return np.matmul(a, b)
