"""Indexing by tensors: gather and scatter along one axis (torch.gather, Tensor.scatter_reduce),
and numpy/torch advanced indexing, read (`index`) and written (`index_put`). No arithmetic
beyond a scatter's reduction; MACs are zero.

Index rules, shared by the four ops: indices are int32 or int64; a negative index counts from
the end of its axis; an index out of range is an error (`InterpretError`, as `take` raises).
The compiled kernels read a clamped index instead (they cannot raise), and JAX clips
(traced code cannot raise either): both agree with the reference wherever it answers.

Writes with duplicate indices: a reduction combines every update (sum, prod, mean, amax,
amin; `index_put` with `accumulate` sums them). Without one (reduce "none", or `index_put`
without `accumulate`), torch and JAX leave unspecified which update lands; the reference
and the compiled kernels take the last one in row-major order of the index tensor.

Placement of `index`'s result axes (numpy's rule, which torch follows): the index tensors
broadcast to one shape B. When the indexed axes are adjacent, B replaces them in place;
otherwise B comes first, followed by the axes not indexed, in order. `axes` records which
axes of x the index tensors index (torch's `None` entries are the axes left out).
"""

from __future__ import annotations

import numpy as np

from ..errors import InterpretError, TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType
from .common import broadcast, norm_axis

INDEX_DTYPES = ("int32", "int64")
#: scatter's reductions, torch's names (scatter_reduce); "none" assigns
REDUCTIONS = ("none", "sum", "prod", "mean", "amax", "amin")


def _check_index_dtype(op: str, t: TensorType) -> None:
    if t.dtype not in INDEX_DTYPES:
        raise TypeInferenceError(f"{op}: indices must be int32 or int64, got {t.dtype}; "
                                 "a bool mask selects a data-dependent number of elements")


def checked_indices(op: str, indices: np.ndarray, n: int) -> np.ndarray:
    """`indices` as int64 in [0, n): negatives count from the end; out of range raises."""
    idx = np.asarray(indices).astype(np.int64)
    if idx.size and (idx.max() >= n or idx.min() < -n):
        raise InterpretError(f"{op}: an index is out of range for axis size {n} "
                             f"(indices span {idx.min()}..{idx.max()})")
    return np.where(idx < 0, idx + n, idx)


def _write(out: np.ndarray, pos: np.ndarray, vals: np.ndarray, reduce: str,
           include_self: bool) -> np.ndarray:
    """`vals` written into `out` (a fresh copy) at flat positions `pos`, combined by
    `reduce`; with include_self False a written position starts from the reduction's
    identity instead of its old value (a mean then divides by the updates alone)."""
    flat = out.reshape(-1)
    pos, vals = pos.reshape(-1), vals.reshape(-1).astype(out.dtype)
    if reduce == "none":
        _, last_rev = np.unique(pos[::-1], return_index=True)
        keep = len(pos) - 1 - last_rev
        flat[pos[keep]] = vals[keep]
        return out
    if not include_self:
        flat[pos] = _identity(reduce, out.dtype)
    if reduce in ("sum", "mean"):
        np.add.at(flat, pos, vals)
    elif reduce == "prod":
        np.multiply.at(flat, pos, vals)
    else:
        (np.maximum if reduce == "amax" else np.minimum).at(flat, pos, vals)
    if reduce == "mean":
        count = np.zeros(flat.shape, np.int64)
        np.add.at(count, pos, 1)
        hit = count > 0
        denom = count[hit] + (1 if include_self else 0)
        if np.issubdtype(out.dtype, np.floating):
            flat[hit] = flat[hit] / denom.astype(out.dtype)
        else:  # torch floors an integer mean
            flat[hit] = np.floor_divide(flat[hit], denom).astype(out.dtype)
    return out


