"""lax gather/scatter-family primitives -> smelt (entries of jax_converters.CONVERTERS).

- gather: the forms jnp indexing and take produce. Full-index form (every indexed axis
  collapsed, whole slices of the others: x[i], x[:, i], x[i, j], jnp.take) -> `take` for
  one indexed axis, else `index`, then a transpose to JAX's output order. Batched form
  (jnp.take_along_axis: every other axis a batch axis) -> `gather`.
- scatter, scatter-add, scatter-mul, scatter-min, scatter-max (x.at[...].set/add/multiply/
  min/max, segment_sum): the indexed axes are merged into one (a transpose and a reshape of
  x), the index becomes a linear one, and smelt's `scatter` along that axis combines the
  updates (reduce none/sum/prod/amin/amax). Windows must be whole slices of the axes not
  indexed, as jnp's indexing gives.
- dynamic_update_slice with constant starts (clamped into range, as XLA does): slices of x
  around the update, joined with concat axis by axis.
- rev: `take` at a reversed constant index.
- pad with interior padding: each axis with interior k gets a new axis of k fill values
  after every element, merged and trimmed; then the edge padding (negative: a crop).

Modes (lax.GatherScatterMode): CLIP clamps every index into range; FILL_OR_DROP reads
`fill_value` (NaN, the integer minimum, True by default) where an index is out of range and
drops such updates. smelt's reference raises on an out-of-range index (ir/ops/indexing.py),
so a dropped update is an error there, while compiled kernels drop it as JAX does.
PROMISE_IN_BOUNDS takes indices as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .jax_builder import _Builder, _cast, _reshape, _scalar, _slice, _transpose
from .node import Node
from .ops.common import prod
from .types import is_float

MODES = ("PROMISE_IN_BOUNDS", "CLIP", "FILL_OR_DROP")


def _mode(b: _Builder, eqn: Any) -> str:
    mode = str(eqn.params["mode"]).rsplit(".", 1)[-1]
    if mode not in MODES:
        raise b.unsupported(eqn.primitive.name, f"index mode {mode} has no smelt equivalent")
    return mode


def _index_columns(b: _Builder, idx: Node) -> list[Node]:
    """indices (*batch, K) -> K index tensors of shape batch."""
    batch, k = idx.shape[:-1], idx.shape[-1]
    return [_reshape(b, _slice(b, idx, len(batch), c, c + 1), batch) for c in range(k)]


def _clamped(b: _Builder, i: Node, n: int) -> Node:
    return b.make("clamp", i, min=0.0, max=float(n - 1))


def _in_range(b: _Builder, cols: list[Node], sizes: list[int]) -> Node:
    ok = None
    for i, n in zip(cols, sizes, strict=True):
        inside = b.make("logical_and", b.make("greater_equal", i, b.const(0, i.dtype)),
                        b.make("less", i, b.const(n, i.dtype)))
        ok = inside if ok is None else b.make("logical_and", ok, inside)
    return ok


def _fill_value(fill: Any, x: Node) -> Any:
    """jax's fill for out-of-range gathers (given, else NaN, the signed minimum, the unsigned
    maximum, or True)."""
    if fill is not None:
        return fill
    if is_float(x.dtype) or x.dtype == "bool":
        return np.nan if is_float(x.dtype) else True
    info = np.iinfo(np.dtype(x.dtype))
    return info.max if info.min == 0 else info.min


def _labels_perm(have: list, want: list) -> list[int]:
    return [have.index(w) for w in want]


# -- gather ----------------------------------------------------------------------------------
def gather(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    x, idx = xs
    p, dn = eqn.params, eqn.params["dimension_numbers"]
    if dn.operand_batching_dims:
        return _gather_batched(b, eqn, x, idx)
    axes = list(dn.start_index_map)
    rank = len(x.shape)
    whole = tuple(1 if d in axes else x.shape[d] for d in range(rank))
    if (sorted(dn.collapsed_slice_dims) != sorted(axes) or tuple(p["slice_sizes"]) != whole
            or len(set(axes)) != len(axes) or idx.shape[-1:] != (len(axes),)):
        raise b.unsupported("gather", "only the forms of jnp indexing (x[i], x[:, i], "
                            "x[i, j], jnp.take, take_along_axis) map to smelt ops")
    cols = _index_columns(b, idx)
    order = sorted(range(len(axes)), key=lambda k: axes[k])
    axes, cols = [axes[k] for k in order], [cols[k] for k in order]
    sizes = [x.shape[a] for a in axes]
    mode = _mode(b, eqn)
    reads = cols if mode == "PROMISE_IN_BOUNDS" else [_clamped(b, i, n)
                                                      for i, n in zip(cols, sizes, strict=True)]
    batch = idx.shape[:-1]
    rest = [d for d in range(rank) if d not in axes]
    if len(axes) == 1:
        y = b.make("take", x, reads[0], axis=axes[0])
    else:
        y = b.make("index", x, *reads, axes=tuple(axes))
    # label smelt's axes and JAX's: ("b", i) batch axis i, ("o", d) operand axis d
    bl = [("b", i) for i in range(len(batch))]
    adjacent = axes == list(range(axes[0], axes[0] + len(axes)))
    start = axes[0] if adjacent else 0
    others = [("o", d) for d in rest]
    have = others[:start] + bl + others[start:]
    offsets = iter(others)
    bs = iter(bl)
    want = [next(offsets) if j in dn.offset_dims else next(bs) for j in range(len(have))]
    y = _transpose(b, y, _labels_perm(have, want))
    if mode != "FILL_OR_DROP":
        return y
    # batch axes keep their order in JAX's output: size-1 axes between them broadcast
    ok = _reshape(b, _in_range(b, cols, sizes), [batch[w[1]] if w[0] == "b" else 1
                                                 for w in want])
    fill = b.const(_fill_value(p["fill_value"], x), x.dtype)
    return b.make("where", ok, y, fill)


def _gather_batched(b: _Builder, eqn: Any, x: Node, idx: Node) -> Node:
    """jnp.take_along_axis: one collapsed axis, every other operand axis a batch axis
    paired with the same axis of the indices (whose last axis holds the one index)."""
    p, dn = eqn.params, eqn.params["dimension_numbers"]
    rank = len(x.shape)
    axis = dn.start_index_map[0] if len(dn.start_index_map) == 1 else None
    others = tuple(d for d in range(rank) if d != axis)
    if (axis is None or tuple(dn.collapsed_slice_dims) != (axis,) or dn.offset_dims
            or tuple(dn.operand_batching_dims) != others
            or tuple(dn.start_indices_batching_dims) != others
            or idx.shape[-1:] != (1,) or tuple(p["slice_sizes"]) != (1,) * rank):
        raise b.unsupported("gather", "only the batched form of jnp.take_along_axis maps to "
                            "smelt's gather")
    ids = _reshape(b, idx, idx.shape[:-1])  # x's axis order
    n = x.shape[axis]
    mode = _mode(b, eqn)
    y = b.make("gather", x, ids if mode == "PROMISE_IN_BOUNDS" else _clamped(b, ids, n),
               axis=axis)
    if mode != "FILL_OR_DROP":
        return y
    ok = _in_range(b, [ids], [n])
    return b.make("where", ok, y, b.const(_fill_value(p["fill_value"], x), x.dtype))


# -- scatter ---------------------------------------------------------------------------------
_REDUCE = {"scatter": "none", "scatter-add": "sum", "scatter_add": "sum",
           "scatter-mul": "prod", "scatter_mul": "prod", "scatter-min": "amin",
           "scatter_min": "amin", "scatter-max": "amax", "scatter_max": "amax"}


def scatter(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    """x.at[key].op(updates) through smelt's scatter over the indexed axes merged into one."""
    x, idx, upd = xs
    name = eqn.primitive.name
    dn = eqn.params["dimension_numbers"]
    axes = list(dn.scatter_dims_to_operand_dims)
    rank = len(x.shape)
    rest = [d for d in range(rank) if d not in axes]
    batch = idx.shape[:-1]
    window = [upd.shape[d] for d in dn.update_window_dims]
    if (dn.operand_batching_dims or sorted(dn.inserted_window_dims) != sorted(axes)
            or idx.shape[-1:] != (len(axes),) or window != [x.shape[d] for d in rest]
            or len(set(axes)) != len(axes)):
        raise b.unsupported(name, "only the forms of x.at[i], x.at[:, i], x.at[i, j] (whole "
                            "slices of the axes not indexed) map to smelt's scatter")
    upd = _cast(b, upd, x.dtype)
    sizes = [x.shape[a] for a in axes]
    cols = _index_columns(b, idx)
    mode = _mode(b, eqn)
    if mode == "CLIP":
        cols = [_clamped(b, i, n) for i, n in zip(cols, sizes, strict=True)]
    dtype = cols[0].dtype
    lin = None
    for i, k in zip(cols, range(len(axes)), strict=True):
        term = b.make("mul", i, b.const(prod(sizes[k + 1:]), dtype))
        lin = term if lin is None else b.make("add", lin, term)
    total = prod(sizes)
    if mode == "FILL_OR_DROP":  # an out-of-range index: out of range of the merged axis too
        lin = b.make("where", _in_range(b, cols, sizes), lin, b.const(total, dtype))
    merged = _reshape(b, _transpose(b, x, axes + rest), [total] + [x.shape[d] for d in rest])
    scatter_pos = [j for j in range(len(upd.shape)) if j not in dn.update_window_dims]
    u = _transpose(b, upd, scatter_pos + list(dn.update_window_dims))
    n_upd = prod(batch)
    u = _reshape(b, u, [n_upd] + window)
    lin = _reshape(b, lin, [n_upd] + [1] * len(rest))
    lin = b.make("expand", lin, shape=tuple(u.shape)) if u.shape != lin.shape else lin
    y = b.make("scatter", merged, lin, u, axis=0, reduce=_REDUCE[name])
    y = _reshape(b, y, sizes + [x.shape[d] for d in rest])
    return _transpose(b, y, np.argsort(axes + rest).tolist())


