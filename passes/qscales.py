"""Scales that make folding Q/DQ into integer kernels exact: short mantissas, dyadic rescales.

`fold-qdq` replaces quantize(conv(dequantize(x), dequantize(W)) + dequantize(b)) by
requantize(qconv2d(x, W, b)), whose rescale is an integer multiplier and a shift: the two
agree bit for bit, ties included, exactly when the real rescale r = s_x s_w / s_y is a
dyadic number m 2^-n with m < 2^31. An arbitrary choice of scales almost never gives that, so
smelt's `quantize` pass chooses them so that it does (the cost: each scale is rounded up by
less than 2^-5 of itself, under 0.05 bits of resolution):

- an activation scale has a 6-bit mantissa: s = a 2^e, a < 64, rounded up from the
  calibrated one (`activation_scale`);
- a weight scale of a layer with input scale s_x = a_x 2^i and output scale s_y = a_y 2^k
  is s_w = u odd(a_y) 2^j with u a 10-bit integer (`weight_scale`): then
  r = s_x s_w / s_y = a_x u 2^(i + j - k) / (a_y / odd(a_y)) is dyadic with at most 16
  significant bits;
- a bias is quantized with scale s_x s_w (at most 22 significant bits: a float32);
- the output scale of a product of two activations (no weight to adjust) is chosen instead:
  a 6-bit mantissa dividing odd(s_a) odd(s_b) (`product_scale`).

Short mantissas also make the Q/DQ graph itself exact in float64, which is how the rules are
checked: every product (x - z_x) s_x (w - z_w) s_w has at most 9 + 6 + 8 + 16 = 39
significant bits, and every partial sum is an integer below 2^31 times s_x s_w (22 bits),
so the float64 convolution computes the real one with no rounding at all.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from smelt.ir.ops.quant import quantize_multiplier

ACT_MANTISSA = 6
WEIGHT_MANTISSA = 10


def odd_part(s: float) -> int:
    """The odd integer a with s = a 2^e (s > 0, finite)."""
    num, den = Fraction(s).as_integer_ratio()
    while num % 2 == 0:
        num //= 2
    return num


def round_up_mantissa(s: float, bits: int) -> float:
    """The smallest number >= s with at most `bits` significant bits (s > 0)."""
    f, e = math.frexp(s)  # s = f 2^e, f in [0.5, 1)
    m = math.ceil(f * 2**bits)
    return math.ldexp(m, e - bits)


def activation_scale(ideal: float) -> float:
    """An activation scale: `ideal` rounded up to a 6-bit mantissa (tiny scales kept > 0)."""
    return round_up_mantissa(max(float(ideal), 2.0**-60), ACT_MANTISSA)


def product_scale(ideal: float, s_a: float, s_b: float) -> float:
    """The output scale of a product of two activations (attention's q k^T and p v): the
    smallest s >= `ideal` with a 6-bit mantissa dividing odd(s_a) odd(s_b), so that the
    rescale s_a s_b / s is dyadic (at most 12 significant bits). The mantissa comes from a
    few divisors, not all 64 values: s may exceed `ideal` by up to 2x (typically ~1.2x)."""
    ideal = max(float(ideal), 2.0**-60)
    ab = odd_part(s_a) * odd_part(s_b)
    best = math.inf
    for d in range(1, 2**ACT_MANTISSA, 2):
        if ab % d == 0:
            e = math.ceil(math.log2(ideal / d))
            s = math.ldexp(d, e)
            if s < ideal:  # log2 rounding
                s *= 2
            best = min(best, s)
    return best


def weight_scale(ideal: np.ndarray, out_scale: float | None) -> np.ndarray:
    """Weight scales >= `ideal` (per channel) of the form u odd(out_scale) 2^j with u a
    10-bit integer, so that s_x s_w / out_scale is dyadic for any 6-bit s_x. Without an
    output scale (the layer's result stays float), just 10-bit mantissas."""
    c = odd_part(out_scale) if out_scale is not None else 1
    out = []
    for v in np.asarray(ideal, dtype=np.float64).reshape(-1):
        v = max(float(v), 2.0**-60)
        u = round_up_mantissa(v / c, WEIGHT_MANTISSA)  # u' 2^j with a 10-bit u'
        out.append(u * c)  # exact: c has at most 6 bits
    return np.asarray(out, dtype=np.float64).reshape(np.shape(ideal))


def dyadic_multiplier(s_in: float, s_w: float, s_out: float) -> tuple[int, int] | None:
    """(multiplier, shift) with multiplier 2^-(31 + shift) = s_in s_w / s_out exactly, or
    None when no int32 multiplier and shift in requantize's range expresses it exactly."""
    r = Fraction(s_in) * Fraction(s_w) / Fraction(s_out)
    if r.denominator & (r.denominator - 1):  # not a power of two: not dyadic
        return None
    if r.numerator.bit_length() > 31:
        return None
    m, shift = quantize_multiplier(float(r))
    if not -31 <= shift <= 31 or Fraction(m) / Fraction(2) ** (31 + shift) != r:
        return None
    return m, shift


def is_float32(s: float) -> bool:
    return float(np.float32(s)) == s
