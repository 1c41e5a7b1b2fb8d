"""Channel dependencies: which positions of which tensors are one channel, kept or removed
together by structured pruning (`prune-channels`, passes/pruning.py).

Every position along every axis of every tensor (activations, weights, biases, statistics)
is an atom; a union-find joins atoms into classes. A class is one channel: pruning it removes
all its positions at once. One rule per op (the table `RULES`) says which positions are one:

- elementwise ops tie each output position to the operand positions it reads, broadcasting
  as numpy does (a residual add ties both operands and the result; a multiply by a
  per-channel constant ties the constant too); a size-1 axis that broadcasts is fixed;
- conv2d: output channel o = weight row o = bias o, input channel c = weight column c; with
  groups > 1 all input and output channels of a group are one class (a depthwise conv ties
  input c to output c; a grouped conv loses whole groups). linear and matmul tie the
  contracted axes; the output's features are the weight's rows; batch_norm ties channel c of
  x to its statistics and affine parameters c;
- concat places its operands' positions at their offsets; split, project and slice (step 1)
  take the input's; pad (constant mode) adds new atoms (a zero-padded residual);
- reshape, flatten, (un)squeeze: merged axes take the atoms of the one with the most free
  positions (the others are fixed), so a channel flattened into a linear is a block of
  positions (channel x spatial). A split axis goes to the new axis its classes are a
  function of; if none, the classes are coarsened to whole blocks of the outermost one:
  (B, T, 64) -> (B, T, 4, 16) makes each attention head a class, pruned whole;
- transpose permutes; pooling and reductions fix the axes they reduce over; layer_norm and
  softmax fix the axes they normalize over.

Fixed classes are never pruned; the first reason one was fixed is kept for the report: graph
inputs and outputs, windows, normalizations, expand, a slice with a step, and every axis of an
op no rule knows (what is not understood is never pruned).

Exactness. Each rule ties an output position to exactly the positions it is computed from,
except in contractions, whose outputs sum over the tied input channels. So removing a class
removes, from every kept value, only terms of such sums, which are zero when the removed
channel is zero; and nothing kept counts channels, since every op that normalizes or reduces
across an axis fixes it. The tests check `apply_pruning` this way on random graphs.

passes/pruning_importance.py joins the classes that share an axis into dependency groups,
scores them and chooses what to remove; passes/pruning.py removes it.

Source: Fang et al., "DepGraph: Towards Any Structural Pruning" (CVPR 2023), the dependency
graph derived here on smelt's IR instead of an autograd graph.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from smelt.ir.dims import Dim
from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.op_table import OPS
from smelt.ir.ops.common import norm_axes, norm_axis, prod
from smelt.ir.types import TensorType

Axes = list[np.ndarray]


class Classes:
    """Union-find over atoms, with a fixed-reason and a set of coupling tags per class."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.fixed: dict[int, str] = {}
        self.tags: dict[int, set[str]] = {}

    def fresh(self, n: Dim, why: str | None = None) -> np.ndarray:
        if not isinstance(n, int | np.integer):  # a symbolic size (batch, sequence): one
            n, why = 1, why or "a symbolic axis"  # fixed atom stands for all of its positions
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        if why is not None:
            self.fixed.update(dict.fromkeys(range(start, start + n), why))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, a: int) -> int:
        p = self.parent
        while p[a] != a:
            p[a] = p[p[a]]
            a = p[a]
        return a

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        ra, rb = min(ra, rb), max(ra, rb)
        self.parent[rb] = ra
        why = self.fixed.pop(rb, None)
        if why is not None:
            self.fixed.setdefault(ra, why)
        tags = self.tags.pop(rb, None)
        if tags:
            self.tags.setdefault(ra, set()).update(tags)
        return ra

    def tie(self, xs: np.ndarray, ys: np.ndarray, tag: str | None = None) -> None:
        if len(xs) != len(ys):
            raise AssertionError(f"tied axes differ in size: {len(xs)} vs {len(ys)}")
        if xs is ys:
            return
        for a, b in zip(xs.tolist(), ys.tolist(), strict=True):
            r = self.union(a, b)
            if tag is not None:
                self.tags.setdefault(r, set()).add(tag)

    def fix(self, xs: np.ndarray, why: str) -> None:
        for a in xs.tolist():
            self.fixed.setdefault(self.find(a), why)

    def mark(self, xs: np.ndarray, tag: str) -> None:
        for a in xs.tolist():
            self.tags.setdefault(self.find(a), set()).add(tag)

    def roots(self, xs: np.ndarray) -> np.ndarray:
        return np.fromiter((self.find(a) for a in xs.tolist()), np.int64, len(xs))

    def free(self, xs: np.ndarray) -> np.ndarray:
        """Per position: False where its class is fixed."""
        return np.fromiter((self.find(a) not in self.fixed for a in xs.tolist()), bool, len(xs))


