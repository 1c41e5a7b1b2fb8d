"""Patterns: ops and sugar, captures, commutative operands, constraints, alternatives, and
rule declarations that are refused."""

import numpy as np
import pytest

from smelt.ir import Node
from smelt.rewrite import (
    RuleDefinitionError,
    RuleSet,
    any_of,
    any_op,
    const,
    exact,
    op,
    reject,
    rule,
    var,
)
from smelt.rewrite.checks import MatchContext
from smelt.rewrite.pattern import MissLog

X = Node.input("x", (2, 3))
Y = Node.input("y", (2, 3))
ONE = Node.constant(np.float32(1.0))
W = Node.constant(np.full((3, 4), 0.5, np.float32))


def mk(name, *inputs, **attrs):
    return Node.make(name, inputs, **attrs)


def test_op_pattern_and_sugar_capture_operands():
    x, w = var("x"), const("w")
    caps = (x @ w).match(mk("matmul", X, W))
    assert caps == {"x": X, "w": W}
    xt = Node.input("xt", (3, 4))
    assert (x @ w).match(mk("matmul", X, xt)) is None  # w must be a constant
    assert op.relu(x).match(mk("neg", X)) is None
    p = op.relu(op.add(x, var("b")))
    assert p.match(mk("relu", mk("add", X, Y))) == {"x": X, "b": Y}


def test_numbers_in_patterns_match_constants_of_that_value():
    x = var("x")
    assert (x * 1).match(mk("mul", X, ONE)) == {"x": X}
    two = Node.constant(np.float32(2.0))
    assert (x * 1).match(mk("mul", X, two)) is None
    ones = Node.constant(np.ones(3, np.float32))
    assert (x * 1.0).match(mk("mul", X, ones)) == {"x": X}


def test_commutative_ops_match_both_operand_orders_with_one_pattern():
    x = var("x")
    p = x * const("one", 1)
    assert p.match(mk("mul", X, ONE)) == {"x": X, "one": ONE}
    assert p.match(mk("mul", ONE, X)) == {"x": X, "one": ONE}
    # sub is not commutative: 1 - x does not match x - 1
    assert (x - const("one", 1)).match(mk("sub", ONE, X)) is None
    # every way is returned: both orders of add(x, y) match add(a, b)
    assert len(op.add(var("a"), var("b")).matches(mk("add", X, Y))) == 2


def test_repeated_capture_names_must_bind_the_same_node():
    p = op.maximum(var("x"), var("x"))
    assert p.match(mk("maximum", X, X)) == {"x": X}
    assert p.match(mk("maximum", X, Y)) is None


def test_commutative_matching_backtracks_into_operands():
    # add(mul(a, b), b): the mul's operand order must be revisited to bind b consistently
    a, b = var("a"), var("b")
    p = op.add(op.mul(a, b), b)
    node = mk("add", mk("mul", Y, X), Y)
    assert p.match(node) == {"a": X, "b": Y}


def test_constraints_dtype_shape_rank_constant():
    x = var("x")
    i = Node.input("i", (2, 3), "int32")
    assert x.dtype("float32").match(X) == {"x": X}
    assert x.dtype("float32").match(i) is None
    assert x.rank(2).match(X) is not None and x.rank(3).match(X) is None
    assert x.shape((2, 3)).match(X) is not None and x.shape((3, 2)).match(X) is None

    def wide(shape):
        return shape[-1] >= 3 or f"last axis {shape[-1]} < 3"

    assert x.shape(wide).match(X) is not None
    assert x.constant().match(ONE) is not None and x.constant().match(X) is None


def test_attribute_values_and_predicates():
    t = mk("transpose", X, perm=[1, 0])
    assert op.transpose(var("x"), perm=(1, 0)).match(t) is not None
    assert op.transpose(var("x"), perm=[1, 0]).match(t) is not None  # lists are frozen
    assert op.transpose(var("x"), perm=(0, 1)).match(t) is None

    def swaps(perm):
        return tuple(perm) == (1, 0)

    assert op.transpose(var("x"), perm=swaps).match(t) is not None


def test_single_use_reads_use_counts_from_the_context():
    mm = mk("matmul", X, W)
    p = op.relu(op.matmul(var("a"), var("b")).single_use())
    node = mk("relu", mm)
    assert p.match(node, MatchContext({mm: 1})) is not None
    assert p.match(node, MatchContext({mm: 2})) is None
    assert p.match(node) is not None  # no graph known: passes


def test_alternatives_and_multi_op_patterns():
    x = var("x")
    p = any_of(op.relu(x), op.relu6(x))
    assert p.match(mk("relu6", X)) == {"x": X}
    assert p.root_ops() == frozenset({"relu", "relu6"})
    assert (op.relu(x) | op.neg(x)).match(mk("neg", X)) is not None
    assert op("maximum|minimum", x, x).match(mk("minimum", X, X)) is not None
    assert any_op().root_ops() is None
    assert any_op(x).match(mk("exp", X)) == {"x": X}


def test_predicates_explain_why_they_fail():
    def positive_sized(node):
        return node.type.size > 100 or f"only {node.type.size} elements"

    p = op.relu(var("x").where(positive_sized))
    log = MissLog()
    assert p._match(mk("relu", X), {}, None, log) == []
    assert "only 6 elements" in log.best.reason
    assert log.best.path == "relu.x"


def test_patterns_print_readably():
    p = op.relu(op.add(op.matmul(var("x"), const("w")).single_use(), var("b")))
    assert repr(p) == "relu(add(matmul(x, w:const)[single_use], b))"
    assert repr(var("x") * 1) == "mul(x, const(1))"


def test_bad_declarations_are_refused():
    with pytest.raises(RuleDefinitionError, match="unknown op"):
        op("relux", var("x"))
    with pytest.raises(RuleDefinitionError, match="unknown op"):
        op.relux  # noqa: B018
    with pytest.raises(RuleDefinitionError, match="named functions"):
        var("x").where(lambda n: True)
    with pytest.raises(RuleDefinitionError, match="lhs -> rhs"):
        @rule(op.relu(var("x")), contract=exact)
        def no_doc(x):
            return x
    with pytest.raises(RuleDefinitionError, match="not captured"):
        @rule(op.relu(var("x")), contract=exact)
        def wrong_params(y):
            """relu(x) -> x"""
            return y
    with pytest.raises(RuleDefinitionError, match="named function"):
        rule(op.relu(var("x")), contract=exact)(lambda x: x)


def test_rule_sets_compose_with_plus_and_index_by_root_op():
    @rule(op.relu(var("x")), contract=exact)
    def r1(x):
        """relu(x) -> x   (test)"""
        return x

    @rule(op.neg(var("x")), contract=exact)
    def r2(x):
        """neg(x) -> x   (test)"""
        return reject("never")

    @rule(any_op(), contract=exact)
    def r3():
        """anything -> nothing   (test)"""
        return None

    rs = r1 + r2 + r3
    assert isinstance(rs, RuleSet) and rs.names() == ["r1", "r2", "r3"]
    assert [r.name for r in rs.for_op("relu")] == ["r1", "r3"]
    assert [r.name for r in rs.for_op("exp")] == ["r3"]
    assert r1.apply(mk("relu", X)) is X
    assert r2.apply(mk("neg", X)) is None
    assert "relu(x) -> x" in str(rs)
    with pytest.raises(RuleDefinitionError, match="two different rules"):
        @rule(op.exp(var("x")), contract=exact)
        def r1(x):  # noqa: F811
            """exp(x) -> x   (test)"""
            return x

        RuleSet([rs, r1])
