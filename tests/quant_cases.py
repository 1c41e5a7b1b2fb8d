"""Examples and independent references for the quantized ops (ir/ops/quant.py).

`QUANT_CASES` maps each op to a hypothesis strategy of (operands, attributes), the reference
it must equal, whether that comparison is exact, and its error term; test_ops_reference wraps
them into its CASES (so test_ops_reference and test_backend_ops run them too), and
test_quant_ops uses them directly. The references are written without smelt: torch's
quantized tensors for quantize and dequantize, torch float64 convolution (exact: every
partial sum is an integer below 2^53) and int64 matmul for the contractions, Python's exact
integers and round() (ties to even) for requantize.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st

from smelt.ir.ops.quant import quantize_multiplier
from smelt.rewrite import strategies as sst

WIDTHS = [(8, True), (8, False), (4, True), (4, False), (6, True), (16, True), (32, True)]
POW2 = [2.0**k for k in range(-6, 4)]
RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-(2**15), 2**15 - 1),
          "int32": (-(2**31), 2**31 - 1)}


def bounds(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def _rng(draw: st.DrawFn) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def _along(values, axis: int | None, rank: int) -> np.ndarray:
    a = np.asarray(values)
    if axis is None or a.size == 1:
        return a.reshape(())
    return a.reshape([-1 if i == axis % rank else 1 for i in range(rank)])


@st.composite
def clamp_attrs(draw: st.DrawFn, bits: int, signed: bool) -> dict:
    attrs = {"bits": bits, "signed": signed}
    if draw(st.booleans()):
        lo, hi = bounds(bits, signed)
        attrs["qmin"], attrs["qmax"] = sorted(draw(st.lists(st.integers(lo, hi), min_size=2,
                                                            max_size=2)))
    return attrs


@st.composite
def channel_axis(draw: st.DrawFn, shape: tuple[int, ...]) -> int | None:
    return draw(st.none() | st.integers(-len(shape), len(shape) - 1))


# -- examples and independent references (CASES entries) -----------------------------------
@st.composite
def quantize_examples(draw: st.DrawFn):
    """Power-of-two scales; values exact ties (k + 1/2) * scale or anywhere in between, some
    beyond the clamp range (saturating)."""
    bits, signed = draw(st.sampled_from(WIDTHS))
    lo, hi = bounds(bits, signed)
    shape = draw(sst.shapes(1, 4, 1, 5))
    axis = draw(channel_axis(shape))
    n = 1 if axis is None else shape[axis]
    scale = [draw(st.sampled_from(POW2)) for _ in range(n)]
    zp = [draw(st.integers(lo, hi)) for _ in range(draw(st.sampled_from([1, n])))]
    rng = _rng(draw)
    span = min(hi - lo, 2**12)
    frac = 0.5 if draw(st.booleans()) else rng.uniform(-0.5, 0.5, shape)
    x = (rng.integers(-span, span + 1, shape) + frac) * _along(scale, axis, len(shape))
    dtype = np.float16 if bits <= 8 and draw(st.booleans()) else np.float32
    attrs = {"scale": scale, "zero_point": zp, "axis": axis, **draw(clamp_attrs(bits, signed))}
    return (x.astype(dtype),), attrs


def torch_quantize(x, *, scale, zero_point, axis, bits, signed, qmin=None, qmax=None):
    """torch's rounding of x / scale (zero point 0, qint32), then + zero point and clamp."""
    x = x.to(torch.float32)  # to_torch widened the float32/float16 operand: exact
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch deprecates its quantized tensors
        if axis is None:
            q = torch.quantize_per_tensor(x, scale[0], 0, torch.qint32)
        else:
            q = torch.quantize_per_channel(x, torch.tensor(scale, dtype=torch.float64),
                                           torch.zeros(len(scale), dtype=torch.long),
                                           axis % x.dim(), torch.qint32)
    lo, hi = bounds(bits, signed)
    zp = torch.from_numpy(_along(zero_point, axis, x.dim()).astype(np.int64))
    return torch.clamp(q.int_repr().long() + zp, lo if qmin is None else qmin,
                       hi if qmax is None else qmax)


