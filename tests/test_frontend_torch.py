"""torch.export and torch.fx frontends against eager PyTorch on the zoo.

Two checks per model and frontend:
- float32: the interpreter (numpy, float32) against eager float32. Both round every op to
  float32 but sum in different orders; for reductions of length K the difference is about
  sqrt(K) * 2^-24 relative per layer, ~1e-5 here, so we allow 1e-4 of the output's scale.
- float64: the interpreter in float64 against the eager model converted with .double().
  The weights are the same float32 values in both, so only float64 rounding (2^-53) remains;
  1e-9 of the output's scale is far above that and far below any semantic mistake.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import smelt
from smelt.ir.torch_common import TraceError
from smelt.zoo import ZOO

FX_MODELS = [n for n in ZOO if not n.startswith("hf_")]  # HF forward() has data-dependent code


def _scale(ref: np.ndarray) -> float:
    return max(1.0, float(np.abs(ref).max()))


def _check(graph: smelt.Graph, entry) -> None:
    model, args = entry.build(), entry.inputs()
    graph.verify()
    with torch.no_grad():
        ref32 = model(*args).numpy()
        model64 = copy.deepcopy(model).double()
        args64 = [a.double() if a.is_floating_point() else a for a in args]
        ref64 = model64(*args64).numpy()
    (out32,) = smelt.interpret(graph, *args)
    (out64,) = smelt.interpret(graph, *[a.numpy() for a in args], precision="float64")
    assert out32.dtype == np.float32 and out32.shape == ref32.shape
    assert np.abs(out32 - ref32).max() <= 1e-4 * _scale(ref32)
    assert np.abs(out64 - ref64).max() <= 1e-9 * _scale(ref64)


@pytest.mark.parametrize("name", list(ZOO))
def test_export_matches_eager(name: str) -> None:
    entry = ZOO[name]
    _check(smelt.trace(entry.build(), entry.inputs()), entry)


@pytest.mark.parametrize("name", FX_MODELS)
def test_fx_matches_eager(name: str) -> None:
    entry = ZOO[name]
    _check(smelt.trace_fx(entry.build(), entry.inputs()), entry)


def test_parameters_become_named_constants() -> None:
    entry = ZOO["residual_cnn"]
    model = entry.build()
    graph = smelt.trace(model, entry.inputs())
    consts = {graph.names.get(c): c for c in graph.constants()}
    w = model.stem[0].weight.detach().numpy()
    assert "stem.0.weight" in consts
    np.testing.assert_array_equal(consts["stem.0.weight"].value, w)
    assert not consts["stem.0.weight"].value.flags.writeable
    assert [x.attrs["name"] for x in graph.inputs] == ["x"]
    n_params = sum(p.numel() for p in model.parameters())
    n_buffers = sum(b.numel() for n, b in model.named_buffers() if "num_batches" not in n)
    assert graph.summary().params >= n_params + n_buffers


class _Spectrum(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(x)
        return torch.fft.rfft(y, dim=1).abs()  # smelt has no FFT (no complex dtypes)


@pytest.mark.parametrize("trace", [smelt.trace, smelt.trace_fx])
def test_unsupported_op_names_op_and_source_line(trace) -> None:
    with pytest.raises(smelt.UnsupportedOpError) as err:
        trace(_Spectrum(), (torch.randn(2, 5),))
    msg = str(err.value)
    assert "fft" in msg
    assert "test_frontend_torch.py" in msg and "torch.fft.rfft(y, dim=1)" in msg
    assert "to do:" in msg


class _Branchy(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            return x
        return -x


def test_fx_trace_failure_is_a_typed_error() -> None:
    with pytest.raises(TraceError, match="torch.fx could not trace _Branchy"):
        smelt.trace_fx(_Branchy(), (torch.randn(3),))


def test_constant_subcomputations_fold_at_trace_time() -> None:
    entry = ZOO["llama_block"]
    graph = smelt.trace(entry.build(), entry.inputs())
    ops = graph.summary().ops
    # the rotary tables and the causal mask are computed from buffers only: no sin/cos/triu
    assert "sin" not in ops and "cos" not in ops
    assert ops["linear"] == 7 and ops["softmax"] == 1


# -- the core ATen opset -------------------------------------------------------------------
class AttentionThenView(torch.nn.Module):
    """GPT-2's pattern: attention, heads merged by transpose and reshape, then Conv1D's
    `view(-1, n)`. torch 2.13's decompositions give the merged tensor strides its view
    cannot take ("Cannot view a tensor..."); the frontend records views as reshapes."""

    def forward(self, q, k, v):
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return a.transpose(1, 2).reshape(2, 16, 64).view(-1, 64)


def test_a_view_torch_cannot_decompose_is_traced_as_a_reshape() -> None:
    q, k, v = (torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(i))
               for i in range(3))
    graph = smelt.trace(AttentionThenView(), (q, k, v))
    got = smelt.interpret(graph, q, k, v)[0]
    np.testing.assert_allclose(got, AttentionThenView()(q, k, v).numpy(), rtol=0, atol=1e-5)


def test_every_core_aten_op_is_mapped_or_out_of_scope() -> None:
    """torch's core opset (ops tagged torch.Tag.core): each packet has a converter or a reason
    in OUT_OF_SCOPE. A torch release adding a core op fails this until one is written."""
    from smelt.ir.aten_coverage import coverage

    report = coverage()
    assert report["missing"] == [], f"core ATen ops neither mapped nor listed: {report['missing']}"


def test_out_of_scope_ops_are_core_ops_without_a_converter() -> None:
    from smelt.ir.aten_coverage import OUT_OF_SCOPE, core_packets
    from smelt.ir.torch_aten import ATEN

    assert set(OUT_OF_SCOPE) <= core_packets()
    assert not set(OUT_OF_SCOPE) & set(ATEN)


def test_an_out_of_scope_op_says_why() -> None:
    class Noisy(torch.nn.Module):
        def forward(self, x):
            return torch.nonzero(x > 0)

    with pytest.raises(smelt.UnsupportedOpError, match="depends on the values"):
        smelt.trace(Noisy(), (torch.randn(4),))
