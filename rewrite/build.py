"""Node building inside rewrites: `make` and `rebuild` are `Node.make` and `Node.rebuild`,
which memoize type inference on (op, operand types, attributes) so that rewriting large graphs
costs interning, not inference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from smelt.ir.node import Node


def make(op: str, inputs: Sequence[Node], **attrs: Any) -> Node:
    return Node.make(op, inputs, **attrs)


def rebuild(node: Node, inputs: Sequence[Node]) -> Node:
    return Node.rebuild(node, inputs)
