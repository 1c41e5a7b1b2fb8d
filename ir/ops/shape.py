"""Data movement: reshape, flatten, transpose, expand, concat, split, slice, squeeze,
unsqueeze, take (gather / embedding), pad. No arithmetic; MACs are zero."""

from __future__ import annotations

import numpy as np
import sympy

from ..dims import Dim, as_dim, format_dim, largest, least, smallest
from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType, TupleType
from .common import norm_axes, norm_axis, prod, same_dtype


def _reshape_infer(types, attrs):
    x = types[0]
    shape = attrs["shape"]
    if any(isinstance(d, int) and d < 0 for d in shape):
        raise TypeInferenceError(f"reshape target {list(shape)} must be explicit (no -1)")
    if prod(shape) != x.size:
        raise TypeInferenceError(
            f"cannot reshape {list(x.shape)} ({x.size} elements) to {list(shape)} "
            f"({prod(shape)} elements)"
        )
    return TensorType(tuple(shape), x.dtype)


@defop("reshape", ("x",), _reshape_infer, category="shape", attrs={"shape": AttrSpec("dims")})
def reshape(x, *, shape):
    """The same elements in row-major order, in a new shape."""
    return np.reshape(x, shape)


def _flatten_infer(types, attrs):
    x = types[0]
    if x.rank == 0:  # as torch: a scalar flattens to [1], its axes read as one axis
        norm_axis(attrs["start_axis"], 1), norm_axis(attrs["end_axis"], 1)
        return TensorType((1,), x.dtype)
    s = norm_axis(attrs["start_axis"], x.rank)
    e = norm_axis(attrs["end_axis"], x.rank)
    if e < s:
        raise TypeInferenceError(f"end_axis {e} is before start_axis {s}")
    return TensorType(x.shape[:s] + (prod(x.shape[s : e + 1]),) + x.shape[e + 1 :], x.dtype)


@defop("flatten", ("x",), _flatten_infer, category="shape",
       attrs={"start_axis": AttrSpec("int", 1), "end_axis": AttrSpec("int", -1)})
def flatten(x, *, start_axis, end_axis):
    """Axes start..end merged into one (torch.flatten)."""
    shape = _flatten_infer([TensorType(x.shape, "float32")],
                           dict(start_axis=start_axis, end_axis=end_axis)).shape
    return np.reshape(x, shape)


def _transpose_infer(types, attrs):
    x = types[0]
    perm = attrs["perm"]
    if sorted(perm) != list(range(x.rank)):
        raise TypeInferenceError(f"perm {list(perm)} is not a permutation of {x.rank} axes")
    return TensorType(tuple(x.shape[p] for p in perm), x.dtype)


@defop("transpose", ("x",), _transpose_infer, category="shape",
       attrs={"perm": AttrSpec("ints")})
def transpose(x, *, perm):
    """Axes reordered: out axis i is input axis perm[i]."""
    return np.transpose(x, perm)


def _expand_infer(types, attrs):
    x = types[0]
    shape = attrs["shape"]
    if len(shape) < x.rank:
        raise TypeInferenceError(f"cannot expand rank {x.rank} to rank {len(shape)}")
    for d, t in zip(x.shape[::-1], shape[::-1], strict=False):
        if d != t and d != 1:
            raise TypeInferenceError(f"cannot expand {list(x.shape)} to {list(shape)}")
    return TensorType(tuple(shape), x.dtype)


@defop("expand", ("x",), _expand_infer, category="shape", attrs={"shape": AttrSpec("dims")})
def expand(x, *, shape):
    """Size-1 axes broadcast to `shape` (numpy broadcast_to)."""
    return np.broadcast_to(x, shape)


def _concat_infer(types, attrs):
    dtype = same_dtype(types)
    first = types[0]
    axis = norm_axis(attrs["axis"], first.rank)
    for t in types[1:]:
        if t.rank != first.rank or any(
            a != b for i, (a, b) in enumerate(zip(t.shape, first.shape, strict=True))
            if i != axis
        ):
            raise TypeInferenceError(
                f"concat along axis {axis} needs equal other axes: "
                f"{' vs '.join(str(list(t.shape)) for t in types)}"
            )
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in types)
    return TensorType(tuple(shape), dtype)


@defop("concat", ("*xs",), _concat_infer, category="shape", attrs={"axis": AttrSpec("int")})
def concat(*xs, axis):
    """Inputs joined along axis."""
    return np.concatenate(xs, axis=axis)


def _split_infer(types, attrs):
    x = types[0]
    axis = norm_axis(attrs["axis"], x.rank)
    sizes = attrs["sizes"]
    if not sizes:
        raise TypeInferenceError("split needs at least one size")
    if sum(sizes) != x.shape[axis] or any(s < 0 for s in sizes):
        raise TypeInferenceError(
            f"split sizes {list(sizes)} must add up to axis {axis}'s size {x.shape[axis]}"
        )
    parts = []
    for s in sizes:
        shape = list(x.shape)
        shape[axis] = s
        parts.append(TensorType(tuple(shape), x.dtype))
    return TupleType(tuple(parts))


@defop("split", ("x",), _split_infer, category="shape",
       attrs={"axis": AttrSpec("int"), "sizes": AttrSpec("ints")})
def split(x, *, axis, sizes):
    """A tuple of consecutive pieces along axis; read them with project."""
    cuts = np.cumsum(sizes)[:-1]
    return tuple(np.split(x, cuts, axis=axis))


def slice_bounds(size: int, start: int, stop: int, step: int) -> range:
    return range(size)[slice(start, stop, step)]


