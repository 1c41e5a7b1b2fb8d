"""The IR's core promises: hash-consing, immutability, typing at build, weights by identity,
costs, and no pickle anywhere."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import smelt
from smelt.ir import Graph, Node, TypeInferenceError, const, make


def _x(shape=(2, 8)) -> Node:
    return Node.input("x", shape)


def test_structurally_equal_nodes_are_one_object() -> None:
    x = _x()
    w = const(np.ones((4, 8), np.float32))
    a = make("relu", make("linear", x, w))
    b = make("relu", make("linear", x, w))
    assert a is b
    assert make("relu", x) is not make("sigmoid", x)
    # attributes are part of identity, defaults filled in
    assert make("leaky_relu", x) is make("leaky_relu", x, alpha=0.01)
    assert make("leaky_relu", x, alpha=0.2) is not make("leaky_relu", x)


def test_small_constants_by_value_weights_by_identity() -> None:
    assert const(np.float32(1.0)) is const(np.array(1.0, np.float32))
    assert const(np.float32(0.0)) is not const(np.float32(-0.0))
    big = np.zeros((64, 64), np.float32)
    c1, c2 = const(big), const(big)
    assert c1 is not c2  # each writable array is copied; identity is the copy's
    assert c1.content_hash == c2.content_hash
    frozen = c1.value
    assert const(frozen) is c1  # a read-only array is kept, not copied
    assert not frozen.flags.writeable


def test_nodes_are_immutable_and_not_picklable() -> None:
    n = make("relu", _x())
    with pytest.raises(AttributeError):
        n.op = "sigmoid"  # type: ignore[misc]
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(n)
    g = Graph([_x()], [n])
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(g)


def test_types_inferred_at_build_with_readable_errors() -> None:
    x = Node.input("x", (1, 3, 8, 8))
    w = const(np.ones((4, 3, 3, 3), np.float32))
    y = make("conv2d", x, w, stride=2, padding=1)
    assert y.shape == (1, 4, 4, 4) and y.dtype == "float32"
    with pytest.raises(TypeInferenceError, match="groups=2 must divide"):
        make("conv2d", x, w, groups=2)
    with pytest.raises(TypeInferenceError, match="do not broadcast"):
        make("add", Node.input("a", (2, 3)), Node.input("b", (4,)))
    with pytest.raises(TypeInferenceError, match="unknown attribute"):
        make("relu", x, alpha=1.0)
    with pytest.raises(TypeInferenceError, match="unknown op 'nope'"):
        make("nope", x)
    with pytest.raises(TypeInferenceError, match="takes 1 input"):
        make("relu", x, x)


def test_cost_counts_macs_and_bytes() -> None:
    x = Node.input("x", (2, 16))
    w = const(np.ones((32, 16), np.float32))
    y = make("linear", x, w)
    g = Graph([x], [make("relu", y)])
    cost = g.cost()
    assert cost.macs == 2 * 32 * 16
    # linear moves x, w and y; relu moves y twice
    assert cost.bytes == 4 * (2 * 16 + 32 * 16 + 2 * 32) + 4 * 2 * (2 * 32)
    s = g.summary()
    assert s.params == 32 * 16 and s.ops == {"constant": 1, "input": 1, "linear": 1, "relu": 1}


def test_to_networkx_and_deep_graphs_without_recursion() -> None:
    x = _x((4,))
    y = x
    for _ in range(20_000):  # far past Python's recursion limit
        y = make("neg", y)
    g = Graph([x], [y])
    assert len(g.nodes()) == 20_001
    nxg = g.to_networkx()
    assert nxg.number_of_nodes() == 20_001 and nxg.number_of_edges() == 20_000
    (out,) = smelt.interpret(g, np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(out, np.arange(4, dtype=np.float32))


def test_interpreter_checks_inputs() -> None:
    x = _x((2, 3))
    g = Graph([x], [make("relu", x)])
    with pytest.raises(smelt.InterpretError, match="shape"):
        smelt.interpret(g, np.zeros((3, 2), np.float32))
    with pytest.raises(smelt.InterpretError, match="missing"):
        smelt.interpret(g)
    (y,) = smelt.interpret(g, x=np.full((2, 3), -1.0, np.float32))
    assert (y == 0).all()


def test_float64_mode_upcasts_everything() -> None:
    x = _x((3,))
    g = Graph([x], [make("mul", make("cast", x, dtype="float32"), const(np.float32(0.1)))])
    (lo,) = smelt.interpret(g, np.ones(3, np.float32))
    (hi,) = smelt.interpret(g, np.ones(3, np.float32), precision="float64")
    assert lo.dtype == np.float32 and hi.dtype == np.float64
    assert hi[0] == np.float64(np.float32(0.1))
