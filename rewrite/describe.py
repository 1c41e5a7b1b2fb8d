"""One-line descriptions of nodes for messages, traces and explain output.

    add(matmul(x, const f32[8,8]), const f32[8]) : f32[1,8]

Operands are shown to a fixed depth; graph inputs by name; small constants by value.
"""

from __future__ import annotations

from smelt.ir.node import SMALL_CONSTANT, Node
from smelt.ir.text_format import format_type, format_value


def describe(node: Node, depth: int = 2) -> str:
    """`op(operands...){attrs} : type`, operands described `depth` levels deep."""
    return f"{_expr(node, depth)} : {format_type(node.type)}"


def _expr(node: Node, depth: int) -> str:
    if node.op == "input":
        return str(node.attrs["name"])
    if node.op == "constant":
        if node.value.size <= SMALL_CONSTANT and node.value.ndim <= 1:
            flat = node.value.reshape(-1).tolist()
            shown = format_value(flat[0] if node.value.ndim == 0 else flat)
            return f"const {shown}"
        return f"const {format_type(node.type)}"
    if depth <= 0:
        return f"{node.op}(...)"
    args = ", ".join(_expr(x, depth - 1) for x in node.inputs)
    attrs = ""
    if node.attrs:
        attrs = "{" + ", ".join(f"{k}={format_value(v)}" for k, v in node.attrs.items()) + "}"
    return f"{node.op}({args}){attrs}"
