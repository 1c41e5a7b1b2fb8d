"""Quantized ops: affine quantization, integer contractions, integer-only requantization.

A quantized tensor holds integers q standing for real = scale * (q - zero_point); per-tensor
(one scale, `axis` None) or per-channel (one scale per index of `axis`).

    quantize(x){scale, zero_point, axis, bits, signed, qmin, qmax}     float -> int8/uint8/...
    dequantize(q){scale, zero_point, axis}                              int -> float32
    qconv2d(x, w, bias?){x_zp, w_zp, stride, padding, dilation, groups} -> int32
    qlinear(x, w, bias?){x_zp, w_zp}                                    -> int32
    qmatmul(a, b){a_zp, b_zp}                                           -> int32
    requantize(acc){multiplier, shift, out_zp, out_scale, axis, bits, signed, qmin, qmax}

Storage. `bits` <= 8 is stored in int8 (uint8 when not `signed`), <= 16 in int16, <= 32 in
int32; the range is the bit width's, so int4 is int8 holding [-8, 7] with `quant.bits` 4 (the
compiled path cannot allocate 4-bit tensors). `qmin`/`qmax` narrow the clamp (default: the
full range). The outputs of quantize and requantize carry `TensorType.quant`.

One rounding rule, everywhere: round to nearest, ties to even (rhe).
- quantize: q = clamp(rhe(x / scale) + zero_point, qmin, qmax). x is widened (exactly) to
  float64 and divided by the scale in float64, one IEEE division; that quotient is rounded to
  the nearest integer, ties to even (np.rint, ONNX QuantizeLinear's rule): 2.5 -> 2, 3.5 -> 4,
  -2.5 -> -2. The zero point is added after rounding, so a tie's direction does not depend on
  it. One x gives the same integers in both interpreter precisions. NaN quantizes to the zero
  point (real 0); +-inf saturate to qmax / qmin. torch (2.13, CPU) differs in two ways: it
  rounds x * fl32(1 / scale) + zero_point, so on ties with an odd zero point it is one off, and
  for scales that are not powers of two it can be one off within a float32 ulp of a tie.
- dequantize: (q - zero_point) * scale, the integer difference exact, the product in float64
  rounded once to float32 (correctly rounded for float32 scales and |q - zp| < 2^29).
- requantize: y = clamp(rhe(acc * multiplier / 2^n) + out_zp, qmin, qmax) with n = 31 + shift
  in [0, 62], all in int64 (|acc * multiplier| < 2^62), no floats: p = acc * multiplier,
  q = p >> n (floor), r = p - q * 2^n in [0, 2^n); round up iff r > 2^(n-1), or r = 2^(n-1)
  (a tie) and q is odd; n = 0 is exact. `rounding_shift_right` is this rule. Not gemmlowp's
  double rounding (half away from zero, twice) nor TFLite's single-rounding half up, because
  requantize stands in for the Q/DQ graph quantize(dequantize(acc)), which rounds ties to
  even: any other tie rule is one off on every tie (ONNX Runtime's issue 32132). It costs an
  AND and a compare more than half up.

The contract this gives (tests/test_quant_ops.py): with s_x, s_w, s_y the input, weight and
output scales, requantize(qconv2d(x, w, b)) with (multiplier, shift) = quantize_multiplier(
s_x s_w / s_y) equals quantize(conv2d(dequantize(x), dequantize(w), dequantize(b)), s_y) bit
for bit, ties included, whenever multiplier * 2^-(31 + shift) = s_x s_w / s_y exactly and the
float chain computes exactly; otherwise they are at most one apart.

Integer contractions subtract the zero points first, so padding (with 0 after the
subtraction) is padding with x_zp before it: padded elements are real zeros. They accumulate
sum((x - x_zp) * (w - w_zp)) + bias exactly in int64; a result outside int32 raises
AccumulatorOverflowError naming the op, never wraps. Compiled code: the generic lowering
accumulates in int64; the VNNI kernels (backends/cpu/int8_kernels.py) in int32, which is
exact whenever the exact result fits int32 (the raw sums stay in range for K <= 32768).

`quantize_multiplier(r)` writes a real rescale r as (m, shift), m in [2^30, 2^31), with
|m * 2^-(31 + shift) - r| <= 2^-31 r: m is r's mantissa rounded to 31 bits, exact when r has
at most 31 significant bits. So requantize differs from rhe(acc * r) by at most one, and only
where acc * r lies within |acc * r| * 2^-31 of a tie. r < 2^-32 gives (0, 0) (acc * r rounds to
0 for every int32 acc); r in [2^31 - 1/2, 2^31) gives (2^31 - 1, -31); larger r raise.

Activations fold into the clamp, exactly, because rounding and clamping are monotone and
rhe(0) = 0: quantize(relu(x)) = quantize(x) with qmin' = max(qmin, zero_point), and
quantize(relu6(x)) also has qmax' = min(qmax, zero_point + rhe(6 / scale)). The same bounds on
requantize fold a relu or relu6 after the rescaled contraction.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InterpretError, SmeltError, TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import QuantParams, TensorType, is_float
from .common import norm_axis
from .nn import _conv_infer, _conv_macs, _linear_infer, _linear_macs, _matmul_infer, _matmul_macs
from .nn import conv2d as conv2d_ref

INT32 = (-(2**31), 2**31 - 1)
INT_RANGES = {"int4": (-8, 7), "uint4": (0, 15), "int8": (-128, 127), "uint8": (0, 255),
              "int16": (-(2**15), 2**15 - 1), "int32": INT32}
CONTRACTION_DTYPES = ("int4", "uint4", "int8", "uint8", "int16")


class AccumulatorOverflowError(InterpretError):
    """An integer contraction's exact result does not fit its int32 accumulator."""


