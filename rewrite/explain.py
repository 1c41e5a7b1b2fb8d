"""`explain(node, rules)`: which rules fire at a node, and for those that do not, the nearest
partial match and why it failed.

    >>> print(explain(node, smelt.rules()))
    explain add(matmul(x, const f32[8,8]), relu(...)) : f32[1,8]
      fuse_matmul_bias   no match  3 of 5 pattern nodes; at add.b: [single_use] has 2 uses
                         pattern: add(p=matmul(a, b)[single_use], c)
      add_zero           no match  1 of 3 pattern nodes; at add.b: expected a constant, ...

Rules are tried as the driver would (only those whose root op can be the node's), with the
node's use counts from `graph` when given (single-use checks pass without one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from smelt.ir.graph import Graph
from smelt.ir.node import Node

from .checks import MatchContext
from .describe import describe
from .driver import as_ruleset, use_counts
from .pattern import MissLog
from .registry import rules as registered_rules
from .rule import NoMatch, Rule, RuleSet


@dataclass(frozen=True)
class Attempt:
    """One rule tried at the node. `status` is "fires", "rejected" (the pattern matched but
    the rewrite refused) or "no match"; `matched` of `size` pattern nodes matched."""

    rule: Rule
    status: str
    matched: int
    size: int
    where: str = ""
    reason: str = ""
    result: Node | None = None

    def line(self, width: int) -> str:
        head = f"{self.rule.name:<{width}}  {self.status:<8}"
        if self.status == "fires":
            return f"{head}  -> {describe(self.result)}"
        if self.status == "rejected":
            return f"{head}  pattern matched; the rewrite refused: {self.reason}"
        return (f"{head}  {self.matched} of {self.size} pattern nodes; at {self.where}: "
                f"{self.reason}")


@dataclass(frozen=True)
class Explanation:
    node: Node
    attempts: tuple[Attempt, ...]
    skipped: int  # rules whose root cannot be this node's op

    @property
    def nearest(self) -> Attempt | None:
        """The rule that fires, else the one that came closest."""
        return self.attempts[0] if self.attempts else None

    def __str__(self) -> str:
        lines = [f"explain {describe(self.node)}"]
        if not self.attempts:
            lines.append(f"  no rule can match {self.node.op} nodes")
        width = max([len(a.rule.name) for a in self.attempts] + [4])
        for a in self.attempts:
            lines.append("  " + a.line(width))
            if a.status == "no match":
                lines.append("  " + " " * width + f"            pattern: {a.rule.pattern!r}")
        if self.skipped:
            lines.append(f"  ({self.skipped} other rules cannot match {self.node.op} nodes)")
        return "\n".join(lines)


def explain(node: Node, rules: Rule | RuleSet | Iterable[Rule] | None = None,
            graph: Graph | None = None) -> Explanation:
    """Try each rule that can match `node` (default: every registered rule) and report."""
    ruleset = as_ruleset(rules) if rules is not None else registered_rules()
    ctx = MatchContext(use_counts(graph.nodes(), graph.outputs) if graph is not None else None)
    candidates = ruleset.for_op(node.op)
    attempts = [_attempt(r, node, ctx) for r in candidates]
    order = {"fires": 0, "rejected": 1, "no match": 2}
    attempts.sort(key=lambda a: (order[a.status], -a.matched / max(a.size, 1)))
    return Explanation(node, tuple(attempts), len(ruleset) - len(candidates))


def _attempt(rule: Rule, node: Node, ctx: MatchContext) -> Attempt:
    size = rule.pattern.size()
    log = MissLog()
    found = rule.pattern._match(node, {}, ctx, log)
    if not found:
        best = log.best
        if best is None:
            return Attempt(rule, "no match", 0, size, "root", "no match")
        return Attempt(rule, "no match", best.matched, size, best.path, best.reason)
    reason = "returned None"
    for caps in found:
        out = rule.fn(**caps)
        if isinstance(out, Node) and out is not node:
            return Attempt(rule, "fires", size, size, result=out)
        if isinstance(out, NoMatch):
            reason = out.reason
    return Attempt(rule, "rejected", size, size, reason=reason)
