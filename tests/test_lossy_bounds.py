"""Real error bounds for the lossy passes (issue 25).

- passes/error_bound.py's forward propagation is sound (hypothesis: random weight changes on
  CNNs with residual concat, pooling, gelu, products of activations and softmax), attained on
  one layer, and never looser than the one-number-per-tensor propagation it replaced;
- quantize, smoothquant, awq, sparsify-24 and prune-channels state a finite bound given
  calibration data, say in the report whether it is a-priori or measured, and the bound holds
  on the calibration batches; the a-priori bound also holds on fresh inputs whose activations
  stay within the calibrated ranges;
- no useful a-priori bound (a layer norm, channels mixed by a product): measured, and why;
  no calibration: bounded(inf), and what to give;
- verify-each fails on a planted lossy pass that exceeds the bound it states.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import smelt
from smelt import zoo
from smelt.ir.graph import Graph
from smelt.ir.interpreter import interpret
from smelt.ir.node import Node
from smelt.ir.types import is_float
from smelt.passes.error_bound import (
    WeightChange,
    calibrated_magnitudes,
    measure,
    needs_magnitude,
    propagate,
    weight_index,
)
from smelt.passes.sparsity24 import Sparsify24, substitute
from smelt.rewrite.contract import bounded, exact
from smelt.rewrite.errors import PassContractError
from smelt.rewrite.pass_api import Pass, PassContext, PassResult
from smelt.rewrite.pipeline import Pipeline
from smelt.testing import assert_equivalent

nn = torch.nn


# -- models ---------------------------------------------------------------------------------------
class Mixed(nn.Module):
    """conv, relu, max pooling, a residual concat, gelu, a mean, linear, x * sigmoid(x), softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a, self.b = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 3, padding=1)
        self.head = nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.max_pool2d(torch.relu(self.stem(x)), 2)
        h = nn.functional.gelu(torch.cat([self.a(h), self.b(h)], 1) + h)
        y = self.head(h.mean((2, 3)))
        y = y * torch.sigmoid(y)
        return torch.softmax(y, -1) + y


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8))


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def traced(factory, shape: tuple[int, ...], batches: int = 4):
    torch.manual_seed(0)
    graph = smelt.trace(factory(), (torch.randn(*shape),))
    rng = np.random.default_rng(1)
    cal = [(rng.normal(size=shape).astype(np.float32),) for _ in range(batches)]
    return graph, cal


MODELS = {"mlp": (_mlp, (8, 16)), "cnn": (_cnn, (2, 3, 8, 8)), "mixed": (Mixed, (2, 3, 8, 8))}


@cache
def model(name: str):
    """(graph, four calibration batches) of a small model, traced once."""
    return traced(*MODELS[name])


# -- the propagation ------------------------------------------------------------------------------
def changed(graph: Graph, changes: dict[Node, WeightChange]) -> Graph:
    """`graph` with each changed layer's weight (and bias) replaced."""
    mapping = {}
    for n, c in changes.items():
        w = n.inputs[weight_index(n)]
        mapping[w] = Node.constant((w.value + c.dw).astype(w.value.dtype))
        if c.db is not None:
            b = n.inputs[2]
            mapping[b] = Node.constant((b.value + c.db).astype(b.value.dtype))
    return substitute(graph, mapping)


def random_changes(graph: Graph, rng: np.random.Generator, size: float
                   ) -> dict[Node, WeightChange]:
    out = {}
    for n in graph.nodes():
        if weight_index(n) is not None and rng.random() < 0.7:
            w = n.inputs[weight_index(n)].value
            db = None
            if len(n.inputs) > 2:
                db = representable(n.inputs[2].value, rng.uniform(-size, size, n.inputs[2].shape))
            out[n] = WeightChange(representable(w, rng.uniform(-size, size, w.shape) * abs(w)), db)
    return out