class QuantizationError(SmeltError, ValueError):
    """A real scale that no int32 multiplier and shift can express."""


# -- the arithmetic ------------------------------------------------------------------------
def rounding_shift_right(p: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """p / 2^n rounded to nearest, ties to even, exactly in int64; 0 <= n <= 62."""
    p = np.asarray(p, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    q = p >> n  # arithmetic shift: floor
    r = p - (q << n)  # in [0, 2^n)
    half = (np.int64(1) << n) >> 1  # 2^(n-1); 0 when n = 0 (then r = 0: no rounding)
    up = (r > half) | ((r == half) & (n > 0) & ((q & 1) == 1))
    return q + up.astype(np.int64)


def quantize_multiplier(real_scale: float) -> tuple[int, int]:
    """(multiplier, shift) with real_scale ~ multiplier * 2^-(31 + shift), multiplier in
    [2^30, 2^31): relative error <= 2^-31. Scales below 2^-32 give (0, 0): acc * scale rounds
    to 0 for every int32 acc anyway. Scales >= 2^31 raise QuantizationError."""
    r = float(real_scale)
    if not (r > 0 and math.isfinite(r)):
        raise QuantizationError(f"a requantization scale must be positive and finite, got {r}")
    f, e = math.frexp(r)  # r = f * 2^e, f in [0.5, 1)
    m = round(f * 2**31)  # f * 2^31 is exact; round() ties to even
    if m == 2**31:
        m, e = 2**30, e + 1
    shift = -e
    if shift > 31:
        return 0, 0
    if r >= 2**31:
        raise QuantizationError(f"requantization scale {r} is >= 2^31; no int32 rescale "
                                "expresses it: check the scales that produced it")
    if shift < -31:  # r in [2^31 - 1/2, 2^31) rounded up to 2^31: take the largest int32
        return 2**31 - 1, -31
    return m, shift


def storage(bits: int, signed: bool) -> tuple[str, int, int]:
    """(dtype, lo, hi) of a bit width: the storage dtype and the range of the width."""
    if not 2 <= bits <= 32:
        raise TypeInferenceError(f"bits={bits} must lie in [2, 32]")
    if not signed and bits > 8:
        raise TypeInferenceError(f"unsigned quantization is at most 8 bits (uint8), got "
                                 f"bits={bits}; use signed=True")
    if not signed:
        return "uint8", 0, 2**bits - 1
    dtype = "int8" if bits <= 8 else "int16" if bits <= 16 else "int32"
    return dtype, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def clamp_bounds(attrs: dict) -> tuple[str, int, int]:
    """(dtype, qmin, qmax) from bits, signed and the optional qmin/qmax."""
    dtype, lo, hi = storage(attrs["bits"], attrs["signed"])
    qmin = lo if attrs["qmin"] is None else attrs["qmin"]
    qmax = hi if attrs["qmax"] is None else attrs["qmax"]
    if not lo <= qmin <= qmax <= hi:
        raise TypeInferenceError(f"need {lo} <= qmin <= qmax <= {hi} for {attrs['bits']} bits "
                                 f"(signed={attrs['signed']}), got qmin={qmin}, qmax={qmax}")
    return dtype, qmin, qmax


def channel(values, axis: int | None, rank: int, dtype) -> np.ndarray:
    """Per-tensor values as a 0-d array; per-channel ones shaped to broadcast along `axis`."""
    a = np.asarray(values, dtype=dtype)
    if a.size == 1:
        return a.reshape(())
    shape = [1] * rank
    shape[axis % rank] = a.size
    return a.reshape(shape)


def _fits_int32(acc: np.ndarray, op: str) -> np.ndarray:
    if acc.size and (acc.min() < INT32[0] or acc.max() > INT32[1]):
        worst = int(acc.max()) if acc.max() > INT32[1] else int(acc.min())
        raise AccumulatorOverflowError(
            f"{op}: the exact accumulator reaches {worst}, outside int32 [{INT32[0]}, "
            f"{INT32[1]}]; narrow the operands' ranges, shorten the reduction, or split it")
    return acc.astype(np.int32)


# -- checking attributes -------------------------------------------------------------------
def _check_scales(name: str, scales: tuple[float, ...]) -> None:
    bad = [s for s in scales if not (s > 0 and math.isfinite(s))]
    if bad or not scales:
        raise TypeInferenceError(f"{name} must be positive finite numbers, got {list(scales)}")


def _check_ints(name: str, values: tuple[int, ...], lo: int, hi: int, what: str) -> None:
    if not values:
        raise TypeInferenceError(f"{name} needs at least one value")
    if any(not lo <= v <= hi for v in values):
        raise TypeInferenceError(f"{name}={list(values)} must lie in [{lo}, {hi}] ({what})")


def _per_channel(t: TensorType, axis: int | None, lengths: dict[str, int]) -> int | None:
    """The normalized axis, after checking that each per-channel attribute has one value
    (per tensor) or one per index of `axis` (zero points may always give one value)."""
    if axis is None:
        longer = {k: n for k, n in lengths.items() if n != 1}
        if longer:
            raise TypeInferenceError(f"{', '.join(longer)} give several values but axis is "
                                     "none: set axis to the channel axis, or give one value")
        return None
    axis = norm_axis(axis, t.rank)
    size = t.shape[axis]
    for k, n in lengths.items():
        if n not in (1, size) or (k.endswith("scale") and n != size):
            raise TypeInferenceError(f"{k} has {n} values but axis {axis} has {size} channels; "
                                     f"give {size}" + ("" if k.endswith("scale") else " or 1"))
    return axis


def _expand(values: tuple, n: int) -> tuple:
    return values * n if len(values) == 1 else values


def _int_input(name: str, t: TensorType, allowed: tuple[str, ...]) -> tuple[int, int]:
    if t.dtype not in allowed:
        raise TypeInferenceError(f"{name} must be one of {', '.join(allowed)}, got {t.dtype}; "
                                 "quantize it first")
    return INT_RANGES[t.dtype]


def _agrees(name: str, t: TensorType, zps: tuple[int, ...], channel_axis: bool) -> None:
    """An operand annotated with quantization parameters must be quantized per tensor (or,
    when `channel_axis`, per output channel: axis 0) and have the zero points used."""
    q = t.quant
    if q is None:
        return
    if q.axis not in ((None, 0) if channel_axis else (None,)):
        where = "per tensor or per output channel (axis 0)" if channel_axis else "per tensor"
        raise TypeInferenceError(f"the operand of {name} is quantized along axis {q.axis}; an "
                                 f"integer contraction needs it quantized {where}")
    if tuple(q.zero_point) != _expand(zps, len(q.zero_point)):
        raise TypeInferenceError(f"{name}={list(zps)} but the operand is annotated with zero "
                                 f"point {list(q.zero_point)}; use the annotation's")


# -- quantize and dequantize ---------------------------------------------------------------
def _quantize_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    if not is_float(x.dtype):
        raise TypeInferenceError(f"quantize takes a float tensor, got {x.dtype}")
    dtype, _, _ = clamp_bounds(attrs)
    _, lo, hi = storage(attrs["bits"], attrs["signed"])
    scale, zps = attrs["scale"], attrs["zero_point"]
    _check_scales("scale", scale)
    _check_ints("zero_point", zps, lo, hi, f"the {attrs['bits']}-bit range")
    axis = _per_channel(x, attrs["axis"], {"scale": len(scale), "zero_point": len(zps)})
    return TensorType(x.shape, dtype,
                      QuantParams(scale, _expand(zps, len(scale)), attrs["bits"], axis))


QUANT_ATTRS = {"scale": AttrSpec("floats"), "zero_point": AttrSpec("ints", (0,)),
               "axis": AttrSpec("int?", None)}
CLAMP_ATTRS = {"bits": AttrSpec("int", 8), "signed": AttrSpec("bool", True),
               "qmin": AttrSpec("int?", None), "qmax": AttrSpec("int?", None)}


@defop("quantize", ("x",), _quantize_infer, category="quant",
       attrs={**QUANT_ATTRS, **CLAMP_ATTRS})
def quantize(x, *, scale, zero_point, axis, bits, signed, qmin, qmax):
    """clamp(rhe(x / scale) + zero_point, qmin, qmax); float64 quotient, ties to even."""
    dtype, lo, hi = clamp_bounds({"bits": bits, "signed": signed, "qmin": qmin, "qmax": qmax})
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.rint(x / channel(scale, axis, x.ndim, np.float64))
    v = np.where(np.isnan(v), 0.0, v) + channel(zero_point, axis, x.ndim, np.float64)
    return np.clip(v, lo, hi).astype(dtype)


def _dequantize_infer(types: list[TensorType], attrs: dict) -> TensorType:
    q = types[0]
    lo, hi = _int_input("dequantize's input", q, tuple(INT_RANGES))
    scale, zps = attrs["scale"], attrs["zero_point"]
    _check_scales("scale", scale)
    _check_ints("zero_point", zps, lo, hi, f"{q.dtype}'s range")
    axis = _per_channel(q, attrs["axis"], {"scale": len(scale), "zero_point": len(zps)})
    ann = q.quant
    if ann is not None and (ann.scale, ann.zero_point, ann.axis) != (
            scale, _expand(zps, len(scale)), axis):
        raise TypeInferenceError(
            f"dequantize's scale={list(scale)}, zero_point={list(zps)}, axis={axis} disagree "
            f"with its input's annotation {q}; dequantize with the annotation's parameters")
    return TensorType(q.shape, "float32")


@defop("dequantize", ("q",), _dequantize_infer, category="quant", attrs=QUANT_ATTRS)
def dequantize(q, *, scale, zero_point, axis):
    """(q - zero_point) * scale: exact integer difference, float64 product (the interpreter
    rounds it once to float32)."""
    d = q.astype(np.int64) - channel(zero_point, axis, q.ndim, np.int64)
    return d.astype(np.float64) * channel(scale, axis, q.ndim, np.float64)


# -- integer contractions ------------------------------------------------------------------
def _contraction_infer(base, zp_names: tuple[str, str], per_channel_w: bool,
                       out_axis: int = 0):
    """Inference of an integer contraction: operand dtypes, zero points in range (the second
    operand's per output channel when `per_channel_w`), an int32 bias, then `base`'s shapes
    on the operands as int32."""

    def infer(types: list[TensorType], attrs: dict) -> TensorType:
        a, b = types[0], types[1]
        for name, t, zp, by_channel in ((zp_names[0], a, attrs[zp_names[0]], False),
                                        (zp_names[1], b, attrs[zp_names[1]], per_channel_w)):
            lo, hi = _int_input(f"operand for {name}", t, CONTRACTION_DTYPES)
            zps = (zp,) if isinstance(zp, int) else zp
            _check_ints(name, zps, lo, hi, f"{t.dtype}'s range")
            _agrees(name, t, zps, by_channel)
        if len(types) == 3 and types[2].dtype != "int32":
            raise TypeInferenceError(f"the bias must be int32 (quantized with scale "
                                     f"x_scale * w_scale, zero point 0), got {types[2].dtype}")
        as_int = [TensorType(t.shape, "int32") for t in types]
        out = base(as_int, attrs)
        if per_channel_w:
            w_zp, outs = attrs[zp_names[1]], b.shape[out_axis]
            if len(w_zp) not in (1, outs):
                raise TypeInferenceError(f"{zp_names[1]} has {len(w_zp)} values; give 1 or one "
                                         f"per output channel ({outs})")
        return out

    return infer


_CONV_ATTRS = {"x_zp": AttrSpec("int", 0), "w_zp": AttrSpec("ints", (0,)),
               "stride": AttrSpec("ints", (1, 1)), "padding": AttrSpec("ints", (0, 0)),
               "dilation": AttrSpec("ints", (1, 1)), "groups": AttrSpec("int", 1)}


@defop("qconv2d", ("x", "w", "bias?"), _contraction_infer(_conv_infer, ("x_zp", "w_zp"), True),
       category="contraction", macs=_conv_macs, attrs=_CONV_ATTRS)
def qconv2d(x, w, b=None, *, x_zp, w_zp, stride, padding, dilation, groups):
    """sum((x - x_zp) * (w - w_zp)) + bias over conv2d windows, exact, as int32; padding
    is with x_zp (a real zero); w_zp one per output channel or one for all."""
    xs = x.astype(np.int64) - x_zp
    ws = w.astype(np.int64) - channel(w_zp, 0, 4, np.int64)
    acc = conv2d_ref(xs, ws, stride=stride, padding=padding, dilation=dilation, groups=groups)
    if b is not None:
        acc = acc + b.astype(np.int64).reshape(1, -1, 1, 1)
    return _fits_int32(acc, "qconv2d")


@defop("qlinear", ("x", "w", "bias?"), _contraction_infer(_linear_infer, ("x_zp", "w_zp"), True),
       category="contraction", macs=_linear_macs,
       attrs={"x_zp": AttrSpec("int", 0), "w_zp": AttrSpec("ints", (0,))})
def qlinear(x, w, b=None, *, x_zp, w_zp):
    """(x - x_zp) @ (w - w_zp).T + bias, w in (out, in) layout, exact, as int32."""
    ws = w.astype(np.int64) - channel(w_zp, 0, 2, np.int64)
    acc = np.matmul(x.astype(np.int64) - x_zp, ws.T)
    if b is not None:
        acc = acc + b.astype(np.int64)
    return _fits_int32(acc, "qlinear")


@defop("qmatmul", ("a", "b"), _contraction_infer(_matmul_infer, ("a_zp", "b_zp"), False),
       category="contraction", macs=_matmul_macs,
       attrs={"a_zp": AttrSpec("int", 0), "b_zp": AttrSpec("int", 0)})
def qmatmul(a, b, *, a_zp, b_zp):
    """(a - a_zp) @ (b - b_zp), numpy matmul semantics, exact, as int32."""
    acc = np.matmul(a.astype(np.int64) - a_zp, b.astype(np.int64) - b_zp)
    return _fits_int32(np.asarray(acc), "qmatmul")


# -- requantize ----------------------------------------------------------------------------
def _requantize_infer(types: list[TensorType], attrs: dict) -> TensorType:
    acc = types[0]
    if acc.dtype != "int32":
        raise TypeInferenceError(f"requantize takes an int32 accumulator, got {acc.dtype}")
    dtype, _, _ = clamp_bounds(attrs)
    _, lo, hi = storage(attrs["bits"], attrs["signed"])
    m, shift = attrs["multiplier"], attrs["shift"]
    _check_ints("multiplier", m, 0, INT32[1], "a non-negative int32; see quantize_multiplier")
    _check_ints("shift", shift, -31, 31, "the right shift 31 + shift lies in [0, 62]")
    _check_ints("out_zp", (attrs["out_zp"],), lo, hi, f"the {attrs['bits']}-bit range")
    _check_scales("out_scale", (attrs["out_scale"],))
    _per_channel(acc, attrs["axis"], {"multiplier": len(m), "shift": len(shift)})
    quant = QuantParams((attrs["out_scale"],), (attrs["out_zp"],), attrs["bits"], None)
    return TensorType(acc.shape, dtype, quant)


@defop("requantize", ("acc",), _requantize_infer, category="quant",
       attrs={"multiplier": AttrSpec("ints"), "shift": AttrSpec("ints", (0,)),
              "out_zp": AttrSpec("int", 0), "out_scale": AttrSpec("float"),
              "axis": AttrSpec("int?", None), **CLAMP_ATTRS})
def requantize(acc, *, multiplier, shift, out_zp, out_scale, axis, bits, signed, qmin, qmax):
    """clamp(rhe(acc * multiplier / 2^(31 + shift)) + out_zp, qmin, qmax), int64 only;
    `out_scale` only annotates the result (the real scale its integers stand for)."""
    dtype, lo, hi = clamp_bounds({"bits": bits, "signed": signed, "qmin": qmin, "qmax": qmax})
    p = acc.astype(np.int64) * channel(multiplier, axis, acc.ndim, np.int64)
    n = 31 + channel(shift, axis, acc.ndim, np.int64)
    return np.clip(rounding_shift_right(p, n) + out_zp, lo, hi).astype(dtype)
