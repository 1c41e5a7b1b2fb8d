"""Differential fuzzing (smelt/fuzz.py), the CI profile: random graphs of every kind compiled
for the CPU and for C (host, ASan + UBSan) against the interpreter; a failure is shrunk by
hypothesis to a minimal batch. benchmarks/fuzz.py runs thousands."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import smelt
from smelt.fuzz import Case, cases, check_batch, check_one, side_by_side
from smelt.ir import Graph, Node

BATCH = 10


def _assert_clean(batch: list[Case], target: str) -> None:
    failures = check_batch(batch, target)
    assert not failures, "\n\n".join(str(f) for f in failures)


@pytest.mark.parametrize("kind", ["float", "fused", "int8"])
def test_cpu_matches_the_interpreter(kind):
    @settings(max_examples=3)  # the first batch is hypothesis' simplest; two vary
    @given(cases(kind, BATCH))
    def holds(batch):
        _assert_clean(batch, "cpu")

    holds()


@pytest.mark.xdist_group("c_target")
@pytest.mark.parametrize("kind", ["float", "int8"])
def test_c_under_sanitizers_matches_the_interpreter(kind):
    @settings(max_examples=2)  # one simplest batch, one that varies (ASan builds are slow)
    @given(cases(kind, BATCH))
    def holds(batch):
        _assert_clean(batch, "c")

    holds()


def _case(kind: str, graph: Graph, *inputs: np.ndarray) -> Case:
    return Case(kind, graph, tuple(inputs))


def test_side_by_side_means_each_case():
    x = Node.input("x0", (2, 3))
    a = _case("float", Graph([x], [Node.make("relu", [x])]), np.array([[-1, 2, 3]] * 2, "f4"))
    b = _case("float", Graph([x], [Node.make("tanh", [x]), Node.make("neg", [x])]),
              np.ones((2, 3), "f4"))
    graph, feed = side_by_side([a, b])
    assert [x.attrs["name"] for x in graph.inputs] == ["c0_x0", "c1_x0"]
    got = smelt.interpret(graph, *feed)
    want = smelt.interpret(a.graph, *a.inputs) + smelt.interpret(b.graph, *b.inputs)
    assert len(got) == 3 and all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_a_bad_case_is_named_in_its_batch():
    """The c target has no float16: that case, and only it, is reported, as a build failure."""
    x = Node.input("x0", (4,))
    good = _case("float", Graph([x], [Node.make("relu", [x])]), np.arange(4, dtype="f4"))
    h = Node.input("x0", (4,), "float16")
    bad = _case("float", Graph([h], [Node.make("relu", [h])]), np.arange(4, dtype="f2"))
    (failure,) = check_batch([good, bad, good], "c")
    assert failure.stage == "build" and "float16" in failure.error and "f16[4]" in failure.graph


def test_a_wrong_output_breaks_the_contract(monkeypatch):
    """An output off by more than float rounding is a finding; integer graphs bit for bit."""
    x = Node.input("x0", (8,))
    case = _case("float", Graph([x], [Node.make("exp", [x])]), np.linspace(-1, 1, 8, "f4"))
    assert check_one(case, "cpu") is None
    monkeypatch.setattr("smelt.fuzz._run", lambda m, t, feed: (np.exp(feed[0]) * (1 + 1e-4),))
    failure = check_one(case, "cpu")
    assert failure is not None and failure.stage == "output" and "allowed" in failure.error
    q = Node.input("x0", (8,), "int8")
    ints = _case("int8", Graph([q], [Node.make("relu", [q])]), np.arange(-4, 4, dtype="i1"))
    def one_off(module, target, feed):
        out = np.maximum(feed[0], 0)
        out[-1] += 1
        return (out,)

    monkeypatch.setattr("smelt.fuzz._run", one_off)
    failure = check_one(ints, "cpu")
    assert failure is not None and "1 of 8 values differ" in failure.error


# -- what the fuzzer found, shrunk, kept as regression tests -------------------------------------
def _qlinear_4d() -> Case:
    """Found by the int8 fuzz: qlinear on a 4-D input with N = 5 (padded to 8 lanes): the CPU's
    dense schedule merged the three row axes and its trimmed write-back read the wrong rows
    (20 of 120 outputs off). Fixed by running X[..., K] as rows (M, K)."""
    x = Node.input("x0", (2, 2, 6, 2))
    q = Node.make("quantize", [x], scale=[0.01513671875], zero_point=[154], axis=None, bits=8,
                  signed=False, qmin=0, qmax=255)
    w = Node.constant(np.array([[127, -46], [127, -21], [14, 127], [-58, 127], [36, -127]],
                               np.int8))
    acc = Node.make("qlinear", [q, w], x_zp=154, w_zp=[0])
    out = Node.make("requantize", [acc], multiplier=[1560281088, 1722810368, 1997078528,
                                                      1743126528, 1290076160],
                    shift=[7] * 5, out_zp=151, out_scale=0.0074462890625, axis=3, bits=8,
                    signed=False, qmin=0, qmax=255)
    feed = np.random.default_rng(0).normal(size=(2, 2, 6, 2)).astype(np.float32)
    return _case("int8", Graph([x], [out, acc]), feed)


@pytest.mark.parametrize("target", ["cpu", pytest.param("c", marks=pytest.mark.xdist_group(
    "c_target"))])
def test_found_qlinear_on_a_4d_input(target):
    assert check_one(_qlinear_4d(), target) is None


def test_found_a_chain_of_tanh_compiles():
    """Found by the fused fuzz (a batch that never finished building): tanh reads its operand
    21 times (te_kernels.tanh, Let-free), so tanh(tanh(x)) -> hardswish -> leaky_relu inlined
    into one expression of thousands of copies, and TVM's TIR passes ran for minutes.
    Inlining now stops at INLINE_BUDGET (backends/lowering/inlining.py)."""
    x = Node.input("x0", (1, 2, 7, 1))
    y = x
    for op in ("tanh", "tanh", "hardswish", "leaky_relu", "relu"):
        y = Node.make(op, [y], **({"alpha": 0.01} if op == "leaky_relu" else {}))
    feed = np.linspace(-3, 3, 14, dtype=np.float32).reshape(1, 2, 7, 1)
    assert check_one(_case("float", Graph([x], [y]), feed), "cpu") is None


@pytest.mark.xdist_group("c_target")
def test_found_an_unread_split_part_builds_in_c():
    """Found by the float fuzz on `c`: a split with one part unread, fused with its reader,
    kept the other part as a buffer set but never used, and the C build (-Werror) refused it.
    A split now lowers to one slice per part, so an unread part is dead code."""
    x = Node.input("x0", (1, 2, 2, 5))
    parts = Node.make("split", [x], axis=2, sizes=[1, 1])
    y = Node.make("relu6", [Node.make("project", [parts], index=1)])
    feed = np.linspace(-8, 8, 20, dtype=np.float32).reshape(1, 2, 2, 5)
    assert check_one(_case("float", Graph([x], [y]), feed), "c") is None


@pytest.mark.xdist_group("c_target")
def test_found_a_pad_after_a_reduction_keeps_its_pad_rows_in_c():
    """Found by the int8 fuzz on `c` (7 of 7 outputs off): avg pool -> quantize -> the zero-
    point padding of a qconv2d with a bottom pad, fused in one kernel. The C schedule moved
    the pad under the pool's loops (reverse_compute_at), and TVM kept only the positions
    that read the pool: the pad row was never written and the conv read stale arena bytes.
    A consumer that writes more than its reduction now keeps its own loops."""
    x = Node.input("x0", (1, 2, 3, 5))
    q0 = Node.make("quantize", [x], scale=[0.018], zero_point=[135], axis=None, bits=8,
                   signed=False, qmin=0, qmax=255)
    top = Node.make("max_pool2d", [q0], kernel=[3, 1], stride=[1, 2], padding=[1, 0],
                    ceil_mode=True, dilation=[2, 1])
    deq = Node.make("dequantize", [top], scale=[0.018], zero_point=[135], axis=None)
    pool = Node.make("avg_pool2d", [Node.make("sigmoid", [deq])], kernel=[2, 1],
                     stride=[1, 2], padding=[1, 0], ceil_mode=False, count_include_pad=False)
    q = Node.make("quantize", [pool], scale=[0.0033], zero_point=[0], axis=None, bits=8,
                  signed=False, qmin=0, qmax=255)
    w = Node.constant(np.array([-24, 127], np.int8).reshape(1, 2, 1, 1))
    y = Node.make("qconv2d", [q, w], x_zp=0, w_zp=[0], stride=[2, 2], padding=[0, 0, 1, 0],
                  dilation=[2, 1], groups=1)
    feed = np.linspace(-2, 2, 30, dtype=np.float32).reshape(1, 2, 3, 5)
    assert check_one(_case("int8", Graph([x], [y]), feed), "c") is None
