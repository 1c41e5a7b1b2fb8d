"""smelt.export_onnx: graphs out as ONNX models, run by ONNX Runtime against the interpreter.

- Every zoo model exports, passes onnx.checker with its full check (ONNX's own type and shape
  inference agrees with every value_info smelt writes), and ONNX Runtime computes what the
  interpreter computes, before and after fold-bn,equalize,canonicalize,fuse (so the fused
  ops, with their activation and residual attributes, run too), and at opset 18 (gelu as its
  formula) as well as the default 21.
- Q/DQ graphs (quantize(scheme=w8a8) on CNNs and transformer blocks), with every quantize
  node made an output: QuantizeLinear gives the interpreter's integers bit for bit, and the
  float outputs agree within one step of the output's quantization. ONNX Runtime runs them
  with its graph optimizations off: at its default level it fuses DequantizeLinear -> Conv ->
  QuantizeLinear into QLinearConv, its own integer kernel, which is not the Q/DQ graph's
  arithmetic (a runtime's choice: docs/onnx.md gives what it changes).
- Per op: test_ops_reference's CASES (imported, not copied) as one-node graphs, float
  operands in float32 and the compressed weights of linear24 / linear_w4 constant, against
  the interpreter's float64 oracle with that module's contract, |got - oracle| <= 8 eps
  (sqrt(K) max|term| + |oracle|). Kept out, as ONNX Runtime's behaviour rather than the
  export's (docs/onnx.md lists them): NaN and infinities for the max-like ops (its MaxPool,
  ReduceMax, ArgMax and ScatterElements' max / min skip NaN, and MaxPool gives the lowest
  finite float for a window of -inf or of padding alone); the error of its Sigmoid, ~6e-8
  absolute rather than relative, so sigmoid and silu take the contract's operand-scaled
  bound; integer products that overflow (undefined in C++, saturated by ONNX Runtime); and
  examples an op refuses for their attributes (adaptive bins that do not divide, scatter's
  mean), which must name the op. Where float32 itself overflows or gives NaN (an attribute
  rounded to float32), the interpreter's float32 result decides.
- Refusals: fold-qdq's integer kernels and the ops with no exact form raise OnnxExportError
  naming the op, its printed line and what to do; onnx missing raises OnnxNotInstalledError;
  `import smelt` imports no onnx.

Tolerance per zoo model: both sides compute in float32 with different kernels and summation
orders; we allow 1e-5 of the output's scale (max |output|, at least 1). Seen: <= 3e-6.
"""

from __future__ import annotations

import dataclasses
import functools
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ops_reference import CASES, Example, assert_matches

import smelt
from smelt.backends.interop import (
    NO_FORM,
    ONNX_OPS,
    OnnxExportError,
    OnnxNotInstalledError,
    export_onnx,
)
from smelt.ir import OPS, Graph, Node, TupleType
from smelt.ir.types import dtype_of_array, is_float, numpy_dtype
from smelt.zoo import ZOO

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

FUSED = "fold-bn,equalize,canonicalize,fuse"
QDQ_MODELS = ("residual_cnn", "mobilenet_v2", "encoder_block", "llama_block")