def representable(w: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The change w -> w + d once the new value is stored in w's dtype."""
    return (w + d).astype(w.dtype).astype(np.float64) - w.astype(np.float64)


@settings(max_examples=12)
@given(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([1e-3, 0.05, 0.5]))
def test_propagation_is_sound_on_random_weight_changes(seed: int, size: float) -> None:
    graph, cal = model("mixed")
    changes = random_changes(graph, np.random.default_rng(seed), size)
    mags = calibrated_magnitudes(graph, cal, needs_magnitude(graph, changes))
    bound = propagate(graph, changes, mags.get)
    assert bound.finite, bound.why
    got = measure(graph, changed(graph, changes), cal)  # inputs within their own ranges
    assert got.error <= bound.value * (1 + 1e-9) + 1e-12, (got.error, bound.value)


def test_one_layer_bound_is_attained() -> None:
    """y = x W^T: the worst x in [-M, M] is M sign(dW_o), which reaches the bound."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 7)).astype(np.float32)
    dw = representable(w, rng.uniform(-0.1, 0.1, size=w.shape))
    x = Node.input("x", (5, 7))
    graph = Graph([x], [Node.make("linear", (x, Node.constant(w)))])
    layer = graph.outputs[0]
    worst = (np.sign(dw) * 2.0).astype(np.float32)  # row o is the worst input for output o
    bound = propagate(graph, {layer: WeightChange(dw)}, {x: 2.0}.get)
    got = measure(graph, changed(graph, {layer: WeightChange(dw)}), [(worst,)])
    assert bound.value == pytest.approx(got.error, rel=1e-9)
    assert bound.value == pytest.approx(2.0 * np.abs(dw).sum(axis=1).max())


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), depth=st.integers(1, 4))
def test_per_element_is_never_looser_than_one_number_per_tensor(seed: int, depth: int) -> None:
    """The old rule: e(y) = max_o ||W_o||_1 e(x) + max_o ||dW_o||_1 (M + e(x)), one number."""
    rng = np.random.default_rng(seed)
    x = Node.input("x", (3, 6))
    h, changes = x, {}
    for _ in range(depth):
        w = rng.normal(size=(6, 6)).astype(np.float32)
        h = Node.make("linear", (h, Node.constant(w)))
        changes[h] = WeightChange(rng.uniform(-0.05, 0.05, w.shape))
        h = Node.make("relu", (h,))
    graph = Graph([x], [h])
    mags = calibrated_magnitudes(graph, [(rng.normal(size=(3, 6)),)],
                                 needs_magnitude(graph, changes))
    old = 0.0
    for n in graph.nodes():  # relu is 1-Lipschitz: it keeps the old number
        if n in changes:
            w, dw = n.inputs[1].value, changes[n].dw
            l1, dl1 = np.abs(w).sum(1).max(), np.abs(dw).sum(1).max()
            old = l1 * old + dl1 * (mags[n.inputs[0]] + old)
    new = propagate(graph, changes, mags.get).value
    assert 0 < new <= old * (1 + 1e-12)


# -- the passes -----------------------------------------------------------------------------------
def extremes(graph: Graph, batches, per_channel: bool
             ) -> dict[Node, tuple[np.ndarray, np.ndarray]]:
    """Per float tensor, its min and max over `batches`: per tensor, or per channel of its
    last axis."""
    seen: dict[Node, tuple[np.ndarray, np.ndarray]] = {}

    def observe(n: Node, v) -> None:
        if isinstance(v, np.ndarray) and v.size and is_float(str(v.dtype)) and n.op != "constant":
            flat = v.reshape(-1, v.shape[-1] if per_channel and v.ndim else 1)
            lo, hi = flat.min(0), flat.max(0)
            if n in seen:
                lo, hi = np.minimum(seen[n][0], lo), np.maximum(seen[n][1], hi)
            seen[n] = (lo, hi)

    for batch in batches:
        interpret(graph, *batch, observe=observe)
    return seen


def within(graph: Graph, ranges, batch, per_channel: bool) -> bool:
    """Does every activation stay within its calibrated range? (Per channel, for
    smoothquant's and awq's channel-scaled tensors: it implies per tensor for them.)"""
    return all(np.all(lo >= ranges[n][0]) and np.all(hi <= ranges[n][1])
               for n, (lo, hi) in extremes(graph, [batch], per_channel).items())


# (pass, model, the kind of bound it states there): an a-priori bound above the largest
# output seen says nothing, and the pass states the measured error instead
KINDS = {("quantize(w8a8)", "cnn"): "measured", ("quantize(w8)", "mlp"): "a-priori",
         ("smoothquant", "mlp"): "measured", ("awq(group=16)", "mlp"): "measured",
         ("sparsify-24", "mlp"): "measured", ("sparsify-24", "cnn"): "a-priori",
         ("prune-channels(ratio=0.25)", "cnn"): "measured",
         ("prune-channels(ratio=0.1)", "cnn"): "a-priori"}
PASSES = list(KINDS)


def last_bound(p: Pass):
    """The a-priori bound of the pass's last run, kept by each lossy pass."""
    return p.last.bound if hasattr(p, "last") else p.last_bound


@pytest.mark.parametrize(("spec", "name"), PASSES)
def test_pass_states_a_finite_labelled_bound_that_holds(spec: str, name: str) -> None:
    graph, cal = model(name)
    pipe = Pipeline.parse(spec, verify_each=True)  # checks the first two calibration batches
    out = pipe(graph, calibration=cal)
    report = pipe.report.passes[0]
    c = report.contract
    assert c.kind == "bounded" and np.isfinite(c.atol) and c.atol > 0
    assert c.basis == KINDS[spec, name]
    note = next(n for n in report.notes if n.startswith("contract: "))
    kind = "measured bound" if c.is_measured else "a-priori bound"
    assert note.startswith(f"contract: {kind} {c.atol:.3g}")
    assert str(c).endswith(", measured)") == c.is_measured
    assert pipe.report.contract == c
    assert_equivalent(graph, out, c, cal)  # every calibration batch
    bound = last_bound(pipe.passes[0])
    assert bound.finite and (c.is_measured or bound.value == c.atol)
    assert measure(graph, out, cal).error <= bound.value


@cache
def applied(spec: str, name: str):
    """The pass's output on a model, its a-priori bound, and the calibrated ranges."""
    graph, cal = model(name)
    p = Pipeline.parse(spec).passes[0]
    out = p(graph, calibration=cal).graph
    return out, last_bound(p), extremes(graph, cal, smoothed(spec))


def smoothed(spec: str) -> bool:
    return spec.startswith(("smoothquant", "awq"))


@pytest.mark.parametrize(("spec", "name"), PASSES)
@settings(max_examples=6)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_priori_bound_holds_on_fresh_inputs_in_range(spec: str, name: str, seed: int) -> None:
    graph, cal = model(name)
    out, bound, ranges = applied(spec, name)
    rng = np.random.default_rng(seed)
    batch = (0.5 * rng.normal(size=cal[0][0].shape).astype(np.float32),)
    assume(within(graph, ranges, batch, smoothed(spec)))
    assert measure(graph, out, [batch]).error <= bound.value


def test_a_deep_cnn_states_the_measured_error_and_says_why() -> None:
    graph, cal = traced(zoo.ZOO["residual_cnn"].build, (2, 3, 16, 16))
    pipe = Pipeline.parse("fold-bn,quantize(w8a8)", verify_each=True)
    pipe(graph, calibration=cal)
    report = pipe.report.passes[1]
    assert report.contract.is_measured and 0 < report.contract.atol < 0.1
    note = report.notes[-1]
    assert "exceeds the largest output magnitude" in note and "not a promise" in note
    assert bool(pipe.passes[1].last_bound.finite)  # finite, but above the outputs


def _layer_norm_graph() -> Graph:
    rng = np.random.default_rng(3)
    x = Node.input("x", (4, 8))
    w1, w2 = (Node.constant(rng.normal(size=(8, 8)).astype(np.float32)) for _ in range(2))
    h = Node.make("layer_norm", (Node.make("linear", (x, w1)),), axis=-1, eps=1e-5)
    return Graph([x], [Node.make("linear", (h, w2))])


def test_no_rule_means_measured_and_no_calibration_means_inf() -> None:
    graph = _layer_norm_graph()
    cal = [(np.random.default_rng(i).normal(size=(4, 8)).astype(np.float32),) for i in range(3)]
    pipe = Pipeline.parse("sparsify-24", verify_each=True)
    out = pipe(graph, calibration=cal)
    report = pipe.report.passes[0]
    assert report.contract.is_measured
    assert report.contract.atol == measure(graph, out, cal).error
    assert "no a-priori bound: no error bound through layer_norm" in report.notes[-1]
    bare = Pipeline.parse("sparsify-24")
    bare(graph)
    assert bare.report.passes[0].contract == bounded(float("inf"))
    assert "give calibration batches" in bare.report.passes[0].notes[-1]


def test_pruning_says_where_channels_are_mixed() -> None:
    """q k^T sums over the pruned features of q and k: not a weight change, so measured."""
    rng = np.random.default_rng(5)
    x = Node.input("x", (4, 8))
    q, k = (Node.make("linear", (x, Node.constant(rng.normal(size=(6, 8)).astype(np.float32))))
            for _ in range(2))
    s = Node.make("matmul", (q, Node.make("transpose", (k,), perm=(1, 0))))
    out = Node.make("linear", (s, Node.constant(rng.normal(size=(3, 4)).astype(np.float32))))
    graph = Graph([x], [out])
    cal = [(rng.normal(size=(4, 8)).astype(np.float32),) for _ in range(2)]
    pipe = Pipeline.parse("prune-channels(ratio=0.5)", verify_each=True)
    pipe(graph, calibration=cal)
    report = pipe.report.passes[0]
    assert report.contract.is_measured
    assert "removed channels reach matmul, which mixes them with kept ones" in report.notes[-1]


# -- verify-each ----------------------------------------------------------------------------------
class Overclaim(Pass):
    """Adds `shift` to every output and states bounded(claim) for the run (a planted bug)."""

    name = "overclaim"

    def __init__(self, shift: float, claim: float, basis: str = "a-priori") -> None:
        self.shift, self.claim, self.basis = shift, claim, basis
        self.options = {}
        self.contract = bounded(float("inf"))

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        shift = Node.constant(np.float32(self.shift))
        out = graph.replace(outputs=[Node.make("add", (o, shift)) for o in graph.outputs])
        return PassResult(out, True, {"contract": bounded(self.claim, basis=self.basis)})


class PlantedSparsify(Sparsify24):
    """sparsify-24 that states its honest bound, then moves every output further."""

    name = "planted-sparsify"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        res = super().run(graph, ctx)
        shift = Node.constant(np.float32(2 * self.contract.atol + 0.1))
        g = res.graph
        out = g.replace(outputs=[Node.make("add", (o, shift)) for o in g.outputs])
        return PassResult(out, True, res.report)


def test_verify_each_fails_on_a_planted_pass_that_exceeds_its_bound() -> None:
    graph, cal = model("mlp")
    with pytest.raises(PassContractError) as e:
        Pipeline(["canonicalize", Overclaim(0.05, 0.01), "fuse"], verify_each=True)(graph)
    assert e.value.index == 1 and e.value.pass_name == "overclaim"
    assert "under contract bounded(0.01)" in str(e.value)
    with pytest.raises(PassContractError) as e:
        Pipeline([PlantedSparsify()], verify_each=True)(graph, calibration=cal)
    assert e.value.pass_name == "planted-sparsify"
    honest = Pipeline([Sparsify24()], verify_each=True)
    honest(graph, calibration=cal)
    assert honest.report.passes[0].measured <= honest.report.contract.atol


def test_verify_each_checks_a_measured_bound_on_calibration_only() -> None:
    graph, cal = model("mlp")
    with pytest.raises(PassContractError, match="overclaim"):
        Pipeline([Overclaim(0.05, 0.01, "measured")], verify_each=True)(graph, calibration=cal)
    pipe = Pipeline([Overclaim(0.05, 0.01, "measured")], verify_each=True)
    pipe(graph)  # seeded samples: a bound measured on calibration promises nothing there
    report = pipe.report.passes[0]
    assert str(report.contract) == "bounded(0.01, measured)"
    assert report.measured == pytest.approx(0.05, rel=1e-6)
    assert "the measured bound was not checked" in report.notes[-1]


def test_contract_basis_composes_and_prints() -> None:
    m = bounded(0.1, basis="measured")
    assert str(m) == "bounded(0.1, measured)" and m.is_measured
    assert (bounded(0.2) + m).is_measured and (bounded(0.2) + m).atol == pytest.approx(0.3)
    assert not (bounded(0.2) + bounded(0.1)).is_measured
    assert exact + exact == exact and not exact.is_measured
    with pytest.raises(ValueError, match="basis"):
        bounded(1.0, basis="guessed")
