"""Matchers: a rule's pattern turned into one Python function, for the driver's hot path.

`compile_rule(rule)` turns the rule's pattern into straight-line code: nested `if` blocks for
ops, arities, attributes, constraints and capture names, a `for` loop over the two operand
orders of a commutative op, one block per alternative. Where the whole pattern has matched,
the code calls the rewrite function with the captures (real nodes: a driver `Pending` is
built first) and returns its result unless it is None or a refusal; falling out of a block
backtracks to the next choice. So the compiled function tries the matches in exactly the
order `Pattern.matches` lists them, stops at the first that rewrites, and builds no lists or
dicts on the way.

    relu(add(matmul(x, w), b)) with add commutative becomes, in essence:

    def match(n0, ctx):
        if n0.op == 'relu' and len(n0.inputs) == 1:
            n1 = n0.inputs[0]
            if n1.op == 'add' and len(n1.inputs) == 2:
                for n2, n3 in ((n1.inputs[0], n1.inputs[1]), (n1.inputs[1], n1.inputs[0])):
                    if n2.op == 'matmul' and len(n2.inputs) == 2:
                        r = fn(x=real(n2.inputs[0]), w=real(n2.inputs[1]), b=real(n3))
                        if r is not None and r.__class__ is not NoMatch:
                            return r
        return None

Single-use constraints are inlined (a dict lookup); other checks are called. `Pattern`
subclasses the compiler does not know are matched by the interpreter instead.
`explain` always uses the interpreter, which can say why a match failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .checks import SingleUse
from .pattern import Alt, Const, Op, Pattern, Var, _all_equal, _same
from .pending import Pending, real
from .rule import NoMatch, Rule

Matcher = Callable[[Any, Any], Any]


class _Emitter:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {"_fn": fn, "_real": real, "_NoMatch": NoMatch,
                                       "_same": _same, "_all_equal": _all_equal,
                                       "_Pending": Pending}
        self.count = 0

    def const(self, value: Any) -> str:
        name = f"_k{len(self.consts)}"
        self.consts[name] = value
        return name

    def var(self) -> str:
        self.count += 1
        return f"n{self.count}"

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    # each emit_* writes the code matching pattern `p` against the node in variable `v`,
    # then calls `k(depth, bound)` to write what follows a successful match
    def emit(self, p: Pattern, v: str, depth: int, bound: dict[str, str], k) -> None:
        if isinstance(p, Op):
            self.emit_op(p, v, depth, bound, k)
        elif isinstance(p, Const):
            cond = [f"{v}.op == 'constant'"]
            if p.value is not None:
                cond.append(f"_all_equal({v}.value, {self.const(p.value)})")
            self.line(depth, f"if {' and '.join(cond)}:")
            self.emit_bind(p, v, depth + 1, bound, k)
        elif isinstance(p, Var):
            self.emit_bind(p, v, depth, bound, k)
        elif isinstance(p, Alt):
            def options(d: int, b: dict[str, str]) -> None:
                for option in p.options:
                    self.emit(option, v, d, b, k)
            self.emit_bind(p, v, depth, bound, options)
        else:
            raise TypeError(f"cannot compile {type(p).__name__}")

    def emit_bind(self, p: Pattern, v: str, depth: int, bound: dict[str, str], k) -> None:
        for check in p.checks:
            if isinstance(check, SingleUse):  # inline: the common constraint of fusions
                self.line(depth, f"if _uses is None or _uses.get({v}.origin if {v}.__class__ "
                                 f"is _Pending else {v}, 1) <= 1:")
            else:
                self.line(depth, f"if {self.const(check)}({v}, ctx) is None:")
            depth += 1
        if p.name is not None:
            if p.name in bound:
                self.line(depth, f"if {bound[p.name]} is {v} or _same({bound[p.name]}, {v}):")
                depth += 1
            else:
                bound = {**bound, p.name: v}
        k(depth, bound)

    def emit_op(self, p: Op, v: str, depth: int, bound: dict[str, str], k) -> None:
        cond = []
        if p.ops is not None:
            if len(p.ops) == 1:
                cond.append(f"{v}.op == {next(iter(p.ops))!r}")
            else:
                cond.append(f"{v}.op in {self.const(p.ops)}")
        for key, want in p.attrs:
            have = f"{v}.attrs.get({key!r})"
            cond.append(f"{self.const(want)}({have})" if callable(want)
                        else f"{have} == {self.const(want)}")
        if p.inputs is not None:
            cond.append(f"len({v}.inputs) == {len(p.inputs)}")
        if cond:
            self.line(depth, f"if {' and '.join(cond)}:")
            depth += 1
        pats = p.inputs

        def operands(d: int, b: dict[str, str]) -> None:
            if not pats:
                k(d, b)
                return
            names = [self.var() for _ in pats]
            if p.commutative:
                a, c = names
                self.line(d, f"for {a}, {c} in (({v}.inputs[0], {v}.inputs[1]), "
                             f"({v}.inputs[1], {v}.inputs[0])):")
                d += 1
            else:
                for i, name in enumerate(names):
                    self.line(d, f"{name} = {v}.inputs[{i}]")
            self.emit_seq(list(zip(pats, names, strict=True)), d, b, k)

        self.emit_bind(p, v, depth, bound, operands)

    def emit_seq(self, items: list[tuple[Pattern, str]], depth: int, bound: dict[str, str],
                 k) -> None:
        if not items:
            k(depth, bound)
            return
        (p, v), rest = items[0], items[1:]

        def then(d: int, b: dict[str, str]) -> None:
            self.emit_seq(rest, d, b, k)

        self.emit(p, v, depth, bound, then)

    def emit_call(self, depth: int, bound: dict[str, str], params: list[str]) -> None:
        args = ", ".join(f"{name}=_real({bound[name]})" for name in params)
        self.line(depth, f"r = _fn({args})")
        self.line(depth, "if r is not None and r.__class__ is not _NoMatch:")
        self.line(depth + 1, "return r")


def compile_rule(rule: Rule) -> Matcher:
    """`matcher(node, ctx)`: the rule's rewrite of `node` (first match that rewrites), or
    None."""
    pattern = rule.pattern
    params = pattern.capture_names()
    em = _Emitter(rule.fn)
    em.line(0, "def match(n0, ctx):")
    em.line(1, "_uses = ctx.uses if ctx is not None else None")
    try:
        em.emit(pattern, "n0", 1, {}, lambda d, b: em.emit_call(d, b, params))
    except TypeError:
        return _interpreted(rule)
    em.line(1, "return None")
    source = "\n".join(em.lines)
    namespace = dict(em.consts)
    exec(compile(source, f"<rule {rule.name}>", "exec"), namespace)  # noqa: S102
    match = namespace["match"]
    match.__name__ = f"match_{rule.name}"
    match.source = source
    return match


def _interpreted(rule: Rule) -> Matcher:
    def match(node: Any, ctx: Any) -> Any:
        for caps in rule.pattern._match(node, {}, ctx, None):
            r = rule.fn(**{k: real(v) for k, v in caps.items()})
            if r is not None and r.__class__ is not NoMatch:
                return r
        return None

    match.source = None
    return match
