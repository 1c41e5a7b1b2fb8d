"""The fold-qdq rule for elementwise float functions of one 8-bit tensor: a lookup table.

    quantize(f(dq(x)))  ->  qlookup(x, table),   table[i] = quantize(f(dq(lo + i)))

f is any subgraph of elementwise ops (gelu, silu as x * sigmoid(x), tanh, hardswish, exp,
a change of scale, ...) whose only tensor leaf is the per-tensor dequantize of an int8 or
uint8 x (other leaves: one-element constants). Then the output element depends on the one
input element alone, which takes 256 values: evaluating the Q/DQ chain on all of them gives
the table, and the lookup reproduces the chain exactly, whatever f computes. The table is
evaluated by the reference interpreter in float64 (the contract's real arithmetic), so the
integer graph equals the Q/DQ graph as the rule tests evaluate it, and the compiled lookup
equals the interpreter's on every target (a gather: no float arithmetic at run time).

TFLite and CMSIS-NN run int8 logistic and tanh from tables the same way; here the table is
derived from the graph itself, so any elementwise chain folds, not a fixed list.
"""

from __future__ import annotations

import numpy as np

from smelt.ir.errors import SmeltError
from smelt.ir.graph import Graph
from smelt.ir.interpreter import interpret
from smelt.ir.node import Node
from smelt.ir.op_table import OPS
from smelt.ir.ops.lookup import LOOKUP_INPUTS
from smelt.ir.ops.quant import INT_RANGES
from smelt.rewrite.contract import exact
from smelt.rewrite.dsl import op, var
from smelt.rewrite.rule import NoMatch, reject, rule

from .weights import memoized

MAX_NODES = 64  # the largest elementwise subgraph folded into one table


def elementwise_leaf(v: Node) -> tuple[Node, list[Node]] | str:
    """(dq, nodes): the dequantize `v` is an elementwise function of, and the nodes between
    them in graph order; or why there is none."""
    dq: Node | None = None
    order: list[Node] = []
    seen: set[Node] = set()

    def visit(n: Node) -> str | None:
        nonlocal dq
        if n in seen:
            return None
        seen.add(n)
        if n.op == "dequantize":
            if dq is not None and n is not dq:
                return "it reads two quantized tensors"
            dq = n
            return None
        if n.op == "constant":
            return None if n.type.size == 1 else "it reads a constant of more than one element"
        if OPS[n.op].category != "elementwise":
            return f"no integer kernel computes {n.op} (not elementwise: no table either)"
        if len(seen) > MAX_NODES:
            return f"the elementwise subgraph exceeds {MAX_NODES} nodes"
        for x in n.inputs:
            if why := visit(x):
                return why
        order.append(n)
        return None

    why = visit(v)
    if why:
        return why
    if dq is None:
        return "no dequantized tensor feeds it"
    if any(n.type.shape != dq.type.shape for n in order):
        return "an op broadcasts the tensor to another shape"
    return dq, order


def table_of(dq: Node, order: list[Node], q: Node) -> np.ndarray:
    """The Q/DQ chain quantize(f(dq(.))) evaluated in float64 on every value of dq's input."""
    lo, hi = INT_RANGES[dq.inputs[0].dtype]
    x = Node.input("x", (hi - lo + 1,), dq.inputs[0].dtype)
    new = {dq: Node.make("dequantize", (x,), **dq.attrs)}
    for n in order:
        new[n] = Node.make(n.op, [new.get(i, i) for i in n.inputs], **n.attrs)
    out = Node.make("quantize", (new[order[-1]] if order else new[dq],), **q.attrs)
    with np.errstate(all="ignore"):  # exp overflowing to inf saturates, as in the chain
        (table,) = interpret(Graph([x], [out]), np.arange(lo, hi + 1).astype(x.dtype),
                             precision="float64")
    return np.asarray(table).reshape(-1)


@rule(op.quantize(var("v")).named("q"), contract=exact, family="fold-qdq",
      instance=".qdq_instances:lookup")
def fold_lookup(v: Node, q: Node) -> Node | NoMatch:
    """quantize(f(dq(x))) -> qlookup(x, table)   (f elementwise in x alone, 8-bit x; the
    table is the Q/DQ chain evaluated on all 256 values of x)"""
    a = q.attrs
    if a["axis"] is not None or len(a["scale"]) != 1 or a["bits"] != 8:
        return reject("the quantize is not per tensor to 8 bits")
    found = elementwise_leaf(v)
    if isinstance(found, str):
        return reject(found)
    dq, order = found
    d = dq.attrs
    if d["axis"] is not None or len(d["scale"]) != 1:
        return reject("the dequantize is per channel")
    if dq.inputs[0].dtype not in LOOKUP_INPUTS:
        return reject(f"the quantized tensor is {dq.inputs[0].dtype}, not int8 or uint8")

    def build() -> Node | NoMatch:
        try:
            return Node.make("qlookup", (dq.inputs[0], Node.constant(table_of(dq, order, q))),
                             out_scale=a["scale"][0], out_zp=a["zero_point"][0], bits=8,
                             signed=a["signed"])
        except SmeltError as e:
            return reject(f"no lookup takes it: {e}")

    return memoized(("lookup", q), build)
