"""awq and 4-bit packing: the search is never worse than round to nearest on its objective and
better on outlier channels, the report names every linear layer, bad options are typed
errors, packing round-trips, and the compiled W4A16 kernel reads the packed bytes and agrees
with the reference. (The pack-int4 rule is verified with every registered rule.)"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_smoothquant import outlier_llama
from tvm.ir.expr import Constant

import smelt
from smelt.ir import Graph, Node, TypeInferenceError
from smelt.ir.ops.int4 import pack_int4, unpack_int4
from smelt.passes.awq import awq_scales, group_error, search
from smelt.rewrite.errors import PipelineParseError
from smelt.rewrite.pipeline import Pipeline


@pytest.fixture(scope="module")
def llama():
    return outlier_llama()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))


# -- the search ----------------------------------------------------------------------------------
@given(seed=st.integers(0, 2**32 - 1), outlier=st.floats(1.0, 100.0))
def test_search_is_never_worse_than_round_to_nearest(seed: int, outlier: float) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 32)).astype(np.float32)
    x[:, rng.integers(0, 32, size=2)] *= outlier
    ws = [rng.normal(size=(n, 32)).astype(np.float32) for n in (8, 16)]
    m = np.abs(x).mean(axis=0)
    a, s, before, after = search(x, m, ws, 16, 10)
    assert before == pytest.approx(group_error(x, ws, np.ones(32), 16))  # a = 0 is RTN
    assert after <= before
    assert after == pytest.approx(group_error(x, ws, s, 16))
    if a == 0:
        np.testing.assert_array_equal(s, np.ones(32))


def test_search_helps_on_outlier_channels() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 64)).astype(np.float32)
    x[:, [5, 40]] *= 50.0
    w = [rng.normal(size=(32, 64)).astype(np.float32)]
    a, _, before, after = search(x, np.abs(x).mean(axis=0), w, 32, 20)
    assert a > 0 and after < 0.7 * before, (a, before, after)


def test_scales_follow_the_formula() -> None:
    m = np.array([4.0, 1.0, 0.25])
    np.testing.assert_allclose(awq_scales(m, 0.5), [2.0, 1.0, 0.5])  # / sqrt(2 * 0.5)
    np.testing.assert_array_equal(awq_scales(m, 0.0), np.ones(3))


# -- the pass --------------------------------------------------------------------------------------
def test_awq_beats_round_to_nearest_and_reports_every_linear(llama) -> None:
    graph, cal, x = llama
    ref = smelt.interpret(graph, x)[0]
    rtn = Pipeline.parse("quantize(w4a16, group=32),pack-int4")(graph, calibration=cal)
    result = Pipeline.parse("awq(bits=4, group=32)").run(graph, calibration=cal)
    c_rtn = _cosine(smelt.interpret(rtn, x)[0], ref)
    c_awq = _cosine(smelt.interpret(result.graph, x)[0], ref)
    assert 1 - c_awq < (1 - c_rtn) / 3, (c_rtn, c_awq)  # measured: 0.99883 -> 0.99977
    notes = result.report.passes[0].notes
    linears = [n for n in graph.nodes() if n.op == "linear"]
    reported = [n for n in notes if n.startswith("linear")]
    assert len(reported) == len(linears) == 7
    smoothed = [n for n in reported if ": smoothed, exponent" in n]
    assert len(smoothed) == 5 and all("absorbed into mul" in n for n in smoothed)
    assert all("round to nearest" in n and "->" in n for n in smoothed)
    assert sum("not smoothed" in n for n in reported) == 2  # wo, down: nothing absorbs
    assert any("7 linear weights packed" in n for n in notes)
    ops = [n.op for n in result.graph.nodes()]
    assert ops.count("linear_w4") == 7 and "linear" not in ops


def test_awq_explicit_smooths_every_layer(llama) -> None:
    graph, cal, _ = llama
    result = Pipeline.parse("awq(bits=4, group=32, grid=5, explicit=True)").run(
        graph, calibration=cal)
    notes = [n for n in result.report.passes[0].notes if n.startswith("linear")]
    assert len(notes) == 7
    assert all(": smoothed," in n or "best exponent was 0" in n for n in notes)


def test_groups_that_do_not_divide_are_reported(llama) -> None:
    graph, cal, _ = llama
    notes = Pipeline.parse("awq(bits=4, group=128, grid=2)").run(
        graph, calibration=cal).report.passes[0].notes
    assert any("group 128 does not divide its 160 input features" in n for n in notes)


@pytest.mark.parametrize(("spec", "what"), [("awq(bits=3)", "bits"), ("awq(group=7)", "group"),
                                             ("awq(grid=0)", "grid"),
                                             ("awq(explicit=1)", "explicit")])
def test_bad_options_are_typed_errors(spec: str, what: str) -> None:
    with pytest.raises(PipelineParseError, match=what):
        Pipeline.parse(spec)


def test_awq_needs_calibration(llama) -> None:
    with pytest.raises(PipelineParseError, match="calibration"):
        Pipeline.parse("awq")(llama[0])


# -- packing -----------------------------------------------------------------------------------
@given(st.data())
def test_pack_unpack_round_trip(data: st.DataObject) -> None:
    rows, k = data.draw(st.integers(1, 5)), 2 * data.draw(st.integers(1, 20))
    q = np.array(data.draw(st.lists(st.integers(-8, 7), min_size=rows * k, max_size=rows * k)),
                 np.int8).reshape(rows, k)
    p = pack_int4(q)
    assert p.dtype == np.uint8 and p.shape == (rows, k // 2)
    np.testing.assert_array_equal(unpack_int4(p), q)
    np.testing.assert_array_equal(p & 0xF, q[:, 0::2].astype(np.uint8) & 0xF)  # low first


def test_bad_packed_weights_are_type_errors() -> None:
    x = Node.input("x", (2, 8))
    with pytest.raises(TypeInferenceError, match="uint8"):
        Node.make("linear_w4", (x, Node.constant(np.zeros((3, 4), np.int8)),
                                Node.constant(np.ones((3, 1), np.float32))), group=8)
    with pytest.raises(TypeInferenceError, match="group=3"):
        Node.make("linear_w4", (x, Node.constant(np.zeros((3, 4), np.uint8)),
                                Node.constant(np.ones((3, 1), np.float32))), group=3)
    with pytest.raises(TypeInferenceError, match=r"\[-8, 7\]"):
        pack_int4(np.array([[8, 0]]))


# -- compiled --------------------------------------------------------------------------------------
def _w4_graph(shape: tuple[int, ...], n: int, group: int, bias: bool, seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    x = Node.input("x", shape, "float32")
    ins = [x, Node.constant(rng.normal(size=(n, shape[-1])).astype(np.float32))]
    if bias:
        ins.append(Node.constant(rng.normal(size=n).astype(np.float32)))
    g = Graph([x], [Node.make("linear", ins)])
    return Pipeline.parse(f"quantize(w4a16, group={group}),pack-int4")(g)


@pytest.mark.parametrize(("shape", "n", "group", "bias"),
                         [((2, 5, 64), 48, 32, True), ((3, 6), 5, 2, False), ((10,), 40, 10, True)])
def test_compiled_w4_linear_matches_the_reference(shape, n, group, bias) -> None:
    graph = _w4_graph(shape, n, group, bias, seed=len(shape) + n)
    assert [m.op for m in graph.nodes()].count("linear_w4") == 1
    module = smelt.compile(graph, "cpu")
    assert all(rule is not None for rule in module.kernels.values()), module.kernels
    assert "int4-dense" in module.kernels.values()
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    got, want = module(x)[0], smelt.interpret(graph, x, precision="float64")[0]
    # float32 sums of K terms: the backend contract of tests/test_backend_ops.py
    w = unpack_int4(next(m for m in graph.nodes() if m.op == "constant"
                         and m.dtype == "uint8").value)
    k, term = shape[-1], np.abs(x).max() * np.abs(w).max() * 4.0
    eps = np.finfo(np.float32).eps
    assert np.all(np.abs(got - want) <= 8 * eps * (np.sqrt(k) * term + np.abs(want)) + 1e-30)


def test_compiled_constants_are_the_packed_bytes() -> None:
    """FoldConstant must not turn the weight back into float: the module holds uint8 bytes,
    half of an int8-per-value weight, and only the scales in float."""
    from tvm import relax

    from smelt.backends.cpu.build import fused_kernels
    from smelt.backends.targets import make_target

    graph = _w4_graph((4, 256), 64, 128, False, seed=3)
    mod = fused_kernels(graph, make_target("cpu"))
    found: list[tuple[str, int]] = []

    def visit(e) -> None:
        if isinstance(e, Constant) and hasattr(e.value, "numpy"):
            found.append((str(e.value.dtype), int(e.value.numpy().nbytes)))

    relax.analysis.post_order_visit(mod["main"], visit)
    assert sorted(found) == [("float32", 64 * 2 * 4), ("uint8", 64 * 256 // 2)], found