@st.composite
def dequantize_examples(draw: st.DrawFn):
    dtype = draw(st.sampled_from(list(RANGES)))
    lo, hi = RANGES[dtype]
    shape = draw(sst.shapes(1, 4, 1, 5))
    axis = draw(channel_axis(shape))
    n = 1 if axis is None else shape[axis]
    scale = [float(np.float32(draw(st.floats(1e-4, 10.0)))) for _ in range(n)]
    zp = [draw(st.integers(max(lo, -1000), min(hi, 1000)))
          for _ in range(draw(st.sampled_from([1, n])))]
    q = _rng(draw).integers(max(lo, -(2**24)), min(hi, 2**24) + 1, shape)
    return (q.astype(dtype),), {"scale": scale, "zero_point": zp, "axis": axis}


def torch_dequantize(q, *, scale, zero_point, axis):
    """torch.dequantize of the same quantized tensor: float32, correctly rounded here."""
    q = q.to(torch.int32) if q.dtype == torch.int16 else q  # torch has no 16-bit qtype
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch deprecates its quantized tensors
        if axis is None:
            t = torch._make_per_tensor_quantized_tensor(q, scale[0], zero_point[0])
        else:
            zps = zero_point * (len(scale) // len(zero_point))
            t = torch._make_per_channel_quantized_tensor(
                q, torch.tensor(scale, dtype=torch.float64), torch.tensor(zps), axis % q.dim())
    return t.dequantize()


def exact_dequantize(q, *, scale, zero_point, axis):
    """(q - zp) * scale in float64: exact for float32 scales and |q - zp| < 2^29, so the
    oracle of both interpreter precisions (torch.dequantize is float32: see test_quant_ops)."""
    zp = torch.from_numpy(_along(zero_point, axis, q.dim()).astype(np.int64))
    scales = torch.from_numpy(_along(scale, axis, q.dim()).astype(np.float64))
    return (q.long() - zp).double() * scales


def _operand(draw: st.DrawFn, rng, shape, dtypes=("int8", "uint8")) -> tuple[np.ndarray, int]:
    """An integer operand and a zero point; values near the zero point or anywhere."""
    dtype = draw(st.sampled_from(dtypes))
    lo, hi = RANGES[dtype]
    zp = draw(st.integers(lo, hi))
    near = draw(st.sampled_from([3, 20, 300]))
    return np.clip(rng.integers(zp - near, zp + near + 1, shape), lo, hi).astype(dtype), zp


def _w_zps(draw: st.DrawFn, w: np.ndarray, outs: int) -> list[int]:
    lo, hi = RANGES[str(w.dtype)]
    return [draw(st.integers(lo, hi)) for _ in range(draw(st.sampled_from([1, outs])))]


def _bias(draw: st.DrawFn, rng, n: int) -> tuple[np.ndarray, ...]:
    return (rng.integers(-(2**20), 2**20, n).astype(np.int32),) if draw(st.booleans()) else ()


@st.composite
def qconv2d_examples(draw: st.DrawFn):
    groups, cin_g, out_g = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))
    dil = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    h = draw(st.integers(max(1, dil[0] * (kh - 1) + 1 - padding[0] - padding[2]), 7))
    w = draw(st.integers(max(1, dil[1] * (kw - 1) + 1 - padding[1] - padding[3]), 7))
    rng = _rng(draw)
    x, x_zp = _operand(draw, rng, (draw(st.integers(1, 2)), groups * cin_g, h, w))
    wt, _ = _operand(draw, rng, (groups * out_g, cin_g, kh, kw), ("int8", "int8", "uint8"))
    attrs = {"x_zp": x_zp, "w_zp": _w_zps(draw, wt, groups * out_g), "padding": padding,
             "stride": [draw(st.integers(1, 2)), draw(st.integers(1, 2))], "dilation": dil,
             "groups": groups}
    return (x, wt) + _bias(draw, rng, groups * out_g), attrs


def torch_qconv2d(x, w, b=None, *, x_zp, w_zp, stride, padding, dilation, groups):
    """Exact in float64: every product and partial sum is an integer below 2^53."""
    xf = F.pad(x.double() - x_zp, (padding[1], padding[3], padding[0], padding[2]))
    wf = w.double() - torch.tensor(w_zp, dtype=torch.float64).view(-1, 1, 1, 1)
    y = F.conv2d(xf, wf, None if b is None else b.double(), stride, 0, dilation, groups)
    return y.to(torch.int64)


