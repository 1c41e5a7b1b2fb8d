"""The CPU backend against the reference interpreter, op by op and on the scheduled kernels.

`test_op_compiles_and_matches` runs every op of the op table as a one-node graph through
`smelt.compile(g, "cpu")`, on the examples of test_ops_reference's CASES (imported, not
copied), and compares with `smelt.interpret` in float64 mode, the oracle. The compiled
result must meet the same contract the interpreter meets against torch (see
test_ops_reference's docstring):

    |compiled - oracle| <= 8 * eps(dtype) * (sqrt(K) * max|term| + |oracle|) + 16 * tiny

with K the reduction length of an output element; exact ops and every integer or bool result
compare bit for bit. Contraction weights are bound as constants in half the examples, so
that smelt's own packed kernels (backends/cpu/kernels.py) and their schedules run, not only
TVM's generic legalization.

The targeted tests below draw shapes and attributes where schedule bugs hide: linear over
2-D and 3-D inputs with odd N and K, batched matmul with broadcasting, conv2d over stride,
padding (symmetric and not), dilation, kernel size, groups (dense, depthwise, grouped) with
odd output widths, a bias and a fused relu / residual add; pooling; softmax and layer norm
over each axis. Every compiled module must have a schedule rule for every kernel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ops_reference import (
    CASES,
    CAST_ROUTES,
    NAN_CASES,
    TESTED_ELSEWHERE,
    Case,
    Example,
    assert_matches,
    cast_examples,
    dot_term,
    logical_examples,
    values,
)

import smelt
from smelt.backends.lowering import LoweringError
from smelt.backends.lowering.ops import BOOL_OPERANDS, NARROW_INTS
from smelt.ir import OPS, Graph, Node, TupleType
from smelt.ir.types import dtype_of_array, numpy_dtype
from smelt.rewrite import strategies as sst

#: ops whose weight (and bias) operands may be bound as constants, which routes them to
#: smelt's packed kernels
CONTRACTIONS = ("conv2d", "linear", "matmul", "fused_matmul", "fused_conv2d", "fused_linear",
                "linear24")


def _no_torch(*args: Any, **attrs: Any) -> None:
    """The examples drawn here compare with the interpreter, not torch."""


EXACT = Case(st.nothing(), _no_torch, exact=True)
CONTRACTION = Case(st.nothing(), _no_torch)  # the example gives K and max|term|


# -- building, compiling, comparing --------------------------------------------------------
def one_op_graph(op: str, args: tuple[np.ndarray, ...], attrs: dict[str, Any],
                 constants: frozenset[int] = frozenset()) -> tuple[Graph, list[np.ndarray]]:
    """`op` as a graph; operands whose index is in `constants` are bound as constants, the
    rest are inputs. Returns the graph and the arrays its inputs take."""
    operands, feed, inputs = [], [], []
    for i, a in enumerate(args):
        if i in constants:
            operands.append(Node.constant(a, dtype_of_array(a)))
            continue
        x = Node.input(f"a{i}", a.shape, dtype_of_array(a))
        operands.append(x)
        inputs.append(x)
        feed.append(a)
    node = Node.make(op, operands, **attrs)
    outs = [node]
    if isinstance(node.type, TupleType):
        outs = [Node.make("project", [node], index=i) for i in range(len(node.type.elements))]
    return Graph(inputs, outs), feed


def weight_operands(ex: Example) -> frozenset[int]:
    """The weight and the bias, if any (a residual stays an input, as in a model)."""
    last = len(ex.args) - (1 if ex.attrs.get("residual") else 0)
    return frozenset(range(1, min(last, 3)))


def _wide_ints(ex: Example) -> bool:
    """Not a cast to int4/uint4 (see test_cast_to_4_bit_ints_fails_at_compile_time)."""
    return ex.attrs.get("dtype") not in NARROW_INTS


def assert_scheduled(module: Any) -> None:
    missing = sorted(k for k, rule in module.kernels.items() if rule is None)
    assert not missing, f"kernels without a schedule rule: {missing} (rules: {module.kernels})"


def compiled_and_oracle(graph: Graph, feed: list[np.ndarray], oracle: str = "float64"):
    module = smelt.compile(graph, "cpu")
    assert_scheduled(module)
    with np.errstate(all="ignore"):
        got = [_host(g) for g in module(*feed)]
        want = list(smelt.interpret(graph, *feed, precision=oracle))
    assert len(got) == len(want)
    return got, want


def _host(a: np.ndarray) -> np.ndarray:
    """TVM hands bfloat16 back as ml_dtypes' bfloat16; the interpreter holds it in float32."""
    return a.astype(np.float32) if a.dtype.name == "bfloat16" else a


