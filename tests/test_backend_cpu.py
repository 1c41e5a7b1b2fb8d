"""The TVM CPU backend: every op lowers, every zoo model compiles and matches the interpreter,
exported libraries load and run, and a second compile hits the cache.

Tolerance: TVM's LLVM code and numpy both compute in float32 but fuse and order reductions
differently (and TVM's exp/erf/tanh are polynomial approximations accurate to a few ulp), so
we allow 1e-4 of the output's scale, the same budget as the frontend tests.
"""

from __future__ import annotations

import numpy as np
import pytest

import smelt
from smelt.backends.lowering import missing_lowerings
from smelt.zoo import ZOO


def test_every_op_has_a_lowering() -> None:
    assert missing_lowerings() == []


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_compiles_and_matches_interpreter(name: str) -> None:
    entry = ZOO[name]
    args = entry.inputs()
    graph = smelt.trace(entry.build(), args)
    module = smelt.compile(graph, "cpu")
    (got,) = module(*args)
    (want,) = smelt.interpret(graph, *args)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_export_and_load_compiled(tmp_path) -> None:
    entry = ZOO["residual_cnn"]
    args = entry.inputs()
    graph = smelt.trace(entry.build(), args)
    module = smelt.compile(graph)
    assert smelt.compile(graph) is module  # cached by content hash and target
    path = module.export(tmp_path / "cnn.so")
    loaded = smelt.load_compiled(path)
    np.testing.assert_array_equal(loaded(*args)[0], module(*args)[0])
    with pytest.raises(smelt.InterpretError, match="shape"):
        loaded(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(smelt.FileFormatError):
        smelt.load_compiled(tmp_path / "missing.so")


def _compiled_vs_interpreted(graph: smelt.Graph, *args: np.ndarray) -> None:
    got = smelt.compile(graph)(*args)
    want = smelt.interpret(graph, *args)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


def test_edge_shapes_and_dtypes_lower() -> None:
    from smelt.ir import Graph, Node, make

    s = Node.input("s", ())  # 0-d inputs stay 0-d on the way into TVM
    _compiled_vs_interpreted(Graph([s], [make("tanh", s)]), np.float32(0.5))
    x = Node.input("x", (2, 3))
    one_part = make("project", make("split", x, axis=1, sizes=(3,)), index=0)
    empty = make("slice", x, axis=1, start=2, stop=1)
    _compiled_vs_interpreted(Graph([x], [one_part, make("relu", x), empty]),
                             np.arange(6, dtype=np.float32).reshape(2, 3))
    d = Node.input("d", (2, 4), "float64")  # Relax's layer_norm takes only f32/f16
    _compiled_vs_interpreted(Graph([d], [make("layer_norm", d), make("hardswish", d)]),
                             np.linspace(-4, 4, 8).reshape(2, 4))
    i = Node.input("i", (5,), "int8")  # bounds beyond int8 saturate
    _compiled_vs_interpreted(Graph([i], [make("clamp", i, min=-1000, max=3)]),
                             np.array([-128, -1, 0, 3, 127], np.int8))


def test_inputs_are_taken_as_given_or_staged() -> None:
    """An aligned array is read in place, any other one (misaligned, read-only, another dtype,
    a torch tensor) through a tensor kept per input; calls with different inputs never see a
    previous call's data, and the caller's array is never written."""
    import torch

    from smelt.ir import Graph, Node, make

    x = Node.input("x", (4, 33))
    y = Node.input("y", (4, 33))
    graph = Graph([x, y], [make("add", make("tanh", x), y)])
    module = smelt.compile(graph)
    rng = np.random.default_rng(0)
    buffer = np.empty(4 * 33 + 16, np.float32)  # offsets 0 and 4 bytes: one is misaligned
    for call in range(6):
        a = rng.standard_normal((4, 33)).astype(np.float32)
        b = rng.standard_normal((4, 33))  # float64: converted
        start = (call % 2) + (-(buffer.ctypes.data // 4) % 16)
        view = buffer[start:start + 4 * 33].reshape(4, 33)
        view[...] = a
        if call == 4:
            view.flags.writeable = False
        xs = torch.from_numpy(a.copy()) if call == 5 else view
        kept = np.array(xs)
        (got,) = module(xs, b)
        np.testing.assert_array_equal(np.asarray(xs), kept)
        np.testing.assert_allclose(got, np.tanh(a) + b.astype(np.float32), rtol=1e-5, atol=1e-6)
    assert set(module._staged) >= {0, 1}  # the misaligned x and the converted y were staged
