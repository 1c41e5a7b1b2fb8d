"""The C target's entries for int8 convolutions and linears: plain loops on plain layouts.

qconv2d (groups = 1 or depthwise) and qlinear with a constant int8 weight, all w_zp = 0 and
uint8 or int8 activations (`int8_sums.int8_weight`) sum uint8 x int8 in int32 on NCHW and
(N, K) as they are, the zero point folded into the bias (lowering/int8_sums.py): no input
packed into 4-channel words, no lanes padded, no depthwise row rounded up to whole vectors.
A scalar core gains nothing from the CPU's vector layouts, and every packed copy of an
activation would cost arena bytes (and a padded lane, multiply-adds). requantize keeps the
generic integer forms (no float arithmetic, and the C generator has no `llvm.lrint`); the
other cases take the generic entries (lowering/quant.py).
"""

from __future__ import annotations

import numpy as np
from tvm import relax, te

from smelt.ir.node import Node
from smelt.ir.ops.nn import _pads

from ..lowering import quant as generic
from ..lowering.int8_sums import (
    as_uint8,
    bias_then_trim,
    int8_weight,
    is_depthwise,
    pad_nchw,
    uint8_zp,
)
from ..lowering.registry import lowers

R = relax.op


def plain_conv(x: te.Tensor, w: te.Tensor, out_hw: tuple[int, int], stride, dilation,
               depthwise: bool) -> te.Tensor:
    """uint8 (or int8, read as uint8) NCHW, already padded, x int8 (O, C / groups, KH, KW)
    -> int32 NCHW; groups = 1 or depthwise."""
    o, ci, kh, kw = (int(d) for d in w.shape)
    (sh, sw), (dh, dw) = stride, dilation
    c, ry, rx = (te.reduce_axis((0, e), name) for e, name in ((ci, "c"), (kh, "ry"), (kw, "rx")))

    def body(b, oc, y, z):
        v = as_uint8(x[b, oc if depthwise else c, y * sh + ry * dh, z * sw + rx * dw], x.dtype)
        return te.sum(v.astype("int32") * w[oc, c, ry, rx].astype("int32"), axis=[c, ry, rx])

    return te.compute((int(x.shape[0]), o, *out_hw), body, name="smelt_qconv2d_plain")


def plain_dense(x: te.Tensor, w: te.Tensor) -> te.Tensor:
    """uint8 (or int8, read as uint8) X[..., K] x int8 W[N, K] -> int32 [..., N]."""
    lead, k = [int(d) for d in x.shape[:-1]], te.reduce_axis((0, int(x.shape[-1])), "k")

    def body(*idx):
        *m, j = idx
        return te.sum(as_uint8(x[(*m, k)], x.dtype).astype("int32")
                      * w[j, k].astype("int32"), axis=k)

    return te.compute((*lead, int(w.shape[0])), body, name="smelt_qdense_plain")


@lowers("qconv2d", target="c")
def _qconv2d(bb, n: Node, xs):
    w: np.ndarray | None = int8_weight(n)
    a = n.attrs
    if w is None or not (a["groups"] == 1 or is_depthwise(n, w)):
        return generic.qconv2d(bb, n, xs)
    pads = _pads(a["padding"])
    x = xs[0]
    if any(pads):
        x = bb.emit_te(pad_nchw, x, pads, uint8_zp(n), primfunc_name_hint="i8pad")
    y = bb.emit_te(plain_conv, x, relax.const(w, "int8"), n.shape[2:], tuple(a["stride"]),
                   tuple(a["dilation"]), a["groups"] != 1, primfunc_name_hint="qconv2d")
    return bias_then_trim(bb, y, n, w, 1)


@lowers("qlinear", target="c")
def _qlinear(bb, n: Node, xs):
    w = int8_weight(n)
    if w is None:
        return generic.qlinear(bb, n, xs)
    x_shape = n.inputs[0].shape
    x = xs[0] if len(x_shape) > 1 else bb.emit(R.reshape(xs[0], (1, x_shape[-1])))
    y = bb.emit_te(plain_dense, x, relax.const(w, "int8"), primfunc_name_hint="qdense")
    y = bias_then_trim(bb, y, n, w, -1)
    return y if len(x_shape) > 1 else R.reshape(bb.emit(y), n.shape)
