"""requantize on the CPU: two float64 forms that give the generic lowering's integers
(lowering/quant.py) with a third of its vector work, where they apply.

The generic entry rounds acc * m / 2^n in int64 (or int32 from the product's halves). On x86
with its double-precision vector units, an 8-bit result with every right shift n <= 44
rounds acc * (m 2^-n) in float64 instead (`rhe_float`: exact there, proof in its docstring);
with every rescale <= 1/2, by adding 1.5 2^52 and keeping the low 32 bits (`rhe_bits`).
Anything else keeps the integer forms.
"""

from __future__ import annotations

import numpy as np
from tvm import tirx

from smelt.ir.node import Node

from ..lowering.quant import Operand, RequantizePlan, Rescale, integer_rescale, lower_requantize
from ..lowering.registry import lowers

FLOAT_MAX_SHIFT = 44  # n <= 44: see rhe_float
FLOAT_MAX_RANGE = 2**9  # |qmin - out_zp|, |qmax - out_zp| below it (8-bit outputs)
ROUNDING_BIAS = 1.5 * 2.0**52  # its ulp is 1, and it is even: see rhe_bits


def rhe_float(r: Operand, lo: int, hi: int, below_one: bool) -> Rescale:
    """clamp(rhe(acc * r), lo, hi) with r = m 2^-n exact in float64, for n <= 44 and
    |lo|, |hi| < 2^9: the product t = acc * r is a multiple of 2^-n, so a t that is not a
    tie lies >= 2^-n from every tie, while float64 rounds t (|t| < 2^9) by <= 2^-45: fl(t)
    rounds (ties to even, nearbyint) to rhe(t), and a tie is exact. Where |t| >= 2^9 both
    clamp to the same bound. Clamped in float64 first (the int conversion of a huge t would
    saturate wrongly), then converted: a third of the int64 path's vector work."""
    def rescale(acc, args):
        t = tirx.Cast("float64", acc) * r(args)
        if not below_one:
            t = tirx.min(tirx.max(t, tirx.const(float(lo), "float64")),
                         tirx.const(float(hi), "float64"))
        return tirx.call_llvm_pure_intrin("int32", "llvm.lrint", t)  # ties to even

    return rescale, "int32"


def rhe_bits(r: Operand, even: int) -> Rescale:
    """rhe(acc * r) + even, for the same r and bounds as `rhe_float` and r <= 1/2, with
    no float-to-int conversion: y = fl(acc * r) plus B = 1.5 2^52 + even (|y| < 2^51) is a
    double of exponent 52, whose ulp is 1, so the add rounds y to an integer, ties to even
    (B is even: the parity of the mantissa's last bit is the integer's), and the low 32 bits
    of its pattern are that integer plus `even`, in two's complement. rint(y) = rhe(t) as in
    `rhe_float`, or both are >= 2^9 in magnitude and clamp alike; were the multiply-add
    contracted to an fma, one rounding of the exact acc r + B gives rhe(t) itself. With
    r <= 1/2, |t| <= 2^30, so nothing wraps. On AVX-512, LLVM makes the multiply-add one fma
    and takes the low halves with vpmovqd, where lrint needed a multiply and a conversion
    (MobileNetV2's int8 kernels, 1 thread: 1.05x). An odd zero point would break the parity,
    so it is added after."""
    bias = tirx.const(ROUNDING_BIAS + even, "float64")

    def rescale(acc, args):
        t = tirx.Cast("float64", acc) * r(args) + bias
        return tirx.Cast("int32", tirx.reinterpret("int64", t))

    return rescale, "int32"


def float_rescale(m: np.ndarray, shift: np.ndarray, operand, lo: int, hi: int,
                  zp: int) -> RequantizePlan:
    """`rhe_bits` or `rhe_float` where they are exact, else the generic integer forms."""
    if shift.max() > FLOAT_MAX_SHIFT or max(abs(lo), abs(hi)) >= FLOAT_MAX_RANGE:
        return integer_rescale(m, shift, operand, lo, hi, zp)
    r = np.ldexp(m.astype(np.float64), -shift)
    if r.max() <= 0.5:
        folded = zp if zp % 2 == 0 else 0
        return rhe_bits(operand(r, "float64"), folded), folded
    return rhe_float(operand(r, "float64"), lo, hi, r.max() < 1), 0


@lowers("requantize", target="cpu")
def _requantize(bb, n: Node, xs):
    return lower_requantize(bb, n, xs, float_rescale)
