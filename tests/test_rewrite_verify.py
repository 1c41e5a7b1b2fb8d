"""Verification: a deliberately wrong rule is caught with a readable counterexample; contracts,
assert_equivalent and verify_pass."""

import numpy as np
import pytest
from hypothesis import strategies as st

from smelt.ir import Graph, Node
from smelt.passes import canonicalize
from smelt.rewrite import (
    Contract,
    ContractViolation,
    InstanceError,
    bounded,
    const,
    exact,
    op,
    rule,
    var,
)
from smelt.rewrite.contract import Evaluation, compare, run64
from smelt.testing import assert_equivalent, graphs, tensors, verify_pass, verify_rule


# -- batch-norm folding, right and wrong ---------------------------------------------------------
def _bn_instance(draw) -> Graph:
    """batch_norm over an (N, C) or (N, C, H, W) input, variances down to 1e-3."""
    n, ch = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    shape = (n, ch) + ((draw(st.integers(1, 3)),) * 2 if draw(st.booleans()) else ())
    x = Node.input("x", shape)
    mean, gamma, beta = (Node.constant(draw(tensors((ch,)))) for _ in range(3))
    var_ = np.abs(draw(tensors((ch,), kind="uniform"))).astype(np.float32) + np.float32(1e-3)
    eps = draw(st.sampled_from([1e-5, 1e-3]))
    bn = Node.make("batch_norm", [x, mean, Node.constant(var_), gamma, beta], eps=eps)
    return Graph([x], [bn])


BN = op.batch_norm(var("x"), const("mean"), const("var"), const("gamma"), const("beta"))


def _affine(x, mean, var, gamma, beta, eps):
    s = gamma.value.astype(np.float64) / np.sqrt(var.value.astype(np.float64) + eps)
    t = beta.value - mean.value * s
    view = (-1,) + (1,) * (len(x.shape) - 2)
    s_node = Node.constant(s.reshape(view).astype(np.float32))
    t_node = Node.constant(t.reshape(view).astype(np.float32))
    return Node.make("add", (Node.make("mul", (x, s_node)), t_node))


@rule(BN.named("bn"), contract=exact, instance=_bn_instance)
def bn_to_affine(x, mean, var, gamma, beta, bn):
    """batch_norm(x, m, v, g, b) -> x * s + t, s = g / sqrt(v + eps), t = b - m * s
    (Ioffe & Szegedy 2015, inference form)"""
    return _affine(x, mean, var, gamma, beta, bn.attrs["eps"])


@rule(BN.named("bn"), contract=exact, instance=_bn_instance)
def bn_to_affine_without_eps(x, mean, var, gamma, beta, bn):
    """batch_norm(x, m, v, g, b) -> x * g / sqrt(v) + ...   (WRONG on purpose: drops eps)"""
    return _affine(x, mean, var, gamma, beta, 0.0)


def test_a_correct_rule_verifies():
    report = verify_rule(bn_to_affine, max_examples=60)
    assert report.examples == 60 and report.rewrites == 60


def test_the_rule_that_drops_epsilon_is_caught_with_a_readable_counterexample():
    with pytest.raises(ContractViolation) as e:
        verify_rule(bn_to_affine_without_eps, max_examples=200)
    msg = str(e.value)
    first = msg.splitlines()[0]
    assert first == "rule bn_to_affine_without_eps broke its contract (exact):"
    assert "expected" in msg and "got" in msg and "> allowed" in msg
    assert "graph before:" in msg and "batch_norm(%x" in msg and "eps=" in msg
    assert "graph after:" in msg and "mul(%x" in msg
    assert "input x = [" in msg


# -- contracts and assert_equivalent ------------------------------------------------------------
X = Node.input("x", (2, 3))


def mk(name, *inputs, **attrs):
    return Node.make(name, inputs, **attrs)


