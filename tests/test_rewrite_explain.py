"""explain(): what fires, and for what does not, the nearest partial match and why."""

import numpy as np

from smelt.ir import Graph, Node
from smelt.passes import CANONICALIZE, FUSE
from smelt.rewrite import explain, rules

X = Node.input("x", (2, 4))
W = Node.constant(np.ones((4, 4), np.float32))


def mk(name, *inputs, **attrs):
    return Node.make(name, inputs, **attrs)


def test_a_firing_rule_is_listed_first_with_its_result():
    node = mk("relu", mk("matmul", X, W))
    e = explain(node, FUSE)
    assert e.nearest.rule.name == "fuse_activation" and e.nearest.status == "fires"
    text = str(e)
    assert text.splitlines()[0] == "explain relu(matmul(x, const f32[4,4])) : f32[2,4]"
    assert 'fires     -> fused_matmul(x, const f32[4,4]){activation="relu", alpha=0.01, ' \
        'residual=false}' in text


def test_the_nearest_miss_says_where_and_why():
    mm = mk("matmul", X, W)
    node = mk("add", mm, mk("relu", mm))
    g = Graph([X], [node])  # mm has two users: fusing it would compute it twice
    e = explain(node, FUSE, graph=g)
    miss = e.nearest
    assert (miss.rule.name, miss.status) == ("fuse_addend", "no match")
    assert miss.where == "add.a" and "[single_use] has 2 uses, wanted one" in miss.reason
    assert "1 of 3 pattern nodes" in str(e)
    assert "pattern: add(p=conv2d|linear|matmul(...)[single_use], r)" in str(e)
    assert "(2 other rules cannot match add nodes)" in str(e)
    # without a graph, use counts are unknown and the rule fires
    assert explain(node, FUSE).nearest.status == "fires"


def test_a_refusing_rewrite_gives_its_reason():
    big = Node.constant(np.ones((3, 2, 4), np.float32))
    e = explain(mk("add", mk("matmul", X, W), big), FUSE)
    assert e.nearest.status == "rejected"
    assert "addend [3, 2, 4] would grow the product [2, 4]" in str(e)


def test_explain_defaults_to_every_registered_rule():
    node = mk("add", X, mk("neg", X))
    e = explain(node)
    assert e.nearest.rule.name == "add_neg" and e.nearest.status == "fires"
    names = {a.rule.name for a in e.attempts}
    assert {"add_zero", "fuse_addend", "fold_constants"} <= names
    assert len(e.attempts) + e.skipped == len(rules())


def test_attribute_mismatch_is_reported():
    node = mk("transpose", X, perm=[1, 0])
    e = explain(node, CANONICALIZE)
    ident = next(a for a in e.attempts if a.rule.name == "transpose_identity")
    assert ident.reason == "attribute perm=(1, 0), wanted is_identity_perm"
