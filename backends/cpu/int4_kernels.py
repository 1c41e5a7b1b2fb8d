"""The W4A16 CPU kernel: a dense layer that reads 4-bit weights packed two per byte and
unpacks them inside its contraction (ir/ops/int4.py gives the format).

    smelt_dense_w4: C[..., n] = sum_{kb, h} A[..., 2 kb + h]
                                 * (nibble_h(Wp[n / nb, kb, n % nb]) * Sp[n / nb, k / g, n % nb])

Wp is the packed weight in panels of `nb` output columns, uint8 (N / nb, K / 2, nb), and Sp
the group scales in the same panels, (N / nb, K / g, nb), so the vector loop over n reads
`nb` contiguous bytes and scales per step. The nibble is sign-extended with integer ops,
((byte >> 4h) & 15) ^ 8) - 8, and multiplied by its scale in the output dtype (one rounding,
as the reference). The weight never exists unpacked outside the register tile: a separate
unpacking kernel would have all-constant inputs, and relax's FoldConstant would turn it back
into a dense float weight at compile time.
"""

from __future__ import annotations

from tvm import te, tirx

from ..lowering.packed import nibble


def dense_w4(a: te.Tensor, wp: te.Tensor, sp: te.Tensor, group: int, out_dtype: str
             ) -> te.Tensor:
    """A[..., K] x packed 4-bit W -> C[..., N]."""
    npanel, kbytes, nb = (int(d) for d in wp.shape)
    lead = [int(d) for d in a.shape[:-1]]
    kb = te.reduce_axis((0, kbytes), "kb")
    h = te.reduce_axis((0, 2), "h")

    def body(*idx):
        *m, j = idx
        k = kb * 2 + h
        w = tirx.Cast(out_dtype, nibble(wp[j // nb, kb, j % nb], h)) \
            * sp[j // nb, k // group, j % nb]
        return te.sum(a[(*m, k)].astype(out_dtype) * w, axis=[kb, h])

    return te.compute((*lead, npanel * nb), body, name="smelt_dense_w4")
