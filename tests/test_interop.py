"""Interop: smelt as a torch.compile backend, and smelt graphs back out as torch.fx and JAX.

- `smelt.backend()`: every zoo model under `torch.compile` matches eager PyTorch, with
  parameters frozen as constants (so fold-bn folds); an op smelt lacks, or a graph that
  needs autograd, runs with torch after exactly one one-line FallbackWarning; a weight
  changed in place is seen; graph breaks and nested outputs keep their structure.
- `smelt.to_torch` / `smelt.to_jax`: every op of the op table has an entry; every op matches
  the reference interpreter on test_ops_reference's CASES (imported, not copied), and every
  zoo model matches it before and after fold-bn,canonicalize,fuse (so the fused ops, with
  their activation and residual attributes, run too); the results go through torch.compile
  (aot_eager) and jax.jit. Both run the one table of backends/interop/array_ops.py: the torch
  and JAX namespaces define the same names, and Dynamo captures a to_torch module whole.

Tolerances. Per op, the contract of test_ops_reference (its docstring derives it):
|got - oracle| <= 8 eps (sqrt(K) max|term| + |oracle|) against the interpreter's float64
mode, bit for bit for exact ops and integer results. Per model, both sides compute in float32
with different summation orders and kernels (oneDNN, XLA, TVM), so, as the frontend and CPU
backend tests do, we allow 1e-4 of the output's scale; the worst errors seen are ~5e-7.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ops_reference import CASES, Case, Example, assert_matches

import smelt
from smelt.backends.interop import (
    BACKEND,
    JAX_OPS,
    LIBRARY,
    STANDARD,
    STRUCTURAL,
    TORCH_OPS,
    FallbackWarning,
    JaxConversionError,
    SmeltBackend,
    TorchConversionError,
    jax_namespace,
    missing_ops,
    torch_namespace,
)
from smelt.ir import OPS, Graph, Node, TupleType
from smelt.ir.types import dtype_of_array, numpy_dtype
from smelt.zoo import ZOO

PIPELINE = "fold-bn,canonicalize,fuse"


def within_scale(got: np.ndarray, want: np.ndarray) -> None:
    """The float32 model contract: 1e-4 of the output's scale (see the docstring)."""
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= 1e-4 * scale, f"error {err:.3g} > 1e-4 * {scale:.3g}"


def host(value) -> np.ndarray:
    """A torch or JAX result as numpy (bfloat16 widened to float32, as the interpreter
    holds it)."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        return (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    a = np.asarray(value)
    return a.astype(np.float32) if a.dtype.name == "bfloat16" else a


def compiled(model: torch.nn.Module, backend: SmeltBackend):
    torch._dynamo.reset()  # each test compiles afresh, with static shapes
    return torch.compile(model, backend=backend, dynamic=False)


# -- the torch.compile backend ---------------------------------------------------------------
@pytest.mark.parametrize("name", list(ZOO))
def test_backend_matches_eager_on_zoo(name: str) -> None:
    entry = ZOO[name]
    model, args = entry.build(), entry.inputs()
    backend = smelt.backend(PIPELINE)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        got = compiled(model, backend)(*args)
        want = model(*args)
    assert backend.graphs and all(g.fallback is None for g in backend.graphs)
    assert isinstance(got, torch.Tensor) and got.dtype == want.dtype
    within_scale(got.numpy(), want.numpy().astype(np.float64))
    ops = {n.op for g in backend.graphs for n in g.graph.nodes()}
    assert "batch_norm" not in ops, "parameters should be constants, so fold-bn folds them"


class Cumulative(torch.nn.Module):
    """A linear layer, then an op smelt lacks (an FFT: smelt has no complex dtypes), then a
    relu."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(self.fc(x), dim=-1).abs().relu()


def fallback_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, FallbackWarning)]


def test_backend_falls_back_with_one_warning_naming_the_op() -> None:
    model, x = Cumulative().eval(), torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    backend = smelt.backend()
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cm = compiled(model, backend)
        got, again = cm(x), cm(x)
        want = model(x)
    messages = fallback_warnings(caught)
    assert len(messages) == 1, messages
    assert "\n" not in messages[0]
    assert "aten._fft_r2c" in messages[0] and "test_interop.py" in messages[0], messages[0]
    assert "running this graph with torch" in messages[0]
    assert [g.fallback is not None for g in backend.graphs] == [True]
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # torch ran it: the same numbers
    torch.testing.assert_close(again, want, rtol=0, atol=0)


