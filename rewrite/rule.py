"""Rules and rule sets.

A rule is a name, a pattern, a rewrite function, a numeric contract and a docstring that
states `lhs -> rhs` and where the identity comes from:

    @rule(op.mul(x, 1.0), contract=exact)
    def mul_one(x: Node) -> Node | None:
        '''x * 1 -> x   (multiplicative identity)'''
        return x

The rewrite function receives the pattern's captures as keyword arguments and returns the
replacement node, or None (or `reject("why")`, which explain() prints) when its own checks
refuse. It must be a named function: names are what statistics, traces and errors print.

A rule may say how to build a random instance of its pattern (`instance=`, a function of a
hypothesis `draw` returning a Graph whose outputs contain a match); by default the
instance generator builds one from the pattern itself. A library rule names its builder
instead of importing it, as `"package.module:function"` (or `".module:function"`, beside the
rule's own module), so that the builder's module, and hypothesis, load only when a verifier
asks for an instance (`import smelt` does not import hypothesis).

Rule sets keep their rules in order, compose with `+`, and index the rules by the op of the
root they can match, so the driver only tries the rules that can apply to a node.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from smelt.ir.node import Node

from .checks import SingleUse
from .contract import Contract
from .errors import RuleDefinitionError
from .pattern import Pattern

RewriteFn = Callable[..., Any]
InstanceFn = Callable[[Callable[[Any], Any]], Any]
_BUILDER_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class NoMatch:
    """A rewrite function's refusal, with the reason (falsy, like None)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"reject({self.reason!r})"


def reject(reason: str) -> NoMatch:
    """Return this from a rewrite function to refuse a match and say why."""
    return NoMatch(reason)


class Rule:
    """One rewrite: `pattern` matched at a node, `fn(**captures)` gives its replacement."""

    __slots__ = ("name", "pattern", "fn", "contract", "doc", "family", "instance", "_root_ops",
                 "_matcher")

    def __init__(self, name: str, pattern: Pattern, fn: RewriteFn, contract: Contract,
                 doc: str, family: str = "", instance: InstanceFn | str | None = None) -> None:
        if not isinstance(pattern, Pattern):
            raise RuleDefinitionError(f"rule {name}: pattern must be a Pattern, got {pattern!r}")
        if not isinstance(contract, Contract):
            raise RuleDefinitionError(f"rule {name}: contract must be exact or bounded(...)")
        if "->" not in doc:
            raise RuleDefinitionError(
                f"rule {name}: its docstring must state the rewrite as `lhs -> rhs` (and its "
                "source), e.g. '''x * 1 -> x   (multiplicative identity)'''"
            )
        if isinstance(instance, str) and not _BUILDER_REF.fullmatch(instance):
            raise RuleDefinitionError(
                f"rule {name}: instance={instance!r} must name a builder function as "
                "'package.module:function', e.g. 'smelt.passes.batchnorm_instances:bn_of_conv'"
            )
        self.name, self.pattern, self.fn, self.contract = name, pattern, fn, contract
        self.doc, self.family, self.instance = doc.strip(), family, instance
        self._root_ops = pattern.root_ops()
        self._matcher = None

    @property
    def root_ops(self) -> frozenset[str] | None:
        """The ops of the nodes this rule can rewrite (None: any op)."""
        return self._root_ops

    @property
    def matcher(self) -> Callable[[Any, Any], Any]:
        """The compiled form the driver runs: `matcher(node, ctx)` -> rewrite or None."""
        if self._matcher is None:
            from .matcher import compile_rule

            self._matcher = compile_rule(self)
        return self._matcher

    def instance_builder(self) -> InstanceFn | None:
        """The function that draws instances of this rule (None: built from the pattern);
        a builder named by `"module:function"` is imported now."""
        if not isinstance(self.instance, str):
            return self.instance
        module, _, attr = self.instance.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise RuleDefinitionError(
                f"rule {self.name}: cannot load its instance builder {self.instance!r} ({e}); "
                "name an existing function as 'package.module:function'"
            ) from None

    @property
    def summary(self) -> str:
        """The doc's `lhs -> rhs` line."""
        return next(line.strip() for line in self.doc.splitlines() if "->" in line)

    def apply(self, node: Node, ctx: Any = None) -> Node | None:
        """The rewrite of `node` by this rule alone (one step), or None."""
        for caps in self.pattern.matches(node, ctx):
            out = self.fn(**caps)
            if out is not None and out.__class__ is not NoMatch:
                return out
        return None

    def __add__(self, other: Rule | RuleSet) -> RuleSet:
        return RuleSet([self, other])

    def __repr__(self) -> str:
        return f"<Rule {self.name} ({self.contract}): {self.summary}>"


