"""The CPU's entries for integer contractions: qconv2d, qlinear and qmatmul on uint8 x int8
-> int32 kernels (int8_kernels.py, scheduled by sched_int8.py; `vpdpbusd` where the target
has VNNI), bit-exact with the reference.

qconv2d and qlinear with a constant int8 weight, all w_zp = 0, uint8 or int8 activations and
a constant (or no) bias (`int8_sums.int8_weight`): the weight is packed at compile time,
-x_zp * sum_k w folded into the bias (int8 activations are shifted by +128, so x_zp + 128;
lowering/int8_sums.py), and the bias add is an elementwise op that FuseOps folds, with the
requantize after it, into the kernel's register tile.
  groups = 1: the input packed to 4-channel words (uint32, viewed as bytes by
    `R.memory.view`; a stride-1 unpadded 1x1 conv's over the flat image, vectors across
    rows: 3.6x faster than row by row on 10x10 images), then `smelt_qconv2d` (pixel
    vectors; the 1x1 conv runs over the flat image too) when 16 divides the output row (a
    1x1 conv with at most 128 input channels: or its flat image padded to whole vectors,
    `smelt_qconv2d_flat`), else `smelt_qconv2d_cv` (channel vectors, output channels
    padded to 8 or 16 lanes);
  depthwise (groups = C, one output per channel): KW <= 4 -> the x_zp-padded input with
    slack and `smelt_qdwconv4` (4-tap windows, rows rounded up to whole vectors), else
    `smelt_qdwconv`;
  qlinear: `smelt_qdense` (K padded to 4, N to 8 or 16 lanes).
qmatmul of two >= 2-D int8/uint8 activations: B packed at run time, `smelt_qbmm`, the zero
points' row and column sums added in the epilogue (`_qmatmul_int8`).
Whatever was padded is sliced off after the bias add (the slice fuses too); other group
counts, non-zero w_zp, other dtypes and non-constant weights take the generic entries
(lowering/quant.py).
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from smelt.ir.node import Node
from smelt.ir.ops.nn import _pads

from ..lowering import quant as generic
from ..lowering.int8_sums import (
    MAX_REDUCTION,
    bias_then_trim,
    int8_weight,
    is_depthwise,
    pad_nchw,
    uint8_zp,
)
from ..lowering.registry import lowers
from . import int8_kernels as I
from .vnni import window_fits

R = relax.op


def _lanes(channels: int) -> int:
    return 8 if channels % 16 and channels % 8 == 0 else 16


@lowers("qconv2d", target="cpu")
def _qconv2d(bb, n: Node, xs):
    w = int8_weight(n)
    if w is None or not (n.attrs["groups"] == 1 or is_depthwise(n, w)):
        return generic.qconv2d(bb, n, xs)
    if n.attrs["groups"] == 1:
        return _qconv2d_dense(bb, n, xs[0], w)
    return _qconv2d_depthwise(bb, n, xs[0], w)


def _qconv2d_dense(bb, n: Node, x, w: np.ndarray):
    a = n.attrs
    pads, out_hw = _pads(a["padding"]), n.shape[2:]
    conv = (tuple(a["stride"]), tuple(a["dilation"]))
    pointwise = I.is_pointwise(w.shape[2:], a["stride"], pads)
    pixels = out_hw[0] * out_hw[1] if pointwise else out_hw[1]
    padded = I.padded_pixels(pixels, w.shape[1]) if pointwise else None
    if padded is not None:
        return _pointwise_padded_pixels(bb, n, x, w, pixels, padded)
    if pointwise:  # packed over flat pixels (whole vectors, even across rows)
        hw = n.inputs[0].shape[2:]
        x = bb.emit(R.reshape(x, (n.shape[0], w.shape[1], 1, hw[0] * hw[1])))
    by_rows = pointwise and I.pixel_lanes(pixels) is None  # the same bytes, by rows
    xq = _packed_input(bb, n, x, pads, a["stride"][1], hw if by_rows else None)
    if I.pixel_lanes(pixels) is not None:
        wp = relax.const(I.pack_conv_weight(w), "int8")
        y = bb.emit_te(I.qconv2d, xq, wp, out_hw, *conv, primfunc_name_hint="qconv2d")
        return bias_then_trim(bb, y, n, w, 1)
    lanes = _lanes(w.shape[0])
    wp = relax.const(I.pack_conv_weight_blocked(w, lanes), "int8")
    y = bb.emit_te(I.qconv2d_cv, xq, wp, out_hw, *conv, primfunc_name_hint="qconv2d")
    return bias_then_trim(bb, y, n, w, 1)


def _qconv2d_depthwise(bb, n: Node, x, w: np.ndarray):
    a = n.attrs
    pads, out_hw = _pads(a["padding"]), n.shape[2:]
    conv = (tuple(a["stride"]), tuple(a["dilation"]))
    lanes, width = I.window_lanes(out_hw[1])
    if w.shape[3] <= 4 and window_fits(lanes, a["stride"][1], a["dilation"][1]):
        wide = (out_hw[0], width)  # rows rounded up to whole vectors, sliced after
        slack = I.window_slack(pads, n.inputs[0].shape[2:], wide, *conv, lanes)
        x = bb.emit_te(pad_nchw, x, pads, uint8_zp(n), slack, primfunc_name_hint="i8pad")
        y = bb.emit_te(I.qdwconv_window, x, relax.const(I.pack_window_weight(w), "int8"),
                       wide, *conv, primfunc_name_hint="qdwconv")
        return bias_then_trim(bb, y, n, w, 1)
    if any(pads) or n.inputs[0].dtype == "int8":
        x = bb.emit_te(pad_nchw, x, pads, uint8_zp(n), primfunc_name_hint="i8pad")
    y = bb.emit_te(I.qdwconv, x, relax.const(w, "int8"), out_hw, *conv,
                   primfunc_name_hint="qdwconv")
    return bias_then_trim(bb, y, n, w, 1)


def _packed_input(bb, n: Node, x, pads, stride_w: int, rows: tuple[int, int] | None = None):
    """x packed into 4-channel words (`pack_conv_input`), viewed as uint8 (.., 4); `rows`:
    (H, W) of a flat image, to view its words as rows (N, C' / 4, H, 1, W, 4)."""
    words = bb.emit_te(I.pack_conv_input, x, pads, uint8_zp(n), stride_w,
                       primfunc_name_hint="i8pack")
    shape = [int(d) for d in words.ty.shape.values]
    if rows is not None:
        shape = [shape[0], shape[1], rows[0], 1, rows[1]]
    return bb.emit(R.memory.view(words, (*shape, 4), "uint8"))


def _pointwise_padded_pixels(bb, n: Node, x, w: np.ndarray, pixels: int, padded: int):
    """A pointwise conv over its flat image padded to whole pixel vectors (`padded_pixels`):
    the packed input carries the surplus pixels (the zero point), `smelt_qconv2d` runs over
    (1, P) and drops the surplus (`qconv2d_flat`), then the bias add."""
    x = bb.emit(R.reshape(x, (n.shape[0], w.shape[1], 1, pixels)))
    xq = _packed_input(bb, n, x, (0, 0, 0, padded - pixels), 1)
    y = bb.emit_te(I.qconv2d_flat, xq, relax.const(I.pack_conv_weight(w), "int8"), n.shape[2:],
                   primfunc_name_hint="qconv2d")
    return bias_then_trim(bb, y, n, w, 1)


@lowers("qlinear", target="cpu")
def _qlinear(bb, n: Node, xs):
    """X[..., K] runs as the rows (M, K), M the product of the leading axes (a 1-D X as one
    row), and the result is reshaped back: the dense schedule tiles one row axis (with several,
    the trimmed write-back of a padded N read the wrong rows under TVM 0.27)."""
    w = int8_weight(n)
    if w is None:
        return generic.qlinear(bb, n, xs)
    x_shape = n.inputs[0].shape
    k = x_shape[-1]
    rows = int(np.prod(x_shape[:-1], dtype=np.int64))
    x = xs[0] if len(x_shape) == 2 else bb.emit(R.reshape(xs[0], (rows, k)))
    if k % I.CHANNEL_GROUP or n.inputs[0].dtype == "int8":
        x = bb.emit_te(I.pad_k, x, I.round_up(k, I.CHANNEL_GROUP), primfunc_name_hint="i8pack")
    lanes = _lanes(w.shape[0])
    wp = relax.const(I.pack_dense_weight(w, lanes), "int8")
    y = bb.emit_te(I.qdense, x, wp, w.shape[0], primfunc_name_hint="qdense")
    y = bias_then_trim(bb, y, n, w, -1, out_shape=(rows, w.shape[0]))
    return y if len(x_shape) == 2 else R.reshape(bb.emit(y), n.shape)


@lowers("qmatmul", target="cpu")
def _qmatmul(bb, n: Node, xs):
    if (all(x.dtype in ("uint8", "int8") and len(x.shape) >= 2 for x in n.inputs)
            and n.inputs[0].shape[-1] <= MAX_REDUCTION // 2):  # and K 255 (za + zb) terms
        return _qmatmul_int8(bb, n, xs)
    return generic.qmatmul(bb, n, xs)


def _qmatmul_int8(bb, n: Node, xs):
    """(a - a_zp) @ (b - b_zp) on uint8 a' x int8 b' (a + 128 if int8, b - 128 if uint8):
    sum a'b' - zb' rowsum(a') - za' colsum(b') + K za' zb', the sums (run time) added in
    the epilogue."""
    a_node, b_node = n.inputs
    za = n.attrs["a_zp"] + (128 if a_node.dtype == "int8" else 0)
    zb = n.attrs["b_zp"] - (128 if b_node.dtype == "uint8" else 0)
    k = a_node.shape[-1]
    a = xs[0]
    if k % I.CHANNEL_GROUP or a_node.dtype == "int8":
        a = bb.emit_te(I.pad_k, a, I.round_up(k, I.CHANNEL_GROUP), primfunc_name_hint="i8pack")
    words = bb.emit_te(I.pack_matmul_rhs, xs[1], I.round_up(k, I.CHANNEL_GROUP), 16,
                       primfunc_name_hint="i8pack")
    shape = [int(d) for d in words.ty.shape.values]
    bp = bb.emit(R.memory.view(words, (*shape, 4), "int8"))
    y = bb.emit_te(I.qbmm, a, bp, tuple(n.shape[:-2]), primfunc_name_hint="qbmm")
    if zb:
        y = bb.emit(R.add(y, bb.emit_te(I.matmul_row_terms, a, k, za, zb,
                                        primfunc_name_hint="i8sum")))
    if za:
        y = R.add(y, bb.emit_te(I.matmul_col_terms, xs[1], I.round_up(n.shape[-1], 16), za,
                                primfunc_name_hint="i8sum"))
    if n.shape[-1] % 16 == 0:
        return y
    y = bb.emit(y) if isinstance(y, relax.Call) else y
    return R.strided_slice(y, [len(n.shape) - 1], [0], [n.shape[-1]])