def _identity(reduce: str, dtype: np.dtype) -> float | int:
    if reduce in ("sum", "mean"):
        return 0
    if reduce == "prod":
        return 1
    if np.issubdtype(dtype, np.floating):
        return -np.inf if reduce == "amax" else np.inf
    info = np.iinfo(dtype)
    return info.min if reduce == "amax" else info.max


def _positions(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def _leading(a: np.ndarray, shape: tuple[int, ...], skip: int | None = None) -> np.ndarray:
    """a[:shape[0], :shape[1], ...], axis `skip` whole."""
    return a[tuple(slice(None) if i == skip else slice(0, d) for i, d in enumerate(shape))]


# -- gather and scatter along one axis -----------------------------------------------------
def _gather_infer(types, attrs):
    x, idx = types
    _check_index_dtype("gather", idx)
    if idx.rank != x.rank:
        raise TypeInferenceError(f"gather: indices have rank {idx.rank}, x has rank {x.rank}; "
                                 "they must agree (torch.gather)")
    axis = norm_axis(attrs["axis"], x.rank)
    for d, (i, n) in enumerate(zip(idx.shape, x.shape, strict=True)):
        if d != axis and i > n:
            raise TypeInferenceError(f"gather: indices {list(idx.shape)} exceed x "
                                     f"{list(x.shape)} on axis {d}")
    return TensorType(idx.shape, x.dtype)


@defop("gather", ("x", "indices"), _gather_infer, category="shape",
       attrs={"axis": AttrSpec("int")})
def gather(x, indices, *, axis):
    """out[i, j, k] = x[i, indices[i, j, k], k] for axis 1 (torch.gather, numpy's
    take_along_axis); indices may be smaller than x on the other axes."""
    axis = norm_axis(axis, x.ndim)
    idx = checked_indices("gather", indices, x.shape[axis])
    return np.take_along_axis(_leading(x, idx.shape, axis), idx, axis=axis)


def _scatter_infer(types, attrs):
    x, idx, src = types
    _check_index_dtype("scatter", idx)
    if not idx.rank == x.rank == src.rank:
        raise TypeInferenceError(f"scatter: x, indices and src have ranks {x.rank}, "
                                 f"{idx.rank}, {src.rank}; they must agree (torch.scatter)")
    if src.dtype != x.dtype:
        raise TypeInferenceError(f"scatter: src is {src.dtype}, x is {x.dtype}; cast src")
    axis = norm_axis(attrs["axis"], x.rank)
    for d in range(x.rank):
        if idx.shape[d] > src.shape[d] or (d != axis and idx.shape[d] > x.shape[d]):
            raise TypeInferenceError(
                f"scatter: indices {list(idx.shape)} exceed src {list(src.shape)} or x "
                f"{list(x.shape)} on axis {d}")
    if attrs["reduce"] != "none" and x.dtype == "bool":
        raise TypeInferenceError(f"scatter: reduce {attrs['reduce']!r} needs numbers, x is "
                                 "bool; cast to an integer type first")
    return TensorType(x.shape, x.dtype)


@defop("scatter", ("x", "indices", "src"), _scatter_infer, category="shape",
       attrs={"axis": AttrSpec("int"), "reduce": AttrSpec("str", "none", REDUCTIONS),
              "include_self": AttrSpec("bool", True)})
def scatter(x, indices, src, *, axis, reduce, include_self):
    """x with src[i, j, k] combined into x[i, indices[i, j, k], k] for axis 1
    (Tensor.scatter_reduce; reduce "none" is Tensor.scatter). Only src's leading part of
    indices' shape is read. include_self False: a written element starts from the
    reduction's identity (its old value is not part of the sum, max or mean). An integer
    mean floors, as torch's does."""
    axis = norm_axis(axis, x.ndim)
    idx = checked_indices("scatter", indices, x.shape[axis])
    pos = np.take_along_axis(_leading(_positions(x.shape), idx.shape, axis), idx, axis=axis)
    return _write(x.copy(), pos, _leading(src, idx.shape), reduce, include_self)


# -- advanced indexing ----------------------------------------------------------------------
def _index_axes(op: str, x: TensorType, idx: list[TensorType], axes) -> tuple[int, ...]:
    if not idx:
        raise TypeInferenceError(f"{op} needs at least one index tensor")
    if len(axes) != len(idx):
        raise TypeInferenceError(f"{op}: {len(idx)} index tensor(s) but axes {list(axes)}; "
                                 "give one axis per index tensor")
    if len(idx) > x.rank:
        raise TypeInferenceError(f"{op}: {len(idx)} index tensors for a rank-{x.rank} x")
    out = tuple(norm_axis(a, x.rank) for a in axes)
    if any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise TypeInferenceError(f"{op}: axes {list(axes)} must be increasing, without repeats")
    for t in idx:
        _check_index_dtype(op, t)
    return out


def index_shape(x: TensorType, idx: list[TensorType], axes: tuple[int, ...]) -> tuple:
    """The shape of x[...] with the index tensors at `axes` (numpy's placement rule)."""
    b = broadcast([t.shape for t in idx])
    if axes == tuple(range(axes[0], axes[0] + len(axes))):
        return x.shape[: axes[0]] + b + x.shape[axes[-1] + 1:]
    return b + tuple(d for i, d in enumerate(x.shape) if i not in axes)


def _index_infer(types, attrs):
    x, *idx = types
    axes = _index_axes("index", x, idx, attrs["axes"])
    return TensorType(index_shape(x, idx, axes), x.dtype)


def _key(op: str, x_shape: tuple[int, ...], indices, axes) -> tuple:
    """The numpy index: checked indices at `axes`, whole slices elsewhere."""
    key: list = [slice(None)] * len(x_shape)
    for a, i in zip(axes, indices, strict=True):
        a = norm_axis(a, len(x_shape))
        key[a] = checked_indices(op, i, x_shape[a])
    return tuple(key)


@defop("index", ("*xs",), _index_infer, category="shape", attrs={"axes": AttrSpec("ints")})
def index(x, *indices, axes):
    """x[..., i0, ..., i1, ...]: tensor indices at `axes`, the other axes whole (torch's
    aten.index with None at the axes not listed; numpy advanced indexing). See the module
    docstring for where the broadcast index shape goes."""
    return x[_key("index", x.shape, indices, axes)]


def _index_put_infer(types, attrs):
    if len(types) < 3:
        raise TypeInferenceError(f"index_put takes x, values and at least one index tensor, "
                                 f"got {len(types)} input(s)")
    x, values, *idx = types
    axes = _index_axes("index_put", x, idx, attrs["axes"])
    if values.dtype != x.dtype:
        raise TypeInferenceError(f"index_put: values are {values.dtype}, x is {x.dtype}; "
                                 "cast the values")
    shape = index_shape(x, idx, axes)
    if broadcast([values.shape, shape]) != shape:
        raise TypeInferenceError(f"index_put: values {list(values.shape)} do not broadcast to "
                                 f"the indexed shape {list(shape)}")
    if attrs["accumulate"] and x.dtype == "bool":
        raise TypeInferenceError("index_put: accumulate needs numbers, x is bool")
    return TensorType(x.shape, x.dtype)


@defop("index_put", ("*xs",), _index_put_infer, category="shape",
       attrs={"axes": AttrSpec("ints"), "accumulate": AttrSpec("bool", False)})
def index_put(x, values, *indices, axes, accumulate):
    """x with x[key] = values (broadcast to x[key]'s shape), key as `index` builds it from
    the indices at `axes`; accumulate adds instead, every duplicate counted
    (torch.index_put)."""
    pos = _positions(x.shape)[_key("index_put", x.shape, indices, axes)]
    vals = np.broadcast_to(values, pos.shape)
    return _write(x.copy(), pos, vals, "sum" if accumulate else "none", True)
