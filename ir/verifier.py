"""The verifier: checks every IR invariant and shows the lines around the offending node.

Invariants: every node's op is in the op table; its arity and attributes are what the op
declares; its type is what the op's inference gives for its operands; constants hold read-only
arrays whose dtype and shape match their type; every input reached is one of the graph's
inputs; input names are distinct; projections read tuples and nothing else reads a tuple.
"""

from __future__ import annotations

import numpy as np

from .errors import SmeltError, VerificationError
from .graph import Graph
from .node import Node
from .op_table import OPS
from .types import TensorType, TupleType, numpy_dtype


def _context(graph: Graph, bad: Node, message: str, radius: int = 2) -> str:
    """The message, then the printed lines around `bad`'s line, which is marked `>>`."""
    from .text_format import numbered_lines

    try:
        lines, line_of = numbered_lines(graph)
    except SmeltError:
        return message
    at = line_of.get(id(bad))
    if at is None:
        return message
    lo, hi = max(0, at - radius), min(len(lines), at + radius + 1)
    shown = []
    for i in range(lo, hi):
        marker = ">>" if i == at else "  "
        shown.append(f"{marker} {i + 1:4d} | {lines[i]}")
    return f"{message}\n" + "\n".join(shown)


def check_node(n: Node, graph_inputs: set[int]) -> str | None:
    """The reason `n` breaks an invariant, or None."""
    if n.op not in OPS:
        return f"op {n.op!r} is not in the op table"
    if n.op == "input":
        if id(n) not in graph_inputs:
            return f"input {n.attrs.get('name')!r} is used but is not among the graph's inputs"
        return None
    if n.op == "constant":
        v = n.value
        if not isinstance(v, np.ndarray):
            return "a constant must hold a numpy array"
        if v.flags.writeable:
            return "a constant's array is writeable; constants must be read-only"
        if not isinstance(n.type, TensorType) or tuple(v.shape) != n.type.shape:
            return f"constant of shape {list(v.shape)} is typed {n.type}"
        if v.dtype != numpy_dtype(n.type.dtype):
            return f"constant holds {v.dtype} but is typed {n.type.dtype}"
        return None
    opdef = OPS[n.op]
    try:
        opdef.check_arity(len(n.inputs))
        attrs = opdef.canonical_attrs(dict(n.attrs))
    except SmeltError as e:
        return str(e)
    if attrs != dict(n.attrs):
        return "attributes are not in canonical form"
    for i, x in enumerate(n.inputs):
        if isinstance(x.type, TupleType) and n.op != "project":
            return f"operand {i} is a tuple; only project may read a tuple"
    try:
        inferred = opdef.infer([x.type for x in n.inputs], attrs)
    except SmeltError as e:
        return f"operands are ill-typed: {e}"
    declared = n.type
    annotated = isinstance(inferred, TensorType) and (inferred.quant or inferred.layout)
    if isinstance(declared, TensorType) and (declared.quant or declared.layout) and not annotated:
        # an annotation a pass added to a plain op's result; an op that infers one must match
        declared = TensorType(declared.shape, declared.dtype)
    if inferred != declared:
        return f"type is {n.type} but {n.op} of these operands gives {inferred}"
    return None


def verify(graph: Graph) -> None:
    """Raise VerificationError, with the surrounding lines, at the first broken invariant."""
    inputs = {id(x) for x in graph.inputs}
    for n in graph.nodes():
        reason = check_node(n, inputs)
        if reason is not None:
            raise VerificationError(_context(graph, n, f"invalid graph: {n.op}: {reason}"))