# -- slices, reversal, padding -----------------------------------------------------------------
def dynamic_update_slice(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    """Constant starts only (clamped so the update fits, as XLA does)."""
    x, upd, *starts = xs
    values = [_scalar(s) for s in starts]
    if any(v is None for v in values):
        raise b.unsupported("dynamic_update_slice", "start indices must be constants; smelt "
                            "graphs have static slices")
    starts_ = [min(max(int(v), 0), n - u) for v, n, u in zip(values, x.shape, upd.shape,
                                                              strict=True)]
    return _update(b, x, _cast(b, upd, x.dtype), starts_, 0)


def _update(b: _Builder, x: Node, upd: Node, starts: list[int], axis: int) -> Node:
    """x with upd written at `starts`, axes from `axis` on: slices and concat."""
    if axis == len(x.shape):
        return upd
    s, u, n = starts[axis], upd.shape[axis], x.shape[axis]
    inner = _update(b, _slice(b, x, axis, s, s + u), upd, starts, axis + 1)
    parts = [_slice(b, x, axis, 0, s) if s else None, inner,
             _slice(b, x, axis, s + u, n) if s + u < n else None]
    parts = [q for q in parts if q is not None]
    return parts[0] if len(parts) == 1 else b.make("concat", *parts, axis=axis)


def rev(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    y = xs[0]
    for d in eqn.params["dimensions"]:
        n = y.shape[d]
        if n > 1:
            y = b.make("take", y, b.const(np.arange(n - 1, -1, -1, dtype=np.int32), "int32"),
                       axis=int(d))
    return y


def pad(b: _Builder, eqn: Any, xs: list[Node]) -> Node:
    """Constant padding: interior padding by a new axis of fill merged in, then the edges
    (negative widths crop)."""
    x, value = xs[0], _scalar(xs[1])
    config = [tuple(int(v) for v in c) for c in eqn.params["padding_config"]]
    if value is None:
        raise b.unsupported("pad", "only padding by a constant value maps to smelt's pad")
    y = x
    for axis, (_, _, interior) in enumerate(config):
        n = y.shape[axis]
        if interior and n > 1:
            spread = b.make("unsqueeze", y, axes=(axis + 1,))
            pads = [0] * (2 * len(spread.shape))
            pads[2 * (axis + 1) + 1] = interior
            spread = b.make("pad", spread, pads=tuple(pads), value=float(value))
            shape = list(y.shape)
            shape[axis] = n * (interior + 1)
            y = _slice(b, _reshape(b, spread, shape), axis, 0, shape[axis] - interior)
    pads = tuple(max(v, 0) for lo, hi, _ in config for v in (lo, hi))
    y = b.make("pad", y, pads=pads, value=float(value)) if any(pads) else y
    for axis, (lo, hi, _) in enumerate(config):
        y = _slice(b, y, axis, max(-lo, 0), y.shape[axis] - max(-hi, 0))
    return y


CONVERTERS_INDEXING = {
    "gather": gather, "scatter": scatter, "scatter-add": scatter, "scatter_add": scatter,
    "scatter-mul": scatter, "scatter_mul": scatter, "scatter-min": scatter,
    "scatter_min": scatter, "scatter-max": scatter, "scatter_max": scatter,
    "dynamic_update_slice": dynamic_update_slice, "rev": rev, "pad": pad,
}
