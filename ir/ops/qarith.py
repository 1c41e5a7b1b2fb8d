"""Integer ops between quantized tensors of different scales: qadd, qmul and qmean, exact.

    qadd(a, b){a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, bits, signed, qmin, qmax}
    qmul(a, b){a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, bits, signed, qmin, qmax}
    qmean(x){axes, keepdims, x_scale, x_zp, out_scale, out_zp, bits, signed, qmin, qmax}

Each is the Q/DQ chain it replaces, computed exactly:

    qadd  = quantize(dequantize(a) + dequantize(b), out_scale, out_zp)
          = clamp(rhe(((a - a_zp) a_scale + (b - b_zp) b_scale) / out_scale) + out_zp)
    qmul  = quantize(dequantize(a) * dequantize(b), out_scale, out_zp)
          = clamp(rhe((a - a_zp) (b - b_zp) a_scale b_scale / out_scale) + out_zp)
    qmean = quantize(mean(dequantize(x), axes), out_scale, out_zp)
          = clamp(rhe(sum(x - x_zp) x_scale / (count out_scale)) + out_zp)

rhe is round to nearest, ties to even, as everywhere in smelt (ir/ops/quant.py). A float
scale is exactly a rational number n / 2^k, so each real quotient above is exactly
sum_i c_i v_i / D with integers c_i, D (`rescale_plan`, reduced by their gcd), and the
result is that rational rounded with integer floor division (`rounding_divide`): no float
arithmetic, no approximated multiplier, ties exact. The attributes keep the real scales (the
Q/DQ graph's); the integer program is derived from them, identically by the interpreter and
the compiled code. A plan whose numerator could leave int64 (scales 2^40 apart) is a
TypeInferenceError when the node is built.

Scales with short mantissas keep the integers small: smelt's `quantize` pass gives
activations 6-bit mantissas (passes/qscales.py), so c_i and D have a few bits each.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import QuantParams, TensorType
from .common import broadcast, norm_axes, prod
from .quant import CLAMP_ATTRS, INT_RANGES, _check_scales, _int_input, clamp_bounds, storage

INT64_BUDGET = 2**62


def rounding_divide(n: np.ndarray, d: int) -> np.ndarray:
    """n / d rounded to nearest, ties to even, exactly in int64; d >= 1."""
    n = np.asarray(n, dtype=np.int64)
    d64 = np.int64(d)
    q = n // d64  # floor
    r = n - q * d64  # in [0, d)
    up = (2 * r > d64) | ((2 * r == d64) & ((q & 1) == 1))
    return q + up.astype(np.int64)


def rescale_plan(in_scales: tuple[float | Fraction, ...], out_scale: float, divisor: int = 1
                 ) -> tuple[tuple[int, ...], int]:
    """Integers (c_1..c_k, D) with c_i / D = in_scale_i / (divisor * out_scale) exactly,
    reduced by their common gcd (an in_scale may be an exact Fraction: qmul's product)."""
    ratios = [Fraction(s) / (Fraction(out_scale) * divisor) for s in in_scales]
    den = math.lcm(*(r.denominator for r in ratios))
    coeffs = [r.numerator * (den // r.denominator) for r in ratios]
    g = math.gcd(den, *coeffs)
    return tuple(c // g for c in coeffs), den // g


def _check_budget(op: str, coeffs: tuple[int, ...], den: int, spans: tuple[int, ...]) -> None:
    worst = sum(c * s for c, s in zip(coeffs, spans, strict=True))
    if worst >= INT64_BUDGET or 2 * den >= INT64_BUDGET:
        raise TypeInferenceError(
            f"{op}: the exact integer rescale needs numerators up to {worst} and divisor {den}, "
            "beyond int64; the scales are too far apart (or have long mantissas): requantize "
            "one operand first, or choose scales with short mantissas")


def _span(t: TensorType) -> int:
    lo, hi = INT_RANGES[t.dtype]
    return hi - lo


def _out_type(shape: tuple[int, ...], attrs: dict) -> TensorType:
    dtype, _, _ = clamp_bounds(attrs)
    _, lo, hi = storage(attrs["bits"], attrs["signed"])
    _check_scales("out_scale", (attrs["out_scale"],))
    if not lo <= attrs["out_zp"] <= hi:
        raise TypeInferenceError(f"out_zp={attrs['out_zp']} must lie in [{lo}, {hi}]")
    return TensorType(shape, dtype, QuantParams((attrs["out_scale"],), (attrs["out_zp"],),
                                                attrs["bits"], None))


def _operand(name: str, t: TensorType, scale: float, zp: int) -> None:
    lo, hi = _int_input(f"{name} of a quantized op", t, tuple(INT_RANGES))
    _check_scales(f"{name}_scale", (scale,))
    if not lo <= zp <= hi:
        raise TypeInferenceError(f"{name}_zp={zp} must lie in {t.dtype}'s range [{lo}, {hi}]")
    q = t.quant
    if q is not None and (q.axis is not None or q.scale != (scale,) or q.zero_point != (zp,)):
        raise TypeInferenceError(f"{name} is annotated {q}, but the op says scale {scale}, "
                                 f"zero point {zp}, per tensor; use the annotation's")


def _clamped(v: np.ndarray, attrs: dict) -> np.ndarray:
    dtype, lo, hi = clamp_bounds(attrs)
    return np.clip(v + attrs["out_zp"], lo, hi).astype(dtype)


OUT_ATTRS = {"out_scale": AttrSpec("float"), "out_zp": AttrSpec("int", 0), **CLAMP_ATTRS}


# -- qadd and qmul --------------------------------------------------------------------------
def _add_plan(attrs: dict) -> tuple[tuple[int, ...], int]:
    return rescale_plan((attrs["a_scale"], attrs["b_scale"]), attrs["out_scale"])


def qmul_plan(attrs: dict) -> tuple[tuple[int, ...], int]:
    """qmul's (c,), D: c / D = a_scale b_scale / out_scale exactly (the product taken as a
    Fraction: in floats it may round)."""
    product = Fraction(attrs["a_scale"]) * Fraction(attrs["b_scale"])
    return rescale_plan((product,), attrs["out_scale"])


def _binary_infer(op: str, plan, spans):
    """Type inference of qadd / qmul: two quantized operands (numpy broadcasting), a plan
    whose numerators stay in int64 for the operands' `spans`."""
    def infer(types: list[TensorType], attrs: dict) -> TensorType:
        a, b = types
        _operand("a", a, attrs["a_scale"], attrs["a_zp"])
        _operand("b", b, attrs["b_scale"], attrs["b_zp"])
        coeffs, den = plan(attrs)
        _check_budget(op, coeffs, den, spans(_span(a), _span(b)))
        return _out_type(broadcast([a.shape, b.shape]), attrs)

    return infer


BINARY_ATTRS = {"a_scale": AttrSpec("float"), "a_zp": AttrSpec("int", 0),
                "b_scale": AttrSpec("float"), "b_zp": AttrSpec("int", 0), **OUT_ATTRS}


@defop("qadd", ("a", "b"), _binary_infer("qadd", _add_plan, lambda sa, sb: (sa, sb)),
       category="quant", attrs=BINARY_ATTRS)
def qadd(a, b, *, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, bits, signed, qmin, qmax):
    """clamp(rhe(((a - a_zp) a_scale + (b - b_zp) b_scale) / out_scale) + out_zp), exact
    (numpy broadcasting)."""
    (ca, cb), den = rescale_plan((a_scale, b_scale), out_scale)
    n = (a.astype(np.int64) - a_zp) * ca + (b.astype(np.int64) - b_zp) * cb
    return _clamped(rounding_divide(n, den), {"out_zp": out_zp, "bits": bits, "signed": signed,
                                              "qmin": qmin, "qmax": qmax})


@defop("qmul", ("a", "b"), _binary_infer("qmul", qmul_plan, lambda sa, sb: (sa * sb,)),
       category="quant", attrs=BINARY_ATTRS)
def qmul(a, b, *, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, bits, signed, qmin, qmax):
    """clamp(rhe((a - a_zp) (b - b_zp) a_scale b_scale / out_scale) + out_zp), exact
    (numpy broadcasting)."""
    (c,), den = qmul_plan({"a_scale": a_scale, "b_scale": b_scale, "out_scale": out_scale})
    n = (a.astype(np.int64) - a_zp) * (b.astype(np.int64) - b_zp) * c
    return _clamped(rounding_divide(n, den), {"out_zp": out_zp, "bits": bits, "signed": signed,
                                              "qmin": qmin, "qmax": qmax})


# -- qmean ---------------------------------------------------------------------------------
def _mean_axes(t: TensorType, attrs: dict) -> tuple[int, ...]:
    return norm_axes(attrs["axes"], t.rank) if attrs["axes"] else tuple(range(t.rank))


def _qmean_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    _operand("x", x, attrs["x_scale"], attrs["x_zp"])
    axes = _mean_axes(x, attrs)
    count = prod(x.shape[a] for a in axes)
    if count == 0:
        raise TypeInferenceError(f"qmean over an empty axis of {x}")
    coeffs, den = rescale_plan((attrs["x_scale"],), attrs["out_scale"], count)
    _check_budget("qmean", coeffs, den, (_span(x) * count,))
    keep = attrs["keepdims"]
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keep else \
        tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return _out_type(shape, attrs)


@defop("qmean", ("x",), _qmean_infer, category="quant",
       attrs={"axes": AttrSpec("ints", ()), "keepdims": AttrSpec("bool", False),
              "x_scale": AttrSpec("float"), "x_zp": AttrSpec("int", 0), **OUT_ATTRS})
def qmean(x, *, axes, keepdims, x_scale, x_zp, out_scale, out_zp, bits, signed, qmin, qmax):
    """clamp(rhe(sum(x - x_zp) x_scale / (count out_scale)) + out_zp) over `axes` (all when
    empty), exact."""
    ax = tuple(a % x.ndim for a in axes) if axes else tuple(range(x.ndim))
    count = prod(x.shape[a] for a in ax)
    (c,), den = rescale_plan((x_scale,), out_scale, count)
    s = np.sum(x.astype(np.int64) - x_zp, axis=ax, keepdims=keepdims) * c
    return _clamped(rounding_divide(s, den), {"out_zp": out_zp, "bits": bits, "signed": signed,
                                              "qmin": qmin, "qmax": qmax})
