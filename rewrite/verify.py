"""Verification: does a rewritten graph keep its contract with the original?

- `assert_equivalent(g1, g2, contract, inputs)` runs both graphs in the float64 reference
  interpreter on the given (or seeded random) inputs and raises ContractViolation with a
  counterexample (both graphs printed, constants and inputs included) when they disagree
  beyond what the contract allows (see contract.py for the tolerances).
- `verify_rule(rule)` is a hypothesis property: on random instances of the rule's pattern
  where the rule fires, the rewritten graph keeps the rule's contract. A failure is shrunk
  by hypothesis; the error printed is the shrunk counterexample.
- `verify_pass(pass_, graphs)` checks a pass's contract on given graphs (or a strategy).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from smelt.ir.graph import Graph
from smelt.ir.text_format import print_graph
from smelt.ir.types import is_float

from .contract import Contract, Mismatch, compare, exact, run64
from .driver import rewrite
from .errors import ContractViolation, InstanceError
from .instances import instances
from .rule import Rule, RuleSet
from .strategies import graph_inputs, to_dtype


def sample_inputs(graph: Graph, count: int = 2, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    """`count` seeded random batches for `graph`: floats normal in [-3, 3], integers in
    [-8, 8] (clipped to the dtype), bools either way."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        batch = []
        for x in graph.inputs:
            t = x.tensor_type
            if is_float(t.dtype):
                values = np.clip(rng.standard_normal(t.shape), -3.0, 3.0)
            else:
                values = rng.integers(-8, 9, size=t.shape).astype(np.float64)
            batch.append(to_dtype(values, t.dtype))
        batches.append(tuple(batch))
    return batches


def _batches(graph: Graph, inputs: Any, samples: int, seed: int) -> list[tuple[Any, ...]]:
    if inputs is None:
        return sample_inputs(graph, samples, seed)
    if isinstance(inputs, tuple) and len(inputs) == len(graph.inputs) and all(
        hasattr(a, "shape") for a in inputs
    ):
        return [inputs]
    out = []
    for batch in inputs:
        out.append(tuple(batch) if isinstance(batch, tuple | list) else (batch,))
    return out


def format_counterexample(before: Graph, after: Graph, batch: Sequence[Any]) -> str:
    """Both graphs (with their constants) and the inputs, as text."""
    parts = []
    for label, g in (("graph before", before), ("graph after", after)):
        text, weights = print_graph(g)
        parts.append(f"{label}:\n{text.rstrip()}")
        for key, w in weights.items():
            parts.append(f"  @{key} = {_show_array(w)}")
    for x, a in zip(before.inputs, batch, strict=True):
        parts.append(f"input {x.attrs['name']} = {_show_array(np.asarray(a))}")
    return "\n".join(parts)


def _show_array(a: np.ndarray) -> str:
    text = np.array2string(a, precision=17, separator=", ", threshold=64,
                           max_line_width=96, floatmode="maxprec")
    return f"{text} ({a.dtype}{list(a.shape)})".replace("\n", "\n    ")


def assert_equivalent(g1: Graph, g2: Graph, contract: Contract = exact, inputs: Any = None, *,
                      samples: int = 2, seed: int = 0, what: str = "the rewrite") -> float:
    """Raise ContractViolation when `g2` breaks `contract` with `g1` on `inputs` (one batch
    as a tuple of arrays, an iterable of batches, or None for `samples` seeded random
    batches). Returns the largest output difference seen."""
    worst = 0.0
    for batch in _batches(g1, inputs, samples, seed):
        ref, got = run64(g1, batch), run64(g2, batch)
        bad = compare(contract, ref, got)
        if bad is not None:
            raise ContractViolation(_message(what, contract, bad, g1, g2, batch))
        worst = max(worst, _max_error(ref.outputs, got.outputs))
    return worst


def _message(what: str, contract: Contract, bad: Mismatch, g1: Graph, g2: Graph,
             batch: Sequence[Any]) -> str:
    return (f"{what} broke its contract ({contract}):\n  {bad}\n"
            f"{format_counterexample(g1, g2, batch)}")


def _max_error(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x.size and x.shape == y.shape:
            with np.errstate(invalid="ignore"):
                d = np.abs(x.astype(np.float64) - y.astype(np.float64))
            d = d[np.isfinite(d)]
            if d.size:
                worst = max(worst, float(d.max()))
    return worst


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
