"""Lowering of smelt's quantized ops (ir/ops/quant.py) to Relax, bit-exact with the reference.

- quantize, dequantize and requantize are one elementwise TE kernel each (so FuseOps can fold
  them into a producer's tile), with per-channel parameters bound as broadcast constants:
  quantize divides in float64 and rounds with `nearbyint` (ties to even under the default
  rounding mode, as np.rint); requantize is int64 only and rounds its shift ties to even with
  the add-and-shift form (p + 2^(n-1) - 1 + ((p >> n) & 1)) >> n, an independent formula
  for the reference's floor-and-remainder one (tests compare the two bit for bit). Two
  cheaper forms give the same integers where they apply: an 8-bit result with every right
  shift <= 44 rounds acc * (m 2^-n) in float64 (`_rhe_float`: exact there, proof in its
  docstring; with every rescale <= 1/2, by adding 1.5 2^52 and keeping the low 32 bits,
  `_rhe_bits`); every shift >= 33 rounds in int32 from the product's halves (`_rhe_split`).
  A multiplier or shift shared by all channels is an immediate, not a tensor.
- qconv2d, qlinear and qmatmul subtract the zero points in int32 (constant weights in numpy,
  at compile time, so smelt's packed kernels still see a constant), then run the float ops'
  Relax contractions with out_dtype int64, add the bias and narrow to int32. Padding the
  zero-point-subtracted input with 0 is padding with x_zp, as in the reference. The compiled
  code does not check the int32 range; the reference raises where it would not fit.
- Fast path (int8_kernels.py, scheduled by sched_int8.py): qconv2d and qlinear with a
  constant int8 weight, all w_zp = 0, uint8 or int8 activations and a constant (or no) bias
  run on uint8 x int8 -> int32 kernels (`vpdpbusd` where the target has VNNI): the weight is
  packed at compile time, -x_zp * sum_k w folded into the bias (int8 activations are
  shifted by +128, so x_zp + 128), and the bias add is an elementwise op that FuseOps folds,
  with the requantize after it, into the kernel's register tile.
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
    qlinear: `smelt_qdense` (K padded to 4, N to 8 or 16 lanes);
    qmatmul of two >= 2-D int8/uint8 activations: B packed at run time, `smelt_qbmm`, the
      zero points' row and column sums added in the epilogue (`_qmatmul_int8`).
  Whatever was padded is sliced off after the bias add (the slice fuses too); other group
  counts, non-zero w_zp, other dtypes and non-constant weights keep the generic route.
  Under `plain_int8()` (the C target) qconv2d and qlinear take the same sums on plain
  layouts instead: no packing, no lane padding (`_plain_conv`, `_plain_dense`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
from tvm import relax, te, tirx

from smelt.ir.node import Node
from smelt.ir.ops.nn import _pads
from smelt.ir.ops.quant import channel, clamp_bounds

from . import relax_kernels as K
from .cpu import int8_kernels as I
from .cpu.vnni import window_fits
from .relax_lowering import lowers

R = relax.op


def _const(values, axis: int | None, rank: int, dtype: str) -> relax.Constant:
    return relax.const(channel(values, axis, rank, dtype), dtype)


def _clamp_cast(v, lo: int, hi: int, dtype: str):
    """v (not NaN) clamped to [lo, hi] and cast."""
    src = str(v.ty)
    return tirx.Cast(dtype, tirx.min(tirx.max(v, tirx.const(lo, src)), tirx.const(hi, src)))


def _elementwise(bb, n: Node, fn, operands: list):
    return bb.call_te(K.pointwise(fn, n.shape, n.op), *operands, primfunc_name_hint=n.op)


@lowers("quantize")
def _quantize(bb, n: Node, xs):
    a = n.attrs
    dtype, lo, hi = clamp_bounds(a)
    rank = len(n.shape)

    def fn(x, scale, zp):  # NaN -> the zero point (real 0); +-inf saturate in the clamp
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


def _rescale(a: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel int64 (multiplier m, right shift n >= 1). A right shift of 0 (shift = -31,
    exact) becomes m' = 2m, n = 1: |acc * 2m| < 2^63, and the tie rule below then rounds
    (2p + (p & 1)) / 2 down to p, exactly."""
    m = np.asarray(a["multiplier"], np.int64)
    n = np.asarray(a["shift"], np.int64) + 31
    m, n = np.broadcast_arrays(m, n)
    return np.where(n == 0, 2 * m, m), np.maximum(n, 1)


