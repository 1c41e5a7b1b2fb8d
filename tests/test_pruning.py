"""prune-channels: dependency groups found on the IR, the exact apply step, the policy, the
pass and its report.

The central property: `apply_pruning` is exact when the removed channels are zero. Random CNN
graphs (residual adds, concatenation, depthwise and grouped convs, batch norm, split, slice,
channel padding, NHWC transposes, flatten into a linear and back) lose a random set of
channel classes. First every constant's slices at those classes are zeroed, which makes the
channels zero (every op of the vocabulary maps 0 to 0); the pruned graph must then equal the
zeroed graph under the exact contract, on the reference interpreter. A wrong group (a missing
tie, a wrong concat offset) removes a channel that is not zero or mismatches a shape, and
fails; `test_a_wrong_rule_is_caught` plants such bugs and checks that it does.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import smelt
from smelt import Graph, Node, PipelineParseError, bounded, exact
from smelt.backends.interop import to_torch, with_weights
from smelt.passes import pruning_groups
from smelt.passes.pruning import apply_pruning, prune, prune_channels
from smelt.passes.pruning_groups import analyse
from smelt.passes.pruning_importance import PruningError, find_groups, taylor_scores
from smelt.testing import assert_equivalent
from smelt.zoo import ZOO


# -- helpers ----------------------------------------------------------------------------------
def zeroed(graph: Graph, removed: set[int]) -> Graph:
    """`graph` with every constant slice at the classes `removed` set to zero."""
    a, rem = analyse(graph), np.fromiter(removed, np.int64)
    new: dict[Node, Node] = {}
    for n in graph.nodes():
        if n.op == "constant":
            v = np.array(n.value, copy=True)
            for ax, roots in enumerate(a.roots[(n, -1)]):
                at = np.flatnonzero(np.isin(roots, rem))
                index = [slice(None)] * v.ndim
                index[ax] = at
                v[tuple(index)] = 0
            new[n] = Node.constant(v, n.dtype) if np.any(v != n.value) else n
        elif n.inputs:
            new[n] = Node.rebuild(n, [new.get(x, x) for x in n.inputs])
    return Graph(graph.inputs, [new.get(o, o) for o in graph.outputs])


def some_channels(graph: Graph, rng: np.random.Generator) -> set[int]:
    """A random set of free classes, at most all but one of each subgroup."""
    removed: set[int] = set()
    for g in find_groups(analyse(graph)):
        for s in g.subgroups:
            free = [c for c in s if c not in g.fixed]
            most = min(len(free), len(s) - 1)
            k = int(rng.integers(min(1, most), most + 1))
            removed |= set(rng.permutation(free)[:k].tolist())
    return removed


def check_exact_when_zero(graph: Graph, removed: set[int]) -> Graph:
    g0 = zeroed(graph, removed)
    a0 = analyse(g0)
    assert [g.classes for g in find_groups(a0)] == [g.classes for g in find_groups(analyse(graph))]
    pruned = apply_pruning(a0, removed).verify()
    assert_equivalent(g0, pruned, exact, what="pruning zero channels")
    if removed:
        assert pruned.summary().params < g0.summary().params
    return pruned


def traced(name: str) -> Graph:
    entry = ZOO[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smelt.trace(entry.build(), entry.inputs())


# -- random CNN graphs -----------------------------------------------------------------------------
def _w(rng, *shape):
    return Node.constant(rng.standard_normal(shape).astype(np.float32) * 0.5)


def _conv(rng, t, cout, k=3, groups=1, bias=True, stride=1):
    ins = [t, _w(rng, cout, t.shape[1] // groups, k, k)] + ([_w(rng, cout)] if bias else [])
    return Node.make("conv2d", ins, padding=(k // 2,), groups=groups, stride=(stride,))


def _same(pool, t, axes):
    return [u for u in pool if len(u.shape) == 4 and all(u.shape[i] == t.shape[i] for i in axes)]


def b_conv(draw, rng, t, pool):
    stride = draw(st.sampled_from([1, 2])) if t.shape[2] > 1 else 1
    return [_conv(rng, t, draw(st.integers(1, 5)), draw(st.sampled_from([1, 3])),
                  bias=draw(st.booleans()), stride=stride)]


def b_depthwise(draw, rng, t, pool):
    return [_conv(rng, t, t.shape[1] * draw(st.sampled_from([1, 2])), groups=t.shape[1],
                  bias=draw(st.booleans()))]


def b_grouped(draw, rng, t, pool):
    if t.shape[1] % 2:
        return None
    return [_conv(rng, t, 2 * draw(st.integers(1, 3)), groups=2)]


def b_residual(draw, rng, t, pool):
    y = _conv(rng, t, t.shape[1])
    return [y, Node.make("add", (t, y) if draw(st.booleans()) else (y, t))]


def b_batch_norm(draw, rng, t, pool):
    c = t.shape[1]
    var = Node.constant(rng.uniform(0.5, 1.5, c).astype(np.float32))
    return [Node.make("batch_norm", (t, _w(rng, c), var, _w(rng, c), _w(rng, c)))]


def b_act(draw, rng, t, pool):
    return [Node.make(draw(st.sampled_from(["relu", "relu6", "leaky_relu", "neg"])), (t,))]


def b_affine(draw, rng, t, pool):
    op = draw(st.sampled_from(["mul", "add"]))
    return [Node.make(op, (t, _w(rng, 1, t.shape[1], 1, 1)))]


def b_binary(draw, rng, t, pool):
    u = draw(st.sampled_from(_same(pool, t, (0, 1, 2, 3))))
    return [Node.make(draw(st.sampled_from(["add", "mul", "sub", "maximum"])), (t, u))]


def b_concat(draw, rng, t, pool):
    u = draw(st.sampled_from(_same(pool, t, (0, 2, 3))))
    return [Node.make("concat", (t, u) if draw(st.booleans()) else (u, t), axis=1)]


def b_split(draw, rng, t, pool):
    c = t.shape[1]
    if c < 2:
        return None
    k = draw(st.integers(1, c - 1))
    s = Node.make("split", (t,), axis=1, sizes=(k, c - k))
    return [Node.make("project", (s,), index=i) for i in (0, 1)]


def b_slice(draw, rng, t, pool):
    c = t.shape[1]
    start = draw(st.integers(0, c - 1))
    return [Node.make("slice", (t,), axis=1, start=start, stop=draw(st.integers(start + 1, c)))]


def b_pad(draw, rng, t, pool):
    before, after = draw(st.integers(0, 2)), draw(st.integers(1, 2))
    return [Node.make("pad", (t,), pads=(0, 0, before, after, 0, 0, 0, 0))]


def b_pool(draw, rng, t, pool):
    if t.shape[2] % 2 or t.shape[3] % 2:
        return None
    return [Node.make("max_pool2d", (t,), kernel=(2, 2))]


def b_nhwc(draw, rng, t, pool):
    h = Node.make("transpose", (t,), perm=(0, 2, 3, 1))
    h = Node.make("add", (h, _w(rng, t.shape[1])))
    return [Node.make("transpose", (h,), perm=(0, 3, 1, 2))]


def b_dense(draw, rng, t, pool):
    """flatten -> linear -> reshape back to (N, K, 1, 1): channel x spatial blocks."""
    n, k = t.shape[0], draw(st.integers(1, 5))
    f = Node.make("flatten", (t,), start_axis=1)
    y = Node.make("linear", (f, _w(rng, k, f.shape[1]), _w(rng, k)))
    return [Node.make("reshape", (y,), shape=(n, k, 1, 1))]


BUILDERS = [b_conv, b_depthwise, b_grouped, b_residual, b_batch_norm, b_act, b_affine,
            b_binary, b_concat, b_split, b_slice, b_pad, b_pool, b_nhwc, b_dense]


@st.composite
def cnn_graphs(draw) -> Graph:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    hw = draw(st.sampled_from([2, 4]))
    x = Node.input("x", (2, draw(st.integers(1, 3)), hw, hw))
    pool = [x, _conv(rng, x, draw(st.integers(2, 6)))]
    for _ in range(draw(st.integers(1, 9))):
        made = draw(st.sampled_from(BUILDERS))(draw, rng, draw(st.sampled_from(pool[1:])), pool)
        pool += made or []
    last, head = pool[-1], draw(st.sampled_from(["flatten", "mean", "flatten", "mean", "raw"]))
    if head == "flatten":
        f = Node.make("flatten", (last,), start_axis=1)
        last = Node.make("linear", (f, _w(rng, 3, f.shape[1]), _w(rng, 3)))
    elif head == "mean":
        m = Node.make("reduce_mean", (last,), axes=(2, 3))
        last = Node.make("linear", (m, _w(rng, 3, m.shape[1])))
    extra = [draw(st.sampled_from(pool[1:]))] if draw(st.integers(0, 3)) == 0 else []
    return Graph([x], [last, *extra])


@settings(max_examples=200)
@given(cnn_graphs(), st.integers(0, 2**32 - 1))
def test_pruning_zero_channels_is_exact_on_random_graphs(graph: Graph, seed: int) -> None:
    check_exact_when_zero(graph, some_channels(graph, np.random.default_rng(seed)))


@pytest.mark.parametrize("name", ["residual_cnn", "mobilenet_v2", "encoder_block",
                                  "llama_block"])
def test_pruning_zero_channels_is_exact_on_zoo_models(name: str) -> None:
    graph = traced(name)
    for seed in range(2):
        check_exact_when_zero(graph, some_channels(graph, np.random.default_rng(seed)))


def _concat_graph() -> tuple[Graph, set[int]]:
    rng = np.random.default_rng(7)
    x = Node.input("x", (1, 2, 3, 3))
    a, b = _conv(rng, x, 3), _conv(rng, x, 2)
    y = _conv(rng, Node.make("relu", (Node.make("concat", (a, b), axis=1),)), 2)
    graph = Graph([x], [y])
    group_a = find_groups(analyse(graph))[0]
    return graph, {group_a.classes[0]}


def test_a_wrong_rule_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property fails when a rule is wrong: concat operands at swapped offsets remove a
    nonzero position; a depthwise conv whose input and output are not tied breaks a shape."""
    graph, removed = _concat_graph()
    check_exact_when_zero(graph, removed)

    def swapped(a, n):
        return pruning_groups._concat(a, Node.make("concat", n.inputs[::-1], axis=1))

    monkeypatch.setitem(pruning_groups.RULES, "concat", swapped)
    with pytest.raises((smelt.ContractViolation, AssertionError, smelt.TypeInferenceError)):
        check_exact_when_zero(graph, removed)
    monkeypatch.undo()

    def untied(a, n):
        xs, ws = a.axes(n.inputs[0]), a.axes(n.inputs[1])
        return [xs[0], ws[0]] + a.fixed_fresh(n.shape[2:], "spatial")

    rng = np.random.default_rng(3)
    x = Node.input("x", (1, 2, 3, 3))
    h = _conv(rng, x, 4)
    dw = Graph([x], [_conv(rng, _conv(rng, h, 4, groups=4), 2)])
    removed = {find_groups(analyse(dw))[0].classes[0]}
    check_exact_when_zero(dw, removed)
    monkeypatch.setitem(pruning_groups.RULES, "conv2d", untied)
    with pytest.raises((smelt.ContractViolation, AssertionError, smelt.TypeInferenceError)):
        check_exact_when_zero(dw, {find_groups(analyse(dw))[0].classes[0]})


