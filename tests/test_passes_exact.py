"""fold-bn and equalize: exact on every zoo model and on random conv/linear chains; what they
fold, balance and skip; ReLU6 never changed silently; the lossy options say they are lossy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smelt
from smelt.ir import Graph, Node
from smelt.passes import equalize_weights, fold_batch_norm
from smelt.passes.batchnorm_instances import draw_batch_norm, draw_conv, draw_linear
from smelt.passes.equalization import (
    LOSSY,
    find_pairs,
    input_ranges,
    output_ranges,
    rescale,
)
from smelt.rewrite import Pipeline, exact, rewrite
from smelt.testing import ContractViolation, assert_equivalent, graph_inputs
from smelt.zoo import ZOO

rng = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """Every test draws its weights from the same seeded stream, whatever ran before it on
    its worker (a module-wide generator made the planted ranges depend on test order)."""
    global rng
    rng = np.random.default_rng(7)


def mk(name, *inputs, **attrs):
    return Node.make(name, inputs, **attrs)


def c(value):
    return Node.constant(np.asarray(value, np.float32))


def ops(g: Graph) -> dict[str, int]:
    return g.summary().ops


def weight(shape, spread=0.0):
    """Normal weights; `spread` > 0 gives output channels ranges over e^(+-spread)."""
    w = rng.standard_normal(shape)
    if spread:
        w *= np.exp(rng.uniform(-spread, spread, shape[0])).reshape((-1,) + (1,) * (len(shape)
                                                                                   - 1))
    return c(w)


def bn(h, channels):
    stats = [rng.standard_normal(channels) * 0.3, rng.uniform(0.01, 2.0, channels),
             rng.uniform(0.2, 2.0, channels), rng.standard_normal(channels) * 0.3]
    return mk("batch_norm", h, *[c(s) for s in stats], eps=1e-5)


def conv(h, w, b=None, **attrs):
    return mk("conv2d", h, w, *([b] if b is not None else []), **attrs)


# -- the zoo ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ZOO))
def test_fold_bn_equalize_fuse_keep_every_zoo_model_exact(name):
    entry = ZOO[name]
    args = entry.inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = smelt.trace(entry.build(), args)
    pipe = Pipeline.parse("fold-bn,equalize,fuse", verify_each=True)
    out = pipe(graph, calibration=[args])  # raises PassContractError naming a broken pass
    assert pipe.report.contract == exact
    assert all(p.measured is not None for p in pipe.report.passes)
    assert_equivalent(graph, out, exact, [tuple(a.numpy() for a in args)])
    if "batch_norm" in ops(graph):  # every zoo batch norm follows a conv
        assert "batch_norm" not in ops(out)
        after = ops(out)
        assert after.get("conv2d", 0) + after.get("fused_conv2d", 0) == ops(graph)["conv2d"]
    equalized = pipe.report.passes[1].fired.get("equalize_pair", 0)
    assert equalized == {"residual_cnn": 3, "hf_resnet": 2}.get(name, 0)


def test_relu6_is_never_changed_silently():
    entry = ZOO["mobilenet_v2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = fold_batch_norm()(smelt.trace(entry.build(), entry.inputs())).graph
    kept = equalize_weights()
    res = kept(graph)
    assert kept.contract == exact and ops(res.graph) == ops(graph)
    assert ops(graph)["relu6"] == 12 and not res.changed
    relu6_notes = [n for n in res.report.notes if "relu6 is not positively homogeneous" in n]
    assert len(relu6_notes) == 10 and all(n.startswith("skipped") for n in relu6_notes)

    swap = equalize_weights(relu6="to-relu")
    res = swap(graph, calibration=[entry.inputs()])
    # no pre-activation exceeds 6 on the calibration batch, so the a-priori bound is 0
    assert swap.contract.kind == "bounded" and swap.contract.basis == "a-priori"
    lossy = [n for n in res.report.notes if n.startswith("LOSSY relu6 -> relu")]
    replaced = ops(graph)["relu6"] - ops(res.graph)["relu6"]
    assert len(lossy) == res.report.fired["relu6_to_relu"] == replaced == 10
    assert any(n.startswith("contract: a-priori bound") for n in res.report.notes)
    text = str(Pipeline([fold_batch_norm(), swap]).run(graph).report)
    assert "bounded(inf)" in text


# -- fold-bn: what fires, the structure, the numbers --------------------------------------------
def test_fold_bn_folds_into_previous_and_next_layers():
    x = Node.input("x", (2, 4, 6, 6))
    h = mk("relu", bn(conv(x, weight((8, 4, 3, 3)), padding=(1, 1)), 8))
    h = bn(conv(h, weight((8, 1, 3, 3)), c(rng.standard_normal(8)), groups=8), 8)  # depthwise
    h = conv(bn(mk("relu", h), 8), weight((6, 4, 1, 1)), groups=2)  # bn before unpadded conv
    v = Node.input("v", (3, 5))
    f = bn(mk("linear", v, weight((4, 5))), 4)
    f = mk("linear", bn(mk("relu", f), 4), weight((2, 4)), c(rng.standard_normal(2)))
    g = Graph([x, v], [h, f])
    res = rewrite(g, fold_batch_norm().rules)
    assert res.stats.fired() == {"fold_bn_into_conv": 2, "fold_bn_into_next_conv": 1,
                                 "fold_bn_into_linear": 1, "fold_bn_into_next_linear": 1}
    assert "batch_norm" not in ops(res.graph)
    assert [o.op for o in res.graph.outputs] == ["conv2d", "linear"]
    assert all(len(n.inputs) == 3 for n in res.graph.nodes() if n.op in ("conv2d", "linear"))
    assert_equivalent(g, res.graph, exact, samples=3)


def test_fold_bn_leaves_a_batch_norm_before_a_padded_conv():
    x = Node.input("x", (1, 3, 5, 5))
    norm = bn(x, 3)
    w = weight((4, 3, 3, 3))
    g = Graph([x], [conv(norm, w, padding=(1, 1))])
    res = rewrite(g, fold_batch_norm().rules)
    assert res.rewrites == 0 and "batch_norm" in ops(res.graph)
    (note,) = fold_batch_norm()(g).report.notes
    assert note.startswith("kept a batch_norm after input, before conv2d") and "pads" in note
    # the fold a padding-blind rule would do is wrong at the border
    s = norm.inputs[3].value / np.sqrt(norm.inputs[2].value + 1e-5)
    t = norm.inputs[4].value - norm.inputs[1].value * s
    naive = conv(x, c(w.value * s[None, :, None, None]),
                 c(np.einsum("ocij,c->o", w.value, t)), padding=(1, 1))
    with pytest.raises(ContractViolation):
        assert_equivalent(g, Graph([x], [naive]), exact)


def test_fold_bn_keeps_a_shared_layer_and_a_non_feature_axis():
    x = Node.input("x", (2, 3, 4))
    lin = mk("linear", x, weight((5, 4)))  # (2, 3, 5): batch norm's axis 1 has 3 channels
    xs = Node.input("xs", (1, 2, 4, 4))
    shared = conv(xs, weight((2, 2, 1, 1)))
    g = Graph([x, xs], [bn(lin, 3), bn(shared, 2), shared])
    res = rewrite(g, fold_batch_norm().rules)
    assert res.rewrites == 0


def test_folded_weights_keep_their_names():
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    x = torch.randn(1, 2, 5, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = smelt.trace(net, (x,))
    out = fold_batch_norm()(g).graph
    names = sorted(out.names[n] for n in out.constants() if n in out.names)
    assert names == ["0.bias", "0.weight"]


# -- random chains: both passes exact -----------------------------------------------------------
ACTS = ("relu", "leaky_relu", "none", "relu6", "gelu")


def _act(draw, h):
    act = draw(st.sampled_from(ACTS))
    if act == "leaky_relu":
        return mk(act, h, alpha=draw(st.sampled_from((0.01, 0.2))))
    return h if act == "none" else mk(act, h)


@st.composite
def conv_chains(draw):
    """conv (plain, grouped, depthwise; padded or not) [-> batch_norm] [-> act], 2 to 4
    times; sometimes an inner value is also an output (then its pair must be skipped)."""
    shape = (draw(st.integers(1, 2)), draw(st.sampled_from((2, 3, 4))), draw(st.integers(4, 7)),
             draw(st.integers(4, 7)))
    x = Node.input("x0", shape, "float32")
    h, inner = x, []
    for _ in range(draw(st.integers(2, 4))):
        depthwise = draw(st.integers(0, 2)) == 0  # as in depthwise-separable blocks
        h = draw_conv(draw, h, groups=h.shape[1] if depthwise else None)
        if draw(st.booleans()):
            h = draw_batch_norm(draw, h)
        h = _act(draw, h)
        inner.append(h)
    extra = [draw(st.sampled_from(inner[:-1]))] if draw(st.integers(0, 4)) == 0 else []
    return Graph([x], [h, *extra])


@st.composite
def linear_chains(draw):
    lead = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    x = Node.input("x0", lead + (draw(st.integers(1, 6)),), "float32")
    h = x
    for _ in range(draw(st.integers(2, 4))):
        h = draw_linear(draw, h)
        if len(lead) == 1 and draw(st.booleans()):
            h = draw_batch_norm(draw, h)
        h = _act(draw, h)
    return Graph([x], [h])


chains = st.one_of(conv_chains(), linear_chains())


@settings(max_examples=60)
@given(graph=chains, data=st.data())
def test_fold_bn_then_equalize_are_exact_on_random_chains(graph, data):
    batch = data.draw(graph_inputs(graph))
    folded = fold_batch_norm()(graph).graph
    assert_equivalent(graph, folded, exact, [batch], what="fold-bn")
    res = equalize_weights()(folded)
    assert_equivalent(folded, res.graph, exact, [batch], what="equalize")
    assert ops(res.graph).get("relu6", 0) == ops(graph).get("relu6", 0)
    pairs, skipped = find_pairs(folded)
    assert res.report.fired.get("equalize_pair", 0) == len(pairs)
    assert sum(n.startswith("skipped") for n in res.report.notes) == len(skipped)


@settings(max_examples=60)
@given(graph=chains, data=st.data())
def test_rescale_is_exact_for_any_positive_scales(graph, data):
    """The apply step alone, with scales far from the balancing ones (1e-3 to 1e3)."""
    folded = fold_batch_norm()(graph).graph
    pairs, _ = find_pairs(folded)
    scales = [np.exp(data.draw(st.lists(st.floats(-6.9, 6.9), min_size=p.channels,
                                        max_size=p.channels))) for p in pairs]
    out = rescale(folded, pairs, scales)
    assert_equivalent(folded, out, exact, [data.draw(graph_inputs(folded))], what="rescale")


def test_rescale_refuses_non_positive_scales():
    x = Node.input("x", (2, 3))
    g = Graph([x], [mk("linear", mk("relu", mk("linear", x, weight((4, 3)))), weight((2, 4)))])
    pairs, _ = find_pairs(g)
    with pytest.raises(ValueError, match="positive"):
        rescale(g, pairs, [np.array([1.0, -1.0, 1.0, 1.0])])


# -- equalize balances the ranges -------------------------------------------------------------
def _precision(r1, r2):
    """Nagel et al.'s objective: sum over channels of the per-channel precisions."""
    return float(np.sum(r1 / r1.max() * r2 / r2.max()))