def test_backend_falls_back_when_the_graph_needs_autograd() -> None:
    model, x = Cumulative().eval(), torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = compiled(model, smelt.backend())(x)
    messages = fallback_warnings(caught)
    assert len(messages) == 1 and "autograd" in messages[0] and "no_grad" in messages[0]
    got.sum().backward()  # torch ran it, so gradients flow
    grad = model.fc.weight.grad.clone()
    model.zero_grad()
    model(x).sum().backward()
    torch.testing.assert_close(grad, model.fc.weight.grad)


class TwoGraphs(torch.nn.Module):
    """A graph break between two compiled graphs, and nested outputs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(8, 6)
        self.bn = torch.nn.BatchNorm1d(6).eval()

    def forward(self, x: torch.Tensor):
        y = self.fc(x)
        torch._dynamo.graph_break()
        return y, {"z": torch.relu(self.bn(y)), "t": x.t()}


def test_backend_keeps_structure_across_graph_breaks_and_sees_weight_updates() -> None:
    model, x = TwoGraphs(), torch.randn(4, 8, generator=torch.Generator().manual_seed(3))
    backend = smelt.backend(PIPELINE)
    with torch.inference_mode():
        cm = compiled(model, backend)
        y, rest = cm(x)
        want_y, want_rest = model(x)
    assert len(backend.graphs) == 2 and all(g.fallback is None for g in backend.graphs)
    assert set(rest) == {"z", "t"}
    for got, want in ((y, want_y), (rest["z"], want_rest["z"]), (rest["t"], want_rest["t"])):
        within_scale(got.numpy(), want.numpy().astype(np.float64))
    with torch.inference_mode():
        model.fc.weight.mul_(-2.0)  # frozen weights are rebuilt when changed in place
        y, rest = cm(x)
        want_y, want_rest = model(x)
    assert len(backend.graphs) == 2  # rebuilt in place, not recompiled by Dynamo
    assert [g.rebuilds for g in backend.graphs] == [1, 0]
    within_scale(y.numpy(), want_y.numpy().astype(np.float64))
    within_scale(rest["z"].numpy(), want_rest["z"].numpy().astype(np.float64))


class Counter(torch.nn.Module):
    """Writes a 0-d buffer on every call (as batch norm's num_batches_tracked would)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.register_buffer("calls", torch.zeros(()))
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        return self.fc(x) * self.calls


def test_backend_leaves_buffers_the_model_writes_unfrozen() -> None:
    model, x = Counter(), torch.randn(2, 4, generator=torch.Generator().manual_seed(4))
    backend = smelt.backend()
    with torch.no_grad():
        cm = compiled(model, backend)
        outs = [cm(x) for _ in range(3)]
        base = model.fc(x)
    assert float(model.calls) == 3.0 and model.calls.shape == ()
    (graph,) = backend.graphs
    assert graph.fallback is None and graph.rebuilds == 0 and len(graph.static) == 2
    for k, out in enumerate(outs, start=1):
        within_scale(out.numpy(), (base * k).numpy().astype(np.float64))


def test_backend_rejects_a_bad_pipeline_or_target_at_once() -> None:
    with pytest.raises(smelt.UnknownPassError):
        smelt.backend("canonicalize,no-such-pass")
    with pytest.raises(smelt.SmeltError, match="unknown target"):
        smelt.backend(target="tpu")
    with pytest.raises(smelt.SmeltError, match="needs board="):
        smelt.backend(target="c")
    assert "fold-bn" in repr(smelt.backend(PIPELINE))
    assert "mps2-an386" in repr(smelt.backend(target="c", board="mps2-an386"))


# -- to_torch and to_jax: coverage -----------------------------------------------------------
@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_has_a_torch_entry(op: str) -> None:
    assert op in TORCH_OPS or op in STRUCTURAL, (
        f"op {op!r} has no entry in TORCH_OPS (backends/interop/array_ops.py)")


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_has_a_jax_entry(op: str) -> None:
    assert op in JAX_OPS or op in STRUCTURAL, (
        f"op {op!r} has no entry in JAX_OPS (backends/interop/array_ops.py)")


def test_both_namespaces_define_the_names_the_table_uses() -> None:
    """The one table (array_ops) runs over either namespace: both define every standard and
    backend name, LIBRARY's among them, and no op lacks an entry."""
    names = set(STANDARD) | set(BACKEND)
    assert set(LIBRARY.values()) <= names
    for namespace in (torch_namespace, jax_namespace):
        assert all(callable(getattr(namespace, name, None)) for name in names), namespace
    assert missing_ops() == []


def test_an_op_without_an_entry_is_named() -> None:
    x = Node.input("x", (2,))
    odd = Node.unchecked("mystery", [x], {}, x.type)
    with pytest.raises(TorchConversionError, match="mystery.*interop/array_ops.py"):
        smelt.to_torch(Graph([x], [odd]))
    with pytest.raises(JaxConversionError, match="mystery.*interop/array_ops.py"):
        smelt.to_jax(Graph([x], [odd]))


# -- to_torch and to_jax: every op against the interpreter -----------------------------------
def one_op_graph(op: str, ex: Example) -> Graph:
    xs = [Node.input(f"a{i}", a.shape, dtype_of_array(a)) for i, a in enumerate(ex.args)]
    node = Node.make(op, xs, **ex.attrs)
    outs = [node]
    if isinstance(node.type, TupleType):
        outs = [Node.make("project", [node], index=i) for i in range(len(node.type.elements))]
    return Graph(xs, outs)


def check_op(op: str, case: Case, ex: Example, graph: Graph, got: list) -> None:
    """Against the float64 oracle (float32 for cast, which the float64 mode widens)."""
    with np.errstate(all="ignore"):
        want = smelt.interpret(graph, *ex.args,
                               precision="float32" if op == "cast" else "float64")
    assert len(got) == len(want)
    for g, w, out in zip(got, want, graph.outputs, strict=True):
        g = host(g)
        assert g.dtype == numpy_dtype(out.dtype), f"{g.dtype} for a {out.dtype} output"
        assert_matches(g, w.astype(np.float64) if w.dtype.kind == "f" else w, ex, case)


@pytest.mark.parametrize("op", sorted(CASES))
@settings(max_examples=5)
@given(data=st.data())
def test_to_torch_matches_interpreter_per_op(op: str, data: st.DataObject) -> None:
    ex = data.draw(CASES[op].examples, label="example")
    graph = one_op_graph(op, ex)
    with np.errstate(all="ignore"):
        got = smelt.to_torch(graph)(*(torch.from_numpy(a.copy()) for a in ex.args))
    check_op(op, CASES[op], ex, graph, list(got))


@pytest.mark.parametrize("op", sorted(CASES))
@settings(max_examples=3)
@given(data=st.data())
def test_jitted_to_jax_matches_interpreter_per_op(op: str, data: st.DataObject) -> None:
    """With x64 on: the examples hold float64 and int64 operands."""
    ex = data.draw(CASES[op].examples, label="example")
    graph = one_op_graph(op, ex)
    with jax.enable_x64(True):
        got = jax.jit(smelt.to_jax(graph))(*ex.args)
        check_op(op, CASES[op], ex, graph, list(got))


def quantized_graph() -> tuple[Graph, list[np.ndarray]]:
    """quantize -> qlinear / qconv2d / qmatmul -> requantize -> dequantize, per tensor and
    per channel, with ties in the quotients (x on a grid of half the scale, exact in
    binary)."""
    rng = np.random.default_rng(7)
    x = Node.input("x", (2, 3, 5, 5))
    v = Node.input("v", (4, 6))
    qx = Node.make("quantize", [x], scale=(0.125,), zero_point=(3,))
    wc = rng.integers(-8, 8, (4, 3, 3, 3)).astype(np.int8)
    conv = Node.make("qconv2d", [qx, Node.constant(wc), Node.constant(
        rng.integers(-50, 50, 4).astype(np.int32))], x_zp=3, w_zp=(1, 0, -1, 2), padding=(1,))
    y = Node.make("requantize", [conv], multiplier=(1 << 30, 3 << 29, 1 << 30, 5 << 28),
                  shift=(4, 5, 3, 6), out_zp=-2, out_scale=0.1, axis=1, qmin=-100)
    qc = Node.make("quantize", [v], scale=(0.1, 0.2, 0.05, 0.1), zero_point=(0, 1, -1, 0),
                   axis=0)
    qv = Node.make("quantize", [v], scale=(0.1,), zero_point=(1,), bits=4)
    lin = Node.make("qlinear", [qv, Node.constant(rng.integers(-8, 8, (3, 6)).astype(
        np.int8))], x_zp=1, w_zp=(2,))
    mm = Node.make("qmatmul", [qv, Node.constant(rng.integers(0, 15, (6, 2)).astype(
        np.uint8))], a_zp=1, b_zp=7)
    outs = [Node.make("dequantize", [y], scale=(0.1,), zero_point=(-2,)), lin, mm, qc]
    feed = [np.round(rng.normal(0, 2, (2, 3, 5, 5)) * 16) / 16,  # ties: x / 0.125 = k / 2
            rng.normal(0, 0.5, (4, 6))]
    return Graph([x, v], outs), [f.astype(np.float32) for f in feed]


def test_quantized_ops_round_trip_exactly() -> None:
    graph, feed = quantized_graph()
    want = smelt.interpret(graph, *feed)
    got_torch = smelt.to_torch(graph)(*(torch.from_numpy(f) for f in feed))
    with jax.enable_x64(True):
        got_jax = jax.jit(smelt.to_jax(graph))(*feed)
    for g_t, g_j, w in zip(got_torch, got_jax, want, strict=True):
        np.testing.assert_array_equal(host(g_t), w)
        np.testing.assert_array_equal(host(g_j), w)
    with pytest.raises(JaxConversionError, match="jax_enable_x64"):
        smelt.to_jax(graph)(*feed)


# -- to_torch and to_jax: every zoo model, before and after the pipeline ---------------------
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_round_trips_through_torch_and_jax(name: str) -> None:
    """to_torch run eagerly, to_jax jitted with JAX's defaults (x64 off: hf_bert's int64 ids
    are int32 there)."""
    entry = ZOO[name]
    args = entry.inputs()
    graph = smelt.trace(entry.build(), args)
    fused = smelt.Pipeline.parse(PIPELINE)(graph)
    for g in (graph, fused):
        (want,) = smelt.interpret(g, *args)
        with torch.no_grad():
            (got_torch,) = smelt.to_torch(g)(*args)
        (got_jax,) = jax.jit(smelt.to_jax(g))(*(a.numpy() for a in args))
        within_scale(host(got_torch), want)
        within_scale(host(got_jax), want)


@pytest.mark.parametrize("name", ["residual_cnn", "encoder_block", "llama_block"])
def test_to_relax_runs_in_tvms_own_pipeline(name: str) -> None:
    """to_relax gives an IRModule a TVM user builds with TVM's default pipeline (no smelt
    kernels or schedules); it computes what the interpreter does, fused graphs included."""
    import tvm
    from tvm import relax

    from smelt.backends.targets import make_target

    entry = ZOO[name]
    args = entry.inputs()
    graph = smelt.Pipeline.parse(PIPELINE)(smelt.trace(entry.build(), args))
    with tvm.transform.PassContext(opt_level=3):
        executable = tvm.compile(smelt.to_relax(graph), make_target("cpu"))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    (got,) = vm["main"](*(tvm.runtime.tensor(a.numpy()) for a in args))
    (want,) = smelt.interpret(graph, *args)
    within_scale(got.numpy(), want)


@pytest.mark.parametrize("name", ["encoder_block", "quantized"])
def test_to_torch_traces_in_one_dynamo_graph(name: str) -> None:
    """Dynamo captures a to_torch module whole: the array-namespace entries (split's
    offsets, the quantized ops' per-channel constants) fold at trace time, no graph break."""
    if name == "quantized":
        graph, feed = quantized_graph()
        args = [torch.from_numpy(f) for f in feed]
    else:
        args = ZOO[name].inputs()
        graph = smelt.Pipeline.parse(PIPELINE)(smelt.trace(ZOO[name].build(), args))
    torch._dynamo.reset()
    with torch.no_grad():
        explained = torch._dynamo.explain(smelt.to_torch(graph))(*args)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, (
        explained.break_reasons)


def test_fused_graph_goes_back_into_torch_compile() -> None:
    """A rewritten graph (fused convs with residuals and relus) traced by Dynamo and
    AOTAutograd, as Inductor would take it."""
    entry = ZOO["residual_cnn"]
    args = entry.inputs()
    fused = smelt.Pipeline.parse(PIPELINE)(smelt.trace(entry.build(), args))
    attrs = [dict(n.attrs) for n in fused.nodes() if n.op == "fused_conv2d"]
    assert any(a["residual"] for a in attrs) and {a["activation"] for a in attrs} >= {"relu"}
    gm = smelt.to_torch(fused)
    assert isinstance(gm, torch.fx.GraphModule)
    assert len([n for n in gm.graph.nodes if n.op == "call_function"]) == len(
        [n for n in fused.nodes() if n.op not in ("input", "constant")])
    torch._dynamo.reset()
    with torch.no_grad():
        (got,) = torch.compile(gm, backend="aot_eager", dynamic=False)(*args)
    within_scale(got.numpy(), smelt.interpret(fused, *args)[0])
