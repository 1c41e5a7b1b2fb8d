"""Symbolic dimensions (issue: dynamic shapes, must show 1): inferring with symbols and then
substituting sizes equals inferring at those sizes; symbolic types print and parse back;
the interpreter runs one symbolic graph at every size in range and refuses others."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import assume, given
from hypothesis import strategies as st

import smelt
from smelt.ir import Graph, Node, parse_graph
from smelt.ir.dims import (
    SymDim,
    as_dim,
    evaluate,
    format_dim,
    parse_dim,
    size_range,
    specialize_value,
)
from smelt.ir.errors import InterpretError, ParseError, TypeInferenceError
from smelt.ir.ops.shape import slice_bounds, slice_length
from smelt.ir.specialize import make_dynamic, specialize
from smelt.ir.text_format import print_graph
from smelt.rewrite.random_graphs import graphs
from smelt.rewrite.tensor_strategies import graph_inputs

N = SymDim("n", 1, 64)
S = SymDim("s", 2, 512)
DECLARED = {"n": N, "s": S}


# -- dimension expressions -----------------------------------------------------------------------
@st.composite
def expressions(draw, depth: int = 3) -> sympy.Expr:
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from([N, S, sympy.Integer(draw(st.integers(0, 9)))]))
    a, b = draw(expressions(depth - 1)), draw(expressions(depth - 1))
    kind = draw(st.sampled_from(["+", "-", "*", "//", "max", "min"]))
    if kind == "//":
        return sympy.floor(a / draw(st.integers(1, 4)))
    return {"+": a + b, "-": a - b, "*": a * b, "max": sympy.Max(a, b),
            "min": sympy.Min(a, b)}[kind]


@given(expressions())
def test_a_dimension_prints_and_parses_back(e):
    d = as_dim(e)
    assert parse_dim(format_dim(d), DECLARED) == d


@given(expressions(), st.integers(1, 64), st.integers(2, 512))
def test_size_range_bounds_every_value(e, n, s):
    d = as_dim(e)
    lo, hi = size_range(d)
    assert lo <= evaluate(d, {"n": n, "s": s}) <= hi


@given(st.integers(1, 64), st.integers(-70, 70), st.integers(-70, 70), st.integers(1, 3))
def test_a_symbolic_slice_has_the_length_python_gives(n, start, stop, step):
    length = slice_length(N, start, stop, step)
    assert evaluate(length, {"n": n}) == len(slice_bounds(n, start, stop, step))


# -- graphs --------------------------------------------------------------------------------------
def _lift(g: Graph) -> tuple[Graph, int] | None:
    """`g` with its first input's batch axis made `n` (every input axis 0 of the same size),
    or None where a size was baked into an attribute."""
    b = g.inputs[0].shape[0] if g.inputs[0].shape else 1
    if not 2 <= b <= N.hi:
        return None
    axes = {x.attrs["name"]: {0: N} for x in g.inputs if x.shape and x.shape[0] == b}
    try:
        return make_dynamic(g, axes), b
    except TypeInferenceError:
        return None


@given(graphs(max_nodes=8), st.sampled_from([1, 5, 64]))
def test_symbolic_inference_then_sizes_equals_inference_at_those_sizes(g, size):
    lifted = _lift(g)
    assume(lifted is not None)
    gn, b = lifted
    # at the traced size, every node's type is the traced graph's
    for a, c in zip(specialize(gn, {"n": b}).nodes(), g.nodes(), strict=True):
        assert a.type == c.type, (a.op, a.type, c.type)
    # at another size: the symbolic types, substituted, are what inference at that size says
    try:
        at = specialize(gn, {"n": size})
    except TypeInferenceError:
        assume(False)  # an op that needs n > 1 (a reflect pad, a squeeze of size 1) at n = 1
    for a, c in zip(gn.nodes(), at.nodes(), strict=True):
        if hasattr(a.type, "shape"):
            assert specialize_value(a.type.shape, {"n": size}) == c.type.shape, a.op


@given(graphs(max_nodes=8), st.data())
def test_a_symbolic_graph_runs_at_any_size_like_its_specialization(g, data):
    lifted = _lift(g)
    assume(lifted is not None)
    gn, _ = lifted
    size = data.draw(st.sampled_from([2, 7, 64]))
    try:
        at = specialize(gn, {"n": size})
    except TypeInferenceError:
        assume(False)
    xs = data.draw(graph_inputs(at))
    want = smelt.interpret(at, *xs)
    got = smelt.interpret(gn, *xs)
    for w, y in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, y)


@given(graphs(max_nodes=8))
def test_a_symbolic_graph_prints_and_parses_back(g):
    lifted = _lift(g)
    assume(lifted is not None)
    text, weights = print_graph(lifted[0])
    assert "where n in [1, 64]" in text.splitlines()[0]
    back = parse_graph(text, weights)
    assert print_graph(back)[0] == text
    assert back.outputs == lifted[0].outputs  # hash-consed: the same nodes


def test_attributes_hold_symbolic_sizes():
    x = Node.input("x", (N, S, 8))
    y = Node.make("reshape", [x], shape=[N * S, 8])
    z = Node.make("reshape", [Node.make("relu", [y])], shape=[N, S * 8])
    g = Graph([x], [z])
    text, _ = print_graph(g)
    assert "shape=[n*s, 8]" in text and "f32[n,8*s]" in text
    assert parse_graph(text).outputs == (z,)
    a = np.random.default_rng(0).standard_normal((3, 5, 8)).astype(np.float32)
    np.testing.assert_array_equal(smelt.interpret(g, a)[0], np.maximum(a, 0).reshape(3, 40))


def test_broadcast_and_concat_keep_symbols():
    x = Node.input("x", (N, S, 16))
    bias = Node.constant(np.ones((1, 1, 16), np.float32))
    assert Node.make("add", [x, bias]).shape == (N, S, 16)
    assert Node.make("concat", [x, x], axis=1).shape == (N, 2 * S, 16)
    with pytest.raises(TypeInferenceError, match="do not broadcast"):
        Node.make("add", [x, Node.input("y", (N, 7, 16))])  # s may not be 7


def test_inputs_outside_the_range_or_inconsistent_are_refused():
    x, t = Node.input("x", (N, 4)), Node.input("t", (N, S))
    g = Graph([x, t], [Node.make("relu", [x]), Node.make("relu", [t])])
    ok = np.zeros((3, 4), np.float32), np.zeros((3, 9), np.float32)
    assert [o.shape for o in smelt.interpret(g, *ok)] == [(3, 4), (3, 9)]
    with pytest.raises(InterpretError, match="outside n's range"):
        smelt.interpret(g, np.zeros((65, 4), np.float32), np.zeros((65, 9), np.float32))
    with pytest.raises(InterpretError, match="n is 3 elsewhere"):
        smelt.interpret(g, ok[0], np.zeros((4, 9), np.float32))
    with pytest.raises(InterpretError, match="outside s's range"):
        smelt.interpret(g, ok[0], np.zeros((3, 1), np.float32))


@pytest.mark.parametrize("text, why", [
    ("graph main(%x: f32[m,3]) {", "a symbol the graph header declares"),
    ("graph main(%x: f32[m,3]) where n in [1, 4] {", "m is not declared"),
    ("graph main(%x: f32[n,3]) where n in [5, 1] {", "range"),
    ("graph main(%x: f32[n*,3]) where n in [1, 5] {", "expected a number"),
    ("graph main(%x: f32[n,3]) where n in [1, 5], n in [1, 5] {", "declared twice"),
    ("graph main(%x: f32[n,3]) where n in [1] {", "two integers"),
    ("graph main(%x: f32[max,3]) where max in [1, 4] {", "keyword"),
])
def test_bad_declarations_are_parse_errors(text, why):
    with pytest.raises(ParseError, match=why):
        parse_graph(text + "\n  return %x\n}")


def test_specialize_and_make_dynamic_say_what_is_wrong():
    x = Node.input("x", (2, 12))
    g = Graph([x], [Node.make("reshape", [x], shape=[24])])  # batch 2 baked into the target
    with pytest.raises(TypeInferenceError, match="reshape"):
        make_dynamic(g, {"x": {0: N}})
    with pytest.raises(TypeInferenceError, match="no input named y"):
        make_dynamic(g, {"y": {0: N}})
    with pytest.raises(TypeInferenceError, match="outside n's range"):
        make_dynamic(Graph([Node.input("x", (65, 2))], [Node.input("x", (65, 2))]),
                     {"x": {0: N}})
    gn = Graph([Node.input("x", (N, 3))], [Node.input("x", (N, 3))])
    with pytest.raises(TypeInferenceError, match="needs a size for n"):
        specialize(gn, {})
    with pytest.raises(TypeInferenceError, match="outside its range"):
        specialize(gn, {"n": 0})