def test_removing_nonzero_channels_is_not_exact() -> None:
    graph, removed = _concat_graph()
    with pytest.raises(smelt.ContractViolation):
        assert_equivalent(graph, apply_pruning(analyse(graph), removed), exact)
    with pytest.raises(PruningError, match="fixed"):
        apply_pruning(analyse(graph), {next(iter(analyse(graph).cls.fixed))})


# -- groups on real models -----------------------------------------------------------------------
def test_residual_cnn_groups() -> None:
    groups = find_groups(analyse(traced("residual_cnn")))
    by_label = {g.label: g for g in groups}
    trunk = by_label["block2.conv2.0, block2.down.0, dw.0, pw.0"]
    assert {"add", "depthwise conv", "pad"} <= set(trunk.kinds)
    assert sorted(len(s) for s in trunk.subgroups) == [16, 32]  # padded 16, residual 32
    assert len(by_label["stem.0, block1.conv2.0"].classes) == 16  # the identity residual
    assert not by_label["head"].prunable and by_label["head"].reasons() == ["graph output 0"]


def test_attention_heads_are_pruned_whole() -> None:
    graph = traced("encoder_block")
    groups = find_groups(analyse(graph))
    heads = groups[0]
    assert heads.label == "qkv" and "heads" in heads.kinds and len(heads.classes) == 4
    assert set(heads.width.values()) == {16}
    assert groups[1].reasons() == ["graph input x"]  # proj, fc2: added to the input
    res = prune(graph, ratio=0.5)
    splits = [n for n in res.graph if n.op == "split"]
    assert splits[0].attrs["sizes"] == (32, 32, 32)
    assert (2, 16, 2, 16) in {n.shape for n in res.graph if n.op == "reshape"}
    one_head = {heads.classes[2]}
    check_exact_when_zero(graph, one_head)