def _per_channel_operand(values: np.ndarray, dtype: str, axis: int | None, rank: int,
                         operands: list):
    """A TIR value for a per-channel constant: an immediate when every channel shares it
    (then LLVM sees a constant shift), else an operand tensor read along `axis`."""
    if np.all(values == values.flat[0]):
        return lambda args: tirx.const(values.flat[0].item(), dtype)
    operands.append(relax.const(channel(values, axis, rank, dtype), dtype))
    index = len(operands) - 1
    return lambda args: args[index]


def _rhe_wide(m, n):
    """rhe(acc * m / 2^n), all in int64: (p + 2^(n-1) - 1 + ((p >> n) & 1)) >> n."""
    def rescale(acc, args):
        one = tirx.const(1, "int64")
        p = tirx.Cast("int64", acc) * m(args)
        s = n(args)
        return (p + ((one << s) >> one) - one + ((p >> s) & one)) >> s

    return rescale, "int64"


def _rhe_split(m, s):
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


_INTEGER_ONLY: ContextVar[bool] = ContextVar("smelt_integer_only_requantize", default=False)


@contextmanager
def integer_only() -> Iterator[None]:
    """Within this block requantize lowers to its integer forms only (never the float64
    ones, `_rhe_float` and `_rhe_bits`): the C target (backends/mcu) builds integer graphs
    for cores without an FPU, and its C code generator has no `llvm.lrint`."""
    token = _INTEGER_ONLY.set(True)
    try:
        yield
    finally:
        _INTEGER_ONLY.reset(token)


_PLAIN_INT8: ContextVar[bool] = ContextVar("smelt_plain_int8_kernels", default=False)


@contextmanager
def plain_int8() -> Iterator[None]:
    """Within this block the int8 fast path's qconv2d and qlinear run on plain NCHW / (N, K)
    kernels (`_plain_conv`, `_plain_dense`): no input packed into 4-channel words, no
    weight padded to 8 or 16 lanes, no depthwise row rounded up to whole vectors. For the C
    target (backends/mcu): a scalar core gains nothing from the x86 layouts, and every
    packed copy of an activation costs arena bytes (and a padded lane, multiply-adds)."""
    token = _PLAIN_INT8.set(True)
    try:
        yield
    finally:
        _PLAIN_INT8.reset(token)


FLOAT_MAX_SHIFT = 44  # n <= 44: see _rhe_float
FLOAT_MAX_RANGE = 2**9  # |qmin - out_zp|, |qmax - out_zp| below it (8-bit outputs)


def _rhe_float(r, lo: int, hi: int, below_one: bool):
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


ROUNDING_BIAS = 1.5 * 2.0**52  # its ulp is 1, and it is even: see _rhe_bits