class ChannelAnalysis:
    """The classes of every axis of every node of `graph`: `roots[(node, -1)]` (a tuple's
    part i: `(node, i)`) holds, per axis, the class of each position."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.cls = Classes()
        self.value: dict[Node, Axes | list[Axes]] = {}
        for n in graph.nodes():
            if n.op != "constant":
                self.value[n] = RULES.get(n.op, _by_category(n.op))(self, n)
        for k, o in enumerate(graph.outputs):
            for arr in self.axes(o):
                self.cls.fix(arr, f"graph output {k}")
        self.roots: dict[tuple[Node, int], list[np.ndarray]] = {}
        for n in graph.nodes():
            value = self.axes(n) if n.op == "constant" else self.value[n]
            parts = [value] if isinstance(n.type, TensorType) else value
            for i, p in enumerate(parts):
                key = -1 if isinstance(n.type, TensorType) else i
                self.roots[(n, key)] = [self.cls.roots(arr) for arr in p]

    def axes(self, n: Node) -> Axes:
        """The atoms of each axis of tensor node `n` (a constant's are created on first use)."""
        if n not in self.value:
            if n.op != "constant":
                raise KeyError(f"{n.op} node not analysed yet")
            self.value[n] = [self.cls.fresh(d) for d in n.shape]
        return self.value[n]  # type: ignore[return-value]

    def fixed_fresh(self, shape: tuple[int, ...], why: str) -> Axes:
        return [self.cls.fresh(d, why) for d in shape]


# -- rules ------------------------------------------------------------------------------------
def _bcast(a: ChannelAnalysis, op: str, operands: list[Axes], shape: tuple[int, ...],
           tag: str | None = None) -> Axes:
    """Output axes of a broadcasting combination of `operands` (numpy rules)."""
    out: list[np.ndarray | None] = [None] * len(shape)
    for xs in operands:
        for j, arr in enumerate(xs, len(shape) - len(xs)):
            if len(arr) != shape[j]:
                a.cls.fix(arr, f"a size-1 axis broadcast by {op}")
            elif out[j] is None:
                out[j] = arr
            else:
                a.cls.tie(out[j], arr, tag)
    return [o if o is not None else a.cls.fresh(d, f"created by {op}")
            for o, d in zip(out, shape, strict=True)]


def _elementwise(a: ChannelAnalysis, n: Node) -> Axes:
    return _bcast(a, n.op, [a.axes(x) for x in n.inputs], n.shape, n.op)


def _unknown(a: ChannelAnalysis, n: Node) -> Axes | list[Axes]:
    why = f"{n.op} is not understood by the channel analysis"
    for x in n.inputs:
        if isinstance(x.type, TensorType):
            for arr in a.axes(x):
                a.cls.fix(arr, why)
    if isinstance(n.type, TensorType):
        return a.fixed_fresh(n.shape, why)
    return [a.fixed_fresh(t.shape, why) for t in n.type.elements]  # type: ignore[attr-defined]


def _by_category(op: str) -> Callable[[ChannelAnalysis, Node], Axes | list[Axes]]:
    return _elementwise if op in OPS and OPS[op].category == "elementwise" else _unknown


def _input(a: ChannelAnalysis, n: Node) -> Axes:
    return a.fixed_fresh(n.shape, f"graph input {n.attrs['name']}")


def _epilogue(a: ChannelAnalysis, n: Node, out: Axes, bias_in_product: bool) -> Axes:
    """A layer's bias (tied to its output channels) and a fused op's residual."""
    rest = list(n.inputs[2:])
    res = rest.pop() if n.op.startswith("fused_") and n.attrs["residual"] else None
    bias = rest[0] if rest else None
    if bias is not None and bias_in_product:
        a.cls.tie(out[-1] if n.op.endswith("linear") else out[1], a.axes(bias)[0])
        bias = None
    extras = [a.axes(x) for x in (bias, res) if x is not None]
    return _bcast(a, n.op, [out, *extras], n.shape, "add") if extras else out


def _conv(a: ChannelAnalysis, n: Node) -> Axes:
    xs, ws = a.axes(n.inputs[0]), a.axes(n.inputs[1])
    for arr in xs[2:] + ws[2:]:
        a.cls.fix(arr, "a spatial axis of a convolution window")
    g = n.attrs["groups"]
    if g == 1:
        a.cls.tie(xs[1], ws[1])
    else:
        kind = "depthwise conv" if ws[1].size == 1 else "grouped conv (whole groups)"
        a.cls.fix(ws[1], "the per-group input axis of a grouped conv")
        for xb, ob in zip(np.split(xs[1], g), np.split(ws[0], g), strict=True):
            a.cls.tie(np.full(len(xb) + len(ob), xb[0]), np.concatenate([xb, ob]), kind)
    out = [xs[0], ws[0]] + a.fixed_fresh(n.shape[2:], "a spatial axis of a convolution")
    return _epilogue(a, n, out, True)


def _linear(a: ChannelAnalysis, n: Node) -> Axes:
    xs, ws = a.axes(n.inputs[0]), a.axes(n.inputs[1])
    a.cls.tie(xs[-1], ws[1])
    return _epilogue(a, n, xs[:-1] + [ws[0]], True)


def _matmul(a: ChannelAnalysis, n: Node) -> Axes:
    x, y = n.inputs[0], n.inputs[1]
    if len(x.shape) < 2 or len(y.shape) < 2:
        return _unknown(a, n)  # type: ignore[return-value]
    xs, ys = a.axes(x), a.axes(y)
    a.cls.tie(xs[-1], ys[-2])
    batch = _bcast(a, n.op, [xs[:-2], ys[:-2]], n.shape[:-2])
    return _epilogue(a, n, batch + [xs[-2], ys[-1]], False)


def _batch_norm(a: ChannelAnalysis, n: Node) -> Axes:
    xs = a.axes(n.inputs[0])
    for p in n.inputs[1:]:
        a.cls.tie(xs[1], a.axes(p)[0], "batch_norm")
    return xs


def _layer_norm(a: ChannelAnalysis, n: Node) -> Axes:
    xs = a.axes(n.inputs[0])
    start = norm_axis(n.attrs["axis"], len(xs))
    for arr in xs[start:]:
        a.cls.fix(arr, "normalized over by layer_norm")
    for p in n.inputs[1:]:
        for arr, ref in zip(a.axes(p), xs[start:], strict=True):
            a.cls.tie(ref, arr)
    return xs


def _softmax(a: ChannelAnalysis, n: Node) -> Axes:
    xs = a.axes(n.inputs[0])
    a.cls.fix(xs[norm_axis(n.attrs["axis"], len(xs))], f"normalized over by {n.op}")
    return xs


def _pool(a: ChannelAnalysis, n: Node) -> Axes:
    xs = a.axes(n.inputs[0])
    for arr in xs[2:]:
        a.cls.fix(arr, f"pooled over by {n.op}")
    return xs[:2] + a.fixed_fresh(n.shape[2:], f"a spatial axis of {n.op}")


def _reduce(a: ChannelAnalysis, n: Node) -> Axes:
    xs = a.axes(n.inputs[0])
    if n.op == "argmax":
        axes, keep = (norm_axis(n.attrs["axis"], len(xs)),), n.attrs["keepdims"]
    else:
        axes = norm_axes(n.attrs["axes"], len(xs)) if n.attrs["axes"] else tuple(range(len(xs)))
        keep = n.attrs["keepdims"]
    out = []
    for i, arr in enumerate(xs):
        if i in axes:
            a.cls.fix(arr, f"reduced over by {n.op}")
            if keep:
                out.append(a.cls.fresh(1, f"kept as size 1 by {n.op}"))
        else:
            out.append(arr)
    return out


def _transpose(a: ChannelAnalysis, n: Node) -> Axes:
    xs = a.axes(n.inputs[0])
    return [xs[p] for p in n.attrs["perm"]]


def _expand(a: ChannelAnalysis, n: Node) -> Axes:
    return _bcast(a, n.op, [a.axes(n.inputs[0])], n.shape)


def _concat(a: ChannelAnalysis, n: Node) -> Axes:
    parts = [a.axes(x) for x in n.inputs]
    k = norm_axis(n.attrs["axis"], len(n.shape))
    joined = np.concatenate([p[k] for p in parts])
    a.cls.mark(joined, "concat")
    out = _bcast(a, n.op, [p[:k] + p[k + 1:] for p in parts], n.shape[:k] + n.shape[k + 1:])
    return out[:k] + [joined] + out[k:]


def _split(a: ChannelAnalysis, n: Node) -> list[Axes]:
    xs = a.axes(n.inputs[0])
    k = norm_axis(n.attrs["axis"], len(xs))
    a.cls.mark(xs[k], "split")
    parts, start = [], 0
    for size in n.attrs["sizes"]:
        parts.append([arr[start:start + size] if i == k else arr for i, arr in enumerate(xs)])
        start += size
    return parts


def _project(a: ChannelAnalysis, n: Node) -> Axes:
    return a.value[n.inputs[0]][n.attrs["index"]]  # type: ignore[return-value]


def _slice(a: ChannelAnalysis, n: Node) -> Axes:
    xs = list(a.axes(n.inputs[0]))
    k = norm_axis(n.attrs["axis"], len(xs))
    r = range(len(xs[k]))[slice(n.attrs["start"], n.attrs["stop"], n.attrs["step"])]
    if r.step != 1:
        a.cls.fix(xs[k], "sliced with a step")
        xs[k] = a.cls.fresh(len(r), "sliced with a step")
    else:
        a.cls.mark(xs[k], "slice")
        xs[k] = xs[k][r.start:r.start + len(r)]
    return xs


def _pad(a: ChannelAnalysis, n: Node) -> Axes:
    xs, pads = a.axes(n.inputs[0]), n.attrs["pads"]
    out = []
    for i, arr in enumerate(xs):
        before, after = pads[2 * i], pads[2 * i + 1]
        if not before and not after:
            out.append(arr)
        elif n.attrs["mode"] == "constant":
            grown = np.concatenate([a.cls.fresh(before), arr, a.cls.fresh(after)])
            a.cls.mark(grown, "pad")
            out.append(grown)
        else:
            a.cls.fix(arr, f"padded in {n.attrs['mode']} mode")
            out.append(a.cls.fresh(len(arr) + before + after, f"{n.attrs['mode']} padding"))
    return out


def _take(a: ChannelAnalysis, n: Node) -> Axes:
    xs = a.axes(n.inputs[0])
    k = norm_axis(n.attrs["axis"], len(xs))
    a.cls.fix(xs[k], "gathered from by take")
    return xs[:k] + list(a.axes(n.inputs[1])) + xs[k + 1:]


# -- reshapes -------------------------------------------------------------------------------------
def _blocks(src: tuple[int, ...], dst: tuple[int, ...]
            ) -> list[tuple[list[int], list[int]]] | None:
    """Consecutive runs of axes with equal products: [(source axes, target axes)]; axes of
    size 1 left over at the end are their own blocks. None if a size is 0."""
    if 0 in src or 0 in dst:
        return None
    out: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(src) and j < len(dst):
        a, b, pa, pb = [i], [j], src[i], dst[j]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb and i < len(src):
                a.append(i)
                pa, i = pa * src[i], i + 1
            elif j < len(dst):
                b.append(j)
                pb, j = pb * dst[j], j + 1
            else:
                return None
        out.append((a, b))
    out += [([k], []) for k in range(i, len(src))] + [([], [k]) for k in range(j, len(dst))]
    return out


def _merge(a: ChannelAnalysis, n: Node, arrs: Axes) -> np.ndarray:
    """The atoms of the axes `arrs` merged into one (row-major): those of the axis with the
    most free positions (the first of equals); the other axes are fixed."""
    if len(arrs) == 1:
        return arrs[0]
    sizes = [len(x) for x in arrs]
    free = [int(a.cls.free(x).sum()) if len(x) > 1 else 0 for x in arrs]
    big = [k for k, x in enumerate(arrs) if len(x) > 1]
    live = [k for k in big if free[k]]
    carrier = max(live, key=lambda k: (free[k], -k)) if live else (big[0] if big else 0)
    for k, x in enumerate(arrs):
        if k != carrier:
            a.cls.fix(x, f"merged by {n.op} with a channel axis")
    inner = prod(sizes[carrier + 1:])
    flat = arrs[carrier][(np.arange(prod(sizes)) // inner) % sizes[carrier]]
    if live and len(big) > 1:
        a.cls.mark(flat, "flatten")
    return flat


def _unmerge(a: ChannelAnalysis, n: Node, flat: np.ndarray, sizes: list[int]) -> Axes:
    """Atoms for the axes of sizes `sizes` that `flat` is split into (row-major)."""
    if len(sizes) == 1:
        return [flat]
    roots = a.cls.roots(flat)
    key = np.where(a.cls.free(flat), roots, -1).reshape(sizes)
    big = [k for k, s in enumerate(sizes) if s > 1]
    carrier = next((k for k in big if _explains(key, k)), None)
    grid = flat.reshape(sizes)
    if carrier is None:  # coarsen to whole blocks of the outermost axis (attention heads)
        carrier = big[0]
        rows = np.moveaxis(grid, carrier, 0).reshape(sizes[carrier], -1)
        for row in rows:
            a.cls.tie(np.full(len(row), row[0]), row, "heads")
    rep = np.moveaxis(grid, carrier, 0).reshape(sizes[carrier], -1)[:, 0]
    return [rep if k == carrier else a.cls.fresh(s, f"split off a channel axis by {n.op}")
            for k, s in enumerate(sizes)]


def _explains(key: np.ndarray, k: int) -> bool:
    rows = np.moveaxis(key, k, 0).reshape(key.shape[k], -1)
    return bool(np.all(rows == rows[:, :1]))


def _reshape(a: ChannelAnalysis, n: Node) -> Axes:
    x = n.inputs[0]
    blocks = _blocks(x.shape, n.shape)
    if blocks is None:
        return _unknown(a, n)  # type: ignore[return-value]
    xs = a.axes(x)
    out: list[np.ndarray] = [np.empty(0, np.int64)] * len(n.shape)
    for src, dst in blocks:
        if not dst:
            a.cls.fix(xs[src[0]], f"a size-1 axis dropped by {n.op}")
            continue
        if not src:
            out[dst[0]] = a.cls.fresh(1, f"a size-1 axis added by {n.op}")
            continue
        flat = _merge(a, n, [xs[i] for i in src])
        for i, arr in zip(dst, _unmerge(a, n, flat, [n.shape[i] for i in dst]), strict=True):
            out[i] = arr
    return out


RULES: dict[str, Callable[[ChannelAnalysis, Node], Axes | list[Axes]]] = {
    "input": _input, "conv2d": _conv, "fused_conv2d": _conv, "linear": _linear,
    "fused_linear": _linear, "matmul": _matmul, "fused_matmul": _matmul,
    "batch_norm": _batch_norm, "layer_norm": _layer_norm, "softmax": _softmax,
    "log_softmax": _softmax, "max_pool2d": _pool, "avg_pool2d": _pool,
    "adaptive_avg_pool2d": _pool, "max_pool3d": _pool, "avg_pool3d": _pool,
    "adaptive_avg_pool3d": _pool, "adaptive_max_pool2d": _pool, "adaptive_max_pool3d": _pool,
    "resize": _pool, "reduce_sum": _reduce, "reduce_mean": _reduce,
    "reduce_max": _reduce, "reduce_min": _reduce, "argmax": _reduce,
    "transpose": _transpose, "expand": _expand, "concat": _concat, "split": _split,
    "project": _project, "slice": _slice, "pad": _pad, "take": _take, "reshape": _reshape,
    "flatten": _reshape, "squeeze": _reshape, "unsqueeze": _reshape,
}


def analyse(graph: Graph) -> ChannelAnalysis:
    """The channel classes of every axis of every node of `graph`."""
    return ChannelAnalysis(graph)


__all__ = ["ChannelAnalysis", "Classes", "RULES", "analyse"]
