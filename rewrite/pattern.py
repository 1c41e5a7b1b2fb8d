"""Patterns: combinators with operator sugar that match hash-consed nodes (constructors
in dsl.py).

    x, w, b = var("x"), const("w"), var("b")
    op.relu(x @ w + b)                       # relu(add(matmul(x, w), b))
    op.transpose(op.transpose(x).named("inner"))
    (op.relu(x) | op.relu6(x)).single_use()  # alternatives, constraints
    op.cast(x, dtype="float32")              # attributes: a value or a named predicate
    x * 1.0                                  # numbers become constant-value patterns

A match produces captures (`name -> Node`). A name used twice must bind the same node, so
`op.maximum(x, x)` matches only `maximum(a, a)`. Operands of commutative ops (the op table's
`commutative` flag) are tried in both orders, so one rule covers `x * 1` and `1 * x`.
Matching returns every way the pattern matches (a list of capture dicts), and a rule's
rewrite is tried on each until one returns a node. This is the reference matcher; the
driver runs the same enumeration compiled to straight-line code (matcher.py).

Every pattern can say why a match failed: pass a `MissLog` and it records the deepest
failure (how many pattern nodes had matched, where, and the reason); `explain` prints it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from smelt.ir.node import Node
from smelt.ir.op_table import OPS

from .checks import (
    Check,
    DtypeIs,
    IsConstant,
    MatchContext,
    RankIs,
    ShapeIs,
    SingleUse,
    as_check,
)
from .errors import RuleDefinitionError

Captures = dict[str, Node]
_EMPTY: Captures = {}


class Miss:
    """Where and why the nearest partial match failed."""

    __slots__ = ("matched", "path", "pattern", "node", "reason")

    def __init__(self, matched: int, path: str, pattern: Pattern, node: Node, reason: str):
        self.matched, self.path, self.pattern = matched, path, pattern
        self.node, self.reason = node, reason


class MissLog:
    """Collects the deepest failure while a pattern is matched (slow path, for explain)."""

    __slots__ = ("matched", "path", "best")

    def __init__(self) -> None:
        self.matched = 0
        self.path: list[str] = []
        self.best: Miss | None = None

    def fail(self, pattern: Pattern, node: Node, reason: str) -> None:
        if self.best is None or self.matched > self.best.matched:
            where = " > ".join(self.path) or "root"
            self.best = Miss(self.matched, where, pattern, node, reason)


class Pattern:
    """Base of all patterns. Builders (`named`, `where`, `dtype`, ...) return new patterns."""

    __slots__ = ("name", "checks")

    def __init__(self) -> None:
        self.name: str | None = None
        self.checks: tuple[Check, ...] = ()

    # -- matching ---------------------------------------------------------------------------
    def _match(self, node: Node, caps: Captures, ctx: MatchContext | None,
               log: MissLog | None) -> list[Captures]:
        raise NotImplementedError

    def matches(self, node: Node, ctx: MatchContext | None = None) -> list[Captures]:
        """Every way this pattern matches `node` (empty: no match)."""
        return self._match(node, _EMPTY, ctx, None)

    def match(self, node: Node, ctx: MatchContext | None = None) -> Captures | None:
        """The first match's captures, or None."""
        found = self._match(node, _EMPTY, ctx, None)
        return found[0] if found else None

    def _bind(self, node: Node, caps: Captures, ctx: MatchContext | None,
              log: MissLog | None) -> Captures | None:
        """Run the constraints and bind the name; the new captures, or None on failure."""
        for check in self.checks:
            reason = check(node, ctx)
            if reason is not None:
                if log is not None:
                    log.fail(self, node, f"[{check!r}] {reason}")
                return None
        name = self.name
        if name is not None:
            bound = caps.get(name)
            if bound is None:
                caps = {**caps, name: node}
            elif bound is not node and not _same(bound, node):
                if log is not None:
                    log.fail(self, node, f"{name} is already bound to a different node")
                return None
        return caps

    # -- structure -------------------------------------------------------------------------
    def root_ops(self) -> frozenset[str] | None:
        """Ops a matched root node can have; None means any op (a wildcard rule)."""
        return None

    def children(self) -> tuple[Pattern, ...]:
        return ()


    def walk(self) -> Iterator[Pattern]:
        stack: list[Pattern] = [self]
        while stack:
            p = stack.pop()
            yield p
            stack.extend(reversed(p.children()))

    def size(self) -> int:
        return sum(1 for _ in self.walk())

    def capture_names(self) -> list[str]:
        out: list[str] = []
        for p in self.walk():
            if p.name is not None and p.name not in out:
                out.append(p.name)
        return out

    # -- builders --------------------------------------------------------------------------
    def _replace(self, **changes: Any) -> Pattern:
        new = copy.copy(self)
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    def named(self, name: str) -> Pattern:
        """Capture the matched node as `name` (a Python identifier)."""
        if not name.isidentifier():
            raise RuleDefinitionError(f"capture name {name!r} must be an identifier")
        return self._replace(name=name)

    def where(self, *checks: Check | Callable[[Node], Any]) -> Pattern:
        """Add constraints: Check objects or named functions of the node that return
        None/True when they hold, False or a reason string when not. Inside the driver the
        node may be one not built yet (see pending.py): read its op, inputs, attrs, type,
        shape and dtype, not its identity."""
        return self._replace(checks=self.checks + tuple(as_check(c) for c in checks))

    def dtype(self, *dtypes: str) -> Pattern:
        return self.where(DtypeIs(dtypes))

    def rank(self, *ranks: int) -> Pattern:
        return self.where(RankIs(ranks))

    def shape(self, shape: tuple[int, ...] | Callable[[tuple[int, ...]], Any]) -> Pattern:
        return self.where(ShapeIs(shape))

    def constant(self) -> Pattern:
        return self.where(IsConstant())

    def single_use(self) -> Pattern:
        return self.where(SingleUse())

    # -- sugar -----------------------------------------------------------------------------
    def __add__(self, other: Any) -> Pattern:
        return Op("add", (self, lift(other)))

    def __radd__(self, other: Any) -> Pattern:
        return Op("add", (lift(other), self))

    def __sub__(self, other: Any) -> Pattern:
        return Op("sub", (self, lift(other)))

    def __rsub__(self, other: Any) -> Pattern:
        return Op("sub", (lift(other), self))

    def __mul__(self, other: Any) -> Pattern:
        return Op("mul", (self, lift(other)))

    def __rmul__(self, other: Any) -> Pattern:
        return Op("mul", (lift(other), self))

    def __truediv__(self, other: Any) -> Pattern:
        return Op("div", (self, lift(other)))

    def __rtruediv__(self, other: Any) -> Pattern:
        return Op("div", (lift(other), self))

    def __matmul__(self, other: Any) -> Pattern:
        return Op("matmul", (self, lift(other)))

    def __neg__(self) -> Pattern:
        return Op("neg", (self,))

    def __or__(self, other: Any) -> Pattern:
        return Alt((self, lift(other)))

    # -- printing --------------------------------------------------------------------------
    def _body(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        text = self._body()
        if self.name is not None and not isinstance(self, Var | Const):
            text = f"{self.name}={text}"
        if self.checks:
            text += "[" + ", ".join(repr(c) for c in self.checks) + "]"
        return text


def _same(a: Node, b: Node) -> bool:
    """Identity of two matched nodes, either of which may be the driver's not-yet-built
    node (which has a `materialize` method giving the real one)."""
    ma, mb = getattr(a, "materialize", None), getattr(b, "materialize", None)
    if ma is None and mb is None:
        return False
    return (ma() if ma else a) is (mb() if mb else b)


class Var(Pattern):
    """Any node."""

    __slots__ = ()

    def _match(self, node, caps, ctx, log):
        if self.checks or self.name is not None:
            caps = self._bind(node, caps, ctx, log)
            if caps is None:
                return []
        if log is not None:
            log.matched += 1
        return [caps]

    def _body(self) -> str:
        return self.name or "_"


class Const(Pattern):
    """A constant node; with `value`, one whose every element equals that value."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        super().__init__()
        self.value = value

    def _match(self, node, caps, ctx, log):
        if node.op != "constant":
            if log is not None:
                log.fail(self, node, f"expected a constant, found {node.op}")
            return []
        want = self.value
        if want is not None and not _all_equal(node.value, want):
            if log is not None:
                log.fail(self, node, f"constant is not all {want!r}")
            return []
        caps = self._bind(node, caps, ctx, log)
        if caps is None:
            return []
        if log is not None:
            log.matched += 1
        return [caps]

    def _body(self) -> str:
        head = f"{self.name}:const" if self.name else "const"
        return head if self.value is None else f"{head}({self.value!r})"


def _all_equal(array: np.ndarray, value: Any) -> bool:
    if array.size == 0:
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.all(array == value))


class Op(Pattern):
    """A node of one of `ops` (None: any op) whose operands match `inputs` (None: any
    operands) and whose attributes match `attrs` (a value, or a named predicate)."""

    __slots__ = ("ops", "inputs", "attrs", "commutative", "input_names")

    def __init__(self, ops: str | tuple[str, ...] | None, inputs: tuple[Pattern, ...] | None,
                 attrs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if isinstance(ops, str):
            ops = (ops,)
        if ops is not None:
            for name in ops:
                if name not in OPS:
                    raise RuleDefinitionError(
                        f"pattern names unknown op {name!r}; the op table has: "
                        f"{', '.join(sorted(OPS))}"
                    )
        self.ops = frozenset(ops) if ops is not None else None
        self.inputs = tuple(lift(p) for p in inputs) if inputs is not None else None
        self.attrs = tuple(sorted((k, _freeze(v)) for k, v in (attrs or {}).items()))
        self.commutative = bool(
            ops is not None and self.inputs is not None and len(self.inputs) == 2
            and all(OPS[o].commutative for o in ops)
        )
        first = OPS[next(iter(ops))] if ops else None
        self.input_names = tuple(s.strip("*?") for s in first.inputs) if first else ()

    def root_ops(self) -> frozenset[str] | None:
        return self.ops

    def children(self) -> tuple[Pattern, ...]:
        return self.inputs or ()

    def _match(self, node, caps, ctx, log):
        ops = self.ops
        if ops is not None and node.op not in ops:
            if log is not None:
                log.fail(self, node, f"expected {' or '.join(sorted(ops))}, found {node.op}")
            return []
        if self.attrs:
            for key, want in self.attrs:
                have = node.attrs.get(key)
                if not (want(have) if callable(want) else have == want):
                    if log is not None:
                        log.fail(self, node, f"attribute {key}={have!r}, wanted {_show(want)}")
                    return []
        pats = self.inputs
        args = node.inputs
        if pats is not None and len(pats) != len(args):
            if log is not None:
                log.fail(self, node, f"has {len(args)} operands, wanted {len(pats)}")
            return []
        if self.checks or self.name is not None:
            caps = self._bind(node, caps, ctx, log)
            if caps is None:
                return []
        if log is None:  # the driver's path
            if pats is None:
                return [caps]
            found = _operands(pats, args, caps, ctx)
            if self.commutative:
                found = found + _operands(pats, (args[1], args[0]), caps, ctx)
            return found
        log.matched += 1
        if pats is None:
            return [caps]
        start = log.matched
        found = self._explain_operands(pats, args, caps, ctx, log)
        if self.commutative:
            log.matched = start
            found = found + self._explain_operands(pats, (args[1], args[0]), caps, ctx, log)
        return found

    def _explain_operands(self, pats, args, caps, ctx, log) -> list[Captures]:
        partial = [caps]
        for i, (p, x) in enumerate(zip(pats, args, strict=True)):
            log.path.append(self._slot(i))
            partial = [c2 for c in partial for c2 in p._match(x, c, ctx, log)]
            log.path.pop()
            if not partial:
                return partial
        return partial

    def _slot(self, i: int) -> str:
        op = "|".join(sorted(self.ops)) if self.ops else "*"
        name = self.input_names[i] if i < len(self.input_names) else str(i)
        return f"{op}.{name}"

    def _body(self) -> str:
        op = "|".join(sorted(self.ops)) if self.ops is not None else "*"
        args = "..." if self.inputs is None else ", ".join(repr(p) for p in self.inputs)
        attrs = ", ".join(f"{k}={_show(v)}" for k, v in self.attrs)
        return f"{op}({args})" + (f"{{{attrs}}}" if attrs else "")


def _operands(pats: tuple[Pattern, ...], args: tuple[Node, ...], caps: Captures,
              ctx: MatchContext | None) -> list[Captures]:
    """Match operands left to right, threading every partial match through."""
    partial = [caps]
    for p, x in zip(pats, args):  # noqa: B905 (lengths checked by the caller)
        if len(partial) == 1:
            partial = p._match(x, partial[0], ctx, None)
        else:
            partial = [c2 for c in partial for c2 in p._match(x, c, ctx, None)]
        if not partial:
            return partial
    return partial


def _freeze(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(_freeze(x) for x in v)
    return v


def _show(v: Any) -> str:
    return getattr(v, "__name__", None) or repr(v) if callable(v) else repr(v)


class Alt(Pattern):
    """The first, second, ... alternative (all that match are returned, in order)."""

    __slots__ = ("options",)

    def __init__(self, options: tuple[Pattern, ...]) -> None:
        super().__init__()
        flat: list[Pattern] = []
        for p in options:
            if isinstance(p, Alt) and p.name is None and not p.checks:
                flat.extend(p.options)
            else:
                flat.append(p)
        self.options = tuple(flat)

    def root_ops(self) -> frozenset[str] | None:
        out: set[str] = set()
        for p in self.options:
            ops = p.root_ops()
            if ops is None:
                return None
            out |= ops
        return frozenset(out)

    def children(self) -> tuple[Pattern, ...]:
        return self.options


    def _match(self, node, caps, ctx, log):
        caps = self._bind(node, caps, ctx, log)
        if caps is None:
            return []
        found: list[Captures] = []
        for p in self.options:
            if log is not None:
                saved = log.matched
            found.extend(p._match(node, caps, ctx, log))
            if log is not None:
                log.matched = saved
        return found

    def _body(self) -> str:
        return "(" + " | ".join(repr(p) for p in self.options) + ")"


def lift(x: Any) -> Pattern:
    """A pattern as is; a number or bool as a constant-value pattern."""
    if isinstance(x, Pattern):
        return x
    if isinstance(x, bool | int | float | np.number | np.bool_):
        return Const(x)
    raise RuleDefinitionError(f"cannot use {x!r} ({type(x).__name__}) in a pattern")


__all__ = [
    "Alt", "Captures", "Const", "Miss", "MissLog", "Op", "Pattern", "Var", "lift",
]
