"""The rewrite driver: rules applied bottom-up, each node rewritten to a fixpoint.

The graph's nodes are taken in topological order (operands first), with a memo from each
node to its final form. At each node the driver

  1. reads its operands' final forms (if one changed, the node is kept as a `Pending` over
     the new operands, built only if something needs it: see pending.py);
  2. tries the rules that can match its op (the rule set's index by root op, wildcard rules
     included), in order, until one returns a replacement;
  3. walks the replacement the same way, with an explicit stack (no recursion limit): its new
     operands first, then the replacement itself, and so on, so the node ends at a fixpoint:
     no rule matches it or any of its operands. Its final form is its replacement's.

Clean-up happens inside: nodes are hash-consed, so rebuilding a node that already exists
gives that node (CSE), and the result graph holds only what its outputs reach (DCE).
Sources (inputs, constants) are never rewritten themselves, only matched as operands.

Every node is handled once (the memo) and each firing costs one match and one build, so the
cost is linear in the graph size when every rule does a bounded amount of work. Rules are
tried in set order, nodes in topological order: the result is deterministic.

Non-termination is an error, never a hang:
- a rewrite that leads back to a node still being rewritten (`a -> b -> a`, or `x -> f(x)`)
  raises NonTerminationError at once, naming the rules of the cycle;
- every firing counts against a step budget (by default 1024 + 32 per node of the graph); a
  breach raises NonTerminationError naming the rules that fired most in the last 256 steps.
"""

from __future__ import annotations

import gc
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from smelt.ir.graph import Graph
from smelt.ir.node import Node

from .checks import MatchContext
from .describe import describe
from .errors import NonTerminationError, RewriteTypeError
from .pending import Pending, real
from .rule import Rule, RuleSet
from .stats import Stats, TraceEntry

_WINDOW = 256


