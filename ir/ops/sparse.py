"""2:4 structured sparsity: the compressed layout and `linear24`, the contraction that reads it.

A weight W (N, K) is 2:4 sparse when each group of four consecutive elements along its
reduction axis K (positions 4g..4g+3 of a row) holds at most two non-zeros. Its compressed
layout keeps two slots per group:

    values (N, K/2)        slot r = 2g + j (j = 0, 1) holds the j-th kept value of group g,
                           in the weight's dtype;
    meta   (N, ceil(K/8))  uint8: slot r's position inside its group (0..3) as 2 bits, four
                           slots per byte, least significant first: bits 2(r % 4) and
                           2(r % 4) + 1 of byte r // 4 (a group's two slots are one nibble;
                           unused high bits of the last byte are 0).

A group with fewer than two non-zeros fills its spare slots with a 0 value (at a position
not used by the other slot). Half the values, plus 2 bits per kept value (1 bit per dense
element): float32 takes 2 + 1/8 bytes per dense element (53.1% of dense), int8 would take
0.625 bytes (62.5%).

    linear24(x, values, meta, b?) = sum_r values[n, r] * x[..., 4 (r // 2) + pos(n, r)] + b[n]

which is linear(x, unpack_24(values, meta, K), b) in real arithmetic: the same products,
the zero ones left out (Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks",
section 3: NVIDIA's 2:4 format, 2-bit indices per kept value). Any meta is meaningful: two
slots naming one position add their values (the reference scatters with add), as the
kernels' sums do.
"""

from __future__ import annotations

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import defop
from ..types import TensorType
from .common import prod, same_dtype

GROUP = 4  # weights per group along K
KEPT = 2  # values kept per group
SLOTS_PER_BYTE = 4  # 2-bit positions per meta byte
SPARSE_DTYPES = ("float32", "float64")


def meta_bytes(k: int) -> int:
    """Bytes of meta per weight row of reduction length k."""
    return (k // GROUP * KEPT + SLOTS_PER_BYTE - 1) // SLOTS_PER_BYTE


def slot_positions(meta: np.ndarray, k: int) -> np.ndarray:
    """(N, K/2) column of each slot in the dense row: 4 (r // 2) + its 2-bit position."""
    meta = np.asarray(meta, np.uint8)
    slots = k // GROUP * KEPT
    shifts = np.arange(SLOTS_PER_BYTE, dtype=np.uint8) * 2
    pos = (meta[:, :, None] >> shifts) & 3  # (N, bytes, 4)
    pos = pos.reshape(meta.shape[0], -1)[:, :slots].astype(np.int64)
    return np.arange(slots) // KEPT * GROUP + pos


def is_24_sparse(w: np.ndarray) -> bool:
    """Whether every group of four along the last axis of a 2-D `w` has <= 2 non-zeros."""
    w = np.asarray(w)
    if w.ndim != 2 or w.shape[1] % GROUP:
        return False
    return bool(np.all(np.count_nonzero(w.reshape(w.shape[0], -1, GROUP), axis=2) <= KEPT))


def pack_24(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, meta) of a 2:4-sparse (N, K) weight; exact: unpack_24 gives `w` back.

    A group's two slots take its non-zeros, and, when it has fewer than two, its lowest
    positions holding zeros; the two slots in increasing position order."""
    w = np.asarray(w)
    if not is_24_sparse(w):
        raise TypeInferenceError("pack_24 needs a 2-D weight whose groups of four along the "
                                 "last axis hold at most two non-zeros each; mask it first "
                                 "(smelt.passes.sparsity24.mask_24)")
    n, k = w.shape
    groups = w.reshape(n, k // GROUP, GROUP)
    # positions sorted with non-zeros first (stable: in position order), the first two kept
    order = np.argsort(groups == 0, axis=2, kind="stable")[:, :, :KEPT]
    order = np.sort(order, axis=2)
    values = np.take_along_axis(groups, order, axis=2).reshape(n, -1)
    pos = order.reshape(n, -1).astype(np.uint8)
    pad = meta_bytes(k) * SLOTS_PER_BYTE - pos.shape[1]
    pos = np.pad(pos, ((0, 0), (0, pad))).reshape(n, -1, SLOTS_PER_BYTE)
    shifts = (np.arange(SLOTS_PER_BYTE, dtype=np.uint8) * 2)
    meta = np.bitwise_or.reduce(pos << shifts, axis=2).astype(np.uint8)
    return np.ascontiguousarray(values), meta


def unpack_24(values: np.ndarray, meta: np.ndarray, k: int) -> np.ndarray:
    """The dense (N, K) weight of a compressed one (slots naming one position add)."""
    values = np.asarray(values)
    n = values.shape[0]
    dense = np.zeros((n, k), values.dtype)
    rows = np.repeat(np.arange(n), values.shape[1])
    np.add.at(dense, (rows, slot_positions(meta, k).reshape(-1)), values.reshape(-1))
    return dense


def _linear24_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, v, m = types[:3]
    dtype = same_dtype([x, v] + types[3:])
    if dtype not in SPARSE_DTYPES:
        raise TypeInferenceError(f"linear24 takes {' or '.join(SPARSE_DTYPES)} values, got "
                                 f"{dtype}; cast x and the weight first")
    if x.rank < 1 or v.rank != 2 or m.rank != 2:
        raise TypeInferenceError("linear24 takes x[..., K], values[N, K/2] and meta[N, K/8]")
    k, n = x.shape[-1], v.shape[0]
    if k % GROUP or k == 0:
        raise TypeInferenceError(f"x has {k} features; 2:4 sparsity needs a positive multiple "
                                 "of 4 (pad the features, or keep this layer dense)")
    if n == 0:
        raise TypeInferenceError("values has no rows: a linear24 needs at least one output")
    if v.shape[1] != k // 2:
        raise TypeInferenceError(f"values must have K/2 = {k // 2} columns for {k} features, "
                                 f"got {v.shape[1]}")
    if m.dtype != "uint8" or m.shape != (n, meta_bytes(k)):
        raise TypeInferenceError(f"meta must be uint8[{n}, {meta_bytes(k)}] (2-bit positions,"
                                 f" four per byte), got {m}")
    if len(types) == 4 and types[3].shape != (n,):
        raise TypeInferenceError(f"bias must have shape [{n}], got {list(types[3].shape)}")
    return TensorType(x.shape[:-1] + (n,), dtype)


def _linear24_macs(types, out, attrs) -> int:
    return prod(out.shape) * types[1].shape[1]


@defop("linear24", ("x", "values", "meta", "b?"), _linear24_infer, category="contraction",
       macs=_linear24_macs)
def linear24(x, values, meta, b=None):
    """x @ unpack_24(values, meta).T + b: a 2:4-compressed weight (N, K) read directly."""
    w = unpack_24(values, meta, x.shape[-1])
    out = np.matmul(x, w.T)
    if b is not None:
        out = out + b
    return out.astype(x.dtype, copy=False)