def check(graph: Graph, feed: list[np.ndarray], ex: Example, case: Case,
          oracle: str = "float64") -> None:
    """Compiled vs the interpreter (`oracle` precision) within the case's contract."""
    got, want = compiled_and_oracle(graph, feed, oracle)
    for g, w, out in zip(got, want, graph.outputs, strict=True):
        assert g.dtype == numpy_dtype(out.dtype), f"{g.dtype} for a {out.dtype} output"
        if np.issubdtype(w.dtype, np.floating):
            w = w.astype(np.float64)
        assert_matches(g, w, ex, case)


# -- every op ------------------------------------------------------------------------------
@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_has_a_backend_case(op: str) -> None:
    assert op in CASES or op in TESTED_ELSEWHERE, (
        f"op {op!r} has no backend test: add a case to CASES in test_ops_reference.py"
    )


@pytest.mark.parametrize("op", sorted(CASES))
@settings(max_examples=15)
@given(data=st.data())
def test_op_compiles_and_matches(op: str, data: st.DataObject) -> None:
    case = CASES[op]
    # casts to int4/uint4 are left out: see test_cast_to_4_bit_ints_fails_at_compile_time
    ex = data.draw(case.examples.filter(_wide_ints), label="example")
    constants: frozenset[int] = frozenset()
    if op in CONTRACTIONS and data.draw(st.booleans(), label="constant weights"):
        constants = weight_operands(ex)
    graph, feed = one_op_graph(op, ex.args, ex.attrs, constants)
    # a float cast is widened by the float64 mode on purpose; the float32 run is exact
    check(graph, feed, ex, case, oracle="float32" if op == "cast" else "float64")


CONSUMERS = {  # each reads tanh's value more than once
    "leaky_relu": lambda t: Node.make("leaky_relu", [Node.make("leaky_relu", [t], alpha=0.1)],
                                      alpha=0.2),
    "square": lambda t: Node.make("mul", [t, t]),
    "gelu": lambda t: Node.make("gelu", [t], approximate="none"),
    "tanh of a square": lambda t: Node.make("tanh", [Node.make("mul", [t, t])]),
}


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
def test_a_fused_chain_reads_its_producer_at_several_uses(consumer: str) -> None:
    """tanh's kernel inlined into a consumer that reads it several times. tanh bound its
    temporaries with Let, and inlined twice the same variable was defined twice: TVM refused
    the kernel as ill-formed (the fuzzing issue's first finding, leaky_relu(leaky_relu(tanh)))."""
    x = Node.input("x", (3, 8))
    graph = Graph([x], [CONSUMERS[consumer](Node.make("tanh", [x]))])
    feed = [np.linspace(-25, 25, 24, dtype=np.float32).reshape(3, 8)]
    got = smelt.compile(graph, "cpu")(*feed)[0]
    np.testing.assert_allclose(got, smelt.interpret(graph, *feed)[0], rtol=0,
                               atol=8 * float(np.finfo(np.float32).eps))  # tanh: 2 ulp of 1


@settings(max_examples=30)
@given(graph=sst.graphs(sst.SUPPORTED_VOCABULARY, max_nodes=8))
def test_every_kernel_has_a_schedule_rule(graph: Graph) -> None:
    """Random multi-op graphs, whose fused kernels (elementwise chains, epilogues, a reduction
    behind a data movement) no one-op test builds: the schedule pass must claim each one."""
    module = smelt.compile(graph, "cpu")
    assert module.kernels, "a graph with ops compiled to no kernel"
    assert_scheduled(module)


