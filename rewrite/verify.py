"""Verification: does a rewritten graph keep its contract with the original?

- `assert_equivalent(g1, g2, contract, inputs)` (equivalence.py, which needs no hypothesis)
  compares two graphs on given or seeded random inputs;
- `verify_rule(rule)` is a hypothesis property: on random instances of the rule's pattern
  where the rule fires, the rewritten graph keeps the rule's contract. A failure is shrunk
  by hypothesis; the error printed is the shrunk counterexample.
- `verify_pass(pass_, graphs)` checks a pass's contract on given graphs (or a strategy).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from smelt.ir.graph import Graph

from .driver import rewrite
from .equivalence import assert_equivalent, format_counterexample, sample_inputs
from .errors import InstanceError
from .instances import instances
from .rule import Rule, RuleSet
from .strategies import graph_inputs

__all__ = ["RuleReport", "assert_equivalent", "format_counterexample", "sample_inputs",
           "verify_pass", "verify_rule"]


@dataclass(frozen=True)
class RuleReport:
    """What `verify_rule` ran: examples where the rule fired and was checked."""

    rule: str
    examples: int
    rewrites: int


def verify_rule(rule: Rule, max_examples: int | None = None, *,
                settings_: settings | None = None) -> RuleReport:
    """Check `rule`'s contract on random instances of its pattern where it fires (hypothesis,
    `max_examples` of them; the loaded profile's default otherwise). Raises ContractViolation
    with the shrunk counterexample, or InstanceError when no instance makes the rule fire."""
    ruleset = RuleSet([rule])
    base = settings_ or settings()
    chosen = settings(base, max_examples=max_examples or base.max_examples, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                             HealthCheck.data_too_large])
    seen = {"examples": 0, "rewrites": 0}

    @chosen
    @given(data=st.data())
    def holds(data: st.DataObject) -> None:
        graph = data.draw(instances(rule), label="instance")
        result = rewrite(graph, ruleset)
        assume(result.rewrites > 0)
        batch = data.draw(graph_inputs(graph), label="inputs")
        assert_equivalent(graph, result.graph, rule.contract, [batch], what=f"rule {rule.name}")
        seen["examples"] += 1
        seen["rewrites"] += result.rewrites

    try:
        holds()
    except Unsatisfiable:
        raise InstanceError(
            f"rule {rule.name}: no random instance of its pattern made it fire; give the rule "
            "an instance builder (rule(..., instance=fn), fn(draw) -> Graph)"
        ) from None
    return RuleReport(rule.name, seen["examples"], seen["rewrites"])


def verify_pass(pass_: Any, graphs: Iterable[Graph] | st.SearchStrategy[Graph], *,
                samples: int = 2, max_examples: int | None = None) -> float:
    """Check `pass_`'s contract on each graph (a list, or a hypothesis strategy of graphs);
    returns the largest output difference seen."""
    contract = pass_.contract
    what = f"pass {pass_.spec() if hasattr(pass_, 'spec') else pass_!r}"
    if isinstance(graphs, st.SearchStrategy):
        worst = [0.0]
        chosen = settings(settings(), deadline=None,
                          max_examples=max_examples or settings().max_examples)

        @chosen
        @given(graph=graphs, data=st.data())
        def holds(graph: Graph, data: st.DataObject) -> None:
            out = pass_(graph).graph
            batch = data.draw(graph_inputs(graph), label="inputs")
            worst[0] = max(worst[0], assert_equivalent(graph, out, contract, [batch],
                                                       what=what))

        holds()
        return worst[0]
    worst = 0.0
    for i, graph in enumerate(graphs):
        out = pass_(graph).graph
        worst = max(worst, assert_equivalent(graph, out, contract, samples=samples, seed=i,
                                             what=what))
    return worst
