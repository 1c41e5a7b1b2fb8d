"""ONNX forms of smelt's data movement and indexing ops (opset 18+); onnx_ops.py gathers
them into `ONNX_OPS`. Each entry `fn(g, node)` writes into an onnx_export.OnnxGraph `g` and
returns the value holding the node's result.

- reshape, flatten -> Reshape to the node's static shape (allowzero where an axis is empty);
  squeeze / unsqueeze with explicit axes (squeeze's empty axes: every size-1 axis);
  transpose -> Transpose (the identity permutation is no node); expand -> Expand; concat ->
  Concat; split -> Split with its sizes, the parts read by project.
- slice -> Slice with the bounds resolved from Python's rules (step >= 1).
- pad -> Pad: smelt's (before, after) pairs per axis become ONNX's befores then afters;
  constant, reflect and edge are ONNX's modes of the same names.
- take -> Gather; gather -> GatherElements on x's leading part (torch.gather reads only that);
  scatter -> ScatterElements (reduce sum / prod / amax / amin as add / mul / max / min; mean,
  and include_self False, have no ONNX form and raise).
- index -> Gather for one index tensor (numpy's placement is Gather's), else GatherND on x
  with the indexed axes moved first, the index tensors broadcast and stacked (negative
  indices counted from the end first), and the result's broadcast axes moved to where numpy
  puts them; index_put -> ScatterND the same way (accumulate: reduction add).
  With duplicate indices and no reduction ONNX leaves the winner unspecified, as torch does
  (ONNX Runtime, like the reference, keeps the last).
"""

from __future__ import annotations

import numpy as np

from smelt.backends.interop.onnx_export import NoOnnxForm, OnnxGraph
from smelt.ir.node import Node
from smelt.ir.ops.common import broadcast, norm_axes, norm_axis
from smelt.ir.ops.indexing import index_shape
from smelt.ir.ops.shape import slice_bounds


def reshaped(g: OnnxGraph, n: Node) -> str:
    """reshape, flatten: a Reshape to the node's (static) shape."""
    return g.op("Reshape", [g[n.inputs[0]], g.ints(n.shape)],
                allowzero=1 if 0 in n.shape else None)


def squeeze(g: OnnxGraph, n: Node) -> str:
    x = n.inputs[0].tensor_type
    axes = list(norm_axes(n.attrs["axes"], x.rank)) or [
        i for i, d in enumerate(x.shape) if d == 1]
    if not axes:
        return g[n.inputs[0]]
    return g.op("Squeeze", [g[n.inputs[0]], g.ints(axes)])


def unsqueeze(g: OnnxGraph, n: Node) -> str:
    axes = norm_axes(n.attrs["axes"], n.tensor_type.rank)
    return g.op("Unsqueeze", [g[n.inputs[0]], g.ints(axes)])


def transpose(g: OnnxGraph, n: Node) -> str:
    perm = list(n.attrs["perm"])
    if perm == sorted(perm):
        return g[n.inputs[0]]
    return g.op("Transpose", [g[n.inputs[0]]], perm=perm)


def expand(g: OnnxGraph, n: Node) -> str:
    return g.op("Expand", [g[n.inputs[0]], g.ints(n.shape)])


def concat(g: OnnxGraph, n: Node) -> str:
    return g.op("Concat", g.operands(n), axis=n.attrs["axis"])


def split(g: OnnxGraph, n: Node) -> tuple[str, ...]:
    sizes = n.attrs["sizes"]
    parts = g.op("Split", [g[n.inputs[0]], g.ints(sizes)], outputs=len(sizes),
                 axis=n.attrs["axis"])
    return (parts,) if isinstance(parts, str) else parts


def project(g: OnnxGraph, n: Node) -> str:
    return g[n.inputs[0]][n.attrs["index"]]


def slice_(g: OnnxGraph, n: Node) -> str:
    x, a = n.inputs[0], n.attrs
    axis = norm_axis(a["axis"], x.tensor_type.rank)
    r = slice_bounds(x.shape[axis], a["start"], a["stop"], a["step"])
    if r == range(x.shape[axis]):
        return g[x]
    start, stop = (r.start, r[-1] + 1) if len(r) else (0, 0)
    return g.op("Slice", [g[x], g.ints([start]), g.ints([stop]), g.ints([axis]),
                          g.ints([a["step"]])])


def pad(g: OnnxGraph, n: Node) -> str:
    x, a = n.inputs[0], n.attrs
    if x.tensor_type.rank == 0:
        return g[x]
    pads = list(a["pads"][0::2]) + list(a["pads"][1::2])
    value = [g.scalar(a["value"], x.dtype)] if a["mode"] == "constant" else []
    return g.op("Pad", [g[x], g.ints(pads), *value], mode=a["mode"])


def take(g: OnnxGraph, n: Node) -> str:
    return g.op("Gather", g.operands(n), axis=n.attrs["axis"])