@pytest.mark.parametrize("op", sorted(NAN_CASES))
def test_nan_propagates_as_in_the_interpreter(op: str) -> None:
    """The random cases plant NaN only sometimes (and -inf windows rarely); here it is
    certain. TVM's max, min and != drop NaN where numpy keeps it."""
    args, attrs = NAN_CASES[op]
    args = tuple(a.astype(np.float32) for a in args)
    graph, feed = one_op_graph(op, args, attrs)
    got, want = compiled_and_oracle(graph, feed, "float32")
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def _f32(*values) -> np.ndarray:
    return np.array(values, np.float32)


EDGE_CASES = {
    "reduce_max": ((np.full((2, 3), -np.inf, np.float32),), {"axes": [1], "keepdims": False}),
    "reduce_min": ((np.full((2, 3), np.inf, np.float32),), {"axes": [0], "keepdims": True}),
    "argmax": ((_f32([-np.inf, -np.inf], [np.inf, np.nan]),), {"axis": 1}),
    "argmax-bool": ((np.array([[False, True, True], [False] * 3]),), {"axis": 1}),
    "max_pool2d": ((np.arange(3, dtype=np.float32).reshape(1, 1, 1, 3),),  # a window wholly
                   {"kernel": [1, 2], "padding": [0, 1], "dilation": [1, 2], "stride": [],
                    "ceil_mode": False}),  # in padding
    "not_equal": ((_f32(np.nan, 1.0, np.nan), _f32(np.nan, np.nan, 0.0)), {}),
    "leaky_relu": ((_f32(-np.inf, np.nan, -1.0, 2.0),), {"alpha": 0.0}),
    "leaky_relu-tiny": ((_f32(-np.inf, np.inf, -1.0),), {"alpha": 1e-300}),
    "tanh": ((_f32(1e-30, -1e-8, 3e-4, -0.01, 0.3, 5.0, 30.0, -np.inf, -0.0),), {}),
    "pow": ((np.array([3, -2, 5, 7, 2, 0]), np.array([0, 3, 4, 100, 64, 0])), {}),
    "neg": ((np.array([0, 1, 255], np.uint8),), {}),
    "split": ((_f32(1, 2, 3),), {"axis": 0, "sizes": [0, 3, 0]}),
    "slice": ((_f32(1, 2, 3),), {"axis": 0, "start": 2, "stop": 1}),
    "pad": ((np.arange(6, dtype=np.int32).reshape(2, 3),),
            {"pads": [1, 2, 0, 3], "mode": "edge", "value": 0.0}),
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_values_match_the_interpreter(name: str) -> None:
    """Infinities at a reduction's identity, NaN under !=, -inf * alpha, tanh near 0, integer
    powers that wrap, unsigned negation, empty parts and slices, edge padding."""
    op = name.split("-")[0]
    args, attrs = EDGE_CASES[name]
    graph, feed = one_op_graph(op, args, attrs)
    got, want = compiled_and_oracle(graph, feed, "float64")
    for g, w in zip(got, want, strict=True):
        assert_matches(g, w.astype(np.float64) if w.dtype.kind == "f" else w,
                       Example(args, attrs), CASES[op])


@pytest.mark.parametrize("op", BOOL_OPERANDS)
@settings(max_examples=5)
@given(data=st.data())
def test_bool_operands_compile_and_match(op: str, data: st.DataObject) -> None:
    """add, mul, maximum, minimum and the comparisons accept bool tensors (add is or, mul is
    and), which TVM's own ops reject; the reference cases draw only numbers for them."""
    ex = data.draw(logical_examples(2), label="example")
    check(*one_op_graph(op, ex.args, {}), ex, EXACT)


@pytest.mark.parametrize("route", CAST_ROUTES, ids=[f"{a}-{b}" for a, b in CAST_ROUTES])
@settings(max_examples=10)
@given(data=st.data())
def test_cast_routes_compile_and_match(route: tuple[str, str], data: st.DataObject) -> None:
    """Each route on its own (float -> bfloat16 rounding, float -> int truncation...).
    int4/uint4 targets are left out: TVM's runtime cannot allocate 4-bit tensors, which the
    next test pins down."""
    ex = data.draw(cast_examples((route,)).filter(_wide_ints), label="example")
    graph, feed = one_op_graph("cast", ex.args, ex.attrs)
    check(graph, feed, ex, CASES["cast"], oracle="float32")


@pytest.mark.parametrize("dtype", NARROW_INTS)
def test_cast_to_4_bit_ints_fails_at_compile_time(dtype: str) -> None:
    graph, _ = one_op_graph("cast", (np.zeros(3, np.float32),), {"dtype": dtype})
    with pytest.raises(LoweringError, match="4-bit"):
        smelt.compile(graph, "cpu")


# -- the scheduled contraction kernels -----------------------------------------------------
EPILOGUES = ("none", "relu", "add", "add_relu")


def contraction_graph(op: str, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                      attrs: dict[str, Any], epilogue: str, residual: np.ndarray | None,
                      weight_input: bool = False) -> tuple[Graph, list[np.ndarray]]:
    """x (an input) times a constant weight (an input for an activation matmul), plus a
    constant bias, then the epilogue: relu, a residual add (the residual an input), or both
    (a ResNet block's end)."""
    xi = Node.input("x", x.shape, dtype_of_array(x))
    inputs, feed = [xi], [x]
    if weight_input:
        wn = Node.input("w", w.shape, dtype_of_array(w))
        inputs.append(wn)
        feed.append(w)
    else:
        wn = Node.constant(w, dtype_of_array(w))
    operands = [xi, wn] + ([Node.constant(b, dtype_of_array(b))] if b is not None else [])
    y = Node.make(op, operands, **attrs)
    if epilogue in ("add", "add_relu"):
        r = Node.input("r", residual.shape, dtype_of_array(residual))
        inputs.append(r)
        feed.append(residual)
        y = Node.make("add", [y, r])
    if epilogue in ("relu", "add_relu"):
        y = Node.make("relu", [y])
    return Graph(inputs, [y]), feed


def assert_epilogue_fused(graph: Graph) -> None:
    """The bias, residual add and relu run inside the contraction's kernel: one kernel,
    besides the zero padding stage."""
    kernels = [k for k in smelt.compile(graph, "cpu").kernels if not k.startswith("pad")]
    assert len(kernels) == 1, f"the epilogue was not fused: kernels {kernels}"


def contraction_example(x, w, b, residual, k: int, attrs) -> Example:
    """The bound of an `exact`-contract contraction: K products plus bias and residual."""
    term = dot_term(x, w, b) + (float(np.abs(residual).max()) if residual is not None else 0)
    return Example((x, w), attrs, k=k + (b is not None) + (residual is not None), term=term)


ODD = (1, 3, 7, 10, 16, 24, 33, 48, 100)


@st.composite
def linear_kernel_examples(draw: st.DrawFn):
    lead = draw(st.sampled_from([(1,), (7,), (12,), (32,), (2, 12), (1, 7), (3, 5), (2, 8)]))
    k, n = draw(st.sampled_from(ODD)), draw(st.sampled_from(ODD))
    x = draw(values(lead + (k,), "float32"))
    w = draw(values((n, k), "float32"))
    b = draw(values((n,), "float32")) if draw(st.booleans()) else None
    epilogue = draw(st.sampled_from(EPILOGUES))
    res = draw(values(lead + (n,), "float32")) if "add" in epilogue else None
    return x, w, b, epilogue, res


@settings(max_examples=60)
@given(case=linear_kernel_examples())
def test_linear_kernel(case) -> None:
    """smelt_dense: row tiles that must divide the leading extent, panels of nb columns."""
    x, w, b, epilogue, res = case
    graph, feed = contraction_graph("linear", x, w, b, {}, epilogue, res)
    ex = contraction_example(x, w, b, res, w.shape[1], {})
    check(graph, feed, ex, CONTRACTION)
    assert_epilogue_fused(graph)


@st.composite
def matmul_kernel_examples(draw: st.DrawFn):
    """Batch axes that broadcast against each other (either side may have fewer or 1s), or
    a constant 2-D right operand (the dense route)."""
    batch = draw(st.sampled_from([(), (2,), (3,), (2, 3), (4, 1)]))
    m, k, n = (draw(st.sampled_from(ODD[:7])) for _ in range(3))
    a = draw(values(draw(sst.broadcastable_shapes(batch)) + (m, k), "float32"))
    constant = draw(st.booleans())
    b_batch = () if constant else draw(sst.broadcastable_shapes(batch))
    b = draw(values(b_batch + (k, n), "float32"))
    out = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (m, n)
    epilogue = draw(st.sampled_from(EPILOGUES))
    res = draw(values(out, "float32")) if "add" in epilogue else None
    return a, b, constant, epilogue, res


@settings(max_examples=60)
@given(case=matmul_kernel_examples())
def test_matmul_kernel(case) -> None:
    """smelt_matmul (two activations, batch broadcast) and smelt_dense (constant B)."""
    a, b, constant, epilogue, res = case
    graph, feed = contraction_graph("matmul", a, b, None, {}, epilogue, res,
                                    weight_input=not constant)
    check(graph, feed, contraction_example(a, b, None, res, a.shape[-1], {}), CONTRACTION)
    assert_epilogue_fused(graph)


@st.composite
def conv_kernel_examples(draw: st.DrawFn):
    """Dense, depthwise (channel multiplier 1 or 2) and grouped convolutions; kernel 1, 3,
    5; stride 1, 2; padding none, symmetric or not; dilation 1, 2; output widths that are
    odd (7, 13) or not a multiple of the 8-pixel tile."""
    kind = draw(st.sampled_from(["dense", "dense", "depthwise", "grouped"]))
    kh, kw = draw(st.sampled_from([(1, 1), (3, 3), (5, 5), (3, 1), (1, 3)]))
    stride = draw(st.sampled_from([[1, 1], [2, 2], [1, 2]]))
    dilation = draw(st.sampled_from([[1, 1], [2, 2]]))
    padding = draw(st.sampled_from([[0, 0], [1, 1], [kh // 2, kw // 2], [0, 1, 1, 0],
                                    [1, 2, 0, 1]]))
    t, left, bottom, right = (padding * 2)[:4] if len(padding) == 2 else padding
    if kind == "dense":
        groups, cin, cout = 1, draw(st.sampled_from([1, 3, 8, 16])), \
            draw(st.sampled_from([1, 4, 8, 16, 20, 32]))
    elif kind == "depthwise":
        cin = draw(st.sampled_from([1, 3, 8, 16]))
        groups, cout = cin, cin * draw(st.sampled_from([1, 2]))
    else:
        groups = draw(st.sampled_from([2, 3, 4]))
        cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    oh = draw(st.sampled_from([1, 3, 5, 8]))
    ow = draw(st.sampled_from([1, 4, 7, 8, 13, 16]))
    h = max(1, (oh - 1) * stride[0] + dilation[0] * (kh - 1) + 1 - t - bottom)
    w = max(1, (ow - 1) * stride[1] + dilation[1] * (kw - 1) + 1 - left - right)
    h, w = max(h, dilation[0] * (kh - 1) + 1 - t - bottom), max(w, dilation[1] * (kw - 1)
                                                                 + 1 - left - right)
    x = draw(values((draw(st.sampled_from([1, 2])), cin, h, w), "float32"))
    wt = draw(values((cout, cin // groups, kh, kw), "float32"))
    b = draw(values((cout,), "float32")) if draw(st.booleans()) else None
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    out = one_op_graph("conv2d", (x, wt), attrs)[0].outputs[0].shape
    epilogue = draw(st.sampled_from(EPILOGUES))
    res = draw(values(out, "float32")) if "add" in epilogue else None
    return x, wt, b, attrs, epilogue, res


@settings(max_examples=100)
@given(case=conv_kernel_examples())
def test_conv2d_kernel(case) -> None:
    """smelt_conv2d / smelt_dwconv / smelt_gconv2d with the epilogue folded into the tile."""
    x, w, b, attrs, epilogue, res = case
    graph, feed = contraction_graph("conv2d", x, w, b, attrs, epilogue, res)
    k = w.shape[1] * w.shape[2] * w.shape[3]
    check(graph, feed, contraction_example(x, w, b, res, k, attrs), CONTRACTION)
    assert_epilogue_fused(graph)


# -- pooling and row-wise kernels ----------------------------------------------------------
@st.composite
def pool_kernel_examples(draw: st.DrawFn):
    """Rows wide enough for the pool rule's vector tile (4 to 16 and beyond) and not."""
    op = draw(st.sampled_from(["max_pool2d", "avg_pool2d"]))
    kernel = draw(st.sampled_from([[2, 2], [3, 3], [3, 1], [5, 5]]))
    stride = draw(st.sampled_from([[], [1, 1], [2, 2], [1, 2]]))
    padding = [draw(st.integers(0, k // 2)) for k in kernel]
    dilation = draw(st.sampled_from([[1, 1], [2, 2]])) if op == "max_pool2d" else [1, 1]
    h, w = draw(st.sampled_from([5, 8, 13, 16])), draw(st.sampled_from([6, 9, 16, 17, 33]))
    span = [d * (k - 1) + 1 - 2 * p for k, p, d in zip(kernel, padding, dilation, strict=True)]
    shape = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 3, 8])),
             max(h, span[0]), max(w, span[1]))
    x = draw(values(shape, "float32", specials=op == "max_pool2d"))
    attrs = {"kernel": kernel, "stride": stride, "padding": padding,
             "ceil_mode": draw(st.booleans())}
    if op == "max_pool2d":
        attrs["dilation"] = dilation
    else:
        attrs["count_include_pad"] = draw(st.booleans())
    return op, Example((x,), attrs, k=kernel[0] * kernel[1])


@settings(max_examples=60)
@given(case=pool_kernel_examples())
def test_pool_kernel(case) -> None:
    op, ex = case
    graph, feed = one_op_graph(op, ex.args, ex.attrs)
    check(graph, feed, ex, CASES[op])


@st.composite
def row_kernel_examples(draw: st.DrawFn):
    """softmax, log_softmax and layer_norm over each axis of 2-D to 4-D inputs whose rows
    are odd, short or a few vectors long."""
    op = draw(st.sampled_from(["softmax", "log_softmax", "layer_norm"]))
    shape = draw(st.sampled_from([(4, 7), (2, 12, 33), (3, 5, 16), (2, 3, 4, 9), (1, 64),
                                  (8, 1)]))
    axis = draw(st.integers(0, len(shape) - 1))
    x = draw(values(shape, "float32"))
    x64 = x.astype(np.float64)
    if op != "layer_norm":
        spread = float(np.ptp(x64, axis=axis).max())
        return op, Example((x,), {"axis": axis - len(shape) * draw(st.booleans())},
                           k=shape[axis], term=max(1.0, spread))
    axes = tuple(range(axis, len(shape)))
    affine = tuple(draw(values(shape[axis:], "float32")) for _ in range(draw(st.integers(0, 2))))
    eps = 1e-5
    spread = np.abs(x64).max(axis=axes) / np.sqrt(x64.var(axis=axes) + eps)
    term = float(spread.max()) * (float(np.abs(affine[0]).max()) if affine else 1.0)
    term += float(np.abs(affine[1]).max()) if len(affine) == 2 else 0.0
    return op, Example((x, *affine), {"axis": axis, "eps": eps}, k=math.prod(shape[axis:]),
                       term=term)


@settings(max_examples=60)
@given(case=row_kernel_examples())
def test_row_kernels(case) -> None:
    """The rows rule: every pass over a row computed inside one parallel row loop."""
    op, ex = case
    graph, feed = one_op_graph(op, ex.args, ex.attrs)
    check(graph, feed, ex, CASES[op])