def test_grouped_query_attention_ties_kv_heads_to_their_queries() -> None:
    heads = find_groups(analyse(traced("llama_block")))[0]
    assert heads.label == "wq, wk, wv" and len(heads.classes) == 2  # 2 kv heads, 4 q heads


def test_an_op_the_analysis_does_not_know_fixes_its_channels() -> None:
    rng = np.random.default_rng(0)
    x = Node.input("x", (1, 2, 4, 4))
    y = _conv(rng, x, 4)
    q = Node.make("quantize", (y,), scale=(0.1,), zero_point=(0,), bits=8)
    graph = Graph([x], [_conv(rng, Node.make("dequantize", (q,), scale=(0.1,),
                                             zero_point=(0,)), 3)])
    first = find_groups(analyse(graph))[0]
    assert not first.prunable
    assert first.reasons() == ["quantize is not understood by the channel analysis"]
    assert not prune(graph, ratio=0.5).changed


def test_jax_traced_cnn() -> None:
    import jax
    from jax import lax

    rng = np.random.default_rng(1)
    p = {"c1": rng.standard_normal((3, 3, 3, 8), np.float32) * 0.3,
         "dw": rng.standard_normal((3, 3, 1, 8), np.float32) * 0.3,
         "fc": rng.standard_normal((8, 5), np.float32) * 0.3}
    nhwc = ("NHWC", "HWIO", "NHWC")

    def cnn(p, x):
        y = jax.nn.relu(lax.conv_general_dilated(x, p["c1"], (1, 1), "SAME",
                                                 dimension_numbers=nhwc))
        y = y + lax.conv_general_dilated(y, p["dw"], (1, 1), "SAME", dimension_numbers=nhwc,
                                         feature_group_count=8)
        return y.mean(axis=(1, 2)) @ p["fc"]

    graph = smelt.trace_jax(cnn, p, rng.standard_normal((2, 6, 6, 3), np.float32),
                            constants=(0,))
    group = find_groups(analyse(graph))[0]
    assert {"add", "depthwise conv"} <= set(group.kinds) and len(group.classes) == 8
    check_exact_when_zero(graph, set(group.classes[:3]))
    assert prune(graph, ratio=0.5).graph.cost().macs < graph.cost().macs


