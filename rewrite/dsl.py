"""The pattern language's constructors: `var`, `const`, `op`, `any_of`, `any_op`.

    from smelt.rewrite.dsl import const, op, var

    x, w, b = var("x"), const("w"), var("b")
    op.relu(x @ w + b)                  # relu(add(matmul(x, w), b)); operator sugar
    op("maximum|minimum", x, x)         # either op; a repeated name is the same node
    op.concat(...)                      # any operands
    any_of(op.relu(x), op.relu6(x))     # alternatives (also `|`)
    any_op().where(check)               # any op (a wildcard rule)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smelt.ir.op_table import OPS

from .errors import RuleDefinitionError
from .pattern import Alt, Const, Op, Pattern, Var, lift


def var(name: str | None = None) -> Pattern:
    """Any node, captured as `name`."""
    p = Var()
    return p.named(name) if name else p


def const(name: str | None = None, value: Any = None) -> Pattern:
    """A constant node (all elements equal to `value`, when given), captured as `name`."""
    p = Const(value)
    return p.named(name) if name else p


def any_of(*options: Any) -> Pattern:
    """Alternatives: matches when any option matches."""
    return Alt(tuple(lift(p) for p in options))


def any_op(*inputs: Any, **attrs: Any) -> Pattern:
    """A node of any op (a wildcard root); with inputs, its operands must match them."""
    return Op(None, tuple(inputs) if inputs else None, attrs)


class _OpBuilder:
    """`op("relu", x)` or `op.relu(x)`; `op("add|sub", a, b)` matches either op;
    `op.concat(...)` with a literal Ellipsis matches any operands."""

    def __call__(self, name: str, *inputs: Any, **attrs: Any) -> Pattern:
        ops = tuple(name.split("|"))
        if len(inputs) == 1 and inputs[0] is Ellipsis:
            return Op(ops, None, attrs)
        return Op(ops, tuple(inputs), attrs)

    def __getattr__(self, name: str) -> Callable[..., Pattern]:
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in OPS:
            raise RuleDefinitionError(
                f"op.{name}: unknown op; the op table has: {', '.join(sorted(OPS))}"
            )

        def build(*inputs: Any, **attrs: Any) -> Pattern:
            return self(name, *inputs, **attrs)

        build.__name__ = name
        return build


op = _OpBuilder()

__all__ = ["any_of", "any_op", "const", "op", "var"]
