"""quantize(scheme=...) and fold-qdq: schemes, the bound, integer-only CNNs, legality, ties.

The fold-qdq rules themselves are verified like every registered rule
(tests/test_rewrite_rules.py, on qdq_instances' random Q/DQ graphs); here: the passes on
whole models, rounding ties and saturation on purpose, the compiled integer graphs against
the interpreter bit for bit, and the errors a user meets.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import smelt
from smelt import zoo
from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.types import is_float
from smelt.passes.calibration import calibrate
from smelt.passes.observers import NonFiniteError, make_observer
from smelt.passes.qdq_legality import legality
from smelt.passes.qscales import odd_part, product_scale
from smelt.rewrite.contract import run64
from smelt.rewrite.errors import PipelineParseError
from smelt.rewrite.pipeline import Pipeline

CNNS = ("residual_cnn", "mobilenet_v2", "hf_resnet", "dense_cnn")
W8A8 = "fold-bn,canonicalize,quantize(w8a8),fold-qdq"


class DenseCNN(torch.nn.Module):
    """DenseNet's pattern (Huang et al. 2017): each layer reads the concat of all features
    before it through a batch norm no conv can absorb; a transition ends in average pooling."""

    def __init__(self, c: int = 8, growth: int = 4, layers: int = 3) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.layers = nn.ModuleList(nn.Sequential(
            nn.BatchNorm2d(c + i * growth), nn.ReLU(), nn.Conv2d(c + i * growth, 2 * growth, 1),
            nn.BatchNorm2d(2 * growth), nn.ReLU(), nn.Conv2d(2 * growth, growth, 3, padding=1))
            for i in range(layers))
        out = c + layers * growth
        self.transition = nn.Sequential(nn.BatchNorm2d(out), nn.ReLU(), nn.Conv2d(out, out // 2, 1),
                                        nn.AvgPool2d(2))
        self.head = nn.Linear(out // 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        y = self.transition(torch.cat(features, 1))
        return self.head(torch.relu(y).mean((2, 3)))


MODELS = {**{name: (e.build, e.inputs) for name, e in zoo.ZOO.items()},
          "dense_cnn": (zoo.seeded(DenseCNN), lambda: (torch.randn(2, 3, 16, 16),))}


def traced(name: str):
    build, make_inputs = MODELS[name]
    torch.manual_seed(1)
    inputs = make_inputs()
    graph = smelt.trace(build(), inputs)
    rng = np.random.default_rng(7)
    cal = [rng.normal(size=inputs[0].shape).astype(np.float32) for _ in range(4)]
    return graph, cal, inputs[0].numpy()


@pytest.fixture(scope="module", params=CNNS)
def cnn(request):
    graph, cal, x = traced(request.param)
    result = Pipeline.parse(W8A8).run(graph, calibration=cal)
    return request.param, result, cal, x


# -- must show: integer-only CNNs -------------------------------------------------------------
def test_cnn_is_integer_between_input_quantize_and_output_dequantize(cnn) -> None:
    name, result, _, _ = cnn
    g = result.graph
    assert legality(g) == [], [str(i) for i in legality(g)]
    floats = [n.op for n in g.nodes() if n.op not in ("input", "constant", "quantize",
                                                        "dequantize") and is_float(n.dtype)]
    assert floats == [], f"{name}: float ops left: {floats}"
    (q,) = [n for n in g.nodes() if n.op == "quantize"]
    assert q.inputs[0].op == "input"  # the one input quantize
    assert all(o.op == "dequantize" for o in g.outputs)  # the output dequantize
    assert "no float op left" in " ".join(result.report.passes[-1].notes)


def test_folding_is_bit_exact_against_the_qdq_graph(cnn) -> None:
    _, result, cal, x = cnn
    qdq, folded = result.graphs[-2], result.graphs[-1]
    for batch in [x, *cal]:
        want = run64(qdq, [batch]).outputs
        got = run64(folded, [batch]).outputs
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(w, g)


def test_compiled_integer_graph_matches_the_interpreter(cnn) -> None:
    _, result, _, x = cnn
    module = smelt.compile(result.graph, "cpu")
    assert all(rule is not None for rule in module.kernels.values()), module.kernels
    got = module(x)
    got = got[0] if isinstance(got, (list, tuple)) else got
    np.testing.assert_array_equal(np.asarray(got), smelt.interpret(result.graph, x)[0])


def test_measured_error_stays_within_the_computed_bound(cnn) -> None:
    _, result, cal, _ = cnn
    float_graph, quantized = result.graphs[2], result.graphs[3]
    bound = result.report.passes[2].contract.atol
    assert 0 < bound < np.inf
    for batch in cal:
        ref = run64(float_graph, [batch]).outputs[0]
        got = run64(quantized, [batch]).outputs[0]
        assert np.abs(ref - got).max() <= bound


# -- rounding ties and saturation, on purpose ----------------------------------------------------
def _linear_qdq(s_x: float, s_w: float, s_y: float, w: np.ndarray, relu: bool = False
                ) -> Graph:
    x = Node.input("x", (1, w.shape[1]), "uint8")
    dx = Node.make("dequantize", (x,), scale=(s_x,), zero_point=(0,))
    dw = Node.make("dequantize", (Node.constant(w),), scale=(s_w,), zero_point=(0,))
    y = Node.make("linear", (dx, dw))
    if relu:
        y = Node.make("relu", (y,))
    return Graph([x], [Node.make("quantize", (y,), scale=(s_y,), zero_point=(3,), bits=8,
                                 signed=True)])


def test_ties_round_to_even_bit_exactly() -> None:
    """acc * s_x s_w / s_y = k + 1/2 for every k: half up (TFLite, ORT's bug 32132) would
    be one off on every even k; smelt matches the Q/DQ graph on all of them."""
    w = np.array([[1]], np.int8)
    qdq = _linear_qdq(0.5, 1.0, 1.0, w)
    folded = Pipeline.parse("fold-qdq")(qdq)
    assert {n.op for n in folded.nodes()} >= {"qlinear", "requantize"}
    x = np.arange(0, 60, dtype=np.uint8).reshape(-1, 1)
    for v in x:
        batch = v.reshape(1, 1)
        want = run64(qdq, [batch]).outputs[0]
        got = smelt.interpret(folded, batch)[0]
        assert got == want
        real = v[0] * 0.5
        assert got[0, 0] - 3 == np.rint(real)  # ties to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2
    compiled = smelt.compile(folded, "cpu")
    for v in x:
        (got,) = compiled(v.reshape(1, 1))
        np.testing.assert_array_equal(got, smelt.interpret(folded, v.reshape(1, 1))[0])


def test_saturation_and_folded_relu_clamp() -> None:
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(6, 16)).astype(np.int8)
    for relu in (False, True):
        qdq = _linear_qdq(2.0**-2, 2.0**-3, 2.0**-9, w, relu)  # a tiny output scale
        folded = Pipeline.parse("fold-qdq")(qdq)
        assert "relu" not in {n.op for n in folded.nodes()}
        x = rng.integers(0, 256, size=(1, 16)).astype(np.uint8)
        want = run64(qdq, [x]).outputs[0]
        got = smelt.interpret(folded, x)[0]
        np.testing.assert_array_equal(got, want)
        assert {-128, 127} <= set(got.ravel().tolist()) or relu
        if relu:
            assert got.min() >= 3  # relu clamps at the zero point


def test_a_non_dyadic_rescale_is_not_folded_and_reported() -> None:
    w = np.array([[1, 2], [3, 4]], np.int8)
    qdq = _linear_qdq(0.1, 0.3, 0.7, w)  # long mantissas: no exact int32 rescale
    result = Pipeline.parse("fold-qdq").run(qdq)
    assert "qlinear" not in {n.op for n in result.graph.nodes()}
    (island,) = legality(result.graph)
    assert island.node.op == "linear" and "dyadic" in island.reason
    assert any("dyadic" in note for note in result.report.passes[0].notes)


# -- schemes ------------------------------------------------------------------------------------
def _weights(g: Graph) -> list[Node]:
    return [n for n in g.nodes() if n.op == "dequantize" and n.inputs[0].op == "constant"]


def test_per_tensor_scheme_has_one_weight_scale_per_layer() -> None:
    graph, cal, _ = traced("residual_cnn")
    out = Pipeline.parse("fold-bn,quantize(w8a8-tensor)")(graph, calibration=cal)
    ws = [d for d in _weights(out) if d.inputs[0].dtype == "int8"]
    assert ws and all(len(d.attrs["scale"]) == 1 for d in ws)
    folded = Pipeline.parse("fold-qdq")(out)
    assert legality(folded) == []


def test_weight_only_schemes_need_no_calibration() -> None:
    graph, _, x = traced("encoder_block")
    for scheme, lo, hi in (("w8", -127, 127), ("w4a16", -7, 7)):
        out = Pipeline.parse(f"quantize({scheme})")(graph)
        assert not any(n.op == "quantize" for n in out.nodes())
        ws = [d.inputs[0].value for d in _weights(out)]
        assert ws and all(v.dtype == np.int8 and lo <= v.min() and v.max() <= hi for v in ws)
        ref, got = smelt.interpret(graph, x)[0], smelt.interpret(out, x)[0]
        rel = np.abs(ref - got).max() / np.abs(ref).max()
        assert rel < (0.05 if scheme == "w8" else 0.3), (scheme, rel)


def test_w4a16_groups_the_input_features() -> None:
    x = Node.input("x", (2, 256), "float32")
    w = Node.constant(np.random.default_rng(1).normal(size=(4, 256)).astype(np.float32))
    g = Graph([x], [Node.make("linear", (x, w))])
    out = Pipeline.parse("quantize(w4a16, group=64)")(g)
    (d,) = _weights(out)
    assert d.inputs[0].shape == (16, 64) and len(d.attrs["scale"]) == 16


def test_transformer_islands_are_reported_with_reasons() -> None:
    graph, cal, _ = traced("encoder_block")
    result = Pipeline.parse("quantize(w8a8),fold-qdq").run(graph, calibration=cal)
    islands = legality(result.graph)
    ops = {i.node.op for i in islands}
    assert ops and ops <= {"softmax", "layer_norm", "gelu", "mul", "div", "transpose",
                           "reshape", "sub", "exp", "erf", "tanh", "add", "pow", "sqrt",
                           "reduce_mean", "rsqrt", "matmul", "linear", "split", "project"}
    assert all(i.reason for i in islands)
    notes = " ".join(result.report.passes[-1].notes)
    assert "float between quantized tensors" in notes


# -- errors ------------------------------------------------------------------------------------
def test_a_tensor_holding_infinities_stays_float() -> None:
    """An attention mask's -inf (transformers' masks, added to the scores): no integer range
    covers it, so quantize leaves that tensor float with a note and quantizes the rest."""
    rng = np.random.default_rng(0)
    x, mask = Node.input("x", (4, 8)), Node.input("mask", (4, 4))
    w1 = Node.constant(rng.normal(size=(8, 8)).astype(np.float32))
    q = Node.make("linear", [x, w1])
    scores = Node.make("add", [Node.make("matmul", [q, Node.make("transpose", [q],
                                                                  perm=(1, 0))]), mask])
    graph = Graph([x, mask], [Node.make("softmax", [scores], axis=-1)])
    causal = np.triu(np.full((4, 4), -np.inf, np.float32), 1)
    cal = [(rng.normal(size=(4, 8)).astype(np.float32), causal) for _ in range(3)]
    result = Pipeline.parse("quantize(w8a8)").run(graph, calibration=cal)
    notes = " ".join(result.report.passes[-1].notes)
    assert "input mask stays float: it holds NaN or infinite values" in notes
    assert "4 activation tensors" in notes  # x, the linear's output, scores, the softmax
    ops = [n.op for n in result.graph.nodes()]
    assert ops.count("quantize") >= 2  # the linear's input and output still quantized
    got = smelt.interpret(result.graph, *cal[0])[0]
    assert np.isfinite(got).all() and (got[np.isinf(causal)] == 0).all()  # masked: zero
    with pytest.raises(NonFiniteError, match="input 'mask'"):  # asked for outside quantize
        calibrate(graph, cal, {mask: make_observer("minmax")})


def test_a_concat_with_an_infinite_operand_stays_float_whole() -> None:
    """A concat's operands share the concat's parameters, so one that no integer range
    covers keeps all of them, and the concat, float; the layers around still quantize."""
    rng = np.random.default_rng(1)
    x, mask = Node.input("x", (2, 4)), Node.input("mask", (2, 3))
    w = Node.constant(rng.normal(size=(4, 4)).astype(np.float32))
    h = Node.make("linear", [x, w])
    joined = Node.make("concat", [h, mask], axis=1)
    out = Node.make("linear", [joined, Node.constant(rng.normal(size=(2, 7)).astype(np.float32))])
    cal = [(rng.normal(size=(2, 4)).astype(np.float32),
            np.where(rng.random((2, 3)) < 0.5, -np.inf, 0).astype(np.float32)) for _ in range(3)]
    with np.errstate(invalid="ignore"):  # -inf through the last linear: NaN, left float
        result = Pipeline.parse("quantize(w8a8),fold-qdq").run(Graph([x, mask], [out]),
                                                               calibration=cal)
    notes = " ".join(result.report.passes[0].notes)
    assert "input mask stays float" in notes and "concatenated with it stay float" in notes
    (c,) = [n for n in result.graph.nodes() if n.op == "concat"]
    assert c.dtype == "float32" and c.inputs[0].op == "linear"  # h not quantized either
    assert [n.op for n in result.graph.nodes()].count("quantize") == 1  # x only


def test_activation_schemes_need_calibration_data() -> None:
    graph, _, _ = traced("residual_cnn")
    with pytest.raises(PipelineParseError, match="calibration"):
        Pipeline.parse("quantize(w8a8)")(graph)


@pytest.mark.parametrize("spec, match", [("quantize(w3a3)", "unknown scheme"),
                                         ("quantize(w8a8, observer='median')", "observer"),
                                         ("quantize(w4a16, group=0)", "group")])
def test_bad_options_are_typed_errors(spec: str, match: str) -> None:
    with pytest.raises(PipelineParseError, match=match):
        Pipeline.parse(spec)


@pytest.mark.parametrize("observer", ["moving-average", "percentile", "mse"])
def test_every_observer_gives_a_foldable_graph(observer: str) -> None:
    graph, cal, x = traced("residual_cnn")
    out = Pipeline.parse(f"fold-bn,quantize(w8a8, observer='{observer}'),fold-qdq")(
        graph, calibration=cal)
    assert legality(out) == []
    ref = smelt.interpret(graph, x)[0]
    rel = np.abs(smelt.interpret(out, x)[0] - ref).max() / np.abs(ref).max()
    assert rel < 0.2, (observer, rel)


# -- tables and products of activations ----------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(ideal=st.floats(1e-6, 10.0), a=st.integers(1, 63), b=st.integers(1, 63),
       ea=st.integers(-20, 0), eb=st.integers(-20, 0))
def test_product_scale_covers_the_range_and_gives_a_dyadic_rescale(ideal, a, b, ea, eb):
    s_a, s_b = float(np.ldexp(a, ea)), float(np.ldexp(b, eb))
    s = product_scale(ideal, s_a, s_b)
    r = Fraction(s_a) * Fraction(s_b) / Fraction(s)
    assert ideal <= s < 2 * ideal and r.denominator & (r.denominator - 1) == 0
    assert odd_part(s) < 64  # a 6-bit mantissa, as every activation scale


def test_attention_products_and_activations_run_on_integers() -> None:
    """encoder_block: p v is a qmatmul (its output scale matched to p's and v's), gelu a
    256-entry table; the compiled graph equals the interpreter."""
    graph, cal, x = traced("encoder_block")
    result = Pipeline.parse(W8A8).run(graph, calibration=cal)
    ops = [n.op for n in result.graph.nodes()]
    assert "qlookup" in ops and "gelu" not in ops
    assert ops.count("qmatmul") >= 1
    got = smelt.compile(result.graph, "cpu")(x)
    got = got[0] if isinstance(got, (list, tuple)) else got
    np.testing.assert_array_equal(np.asarray(got), smelt.interpret(result.graph, x)[0])
