"""The generic lowering of the ops whose weights stay packed: `linear_w4` (two 4-bit values
per byte, ir/ops/int4.py) and `linear24` (2:4 kept values and positions, ir/ops/sparse.py).

Each is one TE contraction that reads the packed weight as it is stored, so the weight never
exists unpacked in the module: a separate unpacking kernel would have only constant inputs,
and Relax's FoldConstant would turn it back into a dense weight at compile time. The bias is
an elementwise add after it (FuseOps folds it into the kernel), and x is flattened to
(M, K) and back. Targets register kernels in their own layouts (the CPU's panels:
backends/cpu/lowering_packed.py).

    smelt_linear_w4: C[m, n] = sum_{kb, h} X[m, 2 kb + h] * (nib_h(P[n, kb]) * S[n, k / g])
    smelt_linear24:  C[m, n] = sum_r V[n, r] * X[m, 4 (r // 2) + pos(n, r)]

with nib_h the sign-extended nibble h (low first), ((byte >> 4h) & 15) ^ 8) - 8, multiplied
by its scale in x's dtype (one rounding, as the reference), and pos(n, r) =
(meta[n, r // 4] >> 2 (r % 4)) & 3.
"""

from __future__ import annotations

from tvm import relax, te, tirx

from smelt.ir.node import Node
from smelt.ir.ops.common import prod

from .registry import lowers

R = relax.op
I32 = "int32"


def nibble(byte: tirx.PrimExpr, h: tirx.PrimExpr) -> tirx.PrimExpr:
    """The signed 4-bit value in nibble h (0 low, 1 high) of a uint8, as int32."""
    v = (tirx.Cast(I32, byte) >> (h * 4)) & 15
    return (v ^ 8) - 8


def slot_column(meta: te.Tensor, n, r) -> tirx.PrimExpr:
    """Dense column of slot r of row n: 4 (r // 2) + its 2-bit position."""
    byte = tirx.Cast(I32, meta[n, r // 4])
    pos = tirx.bitwise_and(tirx.shift_right(byte, (r % 4) * 2), tirx.const(3, I32))
    return (r // 2) * 4 + pos


def linear_w4(x: te.Tensor, packed: te.Tensor, scales: te.Tensor, group: int) -> te.Tensor:
    """x (M, K), packed uint8 (N, K/2), scales (N, K/group) -> (M, N)."""
    m = int(x.shape[0])
    n, kbytes = (int(d) for d in packed.shape)
    kb, h = te.reduce_axis((0, kbytes), "kb"), te.reduce_axis((0, 2), "h")

    def body(i, j):
        k = kb * 2 + h
        w = tirx.Cast(x.dtype, nibble(packed[j, kb], h)) * scales[j, k // group]
        return te.sum(x[i, k] * w, axis=[kb, h])

    return te.compute((m, n), body, name="smelt_linear_w4")


def linear24(x: te.Tensor, values: te.Tensor, meta: te.Tensor) -> te.Tensor:
    """x (M, K), values (N, K/2), meta uint8 (N, ceil(K/8)) -> (M, N)."""
    m = int(x.shape[0])
    n, slots = (int(d) for d in values.shape)
    r = te.reduce_axis((0, slots), "r")
    return te.compute((m, n), lambda i, j: te.sum(values[j, r] * x[i, slot_column(meta, j, r)],
                                                  axis=r), name="smelt_linear24")


def as_rows(bb, n: Node, x):
    """x[..., K] as (M, K) for a contraction over its last axis."""
    shape = n.inputs[0].shape
    return x if len(shape) == 2 else bb.emit(R.reshape(x, (prod(shape[:-1]), shape[-1])))


def bias_and_shape(bb, n: Node, y, xs):
    """y (M, N) plus the op's bias (operand 3), reshaped to the op's output shape."""
    if len(xs) == 4:
        y = R.add(bb.emit(y), xs[3])
    return y if len(n.shape) == 2 else R.reshape(bb.emit(y), n.shape)


@lowers("linear_w4")
def _linear_w4(bb, n: Node, xs):
    y = bb.call_te(linear_w4, as_rows(bb, n, xs[0]), xs[1], xs[2], n.attrs["group"],
                   primfunc_name_hint="linear_w4")
    return bias_and_shape(bb, n, y, xs)


@lowers("linear24")
def _linear24(bb, n: Node, xs):
    y = bb.call_te(linear24, as_rows(bb, n, xs[0]), xs[1], xs[2], primfunc_name_hint="linear24")
    return bias_and_shape(bb, n, y, xs)
