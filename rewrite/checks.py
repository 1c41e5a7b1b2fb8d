"""Constraints inside patterns (TVM DPL style): dtype, shape, rank, attrs, is-constant,
single-use, and any named predicate.

A check is called on the node a pattern matched and returns None when it holds, or a short
reason when it does not (onnxscript style: a reason, not False). The reason is only built
when someone asks why a match failed (`explain`), so checks stay cheap in the driver.

Checks also carry hints (`dtypes`, `ranks`, `shape`) that the instance generator uses to
build nodes that satisfy them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from smelt.ir.node import Node
from smelt.ir.types import DTYPES

from .errors import RuleDefinitionError


class MatchContext:
    """What a pattern may know beyond the node: how many operand slots (and graph outputs)
    use each node. `uses` is None when no graph is known; single-use checks then pass."""

    __slots__ = ("uses",)

    def __init__(self, uses: dict[Node, int] | None = None) -> None:
        self.uses = uses


class Check:
    """Base class: `check(node, ctx)` is None when the constraint holds, else a reason."""

    __slots__ = ()
    dtypes: frozenset[str] | None = None
    ranks: frozenset[int] | None = None
    shape: tuple[int, ...] | None = None

    def __call__(self, node: Node, ctx: MatchContext | None) -> str | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


class DtypeIs(Check):
    __slots__ = ("dtypes",)

    def __init__(self, dtypes: Iterable[str]) -> None:
        self.dtypes = frozenset(dtypes)
        bad = self.dtypes - set(DTYPES)
        if bad:
            raise RuleDefinitionError(f"unknown dtype(s) {sorted(bad)}; known: {list(DTYPES)}")

    def __call__(self, node: Node, ctx: MatchContext | None) -> str | None:
        if node.type.dtype in self.dtypes:
            return None
        return f"dtype is {node.type.dtype}, wanted {' or '.join(sorted(self.dtypes))}"

    def __repr__(self) -> str:
        return "dtype in {" + ", ".join(sorted(self.dtypes)) + "}"


class RankIs(Check):
    __slots__ = ("ranks",)

    def __init__(self, ranks: Iterable[int]) -> None:
        self.ranks = frozenset(ranks)

    def __call__(self, node: Node, ctx: MatchContext | None) -> str | None:
        if len(node.type.shape) in self.ranks:
            return None
        return f"rank is {len(node.type.shape)}, wanted {' or '.join(map(str, sorted(self.ranks)))}"

    def __repr__(self) -> str:
        return "rank in {" + ", ".join(map(str, sorted(self.ranks))) + "}"


class ShapeIs(Check):
    """An exact shape (a tuple), or a predicate on the shape tuple."""

    __slots__ = ("shape", "predicate")

    def __init__(self, shape: tuple[int, ...] | Callable[[tuple[int, ...]], Any]) -> None:
        if callable(shape):
            self.shape, self.predicate = None, shape
        else:
            self.shape, self.predicate = tuple(int(d) for d in shape), None

    def __call__(self, node: Node, ctx: MatchContext | None) -> str | None:
        have = node.type.shape
        if self.predicate is None:
            if have == self.shape:
                return None
            return f"shape is {list(have)}, wanted {list(self.shape)}"
        ok = self.predicate(have)
        if ok is None or ok is True:
            return None
        why = ok if isinstance(ok, str) else f"{_name(self.predicate)} is false"
        return f"shape {list(have)}: {why}"

    def __repr__(self) -> str:
        if self.predicate is None:
            return f"shape == {list(self.shape)}"
        return f"shape: {_name(self.predicate)}"


class IsConstant(Check):
    __slots__ = ()

    def __call__(self, node: Node, ctx: MatchContext | None) -> str | None:
        return None if node.op == "constant" else f"is {node.op}, not a constant"

    def __repr__(self) -> str:
        return "constant"


class SingleUse(Check):
    """The node feeds exactly one operand slot in the graph (and is not a graph output)."""

    __slots__ = ()

    def __call__(self, node: Node, ctx: MatchContext | None) -> str | None:
        if ctx is None or ctx.uses is None:
            return None
        n = ctx.uses.get(getattr(node, "origin", node), 1)
        return None if n <= 1 else f"has {n} uses, wanted one"

    def __repr__(self) -> str:
        return "single_use"


class Predicate(Check):
    """A named function of the node returning None/True (holds), False, or a reason."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Node], Any]) -> None:
        if getattr(fn, "__name__", "") == "<lambda>":
            raise RuleDefinitionError(
                "pattern predicates must be named functions (def ...), not lambdas: the name "
                "is what explain() and the statistics print"
            )
        self.fn = fn

    def __call__(self, node: Node, ctx: MatchContext | None) -> str | None:
        ok = self.fn(node)
        if ok is None or ok is True:
            return None
        return ok if isinstance(ok, str) else f"{_name(self.fn)} is false"

    def __repr__(self) -> str:
        return _name(self.fn)


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", repr(fn))


def as_check(c: Check | Callable[[Node], Any]) -> Check:
    return c if isinstance(c, Check) else Predicate(c)
