"""ATen indexing, scatter, shape and tensor-factory ops -> smelt (the `ATEN` table of
torch_aten.py, filled on import).

What each ATen op becomes:
- index.Tensor: `take` for one index tensor, else `index` (ir/ops/indexing.py), the axes
  of torch's None entries left out. A bool (or uint8) mask index selects a data-dependent
  number of elements, so it is refused (an UnsupportedOpError that says so). A constant mask
  would have a static count, but torch.export gives its result a data-dependent size all
  the same (an unbacked symbol that every later op's shape carries), so it cannot reach us.
- index_put: `index_put`; with one bool mask and values that do not depend on how many
  elements it selects (a scalar or one row), it is masked filling: where(mask, values, x)
  (x + where(mask, values, 0) when accumulating).
- gather -> `gather`; scatter (src, value, reduce "add"/"multiply"), scatter_add and
  scatter_reduce -> `scatter` with torch's reduction.
- slice_scatter: concat(x before, src, x after) for step 1, else `index_put` at a constant
  index; select_scatter is slice_scatter of one position. masked_scatter: positions
  cumsum(mask) - 1 into the flattened source, taken and placed with where.
- as_strided: `take` of the flattened input at a constant index (offset + sum i_d
  stride_d). as_strided reads torch's storage, so this is exact when the input is
  laid out densely from storage offset 0: the frontend hands converters the operands' fake
  tensors (`Builder.operand_values`), whose strides say in which axis order the storage
  holds them (a transposed layout is transposed back first); any other input is refused.
  Without them (a frontend that has none), an input smelt built from a view that moves
  elements in storage (a transpose, a slice, an expand, directly or under reshapes) is
  refused.
- diagonal, flip, unfold: `take` at a constant index (diagonal over the two axes merged);
  repeat: reshape, expand, reshape; copy(dst, src): src cast to dst's dtype and broadcast
  to its shape; fill: a constant (scalar fill) or the 0-d value broadcast.
- _embedding_bag (sum, mean, max with offsets, per-sample weights, padding_idx): `take` of
  the rows, each row's bag computed from the offsets, `scatter` into the bags.
- tensor factories: the ones whose arguments are all constants fold in the frontend
  (torch computes them: arange with float steps as torch rounds them, full, zeros,
  scalar_tensor, ...). The ones that take a tensor for its shape and dtype only (full_like,
  zeros_like, ones_like, empty_like, new_zeros/ones/full/empty) become constants here.
  `empty*` tensors are uninitialized in torch: any value is valid, and smelt's is zero.
- _local_scalar_dense (.item()): a constant folds to its Python number; on data it is
  refused, data-dependent. sym_size/sym_numel/sym_stride/sym_storage_offset: static ints.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy
import torch

from .dims import Dim, as_dim, format_dim, is_static, size_range
from .node import Node
from .op_table import OPS
from .ops.common import prod
from .torch_aten import _Unsupported, aten, shape_of
from .torch_common import Builder, binary, cast, norm_dim, scalar, smelt_dtype, tensor_constant
from .types import numpy_dtype

#: factories whose values torch leaves uninitialized: smelt's are zero. Folding them with
#: torch (torch_export folds an op whose arguments are all constants) would store whatever
#: memory torch handed out, so the frontend should route them here instead.
UNINITIALIZED = ("empty", "empty_like", "empty_strided", "empty_permuted", "new_empty",
                 "new_empty_strided")


def _const(values: Any, dtype: str) -> Node:
    return Node.constant(np.asarray(values, dtype=numpy_dtype(dtype)), dtype)


def _filled(shape: tuple[Dim, ...], value: Any, dtype: str) -> Node:
    """A constant of `shape` holding `value` everywhere (a scalar expanded to the shape,
    where the shape is symbolic)."""
    if not is_static(shape):
        return Node.make("expand", [_const(np.asarray(value, numpy_dtype(dtype)), dtype)],
                         shape=shape)
    return _const(np.full(shape, value, dtype=numpy_dtype(dtype)), dtype)


def _to(b: Builder, x: Node, shape: tuple[int, ...]) -> Node:
    return x if x.shape == shape else b.make("expand", x, shape=shape)


def _indices(b: Builder, x: Node) -> Node:
    """An index tensor as int32/int64 (torch also takes int8/int16/uint8-as-int)."""
    return x if x.dtype in ("int32", "int64") else cast(b, x, "int64")


# -- index and index_put ----------------------------------------------------------------------
def _is_mask(i: Any) -> bool:
    return isinstance(i, Node) and i.dtype in ("bool", "uint8")


def _index_args(b: Builder, entries: list) -> tuple[list[Node], tuple[int, ...]]:
    if any(_is_mask(i) for i in entries):
        raise _Unsupported("indexing with a boolean mask: how many elements it selects "
                           "depends on the data, so the result has no static shape (out of "
                           "scope); keep the shape with torch.where(mask, x, fill) or "
                           "masked_fill")
    axes = tuple(a for a, i in enumerate(entries) if i is not None)
    return [_indices(b, entries[a]) for a in axes], axes


@aten("index")
def _index(b: Builder, out, x, indices):
    idx, axes = _index_args(b, indices)
    if len(idx) == 1:
        return b.make("take", x, idx[0], axis=axes[0])
    return b.make("index", x, *idx, axes=axes)


def _mask_fill(b: Builder, x: Node, entries: list, values: Node, accumulate: bool):
    """x[mask] = values as where(mask, values, x), if values do not depend on the count the
    mask selects (a scalar, or one value per position of the axes after the mask); None
    otherwise."""
    lead = [i for i in entries if i is not None]
    if len(lead) != 1 or not _is_mask(lead[0]):
        return None
    mask = cast(b, lead[0], "bool")
    start = entries.index(lead[0])
    tail = x.shape[start + mask.tensor_type.rank:]
    v = values.shape
    if len(v) > len(tail) + 1 or (len(v) == len(tail) + 1 and v[0] != 1):
        return None
    if len(v) == len(tail) + 1:
        values = b.make("reshape", values, shape=v[1:])
    m = b.make("reshape", mask, shape=(1,) * start + mask.shape + (1,) * len(tail))
    m = _to(b, m, x.shape)
    vals = _to(b, values, x.shape) if len(values.shape) <= len(x.shape) else None
    if vals is None:
        return None
    if accumulate:
        return b.make("add", x, b.make("where", m, vals, _filled((), 0, x.dtype)))
    return b.make("where", m, vals, x)


@aten("index_put", "index_put_")
def _index_put(b: Builder, out, x, indices, values, accumulate=False):
    values = cast(b, values, x.dtype)
    filled = _mask_fill(b, x, list(indices), values, accumulate)
    if filled is not None:
        return filled
    idx, axes = _index_args(b, indices)
    return b.make("index_put", x, values, *idx, axes=axes, accumulate=bool(accumulate))


# -- gather and scatter ----------------------------------------------------------------------
@aten("gather")
def _gather(b: Builder, out, x, dim, index, sparse_grad=False):
    return b.make("gather", x, _indices(b, index), axis=dim)


_TORCH_REDUCE = {"add": "sum", "multiply": "prod", "sum": "sum", "prod": "prod",
                 "mean": "mean", "amax": "amax", "amin": "amin"}


def _src(b: Builder, x: Node, index: Node, src: Any) -> Node:
    if isinstance(src, Node):
        return cast(b, src, x.dtype)
    return _filled(index.shape, src, x.dtype)  # scatter.value: the value at every index


@aten("scatter")
def _scatter(b: Builder, out, x, dim, index, src, reduce=None):
    reduce = "none" if reduce is None else _TORCH_REDUCE[reduce]
    return b.make("scatter", x, _indices(b, index), _src(b, x, index, src), axis=dim,
                  reduce=reduce)


@aten("scatter_add")
def _scatter_add(b: Builder, out, x, dim, index, src):
    return b.make("scatter", x, _indices(b, index), _src(b, x, index, src), axis=dim,
                  reduce="sum")


@aten("scatter_reduce")
def _scatter_reduce(b: Builder, out, x, dim, index, src, reduce, include_self=True):
    return b.make("scatter", x, _indices(b, index), _src(b, x, index, src), axis=dim,
                  reduce=_TORCH_REDUCE[reduce], include_self=include_self)


# -- scatters of slices ----------------------------------------------------------------------
@aten("slice_scatter")
def _slice_scatter(b: Builder, out, x, src, dim=0, start=None, end=None, step=1):
    rank = x.tensor_type.rank
    dim = norm_dim(dim, rank)
    r = range(x.shape[dim])[slice(start, end, step)]
    src = cast(b, src, x.dtype)
    if len(r) == 0:
        return x
    if r.step == 1:
        parts = [b.make("slice", x, axis=dim, start=0, stop=r.start) if r.start else None, src,
                 b.make("slice", x, axis=dim, start=r.stop) if r.stop < x.shape[dim] else None]
        parts = [p for p in parts if p is not None]
        return parts[0] if len(parts) == 1 else b.make("concat", *parts, axis=dim)
    return b.make("index_put", x, src, _const(np.array(r), "int64"), axes=(dim,))


@aten("select_scatter")
def _select_scatter(b: Builder, out, x, src, dim, index):
    dim = norm_dim(dim, x.tensor_type.rank)
    i = index % x.shape[dim]
    return _slice_scatter(b, out, x, b.make("unsqueeze", src, axes=(dim,)), dim, i, i + 1)


@aten("masked_scatter")
def _masked_scatter(b: Builder, out, x, mask, source):
    """out = x, with the masked positions taking source's elements in row-major order: the
    k-th masked position (k = cumsum(mask) - 1) reads source.flat[k]."""
    if "cumsum" not in OPS:
        raise _Unsupported("masked_scatter needs smelt's cumsum op")
    n = x.tensor_type.size
    m = _to(b, cast(b, mask, "bool"), x.shape)
    flat = b.make("reshape", m, shape=(n,))
    k = b.make("sub", b.make("cumsum", cast(b, flat, "int64"), axis=0), _const(1, "int64"))
    k = b.make("maximum", k, _const(0, "int64"))  # positions before the first mask: unused
    src = b.make("reshape", cast(b, source, x.dtype), shape=(source.tensor_type.size,))
    picked = b.make("reshape", b.make("take", src, k, axis=0), shape=x.shape)
    return b.make("where", m, picked, x)


# -- views by constant index -----------------------------------------------------------------
def _flat_take(b: Builder, x: Node, index: np.ndarray) -> Node:
    flat = b.make("reshape", x, shape=(x.tensor_type.size,))
    return b.make("take", flat, _const(index, "int64"), axis=0)


#: smelt ops from torch views whose storage is not the value in row-major order from 0
_STRIDED_VIEWS = ("transpose", "slice", "expand", "split", "project")
_SAME_STORAGE = ("reshape", "flatten", "squeeze", "unsqueeze")


def storage_order(val: Any) -> tuple[int, ...] | None:
    """The axes of a torch tensor from outermost to innermost in its storage, when it fills
    its storage densely from offset 0 (any permutation of a contiguous layout); else None."""
    if val.storage_offset() != 0:
        return None
    sizes, strides = tuple(val.shape), tuple(val.stride())
    order = tuple(sorted(range(len(sizes)), key=lambda d: (-strides[d], d)))
    step = 1
    for d in reversed(order):
        if sizes[d] != 1 and strides[d] != step:
            return None
        step *= sizes[d]
    return order


def _strided_view(x: Node) -> bool:
    while x.op in _SAME_STORAGE:
        x = x.inputs[0]
    return x.op in _STRIDED_VIEWS


def _contiguous_order(size, stride, offset, total) -> list[int] | None:
    """The axes of an as_strided view from outermost to innermost, when the view lays the
    whole storage (`total` elements, from offset 0) out contiguously in that order: the
    innermost non-unit axis has stride 1, each next one the stride times the size inside
    it. None otherwise (a window, an overlap, a gap)."""
    if offset != 0 or as_dim(prod(size)) != total:
        return None
    inner = [d for d in range(len(size)) if size[d] != 1]
    order: list[int] = []
    step: Dim = 1
    while inner:
        found = next((d for d in inner if as_dim(stride[d]) == as_dim(step)), None)
        if found is None:
            return None
        order.insert(0, found)
        inner.remove(found)
        step = as_dim(step * size[found])
    return [d for d in range(len(size)) if size[d] == 1] + order


@aten("as_strided", "as_strided_copy")
def _as_strided(b: Builder, out, x, size, stride, storage_offset=None):
    val = b.operand_values[0] if b.operand_values else None
    if val is not None:
        order = storage_order(val)
        if order is None:
            raise _Unsupported("as_strided of a tensor that does not fill its storage from the "
                               "start (a slice, an expand): it reads torch's storage, which "
                               "holds more than the tensor; call .contiguous() before it")
        if order != tuple(range(len(order))):  # laid out transposed: storage = that order
            x = b.make("transpose", x, perm=order)
    elif _strided_view(x):  # no strides to read: judge by how smelt built x
        raise _Unsupported(f"as_strided of a strided view (smelt built it with {x.op}): it "
                           "reads torch's storage, whose order is not the view's; call "
                           ".contiguous() before as_strided")
    order = _contiguous_order(size, stride, storage_offset or 0, x.tensor_type.size)
    if order is not None:  # the whole storage, laid out in `order`: a reshape and a transpose
        y = b.make("reshape", x, shape=tuple(size[a] for a in order))
        perm = tuple(order.index(d) for d in range(len(size)))
        return y if perm == tuple(range(len(size))) else b.make("transpose", y, perm=perm)
    if not all(isinstance(v, int) for v in (*size, *stride)):
        raise _Unsupported("as_strided with symbolic sizes that is not a permuted view of the "
                           "whole tensor")
    offset = int(storage_offset or 0)
    index = np.full(tuple(size), offset, dtype=np.int64)
    for d, (n, s) in enumerate(zip(size, stride, strict=True)):
        shape = [1] * len(size)
        shape[d] = n
        index = index + np.arange(n, dtype=np.int64).reshape(shape) * int(s)
    if index.size and (index.max() >= x.tensor_type.size or index.min() < 0):
        raise _Unsupported(f"as_strided reads storage positions {index.min()}..{index.max()} "
                           f"of a {x.tensor_type.size}-element tensor")
    return _flat_take(b, x, index)


@aten("unfold")
def _unfold(b: Builder, out, x, dim, size, step):
    """Windows of `size` every `step` along dim, the window axis last."""
    rank = x.tensor_type.rank
    dim = norm_dim(dim, rank) if rank else 0
    if rank == 0:
        return b.make("reshape", x, shape=(1,))
    starts = np.arange(0, x.shape[dim] - size + 1, step, dtype=np.int64)
    y = b.make("take", x, _const(starts[:, None] + np.arange(size), "int64"), axis=dim)
    perm = list(range(dim + 1)) + list(range(dim + 2, rank + 1)) + [dim + 1]
    return y if perm == list(range(rank + 1)) else b.make("transpose", y, perm=tuple(perm))


@aten("diagonal", "diagonal_copy")
def _diagonal(b: Builder, out, x, offset=0, dim1=0, dim2=1):
    rank = x.tensor_type.rank
    d1, d2 = norm_dim(dim1, rank), norm_dim(dim2, rank)
    perm = [d for d in range(rank) if d not in (d1, d2)] + [d1, d2]
    y = b.make("transpose", x, perm=tuple(perm)) if perm != list(range(rank)) else x
    n1, n2 = x.shape[d1], x.shape[d2]
    rows = np.arange(max(0, -offset), min(n1, n2 - offset), dtype=np.int64)
    lead = y.shape[:-2]
    y = b.make("reshape", y, shape=lead + (n1 * n2,))
    return b.make("take", y, _const(rows * n2 + rows + offset, "int64"), axis=len(lead))


@aten("flip")
def _flip(b: Builder, out, x, dims):
    rank = x.tensor_type.rank
    for d in sorted({norm_dim(d, rank) for d in dims}):
        if x.shape[d] > 1:
            x = b.make("take", x, _const(np.arange(x.shape[d] - 1, -1, -1), "int64"), axis=d)
    return x


@aten("repeat")
def _repeat(b: Builder, out, x, repeats):
    """Tiles: x (leading 1s added) as (1, d0, 1, d1, ...) expanded to (r0, d0, r1, d1, ...)."""
    shape = (1,) * (len(repeats) - x.tensor_type.rank) + x.shape
    inter = tuple(v for d in shape for v in (1, d))
    tiled = tuple(v for r, d in zip(repeats, shape, strict=True) for v in (r, d))
    y = b.make("expand", b.make("reshape", x, shape=inter), shape=tiled)
    return b.make("reshape", y, shape=shape_of(out, b))


# -- copy, fill, factories ----------------------------------------------------------------------
@aten("copy", "copy_")
def _copy(b: Builder, out, dst, src, non_blocking=False):
    return _to(b, cast(b, src, dst.dtype), dst.shape)


@aten("fill", "fill_")
def _fill(b: Builder, out, x, value):
    if isinstance(value, Node):
        return _to(b, cast(b, value, x.dtype), x.shape)
    return _filled(x.shape, value, x.dtype)


def _like(value: Any):
    def convert(b: Builder, out, x, *args, **kw):
        fill = args[0] if value is None else value
        if isinstance(fill, Node):
            raise _Unsupported("a fill value computed from data")
        return _filled(shape_of(out, b), fill, smelt_dtype(out.dtype))

    return convert


def _factory(name: str):
    """A factory of Python numbers only, which the frontend folds before it looks here;
    an argument computed from data (a traced size or value) cannot be one. A symbolic size
    (torch.export's Dim) is no data: `full` / `zeros` / `ones` of a symbolic shape expand a
    scalar, and `arange` to a symbolic end slices a constant arange as long as the range
    allows (ir/dims.py)."""
    def convert(b: Builder, out, *args, **kw):
        if any(isinstance(a, Node) for a in (*args, *kw.values())):
            raise _Unsupported(f"{name} with an argument computed from data")
        if any(isinstance(a, sympy.Expr) for a in _flat((*args, *kw.values()))):
            return _symbolic_factory(b, name, out, args, kw)
        return tensor_constant(getattr(torch.ops.aten, name)(*args, **kw))

    return convert


def _flat(values: Any) -> list[Any]:
    out: list[Any] = []
    for v in values:
        out += _flat(v) if isinstance(v, list | tuple) else [v]
    return out


#: the longest constant a symbolic arange is sliced from
MAX_ARANGE = 1 << 20


def _symbolic_factory(b: Builder, name: str, out, args: tuple, kw: dict) -> Node:
    dtype, shape = smelt_dtype(out.dtype), shape_of(out, b)
    if name in ("full", "zeros", "ones"):
        value = {"zeros": 0, "ones": 1}.get(name, args[1] if len(args) > 1 else kw.get(
            "fill_value"))
        return _filled(shape, value, dtype)
    if name != "arange":
        raise _Unsupported(f"{name} of a symbolic size")
    start, end, step = (0, args[0], 1) if len(args) == 1 else (*args[:2], (args[2:] or (1,))[0])
    if not isinstance(start, int | float) or not isinstance(step, int | float):
        raise _Unsupported("arange with a symbolic start or step")
    longest = size_range(shape[0])[1]
    if longest > MAX_ARANGE:
        raise _Unsupported(f"arange to {format_dim(end)}, which may be {longest} long: give "
                           f"the Dim a max of at most {MAX_ARANGE}")
    values = np.arange(longest) * step + start
    return b.make("slice", _const(values.astype(numpy_dtype(dtype)), dtype), axis=0, start=0,
                  stop=shape[0])


for _name in ("arange", "full", "scalar_tensor", "zeros", "ones"):
    aten(_name)(_factory(_name))
aten("full_like", "new_full")(_like(None))
aten("zeros_like", "new_zeros", *UNINITIALIZED)(_like(0))
aten("ones_like", "new_ones")(_like(1))


@aten("_local_scalar_dense", "item")
def _item(b: Builder, out, x):
    raise _Unsupported("Tensor.item() reads a value computed from the model's inputs into "
                       "Python: what follows depends on the data, which a smelt graph cannot "
                       "express; keep the value a tensor (torch.where instead of if, tensor "
                       "arithmetic instead of Python numbers)")


@aten("sym_size")
def _sym_size(b: Builder, out, x, dim=None):
    return x.shape if dim is None else x.shape[norm_dim(dim, x.tensor_type.rank)]


@aten("sym_numel")
def _sym_numel(b: Builder, out, x):
    return x.tensor_type.size


@aten("sym_stride")
def _sym_stride(b: Builder, out, x, dim=None):
    strides = tuple(prod(x.shape[d + 1:]) for d in range(x.tensor_type.rank))
    return strides if dim is None else strides[norm_dim(dim, x.tensor_type.rank)]


@aten("sym_storage_offset")
def _sym_storage_offset(b: Builder, out, x):
    return 0


# -- embedding bags ---------------------------------------------------------------------------
@aten("_embedding_bag", "_embedding_bag_forward_only", "embedding_bag")
def _embedding_bag(b: Builder, out, weight, indices, offsets, scale_grad_by_freq=False,
                   mode=0, sparse=False, per_sample_weights=None, include_last_offset=False,
                   padding_idx=-1):
    """Bag k sums (averages, maxes) the rows indices[offsets[k]:offsets[k+1]]; an empty bag
    (or one of padding only) gives zeros, as torch."""
    if indices.tensor_type.rank != 1:
        raise _Unsupported("embedding_bag with 2-D indices (torch gives offsets then)")
    n, dim = indices.shape[0], weight.shape[1]
    starts = offsets
    if include_last_offset:
        starts = b.make("slice", offsets, axis=0, start=0, stop=offsets.shape[0] - 1)
    bags = starts.shape[0]
    bag = _bag_of_each_row(b, starts, n)
    rows = b.make("take", weight, _indices(b, indices), axis=0)
    valid = None
    if padding_idx is not None and padding_idx >= 0:
        valid = b.make("not_equal", indices, scalar(padding_idx, indices))
    if per_sample_weights is not None:
        rows = binary(b, "mul", rows, b.make("unsqueeze", per_sample_weights, axes=(1,)))
    where_bag = _to(b, b.make("unsqueeze", bag, axes=(1,)), (n, dim))
    zeros = _filled((bags, dim), 0, weight.dtype)
    valid_rows = None if valid is None else _to(b, b.make("unsqueeze", valid, axes=(1,)),
                                                (n, dim))
    kind = {0: "sum", 1: "mean", 2: "max"}[int(mode)]
    if kind == "max":
        low = _filled((), -np.inf, weight.dtype)
        vals = rows if valid_rows is None else b.make("where", valid_rows, rows, low)
        result = b.make("scatter", zeros, where_bag, vals, axis=0, reduce="amax",
                        include_self=False)
    else:
        vals = rows if valid_rows is None else b.make("where", valid_rows, rows,
                                                      _filled((), 0, weight.dtype))
        result = b.make("scatter", zeros, where_bag, vals, axis=0, reduce="sum")
    if kind == "sum" and valid is None:
        return (result, None, None, None)
    ones = _filled((n,), 1, weight.dtype)
    counted = ones if valid is None else b.make("where", valid, ones,
                                                _filled((), 0, weight.dtype))
    count = b.make("scatter", _filled((bags,), 0, weight.dtype), bag, counted, axis=0,
                   reduce="sum")
    some = _to(b, b.make("unsqueeze", b.make("greater", count, _filled((), 0, weight.dtype)),
                         axes=(1,)), (bags, dim))
    if kind == "mean":
        safe = b.make("maximum", count, _filled((), 1, weight.dtype))
        result = b.make("div", result, _to(b, b.make("unsqueeze", safe, axes=(1,)), (bags, dim)))
    return (b.make("where", some, result, zeros), None, None, None)


def _bag_of_each_row(b: Builder, starts: Node, n: int) -> Node:
    """bag[i] = (number of bag starts <= i) - 1, int64, for rows 0..n-1."""
    if starts.is_constant:
        bag = np.searchsorted(np.asarray(starts.value), np.arange(n), side="right") - 1
        return _const(bag, "int64")
    rows = _const(np.arange(n).reshape(n, 1), starts.dtype)
    began = b.make("greater_equal", _to(b, rows, (n, starts.shape[0])),
                   _to(b, b.make("unsqueeze", starts, axes=(0,)), (n, starts.shape[0])))
    count = b.make("reduce_sum", cast(b, began, "int64"), axes=(1,))
    return b.make("sub", count, _const(1, "int64"))