@st.composite
def qlinear_examples(draw: st.DrawFn):
    rng = _rng(draw)
    k, o = draw(st.integers(1, 40)), draw(st.integers(1, 6))
    x, x_zp = _operand(draw, rng, draw(sst.shapes(0, 2, 1, 4)) + (k,))
    w, _ = _operand(draw, rng, (o, k))
    return (x, w) + _bias(draw, rng, o), {"x_zp": x_zp, "w_zp": _w_zps(draw, w, o)}


def torch_qlinear(x, w, b=None, *, x_zp, w_zp):
    y = (x.long() - x_zp) @ (w.long() - torch.tensor(w_zp).view(-1, 1)).T
    return y if b is None else y + b.long()


@st.composite
def qmatmul_examples(draw: st.DrawFn):
    rng = _rng(draw)
    batch = draw(sst.shapes(0, 2, 1, 3))
    m, k, n = (draw(st.integers(1, 6)) for _ in range(3))
    lead = [draw(sst.broadcastable_shapes(batch)) for _ in range(2)]
    a_shape = (k,) if draw(st.integers(0, 4)) == 0 else lead[0] + (m, k)
    b_shape = (k,) if draw(st.integers(0, 4)) == 0 else lead[1] + (k, n)
    (a, a_zp), (b, b_zp) = _operand(draw, rng, a_shape), _operand(draw, rng, b_shape)
    return (a, b), {"a_zp": a_zp, "b_zp": b_zp}


def torch_qmatmul(a, b, *, a_zp, b_zp):
    return torch.matmul(a.long() - a_zp, b.long() - b_zp)


def exact_requantize(acc: int, m: int, shift: int, zp: int, lo: int, hi: int) -> int:
    """Python integers, arbitrary precision; round() of a Fraction rounds ties to even."""
    return min(max(round(Fraction(acc * m, 2 ** (31 + shift))) + zp, lo), hi)


def tie_accumulators(rng, m: int, n: int, size: int) -> np.ndarray:
    """Accumulators a with a * m exactly halfway between multiples of 2^n (when any exist)."""
    t = (m & -m).bit_length() - 1 if m else 99  # trailing zeros of m
    if n - 1 - t < 0 or n - 1 - t > 30:
        return np.zeros(size, np.int64)
    odd = 2 * rng.integers(-(2 ** (30 - (n - 1 - t))), 2 ** (30 - (n - 1 - t)), size) + 1
    return np.clip(odd << (n - 1 - t), -(2**31), 2**31 - 1)


@st.composite
def requantize_examples(draw: st.DrawFn):
    """Multipliers from quantize_multiplier or arbitrary, any shift, accumulators random,
    extreme, or exact ties; per tensor or per channel."""
    bits, signed = draw(st.sampled_from(WIDTHS[:5]))
    lo, hi = bounds(bits, signed)
    shape = draw(sst.shapes(1, 3, 1, 5))
    axis = draw(channel_axis(shape))
    n = 1 if axis is None else shape[axis]
    rng = _rng(draw)
    if draw(st.booleans()):
        pairs = [quantize_multiplier(2.0 ** draw(st.floats(-24, 3))) for _ in range(n)]
    else:
        pairs = [(draw(st.integers(0, 2**31 - 1)), draw(st.integers(-31, 31))) for _ in range(n)]
    m, shift = [p[0] for p in pairs], [p[1] for p in pairs]
    kind = draw(st.sampled_from(["ties", "random", "extreme"]))
    if kind == "ties":
        acc = tie_accumulators(rng, m[0], 31 + shift[0], math.prod(shape)).reshape(shape)
        if n > 1:
            m, shift = [m[0]] * n, [shift[0]] * n
    elif kind == "random":
        acc = rng.integers(-(2 ** draw(st.integers(1, 31))), 2**20, shape)
    else:
        acc = rng.choice([-(2**31), 2**31 - 1, -1, 0, 1], shape)
    if len(set(shift)) == 1 and draw(st.booleans()):
        shift = shift[:1]  # one shift for every channel's multiplier
    attrs = {"multiplier": m, "shift": shift, "out_zp": draw(st.integers(lo, hi)),
             "out_scale": draw(st.sampled_from(POW2)), "axis": axis,
             **draw(clamp_attrs(bits, signed))}
    return (acc.astype(np.int32),), attrs