class _Active:
    """Memo marker of a node whose rewrite is in progress."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<active>"


_ACTIVE = _Active()


@dataclass(frozen=True)
class RewriteResult:
    """The rewritten graph, how many rewrites fired, per-rule statistics, and the trace
    (a list of TraceEntry, when asked for)."""

    graph: Graph
    rewrites: int
    stats: Stats
    trace: list[TraceEntry] | None = None

    @property
    def changed(self) -> bool:
        return self.rewrites > 0


def as_ruleset(rules: Rule | RuleSet | Iterable[Rule | RuleSet]) -> RuleSet:
    if isinstance(rules, RuleSet):
        return rules
    if isinstance(rules, Rule):
        return RuleSet([rules])
    return RuleSet(rules)


def use_counts(order: Iterable[Node], outputs: Iterable[Node]) -> dict[Node, int]:
    """Operand slots (plus graph outputs) that read each node."""
    uses: dict[Node, int] = {}
    get = uses.get
    for n in order:
        for x in n.inputs:
            uses[x] = get(x, 0) + 1
    for o in outputs:
        uses[o] = get(o, 0) + 1
    return uses


def postorder(outputs: Sequence[Node], uses: dict[Node, int] | None = None) -> list[Node]:
    """Every node the outputs reach, operands first (one pass; with `uses`, also counts the
    operand slots and outputs that read each node into it)."""
    order: list[Node] = []
    seen: set[Node] = set()
    counts: dict[Node, int] = uses if uses is not None else {}
    get, add, append = counts.get, seen.add, order.append
    for root in outputs:
        counts[root] = get(root, 0) + 1
        if root in seen:
            continue
        add(root)
        stack = [(root, iter(root.inputs))]
        push, pop = stack.append, stack.pop
        while stack:
            node, operands = stack[-1]
            for c in operands:
                counts[c] = get(c, 0) + 1
                if c not in seen:
                    add(c)
                    push((c, iter(c.inputs)))
                    break
            else:
                pop()
                append(node)
    return order


def rewrite(graph: Graph, rules: Rule | RuleSet | Iterable[Rule | RuleSet], *,
            budget: int | None = None, trace: bool = False) -> RewriteResult:
    """Rewrite `graph` with `rules` to a fixpoint. `budget` caps the number of rewrites
    (default: 1024 + 32 per node of the graph); `trace=True` records every rewrite."""
    ruleset = as_ruleset(rules)
    was_enabled = gc.isenabled()
    gc.disable()  # the walk allocates millions of acyclic objects; collections only cost time
    try:
        uses: dict[Node, int] | None = {} if ruleset.needs_uses else None
        order = postorder(graph.outputs, uses)
        driver = _Driver(ruleset, MatchContext(uses), budget, trace)
        outputs = driver.run(order, graph.outputs)
        names = _carry(graph.names, driver.memo)
        sources = _carry(graph.sources, driver.memo)
    finally:
        if was_enabled:
            gc.enable()
    new_graph = Graph(graph.inputs, outputs, graph.name, names, sources)
    stats = Stats.from_counts((r.name, driver.rows[r]) for r in ruleset)
    return RewriteResult(new_graph, driver.steps, stats, driver.trace)


def rewrite_nodes(roots: Sequence[Node], rules: Rule | RuleSet | Iterable[Rule | RuleSet], *,
                  budget: int | None = None) -> list[Node]:
    """The final forms of `roots` (no graph: single-use checks pass)."""
    driver = _Driver(as_ruleset(rules), MatchContext(None), budget, False)
    return driver.run(postorder(roots), roots)


def _carry(table: dict[Node, str], memo: dict) -> dict[Node, str]:
    """Side-table entries (names, sources) follow a node to its rewritten form."""
    out = dict(table)
    for n, v in table.items():
        f = memo.get(n)
        if f.__class__ is Pending:
            f = f.built
        if f is not None and f is not n and f is not _ACTIVE and f not in out:
            out[f] = v
    return out


class _Driver:
    def __init__(self, rules: RuleSet, ctx: MatchContext, budget: int | None,
                 trace: bool) -> None:
        self.rules, self.ctx, self.budget = rules, ctx, budget
        self.memo: dict[Node, object] = {}
        self.rows: dict[Rule, list] = {r: [0, 0, 0.0] for r in rules}
        self.by_op: dict[str, tuple[Rule, ...]] = {}
        self.steps = 0
        self.size = 0
        self.recent: deque[str] = deque(maxlen=_WINDOW)
        self.trace: list[TraceEntry] | None = [] if trace else None
        self.stack: list[tuple] = []

    def run(self, order: Sequence[Node], roots: Sequence[Node]) -> list[Node]:
        memo, stack, up, by_op = self.memo, self.stack, self._up, self.by_op
        uses = self.ctx.uses
        self.size = len(order)
        for n in order:
            if n in memo:  # a replacement built it before its turn
                continue
            ins = n.inputs
            if not ins:
                memo[n] = n
                continue
            rules = by_op.get(n.op)
            if rules is None:
                rules = self._rules_for(n.op)
            if rules:
                up(n)
                if stack:
                    self._walk()
                continue
            # no rule can match here: the node is final once its operands are
            for c in ins:
                if memo[c] is not c:
                    memo[n] = Pending(n, [memo[x] for x in ins], uses)
                    break
            else:
                memo[n] = n
        return [real(memo[r]) for r in roots]

    def _rules_for(self, op: str) -> tuple[Rule, ...]:
        found = self.by_op.get(op)
        if found is None:
            found = self.by_op[op] = self.rules.for_op(op)
        return found

    def _walk(self) -> None:
        """Settle replacements: operands down, then each node up, then link."""
        memo, stack, up = self.memo, self.stack, self._up
        pop, push, get, active = stack.pop, stack.append, memo.get, _ACTIVE
        while stack:
            stage, n, link = pop()
            if stage == 1:
                up(n)
            elif stage == 0:
                got = get(n)
                if got is not None:
                    if got is active:
                        self._cycle(n, None)
                    continue
                if not n.inputs:
                    memo[n] = n
                    continue
                memo[n] = active
                push((1, n, None))
                for c in reversed(n.inputs):
                    got = get(c)
                    if got is None:
                        push((0, c, None))
                    elif got is active:
                        self._cycle(c, None)
            else:  # the node's final form is its replacement's
                n2, res, _ = link
                final = memo[res]
                memo[n] = final
                if n2 is not None:
                    memo[n2] = final

    def _up(self, n: Node) -> None:
        """Try the rules at `n` (over its operands' final forms); on a hit, queue the
        replacement to be settled. The engine's hot path."""
        memo = self.memo
        node = n
        for c in n.inputs:
            if memo[c] is not c:
                node = Pending(n, [memo[x] for x in n.inputs], self.ctx.uses)
                break
        rules = self.by_op.get(n.op)
        if rules is None:
            rules = self._rules_for(n.op)
        if not rules:
            memo[n] = node  # possibly a Pending: built when something needs it
            return
        ctx, rows, perf = self.ctx, self.rows, time.perf_counter
        res = None
        for rule in rules:
            row = rows[rule]
            t0 = perf()
            try:
                res = rule.matcher(node, ctx)
            except Exception as e:
                e.add_note(f"while applying rule {rule.name} to {describe(node)}")
                raise
            row[2] += perf() - t0
            if res is None or res is node or (node is not n and res is node.built):
                res = None
                row[1] += 1
                continue
            row[0] += 1
            break
        if res is None:
            memo[n] = node
            return
        self._fired(rule, node, res)
        uses = ctx.uses
        if uses is not None:
            uses[res] = uses.get(res, 0) + uses.get(node.origin if node is not n else n, 1)
        n2 = n if node is n else node.built
        got = memo.get(res)
        if got is not None:
            if got is _ACTIVE:
                self._cycle(res, rule)
            memo[n] = got
            if n2 is not None:
                memo[n2] = got
            return
        if not self._rules_for(res.op):
            for c in res.inputs:
                if memo.get(c) is not c:
                    break
            else:  # final already: no rule for its op, and its operands are final
                memo[res] = memo[n] = res
                if n2 is not None:
                    memo[n2] = res
                return
        memo[n] = _ACTIVE
        if n2 is not None:
            memo[n2] = _ACTIVE
        self.stack.append((2, n, (n2, res, rule)))
        self.stack.append((0, res, None))

    def _fired(self, rule: Rule, before: Node | Pending, after: Node) -> None:
        if after.__class__ is not Node:
            raise RewriteTypeError(
                f"rule {rule.name} returned {after!r}; a rewrite returns a Node or None"
            )
        if after.type != before.type:
            raise RewriteTypeError(
                f"rule {rule.name} changed a node's type from {before.type} to {after.type}:\n"
                f"  before: {describe(before)}\n  after:  {describe(after)}\n"
                "a rewrite must keep the type; return None where it would not"
            )
        self.steps += 1
        self.recent.append(rule.name)
        if self.trace is not None:
            self.trace.append(TraceEntry(rule.name, real(before), after))
        limit = self.budget if self.budget is not None else 1024 + 32 * self.size
        if self.steps > limit:
            counts = Counter(self.recent).most_common()
            shown = ", ".join(f"{k} ({c}x)" for k, c in counts)
            raise NonTerminationError(
                f"rewriting did not reach a fixpoint within {limit} rewrites; in the last "
                f"{len(self.recent)} rewrites these rules kept firing: {shown}.\n"
                f"  last rewrite: {describe(before)}\n            -> {describe(after)}\n"
                "make one of these rules stop (each rewrite must make the graph simpler in "
                "some order), or raise the budget if the graph needs that many rewrites",
                [k for k, _ in counts],
            )

    def _cycle(self, again: Node, rule: Rule | None) -> None:
        """`again` is being rewritten and was reached again: name the rules on the way."""
        chain: list[str] = [rule.name] if rule is not None else []
        for stage, n, link in reversed(self.stack):
            if stage != 2:
                continue
            chain.append(link[2].name)
            if n is again or link[0] is again:
                break
        chain.reverse()
        raise NonTerminationError(
            f"rewriting does not terminate: the rules {' -> '.join(chain) or '?'} lead back "
            f"to a node that is still being rewritten:\n  {describe(again)}\n"
            "a rule set must not hold a rewrite and its inverse, nor a rule whose result "
            "contains the node it rewrote",
            list(dict.fromkeys(chain)),
        )
