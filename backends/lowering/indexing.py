"""The generic lowering of gather, scatter, index and index_put (ir/ops/indexing.py): one TE
kernel each, the same for every target.

Relax has gather_elements and scatter_elements, but measured against the reference they
disagree: gather_elements reads a negative index as out of range (0 where the reference
counts from the end), and scatter_elements' "mean" averages pairwise as it goes ((x + a) / 2,
then (that + b) / 2) instead of dividing the sum by the count. These kernels follow the
reference instead:

- reads (gather, index): out[p] = x[q(p)] with each index normalized (negative + n) and then
  clamped into [0, n): the reference raises on an index out of range; a compiled kernel
  cannot, and must not read outside x.
- writes (scatter, index_put) are computed per output element, never by racing stores: each
  element reduces over the updates that may land on it (scatter: the index tensor's extent
  along the axis; index_put: every position of the broadcast index shape) and keeps those
  whose index matches. The sum, product, max, min and mean are TE reductions over TVM's own
  combiners (a NaN-aware combiner is one the CUDA rules cannot rfactor, so a float max or
  min takes TVM's max plus sums that restore NaN and -inf, see `_float_extremum`);
  without a reduction the last matching update wins (the largest matching position, a max
  reduction), as in the reference. No race, so the
  result is deterministic on every target, and every kernel is a plain reduction nest that
  the CPU, GPU and C schedules take. Cost: out * (updates per candidate) comparisons, which
  is what a gather-style scatter pays for having no atomics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tvm import te, tirx

from smelt.ir.node import Node
from smelt.ir.ops.common import norm_axis
from smelt.ir.types import is_float, numpy_dtype

from . import te_kernels as K
from .registry import lowers


def _normalized(i: tirx.PrimExpr, n: int) -> tirx.PrimExpr:
    """Index i of an axis of size n: negatives from the end, clamped into [0, n)."""
    dtype = str(i.ty)
    i = tirx.Select(i < K.const(0, dtype), i + K.const(n, dtype), i)
    return tirx.max(tirx.min(i, K.const(max(n - 1, 0), dtype)), K.const(0, dtype))


def _matches(i: tirx.PrimExpr, n: int, at: tirx.PrimExpr) -> tirx.PrimExpr:
    """Index i (of an axis of size n) names position `at`: i == at or i == at - n."""
    dtype = str(i.ty)
    at = at.astype(dtype) if str(at.ty) != dtype else at
    return tirx.Or(tirx.EQ(i, at), tirx.EQ(i, at - K.const(n, dtype)))


def _read(t: te.Tensor, idx: Sequence[tirx.PrimExpr]) -> tirx.PrimExpr:
    """t at `idx` of a shape t broadcasts to (t's axes aligned right; size-1 axes read 0)."""
    off = len(idx) - len(t.shape)
    return t(*(0 if int(d) == 1 else idx[off + i] for i, d in enumerate(t.shape)))


def _shape(n: Node) -> tuple[int, ...]:
    return tuple(int(d) for d in n.shape)


# -- reads ---------------------------------------------------------------------------------
def gather(x: te.Tensor, idx: te.Tensor, axis: int) -> te.Tensor:
    n = int(x.shape[axis])

    def body(*p):
        q = list(p)
        q[axis] = _normalized(idx(*p), n)
        return x(*q)

    return te.compute(idx.shape, body, name="smelt_gather")


def index(x: te.Tensor, *idx: te.Tensor, axes: tuple[int, ...],
          out_shape: tuple[int, ...]) -> te.Tensor:
    """x[...] with the index tensors at `axes` (numpy placement: the broadcast index shape
    in place of adjacent axes, else first)."""
    rank = len(x.shape)
    nb = len(np.broadcast_shapes(*(tuple(int(d) for d in t.shape) for t in idx)))
    adjacent = axes == tuple(range(axes[0], axes[0] + len(axes)))
    start = axes[0] if adjacent else 0
    rest = [d for d in range(rank) if d not in axes]

    def body(*p):
        b = p[start:start + nb]
        others = iter(p[:start] + p[start + nb:])
        q = {d: next(others) for d in rest}
        for a, t in zip(axes, idx, strict=True):
            q[a] = _normalized(_read(t, b), int(x.shape[a]))
        return x(*(q[d] for d in range(rank)))

    return te.compute(out_shape, body, name="smelt_index")


@lowers("gather")
def _gather(bb, n: Node, xs):
    axis = norm_axis(n.attrs["axis"], len(n.shape))
    return bb.call_te(gather, xs[0], xs[1], axis, primfunc_name_hint="smelt_gather")


@lowers("index")
def _index(bb, n: Node, xs):
    axes = tuple(norm_axis(a, len(n.inputs[0].shape)) for a in n.attrs["axes"])
    return bb.call_te(index, *xs, axes=axes, out_shape=_shape(n),
                      primfunc_name_hint="smelt_index")


# -- writes --------------------------------------------------------------------------------
def _combine(x: tirx.PrimExpr, total: tirx.PrimExpr, count: tirx.PrimExpr, reduce: str,
             include_self: bool, dtype: str) -> tirx.PrimExpr:
    """One output element from its old value x, the reduction of the matching updates
    (`total`) and how many matched (`count`)."""
    hit = count > K.const(0, "int64")
    if reduce == "mean":
        c = count + (1 if include_self else 0)
        s = x + total if include_self else total
        if include_self and not is_float(dtype):  # wrap as the dtype does before dividing
            s = (x.astype("int64") + total.astype("int64")).astype(dtype)  # (C promotes)
        if is_float(dtype):
            q = s / c.astype(dtype)
        else:
            q = tirx.floordiv(s, c.astype(dtype))
        return tirx.Select(hit, q, x)
    if not include_self:
        return tirx.Select(hit, total, x)
    if reduce == "sum":
        return x + total
    if reduce == "prod":
        return x * total
    return K.maximum(x, total) if reduce == "amax" else K.minimum(x, total)


def _reducer(reduce: str, dtype: str):
    """(TE reducer, its identity) over values of `dtype`."""
    if reduce in ("sum", "mean"):
        return te.sum, K.const(0, dtype)
    if reduce == "prod":
        prod = te.comm_reducer(lambda a, b: a * b, lambda t: K.const(1, t), name="prod")
        return prod, K.const(1, dtype)
    red = te.max if reduce == "amax" else te.min
    info = np.iinfo(numpy_dtype(dtype))
    return red, K.const(int(info.min if reduce == "amax" else info.max), dtype)


def _float_extremum(shape, match, value, ks, largest: bool) -> te.Tensor:
    """max (min) of the matching float updates, NaN propagating, from TVM's own max (min)
    and sum reductions, which every GPU rule knows (a NaN-aware combiner is one the CUDA
    rules cannot rfactor). TVM's max starts from the lowest finite value, not -inf, and
    drops NaN; two more sums put both right: `finite` counts the matching values that are
    neither NaN nor -inf (+inf for min), none: the infinity; `nans` adds up the matching
    NaNs (0 without any), and is the NaN the result takes when there is one. (A NaN
    literal is no way out: TVM's C code generator prints a float64 NaN as `nan`.)"""
    zero, one = K.const(0, "int64"), K.const(1, "int64")

    def inf(v):
        return K.const(-np.inf if largest else np.inf, str(v.ty))

    def partial(*p):
        v = value(p, ks)
        keep = tirx.And(match(p, ks), tirx.Not(tirx.isnan(v)))
        return (te.max if largest else te.min)(tirx.Select(keep, v, inf(v)), axis=ks)

    def finite(*p):
        v = value(p, ks)
        keep = tirx.And(tirx.And(match(p, ks), tirx.Not(tirx.isnan(v))), tirx.NE(v, inf(v)))
        return te.sum(tirx.Select(keep, one, zero), axis=ks)

    def nans(*p):
        v = value(p, ks)
        keep = tirx.And(match(p, ks), tirx.isnan(v))
        return te.sum(tirx.Select(keep, v, K.const(0, str(v.ty))), axis=ks)

    best = te.compute(shape, partial, name="smelt_scatter_extremum")
    count = te.compute(shape, finite, name="smelt_scatter_finite")
    nan = te.compute(shape, nans, name="smelt_scatter_nans")

    def body(*p):
        pick = tirx.Select(tirx.EQ(count(*p), zero), inf(best(*p)), best(*p))
        return tirx.Select(tirx.isnan(nan(*p)), nan(*p), pick)

    return te.compute(shape, body, name="smelt_scatter_total")


def _write(x: te.Tensor, match, value, ks: list, reduce: str, include_self: bool,
           last_value=None) -> te.Tensor:
    """out[p] = x[p] combined with value(p, k) over the k in `ks` where match(p, k).
    reduce "none": the last matching k's value (`last_value(p, last)`), by a max over the
    row-major position of k."""
    dtype = str(x.dtype)
    shape = tuple(int(d) for d in x.shape)
    zero = K.const(0, "int64")
    if reduce == "none":
        strides = [int(np.prod([int(k.dom.extent) for k in ks[i + 1:]], dtype=np.int64))
                   for i in range(len(ks))]

        def position(*p):
            flat = sum((k.var.astype("int64") * s for k, s in zip(ks, strides, strict=True)),
                       zero)
            return te.max(tirx.Select(match(p, ks), flat, K.const(-1, "int64")), axis=ks)

        last = te.compute(shape, position, name="smelt_scatter_last")

        def pick(*p):
            j = last(*p)
            at = [tirx.floormod(tirx.floordiv(tirx.max(j, zero), s), int(k.dom.extent))
                  for k, s in zip(ks, strides, strict=True)]
            return tirx.Select(j >= zero, last_value(p, at), x(*p))

        return te.compute(shape, pick, name="smelt_scatter")
    if is_float(dtype) and reduce in ("amax", "amin"):
        total = _float_extremum(shape, match, value, ks, reduce == "amax")
    else:
        red, identity = _reducer(reduce, dtype)
        total = te.compute(shape, lambda *p: red(tirx.Select(match(p, ks), value(p, ks),
                                                             identity), axis=ks),
                           name="smelt_scatter_total")
    count = te.compute(shape, lambda *p: te.sum(
        tirx.Select(match(p, ks), K.const(1, "int64"), zero), axis=ks),
        name="smelt_scatter_count")
    return te.compute(shape, lambda *p: _combine(x(*p), total(*p), count(*p), reduce,
                                                 include_self, dtype), name="smelt_scatter")


def scatter(x: te.Tensor, idx: te.Tensor, src: te.Tensor, axis: int, reduce: str,
            include_self: bool) -> te.Tensor:
    """src[.., k, ..] combined into out[.., idx[.., k, ..], ..] along `axis`."""
    ishape = [int(d) for d in idx.shape]
    n = int(x.shape[axis])
    ks = [te.reduce_axis((0, ishape[axis]), "k")]

    def at(p, k):  # the update position: p with the axis replaced by k (in idx's extent)
        q = [tirx.min(v, ishape[d] - 1) if d != axis else k for d, v in enumerate(p)]
        return q

    def match(p, ks):
        inside = [p[d] < ishape[d] for d in range(len(p)) if d != axis and ishape[d] < int(
            x.shape[d])]
        ok = _matches(idx(*at(p, ks[0])), n, p[axis])
        for c in inside:
            ok = tirx.And(ok, c)
        return ok

    return _write(x, match, lambda p, ks: src(*at(p, ks[0])), ks, reduce, include_self,
                  lambda p, j: src(*at(p, j[0])))


def index_put(x: te.Tensor, values: te.Tensor, *idx: te.Tensor, axes: tuple[int, ...],
              accumulate: bool) -> te.Tensor:
    """values (broadcast to x[key]'s shape) written, or added, at x[key]."""
    rank = len(x.shape)
    bshape = np.broadcast_shapes(*(tuple(int(d) for d in t.shape) for t in idx))
    ks = [te.reduce_axis((0, int(b)), f"j{i}") for i, b in enumerate(bshape)] or \
        [te.reduce_axis((0, 1), "j")]  # scalar indices: one update position
    nb = len(bshape)
    adjacent = axes == tuple(range(axes[0], axes[0] + len(axes)))
    rest = [d for d in range(rank) if d not in axes]

    def key_pos(p, j):  # the position in x[key]'s shape of update j at output p
        b = list(j[:nb])
        if adjacent:
            return list(p[:axes[0]]) + b + list(p[axes[-1] + 1:])
        return b + [p[d] for d in rest]

    def match(p, ks):
        j = [k.var for k in ks][:nb]
        ok = tirx.const(True, "bool")
        for a, t in zip(axes, idx, strict=True):
            ok = tirx.And(ok, _matches(_read(t, j), int(x.shape[a]), p[a]))
        return ok

    return _write(x, match, lambda p, ks: _read(values, key_pos(p, [k.var for k in ks])),
                  ks, "sum" if accumulate else "none", True,
                  lambda p, j: _read(values, key_pos(p, j)))


@lowers("scatter")
def _scatter(bb, n: Node, xs):
    a = n.attrs
    axis = norm_axis(a["axis"], len(n.shape))
    return bb.call_te(scatter, *xs, axis, a["reduce"], a["include_self"],
                      primfunc_name_hint="smelt_scatter")


@lowers("index_put")
def _index_put(bb, n: Node, xs):
    axes = tuple(norm_axis(a, len(n.shape)) for a in n.attrs["axes"])
    return bb.call_te(index_put, *xs, axes=axes, accumulate=n.attrs["accumulate"],
                      primfunc_name_hint="smelt_index_put")