# -- policy and the pass --------------------------------------------------------------------------
def test_pass_report_and_round_to() -> None:
    graph = smelt.Pipeline.parse("fold-bn")(traced("residual_cnn"))
    pipe = smelt.Pipeline.parse("prune-channels(ratio=0.6, round_to=8)", verify_each=True)
    out = pipe(graph)
    report = pipe.report.passes[0]
    assert report.contract == bounded(float("inf")) and report.macs[1] < report.macs[0] / 2
    assert report.notes[0].startswith("pruned 4 of 5 groups") and "measured" in report.notes[0]
    assert "pw.0 (add, depthwise conv, pad): channels 48 -> 24, MACs -" in report.notes[4]
    assert report.notes[5] == "not prunable: head, 10 channels: graph output 0"
    widths = [n.inputs[1].shape[0] for n in out if n.op == "conv2d"]
    assert all(c % 8 == 0 for c in widths), widths
    same = smelt.Pipeline.parse("prune-channels(ratio=0)")
    assert same(graph) is graph and same.contract == exact


def test_scopes_and_per_layer_ratio() -> None:
    graph = traced("mobilenet_v2")
    before = sum(len(g.classes) for g in find_groups(analyse(graph)) if g.prunable)
    kept = sum(r.channels[1] for r in prune(graph, ratio=0.5, scope="global").groups
               if r.prunable)
    assert kept == before - before // 2
    res = prune(graph, ratio={"features.6.0": 0.5})
    changed = [r.label for r in res.groups if r.channels[1] < r.channels[0]]
    assert changed == ["features.6.0"]


