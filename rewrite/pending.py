"""Nodes the driver has not built yet.

When a node's operands are rewritten, the driver does not rebuild it at once: it keeps a
`Pending` (the old node's op, attrs and type over the new operands) until something needs
the real node: a rule captures it, a repeated capture name compares it, or it is a graph
output. A node that its user's rewrite consumes (the add in relu(add(matmul(x, w), b)) ->
fused_matmul) is then never built at all.

A Pending reads like a Node (op, inputs, attrs, type, shape, dtype, value=None), so patterns
and checks match it as they match nodes; rewrite functions only ever see real nodes.
"""

from __future__ import annotations

from typing import Any

from smelt.ir.node import Node
from smelt.ir.types import Type

from .describe import describe


class Pending:
    __slots__ = ("origin", "op", "inputs", "attrs", "type", "built", "uses")
    value = None
    is_constant = False

    def __init__(self, origin: Node, inputs: list[Any], uses: dict | None) -> None:
        self.origin, self.op, self.inputs = origin, origin.op, tuple(inputs)
        self.attrs, self.type = origin.attrs, origin.type
        self.built: Node | None = None
        self.uses = uses

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def tensor_type(self) -> Type:
        return self.type

    def attr(self, name: str) -> Any:
        return self.attrs[name]

    def materialize(self) -> Node:
        """The real node: built once, operands first, without recursion."""
        if self.built is not None:
            return self.built
        stack = [self]
        while stack:
            q = stack[-1]
            if q.built is not None:
                stack.pop()
                continue
            waiting = [x for x in q.inputs if x.__class__ is Pending and x.built is None]
            if waiting:
                stack.extend(waiting)
                continue
            stack.pop()
            q.built = Node.rebuild(q.origin, [real(x) for x in q.inputs])
            if q.uses is not None:
                q.uses[q.built] = q.uses.get(q.built, 0) + q.uses.get(q.origin, 1)
        return self.built

    def __repr__(self) -> str:
        return f"<pending {describe(self)}>"


def real(x: Any) -> Any:
    """A node as is; a Pending as its real node."""
    return x.materialize() if x.__class__ is Pending else x


def built_captures(caps: dict[str, Any]) -> dict[str, Node]:
    return {k: real(v) for k, v in caps.items()}