def rule(pattern: Pattern, *, contract: Contract, family: str = "", name: str | None = None,
         instance: InstanceFn | str | None = None) -> Callable[[RewriteFn], Rule]:
    """Decorator: make the decorated function the rewrite of a new Rule. `instance` is a
    builder function, or its name, `"package.module:function"` or `".module:function"`
    (relative to the decorated function's package), imported only when needed."""

    def wrap(fn: RewriteFn) -> Rule:
        fn_name = getattr(fn, "__name__", "")
        if fn_name == "<lambda>" or not fn_name:
            raise RuleDefinitionError("a rule's rewrite must be a named function, not a lambda")
        wanted = set(pattern.capture_names())
        code = getattr(fn, "__code__", None)
        if code is not None and not code.co_flags & 0x08:  # no **kwargs: check the names
            params = set(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])
            missing = params - wanted
            if missing:
                raise RuleDefinitionError(
                    f"rule {fn_name}: parameters {sorted(missing)} are not captured by the "
                    f"pattern (captures: {sorted(wanted) or 'none'})"
                )
            extra = wanted - params
            if extra:
                raise RuleDefinitionError(
                    f"rule {fn_name}: captures {sorted(extra)} are not parameters of the "
                    "rewrite function (add them, or **_)"
                )
        builder = _absolute(instance, fn) if isinstance(instance, str) else instance
        return Rule(name or fn_name, pattern, fn, contract, fn.__doc__ or "", family, builder)

    return wrap


def _absolute(ref: str, fn: RewriteFn) -> str:
    """`".module:function"` resolved against the package of the module defining `fn`."""
    if not ref.startswith("."):
        return ref
    module, _, attr = ref.partition(":")
    package = getattr(fn, "__module__", "").rpartition(".")[0]
    try:
        return f"{importlib.util.resolve_name(module, package)}:{attr}"
    except ImportError:
        raise RuleDefinitionError(
            f"rule {fn.__name__}: instance={ref!r} is relative, but {fn.__module__} is not "
            "in a package; name the builder as 'package.module:function'"
        ) from None


class RuleSet:
    """An ordered set of rules with unique names; `+` concatenates."""

    __slots__ = ("name", "rules", "_by_op", "_wild", "_index", "_needs_uses")

    def __init__(self, rules: Iterable[Rule | RuleSet] = (), name: str = "") -> None:
        flat: list[Rule] = []
        for r in rules:
            if isinstance(r, RuleSet):
                flat.extend(r.rules)
            elif isinstance(r, Rule):
                flat.append(r)
            else:
                raise RuleDefinitionError(f"a rule set holds rules, not {r!r}")
        seen: dict[str, Rule] = {}
        unique: list[Rule] = []
        for r in flat:
            other = seen.get(r.name)
            if other is r:
                continue
            if other is not None:
                raise RuleDefinitionError(f"two different rules are named {r.name!r}")
            seen[r.name] = r
            unique.append(r)
        self.name = name
        self.rules: tuple[Rule, ...] = tuple(unique)
        self._index = {r.name: i for i, r in enumerate(self.rules)}
        self._by_op: dict[str, tuple[Rule, ...]] = {}
        self._wild = tuple(r for r in self.rules if r.root_ops is None)
        self._needs_uses = any(
            isinstance(c, SingleUse) for r in self.rules for p in r.pattern.walk() for c in p.checks
        )

    @property
    def needs_uses(self) -> bool:
        """Whether some pattern asks how many times a node is used."""
        return self._needs_uses

    def for_op(self, op: str) -> tuple[Rule, ...]:
        """The rules, in order, whose root can be an `op` node (wildcard rules included)."""
        found = self._by_op.get(op)
        if found is None:
            found = tuple(r for r in self.rules if r.root_ops is None or op in r.root_ops)
            self._by_op[op] = found
        return found

    def index(self, rule: Rule) -> int:
        return self._index[rule.name]

    def __getitem__(self, name: str) -> Rule:
        try:
            return self.rules[self._index[name]]
        except KeyError:
            raise KeyError(f"no rule {name!r} in this set; it has {', '.join(self._index)}") \
                from None

    def __add__(self, other: Rule | RuleSet) -> RuleSet:
        return RuleSet([self, other], name=_join(self.name, getattr(other, "name", "")))

    def __radd__(self, other: Rule | RuleSet) -> RuleSet:
        return RuleSet([other, self], name=self.name)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __contains__(self, item: object) -> bool:
        name = item.name if isinstance(item, Rule) else item
        return name in self._index

    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def __repr__(self) -> str:
        return f"<RuleSet {self.name or '(unnamed)'}: {len(self.rules)} rules>"

    def __str__(self) -> str:
        """A table: name, family, contract, `lhs -> rhs`."""
        w = max([len(r.name) for r in self.rules] + [4])
        f = max([len(r.family) for r in self.rules] + [6])
        c = max([len(str(r.contract)) for r in self.rules] + [8])
        lines = [f"{'rule':<{w}}  {'family':<{f}}  {'contract':<{c}}  rewrite"]
        for r in self.rules:
            lines.append(f"{r.name:<{w}}  {r.family:<{f}}  {str(r.contract):<{c}}  {r.summary}")
        return "\n".join(lines)


def _join(a: str, b: str) -> str:
    return "+".join(x for x in (a, b) if x)
