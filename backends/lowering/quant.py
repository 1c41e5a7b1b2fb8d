"""The generic lowering of smelt's quantized ops (ir/ops/quant.py) to Relax, bit-exact with the
reference on every target.

- quantize, dequantize and requantize are one elementwise TE kernel each (so FuseOps can fold
  them into a producer's tile), with per-channel parameters bound as broadcast constants:
  quantize divides in float64 and rounds with `nearbyint` (ties to even under the default
  rounding mode, as np.rint); requantize rounds its shift ties to even in integers only,
  with the add-and-shift form (p + 2^(n-1) - 1 + ((p >> n) & 1)) >> n in int64 (`rhe_wide`),
  an independent formula for the reference's floor-and-remainder one (tests compare the two
  bit for bit), or, where every shift is >= 33, in int32 from the product's halves
  (`rhe_split`). A multiplier or shift shared by all channels is an immediate, not a
  tensor. No float arithmetic: an integer graph stays integer (the C target builds it for
  cores without an FPU). A target may pick cheaper forms through `lower_requantize`'s
  `pick` (the CPU's float64 forms: backends/cpu/requantize.py).
- qconv2d, qlinear and qmatmul subtract the zero points in int32 (constant weights in numpy,
  at compile time, so the weight stays a constant), then run the float ops' Relax
  contractions with out_dtype int64, add the bias and narrow to int32. Padding the
  zero-point-subtracted input with 0 is padding with x_zp, as in the reference. The compiled
  code does not check the int32 range; the reference raises where it would not fit. Targets
  register faster entries for the int8 cases (backends/cpu/lowering_int8.py,
  backends/mcu/lowering.py) and call these for the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tvm import relax, tirx

from smelt.ir.node import Node
from smelt.ir.ops.nn import _pads
from smelt.ir.ops.quant import channel, clamp_bounds

from . import te_kernels as K
from .registry import lowers

R = relax.op
#: rescale(acc, operand tensors) -> the rounded value, and the dtype it is computed in
Rescale = tuple[Callable[[Any, list], Any], str]
#: a per-channel constant as a TIR value: (operand tensors) -> value
Operand = Callable[[list], Any]


def const(values, axis: int | None, rank: int, dtype: str) -> relax.Constant:
    return relax.const(channel(values, axis, rank, dtype), dtype)


def clamp_cast(v, lo: int, hi: int, dtype: str):
    """v (not NaN) clamped to [lo, hi] and cast."""
    src = str(v.ty)
    return tirx.Cast(dtype, tirx.min(tirx.max(v, tirx.const(lo, src)), tirx.const(hi, src)))


def elementwise(bb, n: Node, fn, operands: list):
    return bb.call_te(K.pointwise(fn, n.shape, n.op), *operands, primfunc_name_hint=n.op)


@lowers("quantize")
def _quantize(bb, n: Node, xs):
    a = n.attrs
    dtype, lo, hi = clamp_bounds(a)
    rank = len(n.shape)

    def fn(x, scale, zp):  # NaN -> the zero point (real 0); +-inf saturate in the clamp
        v = tirx.nearbyint(tirx.Cast("float64", x) / scale)
        v = tirx.Select(tirx.isnan(v), tirx.const(0.0, "float64"), v) + zp
        return clamp_cast(v, lo, hi, dtype)

    return elementwise(bb, n, fn, [xs[0], const(a["scale"], a["axis"], rank, "float64"),
                                   const(a["zero_point"], a["axis"], rank, "float64")])


@lowers("dequantize")
def _dequantize(bb, n: Node, xs):
    a = n.attrs
    rank = len(n.shape)

    def fn(q, zp, scale):
        d = tirx.Cast("int64", q) - zp
        return tirx.Cast(n.dtype, tirx.Cast("float64", d) * scale)

    return elementwise(bb, n, fn, [xs[0], const(a["zero_point"], a["axis"], rank, "int64"),
                                   const(a["scale"], a["axis"], rank, "float64")])


# -- requantize ----------------------------------------------------------------------------
def rescale_params(a: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel int64 (multiplier m, right shift n >= 1). A right shift of 0 (shift = -31,
    exact) becomes m' = 2m, n = 1: |acc * 2m| < 2^63, and the tie rule below then rounds
    (2p + (p & 1)) / 2 down to p, exactly."""
    m = np.asarray(a["multiplier"], np.int64)
    n = np.asarray(a["shift"], np.int64) + 31
    m, n = np.broadcast_arrays(m, n)
    return np.where(n == 0, 2 * m, m), np.maximum(n, 1)


def per_channel_operand(values: np.ndarray, dtype: str, axis: int | None, rank: int,
                        operands: list) -> Operand:
    """A TIR value for a per-channel constant: an immediate when every channel shares it
    (then LLVM sees a constant shift), else an operand tensor read along `axis`."""
    if np.all(values == values.flat[0]):
        return lambda args: tirx.const(values.flat[0].item(), dtype)
    operands.append(relax.const(channel(values, axis, rank, dtype), dtype))
    index = len(operands) - 1
    return lambda args: args[index]


def rhe_wide(m: Operand, n: Operand) -> Rescale:
    """rhe(acc * m / 2^n), all in int64: (p + 2^(n-1) - 1 + ((p >> n) & 1)) >> n."""
    def rescale(acc, args):
        one = tirx.const(1, "int64")
        p = tirx.Cast("int64", acc) * m(args)
        s = n(args)
        return (p + ((one << s) >> one) - one + ((p >> s) & one)) >> s

    return rescale, "int64"


