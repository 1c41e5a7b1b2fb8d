"""smelt's own CPU kernels as TVM tensor expressions, in the layouts its schedules expect.

Every compute stage is named `smelt_<kind>`; the schedule rules (backends/schedules/) find
their anchor block by that name, so a kernel and its schedule are written together:

- `smelt_dense`: C[..., n] = sum_k A[..., k] * Wp[n // nb, k, n % nb]. The constant weight is
  packed at compile time into panels of `nb` output columns, so the inner vector loop reads
  `nb` contiguous floats per k (the layout of the recipe in shared/TVM_NOTES.md).
- `smelt_matmul`: C[b..., m, n] = sum_k A[b..., m, k] * B[b..., k, n] for two activations
  (attention); B rows are contiguous along n, the vector axis.
- `smelt_conv2d`: NCHW activations, weight blocked OIHW{ob}o (ob output channels innermost),
  so a register tile of `ow` pixels x `ob` channels takes one weight vector and `ow`
  broadcast inputs per step. The zero padding is its own stage, `smelt_pad`.
- `smelt_dwconv`: depthwise NCHW, vectorized along the output row.
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx


def pick_block(n: int, prefs: tuple[int, ...]) -> int:
    """The first of `prefs` dividing `n`, else `n` itself when it is small, else 1."""
    for b in prefs:
        if n % b == 0:
            return b
    return n if n <= max(prefs) else 1


def pack_dense_weight(w_kn: np.ndarray, nb: int) -> np.ndarray:
    """(K, N) -> (N / nb, K, nb): panels of nb output columns, each contiguous along n."""
    k, n = w_kn.shape
    return np.ascontiguousarray(w_kn.reshape(k, n // nb, nb).transpose(1, 0, 2))


def dense(a: te.Tensor, wp: te.Tensor, out_dtype: str) -> te.Tensor:
    """A[..., K] x packed W -> C[..., N]."""
    panels, kdim, nb = (int(d) for d in wp.shape)
    lead = [int(d) for d in a.shape[:-1]]
    k = te.reduce_axis((0, kdim), "k")

    def body(*idx):
        *m, j = idx
        return te.sum(a[(*m, k)].astype(out_dtype) * wp[j // nb, k, j % nb].astype(out_dtype),
                      axis=k)

    return te.compute((*lead, panels * nb), body, name="smelt_dense")


def matmul(a: te.Tensor, b: te.Tensor, out_shape: tuple[int, ...], out_dtype: str) -> te.Tensor:
    """Batched A[..., M, K] x B[..., K, N] with numpy broadcasting over the batch dims."""
    kdim = int(a.shape[-1])
    k = te.reduce_axis((0, kdim), "k")
    nb = len(out_shape) - 2

    def operand_index(t: te.Tensor, batch, row, col):
        tb = len(t.shape) - 2
        idx = [0 if int(t.shape[i]) == 1 else batch[nb - tb + i] for i in range(tb)]
        return (*idx, row, col)

    def body(*idx):
        batch, m, n = idx[:nb], idx[nb], idx[nb + 1]
        return te.sum(a[operand_index(a, batch, m, k)].astype(out_dtype)
                      * b[operand_index(b, batch, k, n)].astype(out_dtype), axis=k)

    return te.compute(out_shape, body, name="smelt_matmul")


def pad_nchw(x: te.Tensor, pads: tuple[int, int, int, int]) -> te.Tensor:
    """Zero padding of H and W by (top, left, bottom, right); the identity when all are 0."""
    t, left, bot, right = pads
    if not any(pads):
        return x
    n, c, h, w = (int(d) for d in x.shape)
    zero = tirx.const(0, x.dtype)

    def body(i, j, y, z):
        inside = tirx.all(y >= t, y < h + t, z >= left, z < w + left)
        return tirx.if_then_else(inside, x[i, j, y - t, z - left], zero)

    return te.compute((n, c, h + t + bot, w + left + right), body, name="smelt_pad")


def pack_conv_weight(w: np.ndarray, ob: int) -> np.ndarray:
    """OIHW -> (O / ob, I, H, W, ob)."""
    o, i, kh, kw = w.shape
    return np.ascontiguousarray(w.reshape(o // ob, ob, i, kh, kw).transpose(0, 2, 3, 4, 1))


def conv2d(xp: te.Tensor, wp: te.Tensor, out_hw: tuple[int, int], stride, dilation,
           out_dtype: str) -> te.Tensor:
    """Padded NCHW input x blocked weight -> NCHW output (groups = 1)."""
    n = int(xp.shape[0])
    oblocks, cin, kh, kw, ob = (int(d) for d in wp.shape)
    sh, sw = stride
    dh, dw = dilation
    ci = te.reduce_axis((0, cin), "ci")
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")

    def body(b, o, y, x):
        return te.sum(xp[b, ci, y * sh + ry * dh, x * sw + rx * dw].astype(out_dtype)
                      * wp[o // ob, ci, ry, rx, o % ob].astype(out_dtype), axis=[ci, ry, rx])

    return te.compute((n, oblocks * ob, *out_hw), body, name="smelt_conv2d")


def depthwise_conv2d(xp: te.Tensor, w: te.Tensor, out_hw: tuple[int, int], stride, dilation,
                     out_dtype: str) -> te.Tensor:
    """Padded NCHW input x (C * m, 1, kh, kw) weight -> NCHW output (groups = C)."""
    n, c = int(xp.shape[0]), int(xp.shape[1])
    o, _, kh, kw = (int(d) for d in w.shape)
    mult = o // c
    sh, sw = stride
    dh, dw = dilation
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")

    def body(b, ch, y, x):
        return te.sum(xp[b, ch // mult, y * sh + ry * dh, x * sw + rx * dw].astype(out_dtype)
                      * w[ch, 0, ry, rx].astype(out_dtype), axis=[ry, rx])

    return te.compute((n, o, *out_hw), body, name="smelt_dwconv")


def grouped_conv2d(xp: te.Tensor, w: te.Tensor, out_hw: tuple[int, int], stride, dilation,
                   groups: int, out_dtype: str) -> te.Tensor:
    """Padded NCHW input x OIHW weight, any group count; scheduled by the generic rules."""
    n = int(xp.shape[0])
    o, ipg, kh, kw = (int(d) for d in w.shape)
    opg = o // groups
    sh, sw = stride
    dh, dw = dilation
    ci = te.reduce_axis((0, ipg), "ci")
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")

    def body(b, oc, y, x):
        g = oc // opg
        return te.sum(xp[b, g * ipg + ci, y * sh + ry * dh, x * sw + rx * dw].astype(out_dtype)
                      * w[oc, ci, ry, rx].astype(out_dtype), axis=[ci, ry, rx])

    return te.compute((n, o, *out_hw), body, name="smelt_gconv2d")
