"""Lowering of smelt's quantized ops (ir/ops/quant.py) to Relax, bit-exact with the reference.

- quantize, dequantize and requantize are one elementwise TE kernel each (so FuseOps can fold
  them into a producer's tile), with per-channel parameters bound as broadcast constants:
  quantize divides in float64 and rounds with `nearbyint` (ties to even under the default
  rounding mode, as np.rint); requantize is int64 only and rounds its shift ties to even with
  the add-and-shift form (p + 2^(n-1) - 1 + ((p >> n) & 1)) >> n, an independent formula
  for the reference's floor-and-remainder one (tests compare the two bit for bit).
- qconv2d, qlinear and qmatmul subtract the zero points in int32 (constant weights in numpy,
  at compile time, so smelt's packed kernels still see a constant), then run the float ops'
  Relax contractions with out_dtype int64, add the bias and narrow to int32. Padding the
  zero-point-subtracted input with 0 is padding with x_zp, as in the reference. The compiled
  code does not check the int32 range; the reference raises where it would not fit.
"""

from __future__ import annotations

import numpy as np
from tvm import relax, tirx

from smelt.ir.node import Node
from smelt.ir.ops.nn import _pads
from smelt.ir.ops.quant import channel, clamp_bounds

from . import relax_kernels as K
from .relax_lowering import lowers

R = relax.op


def _const(values, axis: int | None, rank: int, dtype: str) -> relax.Constant:
    return relax.const(channel(values, axis, rank, dtype), dtype)


def _clamp_cast(v, lo: int, hi: int, dtype: str):
    src = str(v.ty)
    v = tirx.Select(v < tirx.const(lo, src), tirx.const(lo, src), v)
    v = tirx.Select(v > tirx.const(hi, src), tirx.const(hi, src), v)
    return tirx.Cast(dtype, v)


def _elementwise(bb, n: Node, fn, operands: list):
    return bb.call_te(K.pointwise(fn, n.shape, n.op), *operands, primfunc_name_hint=n.op)


@lowers("quantize")
def _quantize(bb, n: Node, xs):
    a = n.attrs
    dtype, lo, hi = clamp_bounds(a)
    rank = len(n.shape)

    def fn(x, scale, zp):
        v = tirx.nearbyint(tirx.Cast("float64", x) / scale)
        v = tirx.Select(tirx.isnan(v), tirx.const(0.0, "float64"), v) + zp
        return _clamp_cast(v, lo, hi, dtype)

    return _elementwise(bb, n, fn, [xs[0], _const(a["scale"], a["axis"], rank, "float64"),
                                    _const(a["zero_point"], a["axis"], rank, "float64")])


@lowers("dequantize")
def _dequantize(bb, n: Node, xs):
    a = n.attrs
    rank = len(n.shape)

    def fn(q, zp, scale):
        d = tirx.Cast("int64", q) - zp
        return tirx.Cast(n.dtype, tirx.Cast("float64", d) * scale)

    return _elementwise(bb, n, fn, [xs[0], _const(a["zero_point"], a["axis"], rank, "int64"),
                                    _const(a["scale"], a["axis"], rank, "float64")])


@lowers("requantize")
def _requantize(bb, n: Node, xs):
    a = n.attrs
    dtype, lo, hi = clamp_bounds(a)
    rank = len(n.shape)
    shifts = np.asarray(a["shift"], np.int64) + 31

    def fn(acc, m, sh):
        one = tirx.const(1, "int64")
        p = tirx.Cast("int64", acc) * m
        bias = (one << sh >> one) - one + ((p >> sh) & one)  # 2^(n-1) - 1 + (floor is odd)
        y = tirx.Select(sh > tirx.const(0, "int64"), (p + bias) >> sh, p)
        return _clamp_cast(y + tirx.const(a["out_zp"], "int64"), lo, hi, dtype)

    return _elementwise(bb, n, fn, [xs[0], _const(a["multiplier"], a["axis"], rank, "int64"),
                                    relax.const(channel(shifts, a["axis"], rank, np.int64),
                                                "int64")])


def _centered(bb, node: Node, x, zp, axis: int | None = None):
    """operand - zero point as int32; a constant operand is done in numpy (stays constant)."""
    rank = len(node.shape)
    if node.op == "constant":
        v = node.value.astype(np.int32) - channel(zp, axis, rank, np.int32)
        return relax.const(np.ascontiguousarray(v), "int32")
    return bb.emit(R.subtract(bb.emit(R.astype(x, "int32")), _const(zp, axis, rank, "int32")))


def _narrow(bb, y, bias=None, bias_shape=None):
    y = bb.emit(y)
    if bias is not None:
        b = bb.emit(R.astype(bias, "int64"))
        y = bb.emit(R.add(y, bb.emit(R.reshape(b, bias_shape)) if bias_shape else b))
    return R.astype(y, "int32")


@lowers("qconv2d")
def _qconv2d(bb, n: Node, xs):
    a = n.attrs
    x = _centered(bb, n.inputs[0], xs[0], (a["x_zp"],))
    w = _centered(bb, n.inputs[1], xs[1], a["w_zp"], axis=0)
    y = R.nn.conv2d(x, w, strides=a["stride"], padding=_pads(a["padding"]),
                    dilation=a["dilation"], groups=a["groups"], out_dtype="int64")
    return _narrow(bb, y, xs[2] if len(xs) == 3 else None, (1, -1, 1, 1))


@lowers("qlinear")
def _qlinear(bb, n: Node, xs):
    a = n.attrs
    x = _centered(bb, n.inputs[0], xs[0], (a["x_zp"],))
    w_node = n.inputs[1]
    if w_node.op == "constant":  # bound transposed, so the matmul reads it as (K, N)
        wc = w_node.value.astype(np.int32) - channel(a["w_zp"], 0, 2, np.int32)
        wt = relax.const(np.ascontiguousarray(wc.T), "int32")
    else:
        wt = bb.emit(R.permute_dims(_centered(bb, w_node, xs[1], a["w_zp"], axis=0)))
    return _narrow(bb, R.matmul(x, wt, out_dtype="int64"), xs[2] if len(xs) == 3 else None)


@lowers("qmatmul")
def _qmatmul(bb, n: Node, xs):
    a = n.attrs
    lhs = _centered(bb, n.inputs[0], xs[0], (a["a_zp"],))
    rhs = _centered(bb, n.inputs[1], xs[1], (a["b_zp"],))
    return _narrow(bb, R.matmul(lhs, rhs, out_dtype="int64"))