def python_requantize(acc, *, multiplier, shift, out_zp, out_scale, axis, bits, signed,
                      qmin=None, qmax=None):
    a = acc.numpy()
    lo, hi = bounds(bits, signed)
    lo, hi = lo if qmin is None else qmin, hi if qmax is None else qmax
    out = np.empty(a.shape, np.int64)
    for idx in np.ndindex(a.shape):
        c = 0 if axis is None else idx[axis % a.ndim]
        m, s = multiplier[c % len(multiplier)], shift[c % len(shift)]
        out[idx] = exact_requantize(int(a[idx]), m, s, out_zp, lo, hi)
    return torch.from_numpy(out)


# -- qadd and qmean (ir/ops/qarith.py): exact rational rescales --------------------------
def _scale(draw: st.DrawFn) -> float:
    """Short mantissas (smelt's quantize pass: ties are common) or any float32."""
    if draw(st.booleans()):
        return float(np.ldexp(draw(st.sampled_from([1, 3, 5, 33, 63])), draw(st.integers(-12, 0))))
    return float(np.float32(draw(st.floats(2.0**-10, 4.0))))


@st.composite
def out_attrs(draw: st.DrawFn) -> dict:
    bits, signed = draw(st.sampled_from(WIDTHS[:5]))
    lo, hi = bounds(bits, signed)
    return {"out_scale": _scale(draw), "out_zp": draw(st.integers(lo, hi)),
            **draw(clamp_attrs(bits, signed))}


@st.composite
def qadd_examples(draw: st.DrawFn):
    rng = _rng(draw)
    shape = draw(sst.shapes(1, 3, 1, 5))
    other = shape if draw(st.booleans()) else shape[1:]
    (a, a_zp), (b, b_zp) = _operand(draw, rng, shape), _operand(draw, rng, other)
    return (a, np.asarray(b)), {"a_scale": _scale(draw), "a_zp": a_zp, "b_scale": _scale(draw),
                    "b_zp": b_zp, **draw(out_attrs())}


def _exact_out(v: Fraction, out_zp, bits, signed, qmin=None, qmax=None) -> int:
    lo, hi = bounds(bits, signed)
    lo, hi = lo if qmin is None else qmin, hi if qmax is None else qmax
    return min(max(round(v) + out_zp, lo), hi)


def python_qadd(a, b, *, a_scale, a_zp, b_scale, b_zp, out_scale, **out):
    av, bv = np.broadcast_arrays(a.numpy(), b.numpy())
    res = np.empty(av.shape, np.int64)
    for idx in np.ndindex(av.shape):
        v = (Fraction(int(av[idx]) - a_zp) * Fraction(a_scale)
             + Fraction(int(bv[idx]) - b_zp) * Fraction(b_scale)) / Fraction(out_scale)
        res[idx] = _exact_out(v, **out)
    return torch.from_numpy(res)


@st.composite
def qmul_examples(draw: st.DrawFn):
    """As qadd's, with scales of at most 12 significant bits: the exact plan of a product of
    two long mantissas leaves int64 (a typed error when the node is built)."""
    (a, b), attrs = draw(qadd_examples())
    for k in ("a_scale", "b_scale", "out_scale"):
        attrs[k] = float(np.ldexp(draw(st.integers(1, 4095)), draw(st.integers(-20, 0))))
    return (a, b), attrs


def python_qmul(a, b, *, a_scale, a_zp, b_scale, b_zp, out_scale, **out):
    av, bv = np.broadcast_arrays(a.numpy(), b.numpy())
    res = np.empty(av.shape, np.int64)
    for idx in np.ndindex(av.shape):
        v = (Fraction(int(av[idx]) - a_zp) * Fraction(a_scale)
             * Fraction(int(bv[idx]) - b_zp) * Fraction(b_scale)) / Fraction(out_scale)
        res[idx] = _exact_out(v, **out)
    return torch.from_numpy(res)


@st.composite
def qmean_examples(draw: st.DrawFn):
    rng = _rng(draw)
    shape = draw(sst.shapes(1, 4, 1, 6))
    x, x_zp = _operand(draw, rng, shape)
    axes = draw(st.lists(st.integers(-len(shape), len(shape) - 1), max_size=2, unique_by=lambda
                         v: v % len(shape)))
    return (x,), {"axes": axes, "keepdims": draw(st.booleans()), "x_scale": _scale(draw),
                  "x_zp": x_zp, **draw(out_attrs())}


