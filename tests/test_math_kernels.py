"""The math ops' compiled kernels (backends/lowering/math.py, scan_kernels.py) where random
cases rarely go, on the CPU and on the `c` target (built and run on the host), and every
edge case built for `cuda` (by nvcc; no GPU needed):

- atanh, expm1, log1p near 0 (TVM's own atanh is 0.5 log((1 + x) / (1 - x)), millions of
  ulps off there), domain edges (acos(1 + eps), log1p(-1), atanh(+-1)) and NaN;
- elu with selu's constants in float64 (TVM's C generator prints literals with 7 digits)
  and with a zero input scale (inf * 0 is NaN; TVM would fold x * 0 to 0);
- signed zeros and NaN through sign, trunc, ceil, fmod and remainder; integer fmod and
  remainder of the signed minimum by -1 and by 0 (C traps on the first, the second is
  undefined: the reference gives 0 for both);
- sort over rows long enough for several merge passes, with ties, NaN, -0.0 and +-inf,
  ascending and descending; cumsum of int8 wrapping; reductions over empty axes and with
  empty outputs.
Results match the interpreter exactly, except the C library's transcendental functions,
which may differ from numpy's own float32 loops by an ulp or two (4 allowed).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_backend_cuda import needs_nvcc

import smelt
from smelt.ir import Graph, Node, TupleType
from smelt.ir.types import dtype_of_array

NAN, INF = np.nan, np.inf
TARGETS = ["cpu", "c"]


def graph_of(op: str, args: list[np.ndarray], **attrs) -> Graph:
    xs = [Node.input(f"a{i}", a.shape, dtype_of_array(a)) for i, a in enumerate(args)]
    node = Node.make(op, xs, **attrs)
    outs = [node] if not isinstance(node.type, TupleType) else [
        Node.make("project", [node], index=i) for i in range(len(node.type.elements))]
    return Graph(xs, outs)


def assert_same(graph: Graph, args: list[np.ndarray], target: str, ulps: int = 0) -> None:
    """Compiled for `target` and interpreted in the graph's own precision: within `ulps`
    (0: equal), NaN for NaN, the same infinities, and the same sign on every zero."""
    opts = {"board": "host"} if target == "c" else {}
    got = smelt.compile(graph, target, **opts)(*args)
    with np.errstate(all="ignore"):
        want = smelt.interpret(graph, *args)
    for g, w in zip(got, want, strict=True):
        if not np.issubdtype(w.dtype, np.floating) or not ulps:
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_array_max_ulp(g, w, maxulp=ulps)
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        if np.issubdtype(w.dtype, np.floating):
            np.testing.assert_array_equal(np.signbit(g[g == 0]), np.signbit(w[w == 0]))


SMALL = [1e-30, -1e-20, 3e-8, -2e-6, 1e-4, -0.01, 0.0, -0.0]
EDGES = {
    "atanh": [*SMALL, 0.5, -0.999, 1.0, -1.0, 1.0001, NAN],
    "expm1": [*SMALL, 1.0, -30.0, 88.0, 89.0, 700.0, INF, -INF, NAN],
    "log1p": [*SMALL, -1.0, -1.5, 1e30, INF, NAN],
    "acos": [1.0, -1.0, 1.0000001, -0.0, 0.5, NAN],
    "asinh": [*SMALL, 1e30, -1e30, INF, -INF],
    "tan": [*SMALL, 1.5707963, -1.5707964, 100.0, INF],
    "sinh": [*SMALL, 89.0, -89.0, 710.0],
    "log2": [0.0, -0.0, -1.0, 1e-40, 8.0, INF],
    "sign": [NAN, -0.0, 0.0, -INF, 3.0, -2.0],
    "trunc": [-0.5, 0.5, -0.0, 2.7, -2.7, INF, NAN],
    "ceil": [-0.5, 0.5, -0.0, 2.7, -2.7, -INF, NAN],
}


EXACT = ("sign", "trunc", "ceil")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(EDGES))
def test_unary_edge_values(op: str, dtype: str, target: str) -> None:
    x = np.array(EDGES[op], dtype)
    assert_same(graph_of(op, [x]), [x], target, ulps=0 if op in EXACT else 4)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_selu_constants_and_a_zero_input_scale(dtype: str, target: str) -> None:
    x = np.array([-INF, INF, NAN, -0.0, 0.0, -1.5, 2.5, -1e-6, 30.0], dtype)
    selu = graph_of("elu", [x], alpha=1.6732632423543772, scale=1.0507009873554805)
    assert_same(selu, [x], target, ulps=4)
    assert_same(graph_of("elu", [x], alpha=2.0, input_scale=0.0), [x], target, ulps=4)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("op", ["fmod", "remainder"])
def test_division_remainders_keep_signs_and_never_trap(op: str, target: str) -> None:
    a = np.array([-0.0, 0.0, -5.5, 5.5, 1.0, -1.0, INF, 7.0, NAN], np.float32)
    b = np.array([1.0, -3.0, 2.0, -2.0, INF, INF, 2.0, 0.0, 1.0], np.float32)
    assert_same(graph_of(op, [a, b]), [a, b], target)
    ia = np.array([-128, 127, -7, 7, -128, 5, 0], np.int8)
    ib = np.array([-1, -1, 2, -2, 0, 0, -3], np.int8)
    assert_same(graph_of(op, [ia, ib]), [ia, ib], target)
    ua, ub = np.array([250, 7, 0], np.uint8), np.array([255, 0, 3], np.uint8)
    assert_same(graph_of(op, [ua, ub]), [ua, ub], target)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("descending", [False, True])
def test_sort_long_rows_with_ties_nan_and_signed_zeros(descending: bool, target: str) -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, (3, 37)).astype(np.float32)
    x[0, ::5], x[1, ::7], x[2, ::4] = NAN, -0.0, INF
    x[2, 1::9] = -INF
    assert_same(graph_of("sort", [x], axis=1, descending=descending), [x], target)
    assert_same(graph_of("sort", [x.T.copy()], axis=0, descending=descending), [x.T.copy()],
                target)
    b = x > 0
    assert_same(graph_of("sort", [b], axis=-1, descending=descending), [b], target)


@pytest.mark.parametrize("target", TARGETS)
def test_integer_scans_wrap(target: str) -> None:
    x = np.array([[100, 100, 100, -128, -128, 7]], np.int8)
    assert_same(graph_of("cumsum", [x], axis=1), [x], target)
    assert_same(graph_of("cumprod", [x], axis=1), [x], target)


@pytest.mark.parametrize("target", TARGETS)
def test_reductions_over_nothing_and_into_nothing(target: str) -> None:
    """Identities over empty axes; empty outputs (beside a kernel that writes something:
    a C project needs one)."""
    for op, dtype in (("reduce_any", bool), ("reduce_all", bool), ("reduce_prod", np.int32)):
        for shape, axes in (((3, 0), [1]), ((0, 3), [1]), ((2, 0, 3), [0, 2])):
            x, w = np.zeros(shape, dtype), np.ones(3, np.float32)
            xs = [Node.input("x", shape, dtype_of_array(x)), Node.input("w", (3,))]
            graph = Graph(xs, [Node.make(op, [xs[0]], axes=axes),
                               Node.make("neg", [xs[1]])])
            assert_same(graph, [x, w], target)


@needs_nvcc
def test_edge_graphs_build_for_cuda() -> None:
    x = np.zeros((3, 37), np.float32)
    xs = [Node.input("x", x.shape), Node.input("i", (3, 37), "int8")]
    outs = [Node.make(op, [xs[0]]) for op in sorted(EDGES)]
    outs += [Node.make("elu", [xs[0]], alpha=1.6732632423543772, input_scale=0.0),
             Node.make("fmod", [xs[1], xs[1]]), Node.make("remainder", [xs[0], xs[0]]),
             Node.make("cumsum", [xs[1]], axis=1), Node.make("reduce_prod", [xs[0]], axes=[0]),
             Node.make("reduce_any", [Node.make("isnan", [xs[0]])], axes=[1])]
    s = Node.make("sort", [xs[0]], axis=1, descending=True)
    outs += [Node.make("project", [s], index=i) for i in (0, 1)]
    module = smelt.compile(Graph(xs, outs), "cuda")
    assert module.build.fatbin and module.cuda_kernels