def slice_length(size: Dim, start: Dim, stop: Dim, step: int) -> Dim:
    """len(range(size)[start:stop:step]) for step >= 1, for symbolic sizes and bounds too
    (a symbolic bound is a size: never negative)."""
    if all(isinstance(v, int) for v in (size, start, stop)):
        return len(slice_bounds(size, start, stop, step))
    a = largest(size + start, 0) if isinstance(start, int) and start < 0 else \
        smallest(start, size)
    b = largest(size + stop, 0) if isinstance(stop, int) and stop < 0 else smallest(stop, size)
    return largest(as_dim(-sympy.floor((a - b) / step)), 0)  # ceil((b - a) / step), >= 0


def slice_start(size: Dim, start: Dim) -> Dim:
    """Where a slice starts, its start normalized as Python does (negatives from the end)."""
    if isinstance(start, int) and start < 0:
        return largest(size + start, 0)
    return smallest(start, size)


def _slice_infer(types, attrs):
    x = types[0]
    axis = norm_axis(attrs["axis"], x.rank)
    if attrs["step"] < 1:
        raise TypeInferenceError("slice step must be >= 1")
    shape = list(x.shape)
    shape[axis] = slice_length(x.shape[axis], attrs["start"], attrs["stop"], attrs["step"])
    return TensorType(tuple(shape), x.dtype)


@defop("slice", ("x",), _slice_infer, category="shape",
       attrs={"axis": AttrSpec("int"), "start": AttrSpec("dim", 0),
              "stop": AttrSpec("dim", 2**62), "step": AttrSpec("int", 1)})
def slice_(x, *, axis, start, stop, step):
    """x[start:stop:step] along axis (python slice rules: negatives count from the end)."""
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop, step)
    return x[tuple(index)]


def _squeeze_infer(types, attrs):
    x = types[0]
    axes = norm_axes(attrs["axes"], x.rank) if attrs["axes"] else tuple(
        i for i, d in enumerate(x.shape) if d == 1)
    for a in axes:
        if x.shape[a] != 1:
            raise TypeInferenceError(f"cannot squeeze axis {a} of size {x.shape[a]}")
    return TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)


@defop("squeeze", ("x",), _squeeze_infer, category="shape",
       attrs={"axes": AttrSpec("ints", ())})
def squeeze(x, *, axes):
    """Size-1 axes removed (all of them when `axes` is empty)."""
    shape = _squeeze_infer([TensorType(x.shape, "float32")], dict(axes=axes)).shape
    return np.reshape(x, shape)


def _unsqueeze_infer(types, attrs):
    x = types[0]
    rank = x.rank + len(attrs["axes"])
    axes = norm_axes(attrs["axes"], rank)
    dims = iter(x.shape)
    return TensorType(tuple(1 if i in axes else next(dims) for i in range(rank)), x.dtype)


@defop("unsqueeze", ("x",), _unsqueeze_infer, category="shape",
       attrs={"axes": AttrSpec("ints")})
def unsqueeze(x, *, axes):
    """Size-1 axes inserted at `axes` (positions in the output)."""
    shape = _unsqueeze_infer([TensorType(x.shape, "float32")], dict(axes=axes)).shape
    return np.reshape(x, shape)


def _take_infer(types, attrs):
    x, idx = types
    if idx.dtype not in ("int32", "int64"):
        raise TypeInferenceError(f"indices must be int32 or int64, got {idx.dtype}")
    axis = norm_axis(attrs["axis"], x.rank)
    return TensorType(x.shape[:axis] + idx.shape + x.shape[axis + 1 :], x.dtype)


@defop("take", ("x", "indices"), _take_infer, category="shape",
       attrs={"axis": AttrSpec("int", 0)})
def take(x, indices, *, axis):
    """Gather along axis (numpy take); embedding lookup is take(table, ids, axis=0).
    Indices out of range are an error; negative ones count from the end."""
    n = x.shape[axis]
    if indices.size and (indices.max() >= n or indices.min() < -n):
        from ..errors import InterpretError

        raise InterpretError(f"take: an index is out of range for axis size {n}")
    return np.take(x, indices, axis=axis)


def _pad_infer(types, attrs):
    x = types[0]
    pads = attrs["pads"]
    if len(pads) != 2 * x.rank or any(p < 0 for p in pads):
        raise TypeInferenceError(
            f"pads must hold a (before, after) pair of non-negative sizes per axis "
            f"({2 * x.rank} values), got {list(pads)}"
        )
    shape = tuple(d + pads[2 * i] + pads[2 * i + 1] for i, d in enumerate(x.shape))
    if attrs["mode"] == "reflect":
        for i, d in enumerate(x.shape):
            if max(pads[2 * i], pads[2 * i + 1]) >= least(d):
                raise TypeInferenceError(f"reflect padding must be smaller than the axis "
                                         f"(axis {i} is {format_dim(d)}, at least {least(d)})")
    return TensorType(shape, x.dtype)


@defop("pad", ("x",), _pad_infer, category="shape",
       attrs={"pads": AttrSpec("ints"), "value": AttrSpec("float", 0.0),
              "mode": AttrSpec("str", "constant", ("constant", "reflect", "edge"))})
def pad(x, *, pads, value, mode):
    """x padded per axis by pads[2i] before and pads[2i+1] after; constant, reflect or
    edge (replicate) mode."""
    if x.ndim == 0:
        return x.copy()
    widths = [(pads[2 * i], pads[2 * i + 1]) for i in range(x.ndim)]
    if mode == "constant":
        return np.pad(x, widths, constant_values=np.asarray(value, x.dtype))
    return np.pad(x, widths, mode=mode)
