"""Every registered rule keeps its contract on random instances of its pattern (new rules are
covered without new test code), and the shipped families do what their docs say: how many
rewrites fired, the structure that results, and the numbers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smelt.ir import Graph, Node, interpret
from smelt.passes import CANONICALIZE, FUSE
from smelt.rewrite import rewrite, rules
from smelt.testing import instances, verify_rule

EXAMPLES = 200


@pytest.mark.parametrize("rule", list(rules()), ids=lambda r: r.name)
def test_every_registered_rule_keeps_its_contract(rule):
    report = verify_rule(rule, max_examples=EXAMPLES)
    assert report.examples >= EXAMPLES, (
        f"only {report.examples} instances of {rule.name} fired; give it an instance builder"
    )


@pytest.mark.parametrize("rule", list(rules()), ids=lambda r: r.name)
@settings(max_examples=25)
@given(data=st.data())
def test_compiled_matchers_agree_with_the_pattern_interpreter(rule, data):
    root = data.draw(instances(rule)).outputs[0]
    compiled, interpreted = rule.matcher(root, None), rule.apply(root)
    if compiled is not None and compiled.op == "constant":  # folded: equal values
        np.testing.assert_array_equal(compiled.value, interpreted.value)
    else:
        assert compiled is interpreted


def test_registered_rules_are_documented():
    registered = list(rules())
    assert len({r.name for r in registered}) == len(registered) >= 25
    for r in registered:
        assert "->" in r.summary and r.family, r.name


rng = np.random.default_rng(1)
X = Node.input("x", (3, 4))


def mk(name, *inputs, **attrs):
    return Node.make(name, inputs, **attrs)


def c(value, dtype=np.float32):
    return Node.constant(np.asarray(value, dtype))


def _same_numbers(g1: Graph, g2: Graph) -> None:
    a = rng.standard_normal(X.shape).astype(np.float32)
    for p, q in zip(interpret(g1, a), interpret(g2, a), strict=True):
        np.testing.assert_array_equal(p, q)


def _ops(g: Graph) -> list[str]:
    return [n.op for n in g.nodes() if n.op not in ("input", "constant")]


def test_canonicalize_identities_and_folding():
    folded = mk("add", c([1.0, 2.0, 3.0, 4.0]), mk("mul", c(2.0), c(3.0)))
    h = mk("transpose", mk("transpose", mk("mul", c(1.0), X), perm=[1, 0]), perm=[1, 0])
    h = mk("cast", mk("cast", mk("sub", h, c(0.0)), dtype="float64"), dtype="float32")
    h = mk("reshape", mk("flatten", mk("add", h, folded), start_axis=0), shape=[4, 3])
    g = Graph([X], [mk("relu", mk("relu", h))])
    res = rewrite(g, CANONICALIZE)
    assert res.stats.fired() == {
        "mul_one": 1, "transpose_transpose": 1, "sub_zero": 1, "cast_lossless_chain": 1,
        "shape_op_to_reshape": 1, "reshape_reshape": 1, "relu_relu": 1, "fold_constants": 2,
    }
    assert _ops(res.graph) == ["add", "reshape", "relu"]
    _same_numbers(g, res.graph)


def test_canonicalize_leaves_what_it_must_not_touch():
    i8 = Node.input("q", (4,), "int8")
    g = Graph([X, i8], [
        mk("mul", X, c(np.ones((2, 3, 4)))),            # the one would broadcast x
        mk("cast", mk("cast", i8, dtype="float16"), dtype="int32"),  # lossless: folds
        mk("cast", mk("cast", X, dtype="float16"), dtype="float32"),  # rounds: kept
        mk("slice", X, axis=1, start=1),                # drops elements
    ])
    res = rewrite(g, CANONICALIZE)
    assert res.stats.fired() == {"cast_lossless_chain": 1}
    assert [o.op for o in res.graph.outputs] == ["mul", "cast", "cast", "slice"]
    assert res.graph.outputs[1].inputs[0] is i8


def test_fuse_builds_one_op_per_block_and_keeps_shared_products():
    w1, w2 = c(rng.standard_normal((4, 4))), c(rng.standard_normal((4, 4)))
    b = c(rng.standard_normal(4))
    h = mk("relu", mk("add", mk("matmul", X, w1), b))
    shared = mk("matmul", h, w2)  # two users: must not be fused into either
    g = Graph([X], [mk("relu6", shared), mk("add", b, shared), mk("relu6", mk("matmul", h, w1))])
    res = rewrite(g, FUSE)
    assert res.stats.fired() == {"fuse_addend": 1, "fuse_epilogue_activation": 1,
                                 "fuse_activation": 1}
    assert [o.op for o in res.graph.outputs] == ["relu6", "add", "fused_matmul"]
    assert res.graph.outputs[2].attrs["activation"] == "relu6"
    _same_numbers(g, res.graph)
