"""Where quantize/dequantize pairs go: the activation tensors to quantize and the layers whose
weights are quantized, read off the graph.

Activations (schemes with `a8`). A quantizable op computes in integers once folded: conv2d,
linear and matmul (int8 contractions), add and mul (qadd, qmul: squeeze-excitation's gate),
reduce_mean (qmean), and the activation functions `TABLED` (gelu, silu, sigmoid, tanh, ...:
a 256-entry table, passes/fold_lookup.py; relu and relu6 fold into the clamp of the layer
before them instead), as are mul and div by a one-element constant. Its float
operands, and the graph's float outputs, are the tensors to quantize. A tensor produced by
an op that commutes with a per-tensor dequantize (reshape, flatten, transpose, squeeze,
unsqueeze, max_pool2d, slice, expand, adaptive max pooling, reduce_max and reduce_min (a
per-tensor dequantize is increasing), and pad with 0, which
becomes pad with the zero point) is quantized
where it comes from instead: the Q/DQ pair goes after the producer of the chain (its
`source`), so the chain's ops run on integers after `fold-qdq` sinks the dequantize through
them. A graph input is a source too: its quantize is the graph's input quantize.

Concatenation. A quantized concat's operands are quantized too, all with the concat's
parameters (one `group`, whose range is the union of its members'; a tensor in several
concats joins their groups, as densenet's features do): then the concat of dequantized
integers is the dequantize of the integer concat, exactly, and the layers that produce the
operands fold into integer kernels that write at the shared scale (TFLite's rule for concat).

Weights. conv2d and linear weights are quantized per output channel (axis 0), or per tensor
for `w8a8-tensor`; a constant matmul operand per tensor. `output_source` names the tensor
quantized after a layer (through one relu/relu6), whose scale the layer's weight scale is
matched to (passes/qscales.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from networkx.utils import UnionFind

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.types import is_float

TABLED = ("gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "elu", "leaky_relu")
QUANTIZABLE = ("conv2d", "linear", "matmul", "add", "mul", "div", "reduce_mean") + TABLED
WEIGHTED = ("conv2d", "linear", "matmul")
TRANSPARENT = ("reshape", "flatten", "transpose", "squeeze", "unsqueeze", "max_pool2d", "pad",
               "slice", "expand", "adaptive_max_pool2d", "reduce_max", "reduce_min")
ACTIVATIONS = ("relu", "relu6")


def transparent(n: Node) -> bool:
    """Does `n` commute with a per-tensor dequantize of its first operand, exactly?"""
    if n.op not in TRANSPARENT or not n.inputs or not is_float(n.dtype):
        return False
    if n.op == "pad":
        return n.attrs["mode"] == "constant" and n.attrs["value"] == 0.0 and len(n.inputs) == 1
    return n.op != "max_pool2d" or len(n.inputs) == 1


def source(n: Node) -> Node:
    """The node whose quantized output `n` is: up through transparent ops."""
    while transparent(n):
        n = n.inputs[0]
    return n


def weight_operand(n: Node, layers: tuple[str, ...] = ("conv2d", "linear")) -> int | None:
    """The index of a layer's constant float weight (operand 1 of the ops in `layers`, the
    constant operand of a matmul), or None."""
    if n.op in layers:
        idx = 1
    elif n.op == "matmul":
        consts = [i for i, x in enumerate(n.inputs) if x.op == "constant"]
        if len(consts) != 1:
            return None
        idx = consts[0]
    else:
        return None
    w = n.inputs[idx]
    return idx if w.op == "constant" and is_float(w.dtype) else None


@dataclass
class Plan:
    sources: list[Node]  # activation tensors to quantize, in graph order
    layers: list[Node]  # layers whose weights are quantized
    notes: list[str]
    groups: list[list[Node]] = field(default_factory=list)  # sources sharing parameters


def _scalar(x: Node) -> bool:
    return x.op == "constant" and x.type.size == 1


def _quantizable(x: Node) -> bool:
    """A float tensor an integer range can hold: not a constant with NaN or infinities."""
    return is_float(x.dtype) and (x.op != "constant" or bool(np.all(np.isfinite(x.value))))


def _activation_operands(n: Node) -> list[Node]:
    if n.op in ("mul", "div"):  # qmul; by a scalar (or divided by one): a table
        if n.op == "div" and not _scalar(n.inputs[1]):
            return []
        return [x for x in n.inputs if _quantizable(x) and not _scalar(x)]
    w = weight_operand(n)
    ops = list(n.inputs[:2]) if n.op in WEIGHTED else list(
        n.inputs[:1 if n.op == "reduce_mean" or n.op in TABLED else 2])
    return [x for i, x in enumerate(ops) if i != w and _quantizable(x)]


def plan(graph: Graph, activations: bool, describe, ops: tuple[str, ...] = QUANTIZABLE
         ) -> Plan:
    """The sources to quantize (when `activations`) and the weighted layers of `graph`,
    among the layers whose op is in `ops` (all quantizable ops by default)."""
    layers = [n for n in graph.nodes()
              if n.op in WEIGHTED and n.op in ops and weight_operand(n) is not None]
    notes: list[str] = []
    for n in graph.nodes():
        if n.op.startswith("fused_"):
            notes.append(f"{describe(n)} is a fused op: run quantize before fuse, so its "
                         "contraction and epilogue are quantized as separate ops")
        elif n.op == "batch_norm":
            notes.append(f"{describe(n)} stays float: run fold-bn before quantize")
        elif n.op in ("conv3d", "conv_transpose"):
            notes.append(f"{describe(n)} stays float: quantize maps 2-d (and 1-d) convolutions, "
                         "linear and matmul")
    if not activations:
        return Plan([], layers, notes)
    wanted: list[Node] = []
    for n in graph.nodes():
        if n.op in ops and is_float(n.dtype):
            wanted += _activation_operands(n)
    wanted += [o for o in graph.outputs if is_float(o.dtype)]
    seen: set[Node] = set()
    sources = []
    for t in wanted:
        s = source(t)
        if s not in seen and is_float(s.dtype):
            seen.add(s)
            sources.append(s)
    groups = _concat_groups(sources, seen)
    order = {n: i for i, n in enumerate(graph.nodes())}
    sources.sort(key=order.__getitem__)
    for g in groups:
        g.sort(key=order.__getitem__)
    return Plan(sources, layers, notes, groups)


def _concat_operands(c: Node) -> list[Node] | None:
    """The sources of a float concat's operands, when each can be quantized."""
    if c.op != "concat" or not is_float(c.dtype):
        return None
    ops = [source(x) for x in c.inputs]
    return ops if all(_quantizable(s) for s in ops) else None


def _concat_groups(sources: list[Node], seen: set[Node]) -> list[list[Node]]:
    """Add the operands of each quantized concat to `sources` (in place) and return the
    groups of sources that must share parameters (union-find over the concats)."""
    joined = UnionFind()
    todo = list(sources)
    while todo:
        c = todo.pop()
        for s in _concat_operands(c) or ():
            if s not in seen:
                seen.add(s)
                sources.append(s)
                todo.append(s)
            joined.union(c, s)
    return [list(g) for g in joined.to_sets()]


def output_source(layer: Node, users: dict[Node, list[Node]], sources: set[Node]
                  ) -> Node | None:
    """The quantized tensor a layer's result becomes: the layer itself, or its only user
    when that is a relu/relu6; None when the result stays float or goes several ways."""
    if layer in sources:
        return layer
    us = users.get(layer, [])
    if len(us) == 1 and us[0].op in ACTIVATIONS and us[0] in sources:
        return us[0]
    return None