def _leading(g: OnnxGraph, x: Node, shape: tuple[int, ...], skip: int | None = None) -> str:
    """x[:shape[0], :shape[1], ...] (axis `skip` whole), a Slice only where needed."""
    axes = [i for i, (d, s) in enumerate(zip(x.shape, shape, strict=True))
            if i != skip and s < d]
    if not axes:
        return g[x]
    return g.op("Slice", [g[x], g.ints([0] * len(axes)), g.ints([shape[i] for i in axes]),
                          g.ints(axes)])


def gather(g: OnnxGraph, n: Node) -> str:
    x, idx = n.inputs
    axis = norm_axis(n.attrs["axis"], x.tensor_type.rank)
    return g.op("GatherElements", [_leading(g, x, idx.shape, axis), g[idx]], axis=axis)


SCATTER_REDUCTIONS = {"none": "none", "sum": "add", "prod": "mul", "amax": "max",
                      "amin": "min"}


def scatter(g: OnnxGraph, n: Node) -> str:
    x, idx, src = n.inputs
    a = n.attrs
    if a["reduce"] not in SCATTER_REDUCTIONS or (a["reduce"] != "none"
                                                 and not a["include_self"]):
        raise NoOnnxForm(f"ScatterElements has no reduce={a['reduce']!r} with "
                         f"include_self={a['include_self']}",
                         "use reduce sum / prod / amax / amin with include_self=True")
    axis = norm_axis(a["axis"], x.tensor_type.rank)
    return g.op("ScatterElements", [g[x], g[idx], _leading(g, src, idx.shape)], axis=axis,
                reduction=SCATTER_REDUCTIONS[a["reduce"]])


def _index_tuple(g: OnnxGraph, x: Node, idx: list[Node], axes: tuple[int, ...]) -> str:
    """The index tensors as one int64 (B..., m) tensor, negatives counted from the end."""
    b = broadcast([i.shape for i in idx])
    cols = []
    for i, a in zip(idx, axes, strict=True):
        v = g.cast(g[i], "int64") if i.dtype != "int64" else g[i]
        size = g.scalar(x.shape[a], "int64")
        v = g.op("Where", [g.op("Less", [v, g.scalar(0, "int64")]),
                           g.op("Add", [v, size]), v])
        v = g.op("Expand", [v, g.ints(b)])
        cols.append(g.op("Unsqueeze", [v, g.ints([len(b)])]))
    return g.op("Concat", cols, axis=-1)


def _adjacent(axes: tuple[int, ...]) -> bool:
    return axes == tuple(range(axes[0], axes[0] + len(axes)))


def _indexed_first(x: Node, axes: tuple[int, ...]) -> list[int]:
    return [*axes, *(i for i in range(x.tensor_type.rank) if i not in axes)]


def index(g: OnnxGraph, n: Node) -> str:
    x, *idx = n.inputs
    axes = norm_axes(n.attrs["axes"], x.tensor_type.rank)  # increasing, as index's are
    if len(idx) == 1:  # numpy's placement for one index tensor is Gather's
        return g.op("Gather", [g[x], g[idx[0]]], axis=axes[0])
    perm = _indexed_first(x, axes)
    xt = g.op("Transpose", [g[x]], perm=perm) if perm != sorted(perm) else g[x]
    y = g.op("GatherND", [xt, _index_tuple(g, x, idx, axes)])  # B + the other axes
    nb = n.tensor_type.rank - (x.tensor_type.rank - len(axes))
    if not _adjacent(axes) or axes[0] == 0:
        return y
    a0 = axes[0]  # numpy puts B where the adjacent indexed axes were
    order = [*range(nb, nb + a0), *range(nb), *range(nb + a0, n.tensor_type.rank)]
    return g.op("Transpose", [y], perm=order)


def index_put(g: OnnxGraph, n: Node) -> str:
    x, values, *idx = n.inputs
    axes = norm_axes(n.attrs["axes"], x.tensor_type.rank)  # increasing, as index's are
    perm = _indexed_first(x, axes)
    moved = perm != sorted(perm)
    shape = index_shape(x.tensor_type, [i.tensor_type for i in idx], axes)
    nb = len(shape) - (x.tensor_type.rank - len(axes))
    upd = g.op("Expand", [g[values], g.ints(shape)])
    if _adjacent(axes) and axes[0] > 0:  # to B + the other axes, GatherND's order
        a0 = axes[0]
        upd = g.op("Transpose", [upd], perm=[*range(a0, a0 + nb), *range(a0),
                                             *range(a0 + nb, len(shape))])
    xt = g.op("Transpose", [g[x]], perm=perm) if moved else g[x]
    y = g.op("ScatterND", [xt, _index_tuple(g, x, idx, axes), upd],
             reduction="add" if n.attrs["accumulate"] else None)
    back = [int(i) for i in np.argsort(perm)]
    return g.op("Transpose", [y], perm=back) if moved else y


SHAPE_OPS = {
    "reshape": reshaped, "flatten": reshaped, "squeeze": squeeze, "unsqueeze": unsqueeze,
    "transpose": transpose, "expand": expand, "concat": concat, "split": split,
    "project": project, "slice": slice_, "pad": pad, "take": take, "gather": gather,
    "scatter": scatter, "index": index, "index_put": index_put,
}