def rhe_split(m: Operand, s: Operand) -> Rescale:
    """rhe(acc * m / 2^(32 + s)), s >= 1, from the product's 32-bit halves hi = p >> 32 and
    lo = p mod 2^32: p + 2^(n-1) - 1 + odd = (hi + 2^(s-1)) 2^32 + (lo - 1 + odd), so
    y = (hi + 2^(s-1) - 1 + inc) >> s with inc = 1 if lo != 0 or the floor (hi >> s) is odd
    (|hi| < 2^30: no int32 overflow). Only the product is int64."""
    def rescale(acc, args):
        one = tirx.const(1, "int32")
        p = tirx.Cast("int64", acc) * tirx.Cast("int64", m(args))
        hi = tirx.Cast("int32", p >> tirx.const(32, "int64"))
        # not Cast("int32", p) != 0: TVM narrows that to an int32 multiply, whose overflow
        # LLVM may assume away (nsw)
        lo_nonzero = (p & tirx.const(0xFFFFFFFF, "int64")) != tirx.const(0, "int64")
        sh = s(args)
        inc = tirx.Select(lo_nonzero, one, (hi >> sh) & one)
        return (hi + ((one << sh) >> one) - one + inc) >> sh

    return rescale, "int32"


RequantizePlan = tuple[Rescale, int]  # the rescale, and the part of out_zp it adds itself
#: (m, n, operand, lo - out_zp, hi - out_zp, out_zp) -> the plan
Pick = Callable[[np.ndarray, np.ndarray, Callable[[np.ndarray, str], Operand], int, int, int],
                RequantizePlan]


def integer_rescale(m: np.ndarray, shift: np.ndarray, operand, lo: int, hi: int,
                    zp: int) -> RequantizePlan:
    """The integer forms: `rhe_split` where every shift is >= 33, else `rhe_wide`."""
    if shift.min() >= 33:
        return rhe_split(operand(m, "int32"), operand(shift - 32, "int32")), 0
    return rhe_wide(operand(m, "int64"), operand(shift, "int64")), 0


def lower_requantize(bb, n: Node, xs, pick: Pick = integer_rescale):
    """clamp(rhe(acc * m / 2^n) + out_zp) as one elementwise kernel, the rounding form chosen
    by `pick` from the multipliers, shifts and bounds."""
    a = n.attrs
    dtype, lo, hi = clamp_bounds(a)
    zp = a["out_zp"]
    rank = len(n.shape)
    operands = [xs[0]]

    def operand(values: np.ndarray, dt: str) -> Operand:
        return per_channel_operand(values, dt, a["axis"], rank, operands)

    m, shift = rescale_params(a)
    (rescale, acc_t), folded = pick(m, shift, operand, lo - zp, hi - zp, zp)

    def fn(*args):
        return clamp_cast(rescale(args[0], args) + tirx.const(zp - folded, acc_t), lo, hi,
                          dtype)

    return elementwise(bb, n, fn, operands)


@lowers("requantize")
def _requantize(bb, n: Node, xs):
    return lower_requantize(bb, n, xs)


# -- integer contractions ------------------------------------------------------------------
def centered(bb, node: Node, x, zp, axis: int | None = None):
    """operand - zero point as int32; a constant operand is done in numpy (stays constant)."""
    rank = len(node.shape)
    if node.op == "constant":
        v = node.value.astype(np.int32) - channel(zp, axis, rank, np.int32)
        return relax.const(np.ascontiguousarray(v), "int32")
    return bb.emit(R.subtract(bb.emit(R.astype(x, "int32")), const(zp, axis, rank, "int32")))


def narrow(bb, y, bias=None, bias_shape=None):
    y = bb.emit(y)
    if bias is not None:
        b = bb.emit(R.astype(bias, "int64"))
        y = bb.emit(R.add(y, bb.emit(R.reshape(b, bias_shape)) if bias_shape else b))
    return R.astype(y, "int32")


@lowers("qconv2d")
def qconv2d(bb, n: Node, xs):
    a = n.attrs
    x = centered(bb, n.inputs[0], xs[0], (a["x_zp"],))
    w = centered(bb, n.inputs[1], xs[1], a["w_zp"], axis=0)
    y = R.nn.conv2d(x, w, strides=a["stride"], padding=_pads(a["padding"]),
                    dilation=a["dilation"], groups=a["groups"], out_dtype="int64")
    return narrow(bb, y, xs[2] if len(xs) == 3 else None, (1, -1, 1, 1))


@lowers("qlinear")
def qlinear(bb, n: Node, xs):
    a = n.attrs
    x = centered(bb, n.inputs[0], xs[0], (a["x_zp"],))
    w_node = n.inputs[1]
    if w_node.op == "constant":  # bound transposed, so the matmul reads it as (K, N)
        wc = w_node.value.astype(np.int32) - channel(a["w_zp"], 0, 2, np.int32)
        wt = relax.const(np.ascontiguousarray(wc.T), "int32")
    else:
        wt = bb.emit(R.permute_dims(centered(bb, w_node, xs[1], a["w_zp"], axis=0)))
    return narrow(bb, R.matmul(x, wt, out_dtype="int64"), xs[2] if len(xs) == 3 else None)


@lowers("qmatmul")
def qmatmul(bb, n: Node, xs):
    a = n.attrs
    lhs = centered(bb, n.inputs[0], xs[0], (a["a_zp"],))
    rhs = centered(bb, n.inputs[1], xs[1], (a["b_zp"],))
    return narrow(bb, R.matmul(lhs, rhs, out_dtype="int64"))