def run_onnx(model, feeds, optimize: bool = True) -> list[np.ndarray]:
    """The model run by ONNX Runtime's CPU provider on `feeds` (in input order)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, feeds, strict=True)))


def exported(graph: Graph, **options):
    model = export_onnx(graph, **options)
    onnx.checker.check_model(model, full_check=True)
    return model


def within_scale(got: np.ndarray, want: np.ndarray, rel: float = 1e-5) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape)
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= rel * scale, f"error {err:.3g} > {rel} * {scale:.3g}"


@functools.cache
def traced(name: str) -> tuple[Graph, tuple[np.ndarray, ...]]:
    entry = ZOO[name]
    args = entry.inputs()
    return smelt.trace(entry.build(), args), tuple(a.numpy() for a in args)


# -- the table -------------------------------------------------------------------------------
def test_every_op_has_an_entry() -> None:
    assert set(ONNX_OPS) == set(OPS) - {"input", "constant"}


# -- zoo models --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_matches_the_interpreter(name: str) -> None:
    graph, args = traced(name)
    fused = smelt.Pipeline.parse(FUSED)(graph, calibration=[args])
    assert name == "tiny_acts" or any(n.op.startswith("fused_") for n in fused.nodes())
    for g in (graph, fused):
        (got,) = run_onnx(exported(g), args)
        within_scale(got, smelt.interpret(g, *args)[0])


@pytest.mark.parametrize("name, spec, op", [("llama_block", "sparsify-24,pack-24", "linear24"),
                                           ("encoder_block", "quantize(w4a16),pack-int4",
                                            "linear_w4")])
def test_compressed_weights_export_dense(name: str, spec: str, op: str) -> None:
    graph, args = traced(name)
    packed = smelt.Pipeline.parse(spec)(graph, calibration=[args])
    assert op in packed.summary().ops
    (got,) = run_onnx(exported(packed), args)
    within_scale(got, smelt.interpret(packed, *args)[0])


@pytest.mark.parametrize("name", ["tiny_acts", "encoder_block"])
def test_opset_18_writes_gelu_as_its_formula(name: str) -> None:
    graph, args = traced(name)
    model = exported(graph, opset=18)
    ops = {n.op_type for n in model.graph.node}
    assert "Gelu" not in ops and "Erf" in ops and model.opset_import[0].version == 18
    (got,) = run_onnx(model, args)
    within_scale(got, smelt.interpret(graph, *args)[0])


def test_written_file_loads_back(tmp_path) -> None:
    graph, args = traced("residual_cnn")
    model = smelt.export_onnx(graph, tmp_path / "model.onnx")
    loaded = onnx.load(tmp_path / "model.onnx")
    assert loaded.SerializeToString() == model.SerializeToString()
    assert [i.name for i in loaded.graph.input] == graph.input_names()
    assert [o.name for o in loaded.graph.output] == ["output"]
    weights = {graph.names[c] for c in graph.constants() if c.value.size > 64}
    assert weights <= {t.name for t in loaded.graph.initializer}  # the side table's names
    assert {"convolution", "relu", "max_pool2d"} <= {n.name for n in loaded.graph.node}


# -- Q/DQ graphs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", QDQ_MODELS)
def test_qdq_graph_gives_the_interpreters_integers(name: str) -> None:
    graph, args = traced(name)
    rng = np.random.default_rng(3)
    q = smelt.Pipeline.parse("quantize(scheme=w8a8)")(graph, calibration=[args])
    quantized = [n for n in q.nodes() if n.op == "quantize"]
    shown = Graph(q.inputs, [*q.outputs, *quantized], names=q.names)
    model = exported(shown)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    steps = [n.attrs["scale"][0] for n in q.nodes() if n.op == "dequantize"
             and n.attrs["axis"] is None]
    wide = (2 * rng.standard_normal(args[0].shape)).astype(np.float32)  # saturates some
    for batch in (args, (wide,)):
        got = run_onnx(model, batch, optimize=False)
        want = smelt.interpret(shown, *batch)
        for g, w in zip(got[len(q.outputs):], want[len(q.outputs):], strict=True):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
        for g, w in zip(got[:len(q.outputs)], want[:len(q.outputs)], strict=True):
            np.testing.assert_allclose(g, w, rtol=0, atol=min(steps))


def test_narrow_and_per_channel_quantize_map_exactly() -> None:
    """4-bit (int8 storage, clamped), qmin/qmax, int16 (opset 21), per-channel zero points,
    and an int32 dequantize with a zero point (the float64 form), ties included; a scale
    float32 cannot hold (0.1) is rounded to float32, so its dequantized values may differ by
    an ulp."""
    x = Node.input("x", (2, 3, 4))
    q4 = Node.make("quantize", [x], scale=(0.25,), zero_point=(1,), bits=4)
    qc = Node.make("quantize", [x], scale=(0.5, 0.25, 0.125), zero_point=(3, -2, 0), axis=1,
                   qmin=-100, qmax=90)
    q16 = Node.make("quantize", [x], scale=(1 / 1024,), zero_point=(7,), bits=12)
    d32 = Node.make("dequantize", [Node.constant(np.arange(-6, 6, dtype=np.int32))],
                    scale=(0.5,), zero_point=(-3,))
    du = Node.make("dequantize", [Node.make("quantize", [x], scale=(0.1,), zero_point=(128,),
                                            signed=False)], scale=(0.1,), zero_point=(128,))
    graph = Graph([x], [q4, qc, q16, d32, du])
    rng = np.random.default_rng(5)
    feed = (np.round(rng.normal(0, 8, (2, 3, 4)) * 8) / 8).astype(np.float32)  # ties
    *got, got_du = run_onnx(exported(graph), (feed,))
    *want, want_du = smelt.interpret(graph, feed)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_allclose(got_du, want_du, rtol=2.5e-7, atol=0)
    with pytest.raises(OnnxExportError, match="needs opset 21"):
        export_onnx(Graph([x], [q16]), opset=20)


# -- per op ------------------------------------------------------------------------------------
REFUSED = set(NO_FORM) | {"cumprod"}  # cumprod: opset 26
SOMETIMES_REFUSED = {"adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool2d",
                     "adaptive_max_pool3d", "scatter", "quantize", "cast"}
NAN_SKIPPED = {"max_pool2d", "max_pool3d", "adaptive_max_pool2d", "adaptive_max_pool3d",
               "reduce_max", "reduce_min", "argmax", "scatter"}
ORT_APPROXIMATES = {"sigmoid", "silu"}
CONSTANT_OPERANDS = {"linear24": (1, 2), "linear_w4": (1, 2)}


def one_op_graph(op: str, ex: Example) -> tuple[Graph, list[np.ndarray]]:
    """The op on the example's operands (floats in float32, weights constant where the op
    decompresses them); bfloat16 outputs cast to float32 (numpy has no bfloat16)."""
    args = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in ex.args]
    if op in NAN_SKIPPED:
        args = [np.where(np.isfinite(a), a, 0).astype(a.dtype) if a.dtype.kind == "f" else a
                for a in args]
    xs = [Node.constant(a) if i in CONSTANT_OPERANDS.get(op, ()) else
          Node.input(f"a{i}", a.shape, dtype_of_array(a)) for i, a in enumerate(args)]
    node = Node.make(op, xs, **ex.attrs)
    outs = [node]
    if isinstance(node.type, TupleType):
        outs = [Node.make("project", [node], index=i) for i in range(len(node.type.elements))]
    outs = [Node.make("cast", [o], dtype="float32") if o.dtype == "bfloat16" else o
            for o in outs]
    feed = [a for x, a in zip(xs, args, strict=True) if x.op == "input"]
    return Graph([x for x in xs if x.op == "input"], outs), feed


def overflows(op: str, feed: list[np.ndarray]) -> bool:
    a = feed[0]
    return op == "reduce_prod" and a.dtype.kind in "iu" and a.size > 0 and float(
        np.prod(np.abs(a.astype(np.float64)))) > np.iinfo(a.dtype).max


@pytest.mark.parametrize("op", sorted(set(CASES) - REFUSED))
@settings(max_examples=4)
@given(data=st.data())
def test_op_matches_the_interpreter(op: str, data: st.DataObject) -> None:
    ex = data.draw(CASES[op].examples, label="example")
    graph, feed = one_op_graph(op, ex)
    try:
        model = exported(graph)
    except OnnxExportError as e:
        assert op in SOMETIMES_REFUSED and f"op {op!r}" in str(e) and "to do:" in str(e)
        return
    if overflows(op, feed):
        return
    case = CASES[op]
    if op in ORT_APPROXIMATES:
        case = dataclasses.replace(case, term="operands")
    with np.errstate(all="ignore"):
        got = run_onnx(model, feed, optimize=False)
        want = smelt.interpret(graph, *feed, precision="float32" if op == "cast" else "float64")
        want32 = smelt.interpret(graph, *feed)
    for g, w, w32, out in zip(got, want, want32, graph.outputs, strict=True):
        assert g.dtype == numpy_dtype(out.dtype), f"{g.dtype} for a {out.dtype} output"
        if op in NAN_SKIPPED and g.dtype.kind == "f":  # a window all padding: -inf in smelt
            g = np.where(g == np.finfo(g.dtype).min, -np.inf, g).astype(g.dtype)
        if w.dtype.kind == "f":  # where float32 itself overflows or gives NaN, it decides
            odd = ~np.isfinite(w32)  # (an attribute rounded to float32: -inf * fl32(5e-324))
            np.testing.assert_array_equal(g[odd], w32[odd])
            w = np.where(odd, w32, w).astype(np.float64)
        assert_matches(g, w, ex, case)


@pytest.mark.parametrize("op, size", [("adaptive_avg_pool2d", (2, 3)),
                                      ("adaptive_max_pool2d", (1, 1)),
                                      ("adaptive_avg_pool3d", (2, 1, 3))])
def test_adaptive_pool_with_dividing_sizes(op: str, size: tuple[int, ...]) -> None:
    x = Node.input("x", (2, 3, *(4 * s for s in size)))
    graph = Graph([x], [Node.make(op, [x], output_size=size)])
    feed = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    (got,) = run_onnx(exported(graph), (feed,))
    np.testing.assert_allclose(got, smelt.interpret(graph, feed)[0], rtol=1e-6, atol=1e-6)


def test_outputs_that_are_inputs_or_repeated_get_their_own_names() -> None:
    x = Node.input("output", (2, 3))
    y = Node.make("relu", [x])
    graph = Graph([x], [y, y, x, Node.constant(np.float32(2.0))])
    model = exported(graph)
    assert [o.name for o in model.graph.output] == ["output_0", "output_1", "output_2",
                                                    "output_3"]
    feed = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    for g, w in zip(run_onnx(model, (feed,)), smelt.interpret(graph, feed), strict=True):
        np.testing.assert_array_equal(g, w)


# -- refusals ----------------------------------------------------------------------------------
def test_fold_qdq_kernels_are_refused_with_the_line_and_what_to_do() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                                torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 5)).eval()
    x = torch.randn(1, 3, 6, 6)
    graph = smelt.trace(model, (x,))
    folded = smelt.Pipeline.parse("fold-bn,quantize(scheme=w8a8),fold-qdq")(
        graph, calibration=[(x.numpy(),)])
    kernels = [n.op for n in folded.nodes() if n.op in NO_FORM]
    assert "qconv2d" in kernels
    with pytest.raises(OnnxExportError) as info:
        smelt.export_onnx(folded)
    message = str(info.value)
    first = message.split("'")[1]
    assert first in kernels and "fold-qdq" in message and "QuantizeLinear" in message
    marked = [line for line in message.splitlines() if line.lstrip().startswith(">>")]
    assert len(marked) == 1 and first in marked[0], message


def _refused(op: str, shapes, **attrs) -> Graph:
    xs = [Node.input(f"a{i}", s, d) for i, (s, d) in enumerate(shapes)]
    node = Node.make(op, xs, **attrs)
    if isinstance(node.type, TupleType):
        node = Node.make("project", [node], index=0)
    return Graph(xs, [Node.make("relu", [node]) if is_float(node.dtype) else node])


REFUSALS = [
    ("atan2", [((3,), "float32"), ((3,), "float32")], {}, "atan"),
    ("sort", [((3, 4), "float32")], {}, "NaN"),
    ("cumprod", [((3, 4), "float32")], {"axis": 1}, "opset 26"),
    ("adaptive_avg_pool2d", [((1, 2, 5, 5), "float32")], {"output_size": (3, 3)}, "divide"),
    ("scatter", [((4,), "float32"), ((2,), "int64"), ((2,), "float32")],
     {"axis": 0, "reduce": "mean"}, "mean"),
    ("cast", [((4,), "int32")], {"dtype": "int4"}, "int8"),
    ("quantize", [((4,), "float32")], {"scale": (0.5,), "bits": 32}, "16-bit"),
]


@pytest.mark.parametrize("op, shapes, attrs, hint", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_ops_without_an_exact_form_are_refused(op: str, shapes, attrs, hint: str) -> None:
    with pytest.raises(OnnxExportError) as info:
        export_onnx(_refused(op, shapes, **attrs))
    message = str(info.value)
    assert f"cannot export op {op!r}" in message and hint in message and "to do:" in message
    assert ">>" in message, "the node's printed line is shown"


def test_an_op_without_an_entry_is_named() -> None:
    x = Node.input("x", (2,))
    graph = Graph([x], [Node.unchecked("mystery", [x], {}, x.type)])
    with pytest.raises(OnnxExportError, match="(?s)mystery.*no entry.*onnx_ops.py"):
        export_onnx(graph)


def test_a_bad_opset_is_refused() -> None:
    graph, _ = traced("tiny_acts")
    with pytest.raises(OnnxExportError, match="opset 17 is outside"):
        export_onnx(graph, opset=17)


def test_missing_onnx_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    x = Node.input("x", (2,))
    with pytest.raises(OnnxNotInstalledError, match=r"pip install onnx.*bench") as info:
        smelt.export_onnx(Graph([x], [Node.make("relu", [x])]))
    assert isinstance(info.value, smelt.SmeltError) and isinstance(info.value, ImportError)


def test_import_smelt_imports_no_onnx() -> None:
    code = ("import sys, smelt; smelt.export_onnx; smelt.OnnxExportError; "
            "from smelt.backends.interop import ONNX_OPS; "
            "assert 'onnx' not in sys.modules, 'onnx imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
