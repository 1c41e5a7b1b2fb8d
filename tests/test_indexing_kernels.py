"""The indexing ops' compiled kernels (backends/lowering/indexing.py) where random cases rarely
go: float max/min scatters over NaN, -inf and all -inf updates (TVM's max reduction starts
from the lowest finite value and drops NaN; the kernel puts both right), duplicate indices
without a reduction (the last update wins, as in the reference), integer means that wrap
before they divide (C promotes uint8 sums to int), indices out of range (the reference
raises; compiled reads clamp and compiled writes drop), and every op built for the `c` target
(run on the host) and for `cuda` (built by nvcc; no GPU needed).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_backend_cuda import needs_nvcc

import smelt
from smelt.ir import Graph, InterpretError, Node
from smelt.ir.types import dtype_of_array


def graph_of(op: str, args: list[np.ndarray], **attrs) -> Graph:
    xs = [Node.input(f"a{i}", a.shape, dtype_of_array(a)) for i, a in enumerate(args)]
    return Graph(xs, [Node.make(op, xs, **attrs)])


def compiled(graph: Graph, args: list[np.ndarray], target: str = "cpu") -> np.ndarray:
    opts = {"board": "host"} if target == "c" else {}
    return smelt.compile(graph, target, **opts)(*args)[0]


NAN, INF = np.nan, np.inf


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduce", ["amax", "amin"])
@pytest.mark.parametrize("include_self", [True, False])
def test_float_extremum_scatter_keeps_nan_and_infinities(dtype, reduce, include_self) -> None:
    x = np.array([[1.0, NAN, 3.0, -INF, 5.0, 6.0]], dtype)
    idx = np.array([[0, 0, 2, 2, 3, 3, 4]])
    src = np.array([[NAN, 2.0, -INF, -INF, -INF, INF, -2.0]], dtype)
    args = [x, idx, src]
    graph = graph_of("scatter", args, axis=1, reduce=reduce, include_self=include_self)
    want = smelt.interpret(graph, *args)[0]
    np.testing.assert_array_equal(compiled(graph, args), want)


def test_duplicates_without_a_reduction_take_the_last_update() -> None:
    x = np.zeros((2, 4), np.float32)
    args = [x, np.array([[1, 1, -3, 0], [2, 2, 2, 2]]), np.arange(8, dtype=np.float32)
            .reshape(2, 4)]
    graph = graph_of("scatter", args, axis=1)
    want = smelt.interpret(graph, *args)[0]
    np.testing.assert_array_equal(want, [[3, 2, 0, 0], [0, 0, 7, 0]])
    np.testing.assert_array_equal(compiled(graph, args), want)
    put = [x, np.float32([1, 2, 3]), np.array([1, 1, 0]), np.array([2, 2, 2])]
    graph = graph_of("index_put", put, axes=[0, 1])
    want = smelt.interpret(graph, *put)[0]
    assert want[1, 2] == 2 and want[0, 2] == 3
    np.testing.assert_array_equal(compiled(graph, put), want)


@pytest.mark.parametrize("target", ["cpu", "c"])
def test_integer_mean_wraps_before_it_divides(target: str) -> None:
    args = [np.array([[250, 3, 7, 9]], np.uint8), np.array([[0, 0, -1]]),
            np.array([[200, 100, 5]], np.uint8)]
    graph = graph_of("scatter", args, axis=1, reduce="mean")
    want = smelt.interpret(graph, *args)[0]
    np.testing.assert_array_equal(want, [[12, 3, 7, 7]])  # (250+200+100) % 256 // 3, as torch
    np.testing.assert_array_equal(compiled(graph, args, target), want)


def test_out_of_range_raises_in_the_reference_and_is_safe_compiled() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    gather = [x, np.array([[0, 4], [-5, 1], [2, 3]])]
    graph = graph_of("gather", gather, axis=1)
    with pytest.raises(InterpretError, match="out of range"):
        smelt.interpret(graph, *gather)
    np.testing.assert_array_equal(compiled(graph, gather), [[0, 3], [4, 5], [10, 11]])
    put = [x, np.float32([-1, -2]), np.array([0, 7])]
    graph = graph_of("index_put", put, axes=[1])
    with pytest.raises(InterpretError, match="out of range"):
        smelt.interpret(graph, *put)
    want = x.copy()
    want[:, 0] = -1
    np.testing.assert_array_equal(compiled(graph, put), want)


def _all_ops() -> tuple[Graph, list[np.ndarray]]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    inputs, feed, outs = [], [], []

    def inp(a):
        node = Node.input(f"a{len(inputs)}", a.shape, dtype_of_array(a))
        inputs.append(node)
        feed.append(a)
        return node

    xi = inp(x)
    outs.append(Node.make("gather", [xi, inp(np.array([[0, -1], [2, 1], [3, 3]]))], axis=1))
    outs.append(Node.make("index", [xi, inp(np.array([0, -1], np.int32)),
                                    inp(np.array([[1], [2]]))], axes=[0, 1]))
    outs.append(Node.make("index_put", [xi, inp(x[0, :2].copy()), inp(np.array([0, 0]))],
                          axes=[1], accumulate=True))
    for reduce in ("none", "sum", "prod", "mean", "amax", "amin"):
        outs.append(Node.make("scatter", [xi, inp(np.array([[0, 2, -1]])),
                                          inp(x[:1, :3].copy())], axis=1, reduce=reduce))
    return Graph(inputs, outs), feed


def test_every_indexing_op_builds_and_runs_for_c() -> None:
    graph, feed = _all_ops()
    want = smelt.interpret(graph, *feed)
    got = smelt.compile(graph, "c", board="host")(*feed)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6)


@needs_nvcc
def test_every_indexing_op_builds_for_cuda() -> None:
    graph, _ = _all_ops()
    module = smelt.compile(graph, "cuda")
    assert module is not None