def _pair_ranges(g):
    pairs, _ = find_pairs(g)
    return [(output_ranges(p.first.inputs[1].value.astype(np.float64)),
             input_ranges(p.second, p.second.inputs[1].value.astype(np.float64)))
            for p in pairs]


def test_equalize_balances_a_pair():
    x = Node.input("x", (2, 3, 6, 6))
    h = mk("relu", conv(x, weight((8, 3, 3, 3), spread=3.0), c(rng.standard_normal(8))))
    g = Graph([x], [conv(h, weight((4, 8, 3, 3)), padding=(1, 1))])
    out = equalize_weights()(g).graph
    (r1, r2), = _pair_ranges(g)
    (q1, q2), = _pair_ranges(out)
    np.testing.assert_allclose(q1, q2, rtol=1e-6)  # r1 / s = r2 s
    np.testing.assert_allclose(q1, np.sqrt(r1 * r2), rtol=1e-6)
    assert r1.max() / r1.min() > 20 and q1.max() / q1.min() < (r1.max() / r1.min()) / 4
    assert _precision(q1, q2) > _precision(r1, r2)  # the objective CLE maximizes
    # the narrowest channel of layer 1 gets a 4x larger share of the per-tensor range
    assert (q1 / q1.max()).min() > 4 * (r1 / r1.max()).min()
    assert_equivalent(g, out, exact, samples=3)


