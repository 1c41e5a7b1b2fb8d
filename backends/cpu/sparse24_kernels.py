"""The CPU kernel of `linear24` (ir/ops/sparse.py): a contraction that reads the 2:4-compressed
weight (kept values plus 2-bit positions) directly, never a dense copy of it.

    smelt_xt24[k, m]  = x[m, k]                                   (x transposed, run time)
    smelt_sp24[m, n]  = sum_r values[n, r] * xt[4 (r // 2) + pos(n, r), m]
    pos(n, r)         = (meta[n, r // 4] >> 2 (r % 4)) & 3

The gather index depends on (n, r) only, so for a fixed weight slot the kernel reads a
contiguous run of x^T along m: the schedule (cpu/sched_sparse.py) vectorizes over m (rows of
the activation), keeps a tile of output columns in registers, and per slot does one scalar
position decode, one broadcast weight value and one vector load + FMA per column of the tile.
Half the multiply-adds of the dense kernel, but one x load per FMA where the dense register
tile reuses each loaded vector across eight rows: on x86 it is not expected to beat dense.

Why one kernel: a separate "decompress the weight" kernel would have only constant inputs,
and relax FoldConstant would evaluate it at compile time, binding the dense weight again.
The contraction takes the activation, so its compressed operands stay compressed.
"""

from __future__ import annotations

from tvm import te

from ..lowering.packed import slot_column


def linear24(x: te.Tensor, values: te.Tensor, meta: te.Tensor) -> te.Tensor:
    """x (M, K), values (N, K/2), meta (N, ceil(K/8)) uint8 -> (M, N)."""
    m, k = (int(d) for d in x.shape)
    n, slots = (int(d) for d in values.shape)
    xt = te.compute((k, m), lambda kk, mm: x[mm, kk], name="smelt_xt24")
    r = te.reduce_axis((0, slots), "r")

    def body(i, j):
        return te.sum(values[j, r] * xt[slot_column(meta, j, r), i], axis=r)

    return te.compute((m, n), body, name="smelt_sp24")
