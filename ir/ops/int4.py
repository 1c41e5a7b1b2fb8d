"""4-bit weights packed two per byte, and the linear layer that reads them (W4A16).

    linear_w4(x, packed, scales, bias?){group}        x[..., K] -> [..., N]

Storage. `packed` is uint8 (N, K/2): byte j of row n holds the weight of input feature 2j in
its low nibble (bits 0-3) and that of feature 2j + 1 in its high nibble (bits 4-7), each a
4-bit two's-complement integer in [-8, 7] (smelt's w4a16 quantizer uses [-7, 7]). `scales`
(N, K/group), of x's float dtype, holds one scale per output channel and group of `group`
consecutive input features. So K is even, `group` divides K, and the weight is

    W[n, k] = q[n, k] * scales[n, k // group]

The product is rounded once to x's dtype (exact for smelt's scales: a 4-bit integer times a
10-bit mantissa), which is what dequantize does to the same integers, and the op is then the
linear op's reference on W: x @ W.T + bias. So `linear_w4` equals
linear(x, reshape(dequantize(q, scales), (N, K)), bias) bit for bit (passes/pack_int4.py).

`pack_int4(q)` and `unpack_int4(packed)` convert between an int8 (N, K) array of values in
[-8, 7] and the packed bytes; unpacking is exact and inverts packing.
"""

from __future__ import annotations

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType, is_float
from .common import prod
from .nn import linear

INT4_MIN, INT4_MAX = -8, 7


def pack_int4(q: np.ndarray) -> np.ndarray:
    """int values in [-8, 7], shape (..., K) with K even -> uint8 (..., K/2), low nibble first."""
    q = np.asarray(q)
    if q.shape[-1] % 2 or q.size and (q.min() < INT4_MIN or q.max() > INT4_MAX):
        raise TypeInferenceError(f"pack_int4 takes values in [-8, 7] along an even last axis, "
                                 f"got shape {list(q.shape)}")
    nibbles = q.astype(np.int64) & 0xF
    return (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    """uint8 (..., K/2) -> int8 (..., K): each nibble sign-extended, low nibble first."""
    p = np.asarray(packed).astype(np.int16)
    lo = ((p & 0xF) ^ 8) - 8
    hi = ((p >> 4) ^ 8) - 8
    return np.stack([lo, hi], axis=-1).reshape(*p.shape[:-1], -1).astype(np.int8)


def _infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, p, s = types[:3]
    g = attrs["group"]
    if not is_float(x.dtype) or x.rank < 1:
        raise TypeInferenceError(f"linear_w4 takes a float x[..., K], got {x}")
    if p.dtype != "uint8" or p.rank != 2:
        raise TypeInferenceError(f"linear_w4's packed weight must be uint8 [N, K/2] (two 4-bit "
                                 f"values per byte), got {p}; pack it with pack_int4")
    n, k = p.shape[0], 2 * p.shape[1]
    if x.shape[-1] != k:
        raise TypeInferenceError(f"x has {x.shape[-1]} features but the packed weight holds "
                                 f"{k} per row ({p.shape[1]} bytes)")
    if g < 1 or k % g:
        raise TypeInferenceError(f"group={g} must be positive and divide the {k} input features")
    if s.dtype != x.dtype or s.shape != (n, k // g):
        raise TypeInferenceError(f"scales must be {x.dtype}[{n}, {k // g}] (one per output "
                                 f"channel and group of {g}), got {s}")
    if len(types) == 4 and (types[3].dtype != x.dtype or types[3].shape != (n,)):
        raise TypeInferenceError(f"bias must be {x.dtype}[{n}], got {types[3]}")
    return TensorType(x.shape[:-1] + (n,), x.dtype)


def _macs(types, out, attrs) -> int:
    return prod(out.shape) * 2 * types[1].shape[1]


@defop("linear_w4", ("x", "packed", "scales", "bias?"), _infer, category="contraction",
       macs=_macs, attrs={"group": AttrSpec("int")})
def linear_w4(x, packed, scales, bias=None, *, group):
    """x @ W.T + bias with W[n, k] = unpack(packed)[n, k] * scales[n, k // group], the
    product rounded once to x's dtype."""
    q = unpack_int4(packed)
    w = (q.astype(np.float64) * np.repeat(np.asarray(scales, np.float64), group, axis=1))
    return linear(x, w.astype(x.dtype), bias)