def test_equalize_iterates_a_depthwise_separable_chain_to_convergence():
    x = Node.input("x", (1, 4, 6, 6))
    h = mk("relu", conv(x, weight((12, 4, 1, 1), spread=2.0)))
    h = mk("leaky_relu", conv(h, weight((12, 1, 3, 3), spread=2.0), groups=12, padding=(1, 1)),
           alpha=0.1)
    g = Graph([x], [conv(h, weight((5, 12, 1, 1), spread=2.0), c(rng.standard_normal(5)))])
    capped = equalize_weights(iterations=1)(g)
    full = equalize_weights()(g)
    assert "stopped at the sweep cap" in capped.report.notes[0]
    assert "converged" in full.report.notes[0] and full.report.fired == {"equalize_pair": 2}

    def imbalance(graph):
        return max(float(np.max(np.abs(np.log(a / b)))) for a, b in _pair_ranges(graph))

    assert imbalance(full.graph) < 1e-3 < imbalance(capped.graph) < imbalance(g)
    assert_equivalent(g, full.graph, exact, samples=3)


def test_equalize_reports_what_it_skips():
    x = Node.input("x", (2, 6))
    a = mk("linear", x, weight((5, 6)))
    b = mk("linear", mk("gelu", a), weight((4, 5)))
    d = mk("linear", mk("relu6", b), weight((3, 4)))
    res = equalize_weights()(Graph([x], [d]))
    notes = [n for n in res.report.notes if n.startswith("skipped")]
    assert len(notes) == 2 and "gelu is not positively homogeneous" in notes[0]
    assert "relu6 is not positively homogeneous" in notes[1]
    assert res.report.fired == {} and not res.changed


