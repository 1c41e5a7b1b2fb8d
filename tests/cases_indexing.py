"""Reference cases of the indexing ops (ir/ops/indexing.py): gather, scatter, index and
index_put, drawn by hypothesis and computed independently by torch.

Merged into test_ops_reference's CASES (which imports this module after defining Case and
Example), so test_ops_reference, test_backend_ops and test_interop run every case here.

Indices span [-n, n): negative ones count from the end. Writes without a reduction (scatter's
"none", index_put without accumulate) draw distinct positions: with duplicates torch leaves
unspecified which update lands. Reductions and accumulation draw duplicates on purpose.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st
from test_ops_reference import Case, Example, values

from smelt.ir.ops.indexing import REDUCTIONS
from smelt.rewrite import strategies as sst

ANY = ("float32", "float64", "int32", "int8", "bool")
NUMBERS = ("float32", "float64", "int32", "int64")
INDEX_DTYPES = (np.int32, np.int64)
#: ops whose reference raises InterpretError on an index out of range (random data hits it)
DATA_CHECKED = ("gather", "scatter", "index", "index_put")


def _indices(draw: st.DrawFn, shape: tuple[int, ...], n: int) -> np.ndarray:
    """Indices into an axis of size n, in [-n, n), int32 or int64."""
    size = math.prod(shape)
    idx = draw(st.lists(st.integers(-n, n - 1), min_size=size, max_size=size))
    return np.array(idx, dtype=draw(st.sampled_from(INDEX_DTYPES))).reshape(shape)


def _distinct(draw: st.DrawFn, count: int, n: int) -> list[int]:
    """`count` distinct positions of range(n), each maybe written as its negative twin."""
    picked = draw(st.permutations(range(n)))[:count]
    return [p - n if draw(st.booleans()) else p for p in picked]


def _torch_index(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.int64)


def _non_negative(idx: torch.Tensor, n: int) -> torch.Tensor:
    idx = _torch_index(idx)
    return torch.where(idx < 0, idx + n, idx)


# -- gather and scatter ----------------------------------------------------------------------
@st.composite
def gather_examples(draw: st.DrawFn) -> Example:
    shape = draw(sst.shapes(1, 3, 1, 5))
    x = draw(values(shape, draw(st.sampled_from(ANY))))
    axis = draw(st.integers(0, x.ndim - 1))
    idx_shape = tuple(draw(st.integers(1, 4)) if d == axis else draw(st.integers(1, n))
                      for d, n in enumerate(shape))
    idx = _indices(draw, idx_shape, shape[axis])
    return Example((x, idx), {"axis": axis - x.ndim * draw(st.booleans())})


def torch_gather(x, indices, *, axis):
    return torch.gather(x, axis, _non_negative(indices, x.shape[axis]))


@st.composite
def scatter_examples(draw: st.DrawFn) -> Example:
    reduce = draw(st.sampled_from(REDUCTIONS))
    dtype = draw(st.sampled_from(NUMBERS + (("int8", "bool") if reduce == "none" else ())))
    shape = draw(sst.shapes(1, 3, 1, 5))
    rank = len(shape)
    axis = draw(st.integers(0, rank - 1))
    n = shape[axis]
    idx_shape = tuple(draw(st.integers(1, n if reduce == "none" else 5)) if d == axis
                      else draw(st.integers(1, s)) for d, s in enumerate(shape))
    if reduce == "none":  # distinct along each line of the axis
        lines = [_distinct(draw, idx_shape[axis], n)
                 for _ in range(math.prod(idx_shape) // idx_shape[axis])]
        moved = np.array(lines).reshape(idx_shape[:axis] + idx_shape[axis + 1:]
                                        + (idx_shape[axis],))
        idx = np.moveaxis(moved, -1, axis).astype(draw(st.sampled_from(INDEX_DTYPES)))
    else:
        idx = _indices(draw, idx_shape, n)
    src_shape = tuple(i + draw(st.integers(0, 1)) for i in idx_shape)
    small = reduce == "prod"
    x = draw(values(shape, dtype, integral=small, scale=2.0 if small else None,
                    specials=reduce in ("amax", "amin")))
    src = draw(values(src_shape, dtype, integral=small, scale=2.0 if small else None,
                      specials=reduce in ("amax", "amin")))
    attrs = {"axis": axis - rank * draw(st.booleans()), "reduce": reduce,
             "include_self": draw(st.booleans())}
    # K: the updates one element may combine (a product's roundings are relative to it)
    return Example((x, idx, src), attrs, k=idx_shape[axis] + 1)


def torch_scatter(x, indices, src, *, axis, reduce, include_self):
    idx = _non_negative(indices, x.shape[axis])
    src = src[tuple(slice(0, d) for d in idx.shape)]
    if reduce == "none":
        return x.scatter(axis, idx, src)
    return x.scatter_reduce(axis, idx, src, reduce, include_self=include_self)


# -- advanced indexing -----------------------------------------------------------------------
@st.composite
def _index_setup(draw: st.DrawFn, dtypes: tuple[str, ...]):
    shape = draw(sst.shapes(1, 4, 1, 4))
    x = draw(values(shape, draw(st.sampled_from(dtypes))))
    axes = sorted(draw(st.lists(st.integers(0, len(shape) - 1), min_size=1,
                                max_size=min(3, len(shape)), unique=True)))
    base = draw(sst.shapes(0, 2, 1, 3))
    return x, axes, base


@st.composite
def index_examples(draw: st.DrawFn) -> Example:
    x, axes, base = draw(_index_setup(ANY))
    idx = [_indices(draw, draw(sst.broadcastable_shapes(base)), x.shape[a]) for a in axes]
    signed = [a - x.ndim * draw(st.booleans()) for a in axes]
    return Example((x, *idx), {"axes": signed})


def _torch_key(x, indices, axes) -> list:
    key: list = [None] * x.dim()
    for a, i in zip(axes, indices, strict=True):
        key[a % x.dim()] = _torch_index(i)
    while key and key[-1] is None:  # aten.index takes trailing axes as whole
        key.pop()
    return key


def torch_index(x, *indices, axes):
    return torch.ops.aten.index.Tensor(x, _torch_key(x, indices, axes))


@st.composite
def index_put_examples(draw: st.DrawFn) -> Example:
    accumulate = draw(st.booleans())
    x, axes, base = draw(_index_setup(NUMBERS if accumulate else ANY))
    sides = [x.shape[a] for a in axes]
    if accumulate:
        idx = [_indices(draw, draw(sst.broadcastable_shapes(base)), n) for n in sides]
    else:  # distinct positions: every index tensor full-shape
        count = min(math.prod(base), math.prod(sides))
        base = (count,)
        flat = draw(st.permutations(range(math.prod(sides))))[:count]
        coords = np.unravel_index(np.array(flat, dtype=np.int64), sides)
        idx = [np.where(draw(st.booleans()), c - n, c).astype(draw(st.sampled_from(
            INDEX_DTYPES))) for c, n in zip(coords, sides, strict=True)]
    key_shape = torch_index(torch.zeros(x.shape), *(torch.from_numpy(i) for i in idx),
                            axes=axes).shape
    v = draw(values(draw(sst.broadcastable_shapes(tuple(key_shape))), str(x.dtype)))
    signed = [a - x.ndim * draw(st.booleans()) for a in axes]
    return Example((x, v, *idx), {"axes": signed, "accumulate": accumulate},
                   k=math.prod(base) + 1)


def torch_index_put(x, v, *indices, axes, accumulate):
    return torch.ops.aten.index_put(x, _torch_key(x, indices, axes), v, accumulate)


CASES_INDEXING: dict[str, Case] = {
    "gather": Case(gather_examples(), torch_gather, exact=True),
    "scatter": Case(scatter_examples(), torch_scatter),
    "index": Case(index_examples(), torch_index, exact=True),
    "index_put": Case(index_put_examples(), torch_index_put),
}
