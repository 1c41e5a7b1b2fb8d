"""Type-inference helpers shared by the op families."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..dims import Dim, as_dim, format_shape, is_static
from ..errors import TypeInferenceError
from ..types import TensorType, is_float


def same_as_first(types: list[TensorType], attrs: dict) -> TensorType:
    return TensorType(types[0].shape, types[0].dtype)


def float_unary(types: list[TensorType], attrs: dict) -> TensorType:
    t = types[0]
    if not is_float(t.dtype):
        raise TypeInferenceError(f"needs a floating-point input, got {t.dtype}; cast it first")
    return TensorType(t.shape, t.dtype)


def broadcast(shapes: Sequence[tuple[Dim, ...]]) -> tuple[Dim, ...]:
    """numpy broadcasting; a symbolic dimension broadcasts against 1 or itself only (a
    symbol against another size would make the result's size depend on which is 1)."""
    if all(is_static(s) for s in shapes):
        try:
            return tuple(int(d) for d in np.broadcast_shapes(*shapes))
        except ValueError:
            pass
    else:
        rank = max(len(s) for s in shapes)
        out: list[Dim] = []
        for axis in range(rank):
            sizes = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
            sizes.discard(1)
            if len(sizes) > 1:
                break
            out.append(sizes.pop() if sizes else 1)
        else:
            return tuple(out)
    raise TypeInferenceError(
        f"shapes {' and '.join(format_shape(s) for s in shapes)} do not broadcast")


def same_dtype(types: list[TensorType]) -> str:
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1:
        raise TypeInferenceError(
            f"inputs have different dtypes {sorted(dtypes)}; insert a cast so they agree"
        )
    return types[0].dtype


def norm_axis(axis: int, rank: int) -> int:
    """`axis` as a non-negative index into a rank-`rank` shape. A scalar has no axes."""
    if rank == 0:
        raise TypeInferenceError(f"axis {axis} given for a scalar (rank 0), which has no axes; "
                                 "reshape it to [1] first")
    if not -rank <= axis < rank:
        raise TypeInferenceError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def norm_axes(axes: Sequence[int], rank: int) -> tuple[int, ...]:
    out = tuple(sorted(norm_axis(a, rank) for a in axes))
    if len(set(out)) != len(out):
        raise TypeInferenceError(f"axes {list(axes)} repeat an axis")
    return out


def prod(xs: Sequence[Dim]) -> Dim:
    n = 1
    for x in xs:
        n *= x if not isinstance(x, int | np.integer) else int(x)
    return as_dim(n)


def round_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), held in float32.

    bfloat16 is float32 with the low 16 mantissa bits dropped; this is how torch converts.
    NaN stays NaN; values past bfloat16's largest finite value round to infinity."""
    a = np.asarray(x, dtype=np.float32)
    bits = np.ascontiguousarray(a).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    out = bits.astype(np.uint32).view(np.float32).reshape(a.shape)
    return np.where(np.isnan(a), a, out)
