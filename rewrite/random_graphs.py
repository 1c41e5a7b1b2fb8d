"""Random well-typed float32 graphs for property tests (`graphs()`).

`graphs()` builds graphs node by node from an op vocabulary. Every node is built with
`Node.make`, with attributes chosen valid for its operands' shapes, so every drawn graph
verifies. The builder tracks each node's value range in real arithmetic (interval bounds); it
keeps every value finite and within `MAX_MAGNITUDE`, and applies log, sqrt, rsqrt, reciprocal
and the divisor of div and base of pow only to operands provably at least `SAFE_MARGIN` away
from zero. These guarantees hold for inputs inside `INPUT_RANGE`, which is where
`graph_inputs()` draws them. The default vocabulary holds continuous ops only (no floor, round,
comparisons or where), so float32 and float64 interpretations of a drawn graph agree within
rounding error. When the op drawn needs a positive operand and the graph has none, the builder
shifts one into range with `add(x, c)`, so log, sqrt and friends appear in graphs of any
vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import assume
from hypothesis import strategies as st

from smelt.ir import Graph, Node
from smelt.ir.ops.common import prod

from .graph_builders import (
    _BUILDERS,
    DEFAULT_VOCABULARY,
    NCHW_OPS,
    SUPPORTED_VOCABULARY,
)
from .graph_scope import (
    _Scope,
)
from .tensor_strategies import (
    INPUT_RANGE,
    MAX_ELEMENTS,
    NODE_NAMES,
    broadcastable_shapes,
    shapes,
)


# -- graphs --------------------------------------------------------------------------------
def _checked_vocabulary(vocabulary: Iterable[str]) -> tuple[str, ...]:
    vocab = tuple(sorted(set(vocabulary)))
    unknown = [op for op in vocab if op not in _BUILDERS]
    if unknown or not vocab:
        raise ValueError(f"graphs(): cannot build {unknown or 'an empty vocabulary'}; "
                         f"supported ops: {', '.join(SUPPORTED_VOCABULARY)}")
    return vocab


def _fits(shape: tuple[int, ...]) -> bool:
    return prod(shape) <= MAX_ELEMENTS


def _input_nodes(draw: st.DrawFn, vocab: tuple[str, ...], max_inputs: int) -> list[Node]:
    """Graph inputs x0, x1, ...: the first is NCHW when the vocabulary needs it; later ones
    repeat an earlier shape, broadcast against it, or are new."""
    count = draw(st.integers(1, max_inputs))
    if NCHW_OPS & set(vocab):
        first = draw(st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 8),
                               st.integers(1, 8)))
    else:
        first = draw(shapes(1, 4, 1, 6).filter(_fits))
    found = [first]
    for _ in range(count - 1):
        base = draw(st.sampled_from(found))
        found.append(draw(st.one_of(st.just(base), broadcastable_shapes(base),
                                    shapes(1, 3, 1, 6))))
    return [Node.input(f"x{i}", s) for i, s in enumerate(found)]


def _outputs(draw: st.DrawFn, built: list[Node], max_outputs: int) -> list[Node]:
    """The last node built, plus up to `max_outputs - 1` other built nodes that no built node
    uses (so that little is left dead)."""
    used = {id(x) for n in built for x in n.inputs}
    used |= {id(x) for n in built for p in n.inputs for x in p.inputs if p.op == "split"}
    sinks = [n for n in built[:-1] if id(n) not in used]
    extra = draw(st.lists(st.sampled_from(sinks), max_size=max_outputs - 1,
                          unique_by=id)) if sinks else []
    return [built[-1], *extra]


def _names(draw: st.DrawFn, built: list[Node]) -> dict[Node, str]:
    """Side-table names for about a third of the nodes, with repeats and a clash with an
    input name, so printers must disambiguate."""
    names = {}
    for n in built:
        if draw(st.integers(0, 2)) == 0:
            names[n] = draw(st.sampled_from(NODE_NAMES))
    return names


@st.composite
def graphs(
    draw: st.DrawFn,
    vocabulary: Iterable[str] = DEFAULT_VOCABULARY,
    max_nodes: int = 12,
    max_inputs: int = 2,
    max_outputs: int = 3,
    named: bool = True,
) -> Graph:
    """Random well-typed float32 graphs from ops in `vocabulary` (see `SUPPORTED_VOCABULARY`;
    "split" builds a split and a project, "constant" adds a constant operand to the pool).

    The graph has 1..`max_inputs` inputs named x0, x1, ... (some may go unused), up to
    `max_nodes` op nodes (a drawn op that fits no operand, or would leave the planned value
    range, is skipped and another drawn), and 1..`max_outputs` outputs: the last node built
    and other nodes nothing uses. With `named`, some nodes get side-table names, repeats and a
    clash with an input name included. Draw inputs for it with `graph_inputs(graph)`.
    """
    vocab = _checked_vocabulary(vocabulary)
    inputs = _input_nodes(draw, vocab, max_inputs)
    scope = _Scope(draw)
    for x in inputs:
        scope.add(x, INPUT_RANGE, built=False)
    target = draw(st.integers(1, max_nodes))
    for _ in range(4 * target + 4):
        if len(scope.built) >= target:
            break
        op = draw(st.sampled_from(vocab))
        _BUILDERS[op](scope, op)
    assume(scope.built)
    outputs = _outputs(draw, scope.built, max_outputs)
    names = _names(draw, scope.built) if named else {}
    return Graph(inputs, outputs, names=names)