def _rhe_bits(r, even: int):
    """rhe(acc * r) + even, for the same r and bounds as `_rhe_float` and r <= 1/2, with
    no float-to-int conversion: y = fl(acc * r) plus B = 1.5 2^52 + even (|y| < 2^51) is a
    double of exponent 52, whose ulp is 1, so the add rounds y to an integer, ties to even
    (B is even: the parity of the mantissa's last bit is the integer's), and the low 32 bits
    of its pattern are that integer plus `even`, in two's complement. rint(y) = rhe(t) as in
    `_rhe_float`, or both are >= 2^9 in magnitude and clamp alike; were the multiply-add
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


@lowers("requantize")
def _requantize(bb, n: Node, xs):
    a = n.attrs
    dtype, lo, hi = clamp_bounds(a)
    zp = a["out_zp"]
    rank = len(n.shape)
    operands = [xs[0]]

    def operand(values, dt):
        return _per_channel_operand(values, dt, a["axis"], rank, operands)

    m, shift = _rescale(a)
    folded = 0  # the part of the zero point the rescale adds itself
    if (not _INTEGER_ONLY.get() and shift.max() <= FLOAT_MAX_SHIFT
            and max(abs(lo - zp), abs(hi - zp)) < FLOAT_MAX_RANGE):
        r = np.ldexp(m.astype(np.float64), -shift)
        if r.max() <= 0.5:
            folded = zp if zp % 2 == 0 else 0
            rescale, acc_t = _rhe_bits(operand(r, "float64"), folded)
        else:
            rescale, acc_t = _rhe_float(operand(r, "float64"), lo - zp, hi - zp, r.max() < 1)
    elif shift.min() >= 33:
        rescale, acc_t = _rhe_split(operand(m, "int32"), operand(shift - 32, "int32"))
    else:
        rescale, acc_t = _rhe_wide(operand(m, "int64"), operand(shift, "int64"))

    def fn(*args):
        return _clamp_cast(rescale(args[0], args) + tirx.const(zp - folded, acc_t), lo, hi,
                           dtype)

    return _elementwise(bb, n, fn, operands)


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


# -- the int8 fast path ----------------------------------------------------------------------
MAX_REDUCTION = 1 << 15  # K 255 128 * 2 < 2^31: no int32 partial sum of the kernels wraps


def _int8_weight(n: Node) -> np.ndarray | None:
    """The constant int8 weight of a contraction the int8 kernels take, else None. Their
    int32 sums start from the raw uint8 x (the zero point is subtracted after), so a long
    reduction could overflow int32 where the centered one does not: K <= 2^15 (LLVM takes
    int32 overflow for impossible, so a wrap would not even be reliable)."""
    w, x = n.inputs[1], n.inputs[0]
    if w.op != "constant" or w.dtype != "int8" or any(z != 0 for z in n.attrs["w_zp"]):
        return None
    if x.dtype not in ("uint8", "int8") or np.prod(w.shape[1:]) > MAX_REDUCTION:
        return None
    if len(n.inputs) == 3 and n.inputs[2].op != "constant":
        return None
    return np.asarray(w.value)


def _uint8_zp(n: Node) -> int:
    """x_zp of the activation seen as uint8 (int8 activations are shifted by +128)."""
    return n.attrs["x_zp"] + (128 if n.inputs[0].dtype == "int8" else 0)


def _lanes(channels: int) -> int:
    return 8 if channels % 16 and channels % 8 == 0 else 16


def _bias_then_trim(bb, y, n: Node, w: np.ndarray, axis: int):
    """y (an emitted kernel output, maybe padded past n's shape) + the folded bias along
    `axis` (padded channels get 0), then sliced to n's shape. The add and the slice fuse
    into the kernel's epilogue."""
    shape = [int(d) for d in y.ty.shape.values]
    bias = n.inputs[2].value if len(n.inputs) == 3 else None
    b = np.zeros(shape[axis], np.int32)
    b[: w.shape[0]] = I.folded_bias(w, bias, _uint8_zp(n))
    y = R.add(y, relax.const(channel(b, axis, len(shape), np.int32), "int32"))
    want = [1] * (len(shape) - len(n.shape)) + list(n.shape)  # a 1-D qlinear runs as (1, K)
    cut = [i for i, (have, need) in enumerate(zip(shape, want, strict=True)) if have != need]
    if not cut:
        return y  # not emitted here: an alias binding would stop FuseOps
    return R.strided_slice(bb.emit(y), cut, [0] * len(cut), [want[i] for i in cut])


def _plain_conv(x: te.Tensor, w: te.Tensor, out_hw: tuple[int, int], stride, dilation,
                depthwise: bool) -> te.Tensor:
    """uint8 (or int8, read as uint8) NCHW, already padded, x int8 (O, C / groups, KH, KW)
    -> int32 NCHW; groups = 1 or depthwise."""
    o, ci, kh, kw = (int(d) for d in w.shape)
    (sh, sw), (dh, dw) = stride, dilation
    c, ry, rx = (te.reduce_axis((0, e), name) for e, name in ((ci, "c"), (kh, "ry"), (kw, "rx")))

    def body(b, oc, y, z):
        v = I.as_uint8(x[b, oc if depthwise else c, y * sh + ry * dh, z * sw + rx * dw], x.dtype)
        return te.sum(v.astype("int32") * w[oc, c, ry, rx].astype("int32"), axis=[c, ry, rx])

    return te.compute((int(x.shape[0]), o, *out_hw), body, name="smelt_qconv2d_plain")


def _plain_dense(x: te.Tensor, w: te.Tensor) -> te.Tensor:
    """uint8 (or int8, read as uint8) X[..., K] x int8 W[N, K] -> int32 [..., N]."""
    lead, k = [int(d) for d in x.shape[:-1]], te.reduce_axis((0, int(x.shape[-1])), "k")

    def body(*idx):
        *m, j = idx
        return te.sum(I.as_uint8(x[(*m, k)], x.dtype).astype("int32")
                      * w[j, k].astype("int32"), axis=k)

    return te.compute((*lead, int(w.shape[0])), body, name="smelt_qdense_plain")


def _qconv2d_int8_plain(bb, n: Node, xs, w: np.ndarray):
    a = n.attrs
    pads = _pads(a["padding"])
    x = xs[0]
    if any(pads):
        x = bb.emit_te(I.pad_nchw, x, pads, _uint8_zp(n), primfunc_name_hint="i8pad")
    y = bb.emit_te(_plain_conv, x, relax.const(w, "int8"), n.shape[2:], tuple(a["stride"]),
                   tuple(a["dilation"]), a["groups"] != 1, primfunc_name_hint="qconv2d")
    return _bias_then_trim(bb, y, n, w, 1)


def _qconv2d_int8(bb, n: Node, xs, w: np.ndarray):
    if _PLAIN_INT8.get():
        return _qconv2d_int8_plain(bb, n, xs, w)
    a = n.attrs
    pads, out_hw = _pads(a["padding"]), n.shape[2:]
    conv = (tuple(a["stride"]), tuple(a["dilation"]))
    if a["groups"] == 1:
        x, pointwise = xs[0], I.is_pointwise(w.shape[2:], a["stride"], pads)
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
            return _bias_then_trim(bb, y, n, w, 1)
        lanes = _lanes(w.shape[0])
        wp = relax.const(I.pack_conv_weight_blocked(w, lanes), "int8")
        y = bb.emit_te(I.qconv2d_cv, xq, wp, out_hw, *conv, primfunc_name_hint="qconv2d")
        return _bias_then_trim(bb, y, n, w, 1)
    x = xs[0]
    lanes, width = I.window_lanes(out_hw[1])
    if w.shape[3] <= 4 and window_fits(lanes, a["stride"][1], a["dilation"][1]):
        wide = (out_hw[0], width)  # rows rounded up to whole vectors, sliced after
        slack = I.window_slack(pads, n.inputs[0].shape[2:], wide, *conv, lanes)
        x = bb.emit_te(I.pad_nchw, x, pads, _uint8_zp(n), slack, primfunc_name_hint="i8pad")
        y = bb.emit_te(I.qdwconv_window, x, relax.const(I.pack_window_weight(w), "int8"),
                       wide, *conv, primfunc_name_hint="qdwconv")
        return _bias_then_trim(bb, y, n, w, 1)
    if any(pads) or n.inputs[0].dtype == "int8":
        x = bb.emit_te(I.pad_nchw, x, pads, _uint8_zp(n), primfunc_name_hint="i8pad")
    y = bb.emit_te(I.qdwconv, x, relax.const(w, "int8"), out_hw, *conv,
                   primfunc_name_hint="qdwconv")
    return _bias_then_trim(bb, y, n, w, 1)


def _packed_input(bb, n: Node, x, pads, stride_w: int, rows: tuple[int, int] | None = None):
    """x packed into 4-channel words (`pack_conv_input`), viewed as uint8 (.., 4); `rows`:
    (H, W) of a flat image, to view its words as rows (N, C' / 4, H, 1, W, 4)."""
    words = bb.emit_te(I.pack_conv_input, x, pads, _uint8_zp(n), stride_w,
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
    return _bias_then_trim(bb, y, n, w, 1)


def _is_depthwise(n: Node, w: np.ndarray) -> bool:
    return n.attrs["groups"] == n.inputs[0].shape[1] == w.shape[0] and w.shape[1] == 1


def _qlinear_int8(bb, n: Node, xs, w: np.ndarray):
    x_shape = n.inputs[0].shape
    k = x_shape[-1]
    x = xs[0] if len(x_shape) > 1 else bb.emit(R.reshape(xs[0], (1, k)))
    if _PLAIN_INT8.get():
        y = bb.emit_te(_plain_dense, x, relax.const(w, "int8"), primfunc_name_hint="qdense")
        y = _bias_then_trim(bb, y, n, w, -1)
        return y if len(x_shape) > 1 else R.reshape(bb.emit(y), n.shape)
    if k % I.CHANNEL_GROUP or n.inputs[0].dtype == "int8":
        x = bb.emit_te(I.pad_k, x, I.round_up(k, I.CHANNEL_GROUP), primfunc_name_hint="i8pack")
    lanes = _lanes(w.shape[0])
    wp = relax.const(I.pack_dense_weight(w, lanes), "int8")
    y = bb.emit_te(I.qdense, x, wp, w.shape[0], primfunc_name_hint="qdense")
    y = _bias_then_trim(bb, y, n, w, -1)
    return y if len(x_shape) > 1 else R.reshape(bb.emit(y), n.shape)


# -- the generic path ----------------------------------------------------------------------
@lowers("qconv2d")
def _qconv2d(bb, n: Node, xs):
    a = n.attrs
    w8 = _int8_weight(n)
    if w8 is not None and (a["groups"] == 1 or _is_depthwise(n, w8)):
        return _qconv2d_int8(bb, n, xs, w8)
    x = _centered(bb, n.inputs[0], xs[0], (a["x_zp"],))
    w = _centered(bb, n.inputs[1], xs[1], a["w_zp"], axis=0)
    y = R.nn.conv2d(x, w, strides=a["stride"], padding=_pads(a["padding"]),
                    dilation=a["dilation"], groups=a["groups"], out_dtype="int64")
    return _narrow(bb, y, xs[2] if len(xs) == 3 else None, (1, -1, 1, 1))


@lowers("qlinear")
def _qlinear(bb, n: Node, xs):
    a = n.attrs
    w8 = _int8_weight(n)
    if w8 is not None:
        return _qlinear_int8(bb, n, xs, w8)
    x = _centered(bb, n.inputs[0], xs[0], (a["x_zp"],))
    w_node = n.inputs[1]
    if w_node.op == "constant":  # bound transposed, so the matmul reads it as (K, N)
        wc = w_node.value.astype(np.int32) - channel(a["w_zp"], 0, 2, np.int32)
        wt = relax.const(np.ascontiguousarray(wc.T), "int32")
    else:
        wt = bb.emit(R.permute_dims(_centered(bb, w_node, xs[1], a["w_zp"], axis=0)))
    return _narrow(bb, R.matmul(x, wt, out_dtype="int64"), xs[2] if len(xs) == 3 else None)


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


@lowers("qmatmul")
def _qmatmul(bb, n: Node, xs):
    a = n.attrs
    if (all(x.dtype in ("uint8", "int8") and len(x.shape) >= 2 for x in n.inputs)
            and n.inputs[0].shape[-1] <= MAX_REDUCTION // 2):  # and K 255 (za + zb) terms
        return _qmatmul_int8(bb, n, xs)
    lhs = _centered(bb, n.inputs[0], xs[0], (a["a_zp"],))
    rhs = _centered(bb, n.inputs[1], xs[1], (a["b_zp"],))
    return _narrow(bb, R.matmul(lhs, rhs, out_dtype="int64"))