@pytest.mark.parametrize("spec, says", [
    ("prune-channels(ratio=1.5)", "fraction of channels removed"),
    ("prune-channels(importance='l3')", "one of l1, l2, taylor"),
    ("prune-channels(round_to=0)", "an int >= 1"),
    ("prune-channels(scope='layer')", "'local'"),
    ("prune-channels(ratio={'a': 0.5}, scope='global')", "needs scope='local'"),
    ("prune-channels(rato=0.5)", "rato"),
])
def test_bad_options_say_what_to_do(spec: str, says: str) -> None:
    with pytest.raises((PipelineParseError, TypeError), match=says):
        smelt.Pipeline.parse(spec)


def test_taylor_is_the_first_order_output_change() -> None:
    """On y = w2 . (W1 x) with one output, zeroing hidden channel c moves y by exactly
    d_c = w2[c] (W1 x)[c]; with one output the probe is +-1, so the score is the sum over
    samples of d_c^2, without noise."""
    rng = np.random.default_rng(0)
    x = Node.input("x", (1, 5))
    w1, w2 = rng.standard_normal((4, 5)), rng.standard_normal((1, 4))
    h = Node.make("linear", (x, Node.constant(w1.astype(np.float32))))
    graph = Graph([x], [Node.make("linear", (h, Node.constant(w2.astype(np.float32))))])
    batches = [(rng.standard_normal((1, 5)).astype(np.float32),) for _ in range(3)]
    a = analyse(graph)
    scores = taylor_scores(a, batches, probes=2)
    hidden = find_groups(a)[0].classes
    want = [sum((w2[0, c] * (w1 @ b[0][0])[c]) ** 2 for b in batches) for c in range(4)]
    np.testing.assert_allclose([scores[c] for c in hidden], want, rtol=1e-4)
    with pytest.raises(PruningError, match="calibration"):
        prune(graph, ratio=0.5, importance="taylor")
    res = prune(graph, ratio=0.5, importance="taylor", calibration=batches)
    assert res.on == "calibration" and res.graph.inputs[0].shape == (1, 5)


def test_to_torch_trainable_and_weights_back() -> None:
    graph = smelt.Pipeline.parse("fold-bn")(traced("residual_cnn"))
    assert not list(to_torch(graph).parameters())
    module = to_torch(graph, trainable=True)
    params = dict(module.named_parameters())
    assert len(params) == sum(1 for n in graph if n.op == "constant" and n.value.ndim >= 1)
    with torch.no_grad():
        for p in params.values():
            p.mul_(1.01)
    back = with_weights(graph, module)
    (x,) = ZOO["residual_cnn"].inputs()
    with torch.no_grad():
        want = module(x)[0].numpy()
    np.testing.assert_allclose(smelt.interpret(back, x.numpy())[0], want, rtol=1e-4, atol=1e-5)
    assert back.names.get(back.outputs[0].inputs[1]) == "head.weight"
    assert with_weights(graph, to_torch(graph)) is graph


def test_pass_object_keeps_the_structured_result() -> None:
    p = prune_channels(ratio=0.25, importance="taylor")
    (x,) = ZOO["encoder_block"].inputs()
    out = p(traced("encoder_block"), calibration=[x])
    assert p.last is not None and p.last.graph is out.graph and p.last.error > 0
    assert p.last.on == "calibration"
    assert p.spec() == "prune-channels(ratio=0.25, importance=taylor)"
    assert [g.unit for g in p.last.groups] == ["heads", "channels", "channels"]
    assert [g.channels for g in p.last.groups] == [(4, 3), (64, 64), (128, 96)]
