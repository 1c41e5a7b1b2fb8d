"""torch.export's dynamic dimensions into smelt's symbolic ones: one traced graph serves
every batch size and sequence length in range, and matches torch at each."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim

import smelt
from smelt.ir import parse_graph
from smelt.ir.errors import InterpretError
from smelt.ir.text_format import print_graph


class Attention(nn.Module):
    """One pre-norm self-attention block: view/transpose by batch and sequence, q @ k^T."""

    def __init__(self, d: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.ln, self.qkv, self.out = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2)
                   for z in self.qkv(self.ln(x)).chunk(3, -1))
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, -1) @ v
        return x + self.out(a.transpose(1, 2).reshape(b, t, d))


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                         nn.Flatten(), nn.Linear(8 * 2 * 2, 10)).eval()


BATCH = Dim("batch", min=1, max=64)
SEQ = Dim("seq", min=2, max=256)
CASES = {
    "mlp": (lambda: nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4)),
            (4, 16), {0: BATCH}, [(1, 16), (7, 16), (64, 16)]),
    "cnn": (_cnn, (2, 3, 8, 8), {0: BATCH}, [(1, 3, 8, 8), (5, 3, 8, 8), (64, 3, 8, 8)]),
    "attention": (Attention, (2, 16, 32), {0: BATCH, 1: SEQ},
                  [(1, 2, 32), (3, 100, 32), (64, 256, 32)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_trace_matches_torch_at_every_size(name):
    make, example, axes, sizes = CASES[name]
    torch.manual_seed(0)
    model = make().eval()
    g = smelt.trace(model, (torch.randn(*example),), dynamic_shapes=(axes,))
    header = print_graph(g)[0].splitlines()[0]
    assert "batch in [1, 64]" in header
    for size in sizes:
        x = torch.randn(*size)
        with torch.no_grad():
            want = model(x).numpy()
        (got,) = smelt.interpret(g, x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_dynamic_trace_round_trips_through_text():
    torch.manual_seed(0)
    g = smelt.trace(Attention().eval(), (torch.randn(2, 16, 32),),
                    dynamic_shapes={"x": {0: BATCH, 1: SEQ}})
    text, weights = print_graph(g)
    assert "seq in [2, 256]" in text and "shape=[batch, seq, 4, 8]" in text
    assert parse_graph(text, weights).outputs == g.outputs


def test_a_size_outside_the_traced_range_is_refused():
    g = smelt.trace(nn.Linear(16, 4).eval(), (torch.randn(4, 16),),
                    dynamic_shapes={"input": {0: BATCH}})  # by the argument's name
    with pytest.raises(InterpretError, match=r"outside batch's range \[1, 64\]"):
        smelt.interpret(g, np.zeros((65, 16), np.float32))


@pytest.mark.parametrize("spec", [
    "fold-bn,equalize,canonicalize,fuse",
    "fold-bn,quantize(scheme=w8a8),fold-qdq",
    "fold-bn,prune-channels(ratio=0.25)",
    "fold-bn,sparsify-24",
])
def test_passes_run_on_a_symbolic_cnn_calibrated_on_any_batch_size(spec):
    torch.manual_seed(0)
    g = smelt.trace(_cnn(), (torch.randn(2, 3, 8, 8),), dynamic_shapes=(CASES["cnn"][2],))
    rng = np.random.default_rng(0)
    calibration = [(rng.standard_normal((k, 3, 8, 8)).astype(np.float32),) for k in (1, 7, 32)]
    out = smelt.Pipeline.parse(spec, verify_each=True)(g, calibration=calibration)
    assert out.inputs[0].shape == g.inputs[0].shape  # still symbolic
    for k in (1, 5, 64):
        (y,) = smelt.interpret(out, rng.standard_normal((k, 3, 8, 8)).astype(np.float32))
        assert y.shape == (k, 10)


@pytest.mark.parametrize("spec", ["smoothquant(alpha=0.5)", "awq(group=8, grid=4)"])
def test_smoothing_passes_run_on_a_symbolic_attention_block(spec):
    torch.manual_seed(0)
    model = Attention().eval()
    g = smelt.trace(model, (torch.randn(2, 16, 32),), dynamic_shapes=({0: BATCH, 1: SEQ},))
    rng = np.random.default_rng(0)
    calibration = [(rng.standard_normal(s).astype(np.float32),) for s in ((1, 8, 32),
                                                                          (3, 40, 32))]
    out = smelt.Pipeline.parse(spec, verify_each=True)(g, calibration=calibration)
    x = torch.randn(2, 77, 32)  # a sequence length calibration never saw
    with torch.no_grad():
        want = model(x).numpy().ravel()
    got = smelt.interpret(out, x)[0].ravel()
    cosine = got @ want / np.linalg.norm(got) / np.linalg.norm(want)
    assert cosine > 0.99  # quantized, and still the model


@pytest.mark.parametrize("target", ["cpu", pytest.param("c", marks=pytest.mark.xdist_group(
    "c_target"))])
def test_targets_ask_for_concrete_sizes_and_a_specialized_graph_compiles(target):
    from smelt.backends.targets import TargetError
    from smelt.ir.specialize import specialize

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU()).eval()
    g = smelt.trace(model, (torch.randn(4, 16),), dynamic_shapes=({0: BATCH},))
    options = {"board": "host"} if target == "c" else {}
    with pytest.raises(TargetError, match=r"batch in \[1, 64\].*specialize"):
        smelt.compile(g, target, **options)
    x = torch.randn(3, 16)
    (got,) = smelt.compile(specialize(g, {"batch": 3}), target, **options)(x)
    np.testing.assert_allclose(got, smelt.interpret(g, x)[0], rtol=1e-5, atol=1e-6)


def test_jax_symbolic_shapes_become_smelt_symbols():
    import jax
    import jax.numpy as jnp
    from jax import export

    b, t = export.symbolic_shape("b, t", constraints=["b <= 64", "t >= 2", "t <= 512"])
    w = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)

    def f(x, w):
        y = jnp.tanh(x @ w).reshape(x.shape[0], -1, 4)
        return jax.nn.softmax(y, -1).sum(1), jnp.concatenate([x, x], 1)

    g = smelt.trace_jax(f, jax.ShapeDtypeStruct((b, t, 8), jnp.float32), w, constants=[1])
    text = print_graph(g)[0]
    assert "where b in [1, 64], t in [2, 512]" in text and "f32[b,4*t,4]" in text
    rng = np.random.default_rng(1)
    for shape in [(1, 2, 8), (3, 9, 8), (64, 512, 8)]:
        x = rng.standard_normal(shape).astype(np.float32)
        for want, got in zip(f(x, w), smelt.interpret(g, x), strict=True):
            np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", ["torchvision:resnet18", "transformers:bert",
                                  "transformers:llama", "transformers:vit"])
def test_zoo_models_trace_with_symbolic_batch_and_sequence(spec):
    """Sweep models (benchmarks/zoo_models.py): CNNs with a symbolic batch, text models with
    batch and sequence (position ids, masks and embedding slices of the sequence length),
    one trace matching torch at three sizes, the range's ends included."""
    from benchmarks.zoo_models import HFMain, zoo_model

    zm = zoo_model(*spec.split(":"))
    model = zm.build()
    example = tuple(torch.cat([x, x]) if x.shape[0] == 1 else x for x in zm.inputs(0))
    text = example[0].dtype == torch.int64
    batch, seq = Dim("batch", min=1, max=8), Dim("seq", min=2, max=32)
    axes = tuple({0: batch, 1: seq} if text else {0: batch} for _ in example)
    g = smelt.trace(model, example, dynamic_shapes=(axes,) if isinstance(model, HFMain)
                    else axes)
    rng = torch.Generator().manual_seed(0)
    for n, t in ((1, 2), (3, 11), (8, 32)):
        xs = tuple(torch.randint(1, 100, (n, t), generator=rng) if text and i == 0 else
                   torch.ones(n, t, dtype=torch.int64) if text else
                   torch.randn(n, *x.shape[1:], generator=rng)
                   for i, x in enumerate(example))
        with torch.no_grad():
            want = model(*xs).numpy()
        (got,) = smelt.interpret(g, *xs)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_as_strided_of_a_symbolic_tensor_is_a_reshape_and_transpose():
    """A permuted view of the whole storage (what torchvision's convnext and swin reach)
    needs no constant index: it stays symbolic."""
    class View(nn.Module):
        def forward(self, x):
            n = x.shape[0]
            return torch.as_strided(x * 2, (n, 4, 3), (12, 1, 4)) + 1

    g = smelt.trace(View(), (torch.randn(2, 3, 4),), dynamic_shapes=({0: BATCH},))
    assert {n.op for n in g.nodes()} >= {"reshape", "transpose"}
    assert "take" not in {n.op for n in g.nodes()}
    for k in (1, 5, 64):
        x = torch.randn(k, 3, 4)
        np.testing.assert_array_equal(smelt.interpret(g, x)[0], View()(x).numpy())