def test_contracts_compose_and_print():
    assert exact + exact is exact
    assert str(exact + bounded(0.1) + bounded(0.05, rtol=0.01)) == "bounded(0.15, rtol=0.01)"
    assert Contract("bounded", 1.0).is_exact is False
    with pytest.raises(ValueError):
        Contract("close")


def test_integer_graphs_must_be_bit_exact():
    i = Node.input("i", (4,), "int32")
    one = Node.constant(np.int32(1))
    g1 = Graph([i], [mk("add", i, one)])
    g2 = Graph([i], [mk("add", mk("add", i, one), Node.constant(np.int32(0)))])
    assert assert_equivalent(g1, g2) == 0.0
    g3 = Graph([i], [mk("add", i, Node.constant(np.int32(2)))])
    with pytest.raises(ContractViolation, match="error 1 > allowed 0"):
        assert_equivalent(g1, g3)
    assert assert_equivalent(g1, g3, bounded(1)) == 1.0


def test_equal_infinities_are_not_a_mismatch_beside_a_rounded_output():
    """Found by the fuzzer: an output of -inf in both graphs (a max pool over padding only)
    next to an output that differs by rounding failed as "error 0 > allowed nan" (0 * inf in
    the relative term)."""
    a = (np.array([1.0, -np.inf]), np.array([2.0]))
    b = (np.array([1.0, -np.inf]), np.array([2.0 + 1e-12]))
    want = Evaluation(a, 2.0, 1.0, 2.0**-23)
    got = Evaluation(b, 2.0, 1.0, 2.0**-23)
    assert compare(exact, want, got) is None
    assert compare(bounded(0.5, rtol=0.1), want, got) is None
    worse = Evaluation((np.array([1.0, np.inf]), np.array([2.0])), 2.0, 1.0, 2.0**-23)
    assert compare(exact, want, worse) is not None  # a sign flip to +inf still is


def test_float_tolerance_scales_with_reduction_length():
    rng = np.random.default_rng(0)
    k = 512
    xk = Node.input("x", (4, k))
    w = rng.standard_normal((k, 8)).astype(np.float32)
    g = Graph([xk], [mk("matmul", xk, Node.constant(w))])
    assert run64(g, [np.ones((4, k), np.float32)]).growth == k
    # the product split in two halves and added: exact in real arithmetic
    halves = [mk("matmul", mk("slice", xk, axis=1, start=s, stop=s + k // 2),
                 Node.constant(w[s:s + k // 2])) for s in (0, k // 2)]
    assert assert_equivalent(g, Graph([xk], [mk("add", *halves)])) < 1e-3
    # weights rounded to float16 are not exact: caught on a short reduction
    x8 = Node.input("x", (4, 8))
    w8 = w[:8]
    g8 = Graph([x8], [mk("matmul", x8, Node.constant(w8))])
    g16 = Graph([x8], [mk("matmul", x8, Node.constant(w8.astype(np.float16).astype(np.float32)))])
    with pytest.raises(ContractViolation):
        assert_equivalent(g8, g16)
    assert assert_equivalent(g8, g16, bounded(0.05)) < 0.05


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_placement_must_agree():
    g1 = Graph([X], [mk("log", X)])
    g2 = Graph([X], [mk("log", mk("abs", X))])
    with pytest.raises(ContractViolation, match="expected nan"):
        assert_equivalent(g1, g2, inputs=(np.full((2, 3), -1.0, np.float32),))


def test_verify_pass_on_graphs_and_on_a_strategy():
    g = Graph([X], [mk("relu", mk("relu", mk("mul", X, Node.constant(np.float32(1)))))])
    assert verify_pass(canonicalize(), [g]) == 0.0
    assert verify_pass(canonicalize(), graphs(max_nodes=6), max_examples=15) < 1e-3


def test_a_rule_that_never_fires_has_no_instances():
    @rule(op.relu(var("x")), contract=exact)
    def never(x):
        """relu(x) -> relu(x)   (test: never fires)"""
        return None

    with pytest.raises(InstanceError, match="no random instance"):
        verify_rule(never, max_examples=5)