def python_qmean(x, *, axes, keepdims, x_scale, x_zp, out_scale, **out):
    a = x.numpy().astype(np.int64) - x_zp
    ax = tuple(v % a.ndim for v in axes) if axes else tuple(range(a.ndim))
    sums = a.sum(axis=ax, keepdims=keepdims)
    count = math.prod(a.shape[v] for v in ax)
    res = np.empty(sums.shape, np.int64)
    for idx in np.ndindex(sums.shape):
        v = Fraction(int(sums[idx])) * Fraction(x_scale) / (count * Fraction(out_scale))
        res[idx] = _exact_out(v, **out)
    return torch.from_numpy(res)


# -- qlookup (ir/ops/lookup.py): one table entry per 8-bit value ------------------------------
@st.composite
def qlookup_examples(draw: st.DrawFn):
    rng = _rng(draw)
    x, _ = _operand(draw, rng, draw(sst.shapes(1, 4, 1, 6)))
    signed = draw(st.booleans())
    out = "int8" if signed else "uint8"
    table = rng.integers(*RANGES[out], size=256, endpoint=True).astype(out)
    lo, hi = RANGES[out]
    return (x, table), {"out_scale": _scale(draw), "out_zp": draw(st.integers(lo, hi)),
                        "bits": 8, "signed": signed}


def python_qlookup(x, table, **attrs):
    lo = RANGES[str(x.numpy().dtype)][0]
    entries = table.numpy().tolist()
    return torch.tensor([entries[int(v) - lo] for v in x.numpy().reshape(-1)],
                        dtype=torch.int64).reshape(x.shape)


# -- linear_w4 (ir/ops/int4.py): 4-bit weights two per byte, low nibble first ------------------
@st.composite
def linear_w4_examples(draw: st.DrawFn):
    rng = _rng(draw)
    k = 2 * draw(st.integers(1, 12))
    n = draw(st.integers(1, 6))
    group = draw(st.sampled_from([g for g in range(1, k + 1) if k % g == 0]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = rng.normal(size=draw(sst.shapes(0, 2, 1, 3)) + (k,)).astype(dtype)
    packed = rng.integers(0, 256, size=(n, k // 2)).astype(np.uint8)
    scales = rng.uniform(0.01, 2.0, size=(n, k // group)).astype(dtype)
    args = (x, packed, scales)
    if draw(st.booleans()):
        args += (rng.normal(size=n).astype(dtype),)
    term = float(np.abs(x).max() * 8 * scales.max()) + (float(np.abs(args[3]).max())
                                                         if len(args) == 4 else 0.0)
    return args, {"group": group}, k, term


def torch_linear_w4(x, packed, scales, bias=None, *, group):
    """Independent: nibbles by shifts and masks, sign from the high bit, float64 linear."""
    p = packed.to(torch.int64)
    nib = torch.stack([p & 15, p >> 4], dim=-1).reshape(p.shape[0], -1)
    q = torch.where(nib >= 8, nib - 16, nib).to(torch.float64)
    w = q * scales.to(torch.float64).repeat_interleave(group, dim=1)
    return F.linear(x.to(torch.float64), w, None if bias is None else bias.to(torch.float64))


# op -> (examples of (operands, attrs), reference, exact, error term); test_ops_reference
# wraps these into its CASES
QUANT_CASES = {
    "quantize": (quantize_examples(), torch_quantize, True, "result"),
    "dequantize": (dequantize_examples(), exact_dequantize, False, "result"),
    "qconv2d": (qconv2d_examples(), torch_qconv2d, True, "result"),
    "qlinear": (qlinear_examples(), torch_qlinear, True, "result"),
    "qmatmul": (qmatmul_examples(), torch_qmatmul, True, "result"),
    "requantize": (requantize_examples(), python_requantize, True, "result"),
    "qadd": (qadd_examples(), python_qadd, True, "result"),
    "qmul": (qmul_examples(), python_qmul, True, "result"),
    "qmean": (qmean_examples(), python_qmean, True, "result"),
    "qlookup": (qlookup_examples(), python_qlookup, True, "result"),
    "linear_w4": (linear_w4_examples(), torch_linear_w4, False, "operands"),
}
