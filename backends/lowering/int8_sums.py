"""The uint8 x int8 form of an integer contraction, shared by the targets' int8 kernels (the
CPU's VNNI kernels, backends/cpu/lowering_int8.py; the C target's plain loops,
backends/mcu/lowering.py).

Zero points. With the weight's zero point 0 (symmetric weights) and x_zp the activation's:

    sum_k (x_k - x_zp) w_k = sum_k x_k w_k - x_zp * sum_k w_k

so a kernel runs on the raw uint8 x and the lowering folds -x_zp * sum_k w[o, k] (a constant
per output channel) into the int32 bias, which the epilogue adds (`bias_then_trim`). Spatial
padding must then be x_zp itself (a real zero), never 0 (`pad_nchw`). Signed (int8)
activations become uint8 by the +128 trick: x + 128 in [0, 255] with zero point x_zp + 128,
the same real values (`as_uint8`, `uint8_zp`). All int32 arithmetic wraps, so the result is
exact whenever the exact one fits int32 (the reference raises otherwise), and the raw sums
stay in int32 for reductions up to `MAX_REDUCTION`.
"""

from __future__ import annotations

import numpy as np
from tvm import relax, te, tirx

from smelt.ir.node import Node
from smelt.ir.ops.quant import channel

R = relax.op
MAX_REDUCTION = 1 << 15  # K 255 128 * 2 < 2^31: no int32 partial sum of the kernels wraps
PAD_ATTR = "smelt.pad_of"  # (top, left, value) of a pure pad copy, for cpu/pad_in_producer.py


def int8_weight(n: Node) -> np.ndarray | None:
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


def is_depthwise(n: Node, w: np.ndarray) -> bool:
    return n.attrs["groups"] == n.inputs[0].shape[1] == w.shape[0] and w.shape[1] == 1


def uint8_zp(n: Node) -> int:
    """x_zp of the activation seen as uint8 (int8 activations are shifted by +128)."""
    return n.attrs["x_zp"] + (128 if n.inputs[0].dtype == "int8" else 0)


def folded_bias(w: np.ndarray, bias: np.ndarray | None, x_zp: int) -> np.ndarray:
    """bias[o] - x_zp * sum_k w[o, k] as int32 (wrapping, as the kernels' int32 sums do)."""
    sums = w.reshape(w.shape[0], -1).astype(np.int64).sum(axis=1)
    b = np.zeros(w.shape[0], np.int64) if bias is None else bias.astype(np.int64)
    return (b - np.int64(x_zp) * sums).astype(np.int32)


def as_uint8(v: tirx.PrimExpr, dtype: str) -> tirx.PrimExpr:
    """An int8 or uint8 value (of `dtype`) as uint8: int8 gets +128 (x ^ 0x80)."""
    if dtype == "uint8":
        return v
    return (v.astype("int32") + 128).astype("uint8")


def pad_nchw(x: te.Tensor, pads: tuple[int, int, int, int], zp: int,
             slack: tuple[int, int] = (0, 0)) -> te.Tensor:
    """NCHW (uint8 or int8) -> uint8 NCHW padded with x_zp (the uint8 zero point), plus
    `slack` (rows, columns) more of it below and to the right."""
    n, c, h, w = (int(d) for d in x.shape)
    t, left, bot, right = pads
    pad = tirx.const(zp, "uint8")

    def body(b, ch, y, z):
        inside = tirx.all(y >= t, y < h + t, z >= left, z < w + left)
        v = x[b, ch, tirx.min(tirx.max(y - t, 0), h - 1), tirx.min(tirx.max(z - left, 0), w - 1)]
        return tirx.if_then_else(inside, as_uint8(v, x.dtype), pad)

    shape = (n, c, h + t + bot + slack[0], w + left + right + slack[1])
    attrs = {PAD_ATTR: [t, left, zp]} if x.dtype == "uint8" else {}  # a pure copy
    return te.compute(shape, body, name="smelt_i8pad", attrs=attrs)


def bias_then_trim(bb, y, n: Node, w: np.ndarray, axis: int,
                   out_shape: tuple[int, ...] | None = None):
    """y (an emitted kernel output, maybe padded past `out_shape`, by default n's) + the
    folded bias along `axis` (padded channels get 0), then sliced to `out_shape`. The add and
    the slice fuse into the kernel's epilogue."""
    shape = [int(d) for d in y.ty.shape.values]
    bias = n.inputs[2].value if len(n.inputs) == 3 else None
    b = np.zeros(shape[axis], np.int32)
    b[: w.shape[0]] = folded_bias(w, bias, uint8_zp(n))
    y = R.add(y, relax.const(channel(b, axis, len(shape), np.int32), "int32"))
    target = n.shape if out_shape is None else out_shape
    want = [1] * (len(shape) - len(target)) + list(target)  # a 1-D qlinear runs as (1, K)
    cut = [i for i, (have, need) in enumerate(zip(shape, want, strict=True)) if have != need]
    if not cut:
        return y  # not emitted here: an alias binding would stop FuseOps
    return R.strided_slice(bb.emit(y), cut, [0] * len(cut), [want[i] for i in cut])