# -- options, spec, high-bias absorption ----------------------------------------------------------
def test_equalize_options_print_and_parse():
    p = Pipeline.parse("fold-bn, equalize(relu6='to-relu', iterations=5)")
    assert str(p) == "fold-bn,equalize(relu6='to-relu', iterations=5)"
    assert str(Pipeline.parse(str(p))) == str(p) and p.contract == LOSSY
    assert Pipeline.parse("fold-bn,equalize").contract == exact
    with pytest.raises(smelt.PipelineParseError, match="relu6"):
        Pipeline.parse("equalize(relu6=drop)")


def test_high_bias_absorption_is_exact_on_calibration_and_reported_lossy():
    x = Node.input("x", (4, 6))
    b1 = c(np.abs(rng.standard_normal(8)) * 20 + 10)  # a high bias: relu is always on
    h = mk("relu", mk("linear", x, weight((8, 6)), b1))
    g = Graph([x], [mk("linear", h, weight((3, 8)))])
    batches = [(rng.standard_normal((4, 6)).astype(np.float32),) for _ in range(3)]
    pipe = Pipeline.parse("equalize(absorb=calibration)", verify_each=True)
    out = pipe(g, calibration=batches)  # verify-each checks the calibration batches
    notes = pipe.report.passes[0].notes
    assert pipe.report.passes[0].fired == {"equalize_pair": 1, "absorb_high_bias": 1}
    assert any(n.startswith("LOSSY high-bias absorption") for n in notes)
    new_b1 = next(n for n in out.nodes() if n.op == "linear" and n.inputs[0] is x).inputs[2]
    assert np.abs(new_b1.value).max() < np.abs(b1.value).max() / 2
    assert_equivalent(g, out, exact, batches)
    none = equalize_weights(absorb="calibration")(g)
    assert any("needs calibration batches" in n for n in none.report.notes)
