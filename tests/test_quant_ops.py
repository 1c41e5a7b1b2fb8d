"""Quantized ops (ir/ops/quant.py): reference semantics, rounding ties, the Q/DQ contract, and
the CPU lowering, all bit for bit.

What is proven, and by which test:
- quantize equals torch's rounding on power-of-two scales, where both see the exact quotient,
  ties and saturation included (`QUANT_CASES` of quant_cases.py, run by test_ops_reference in
  both precisions and by test_backend_ops compiled). The reference there is torch's quantize with
  zero point 0 in qint32 plus the zero point and the clamp, because torch (2.13, CPU) rounds
  x / scale + zero_point, not x / scale: on a tie with an odd zero point it is one off from
  ONNX and smelt (0.5 with zero point 1: torch 2, ONNX 1). With even zero points torch's own
  quint8/qint8 agree (`test_quantize_matches_torch_native`). For any float32 scale the two
  differ by at most one, only within a float32 ulp of a tie (torch multiplies by a float32
  reciprocal) (`test_quantize_general_scales_near_torch`). NaN -> zero point, inf saturates.
- dequantize is bit-exact with torch.dequantize in float32 for float32 scales, and equals the
  exact float64 product in the float64 interpreter.
- qconv2d / qlinear / qmatmul equal an independent exact computation (torch float64 conv, every
  partial sum an integer below 2^53; torch int64 matmul); padding is with x_zp; leaving int32
  raises AccumulatorOverflowError naming the op.
- requantize and rounding_shift_right equal round(Fraction(acc * m, 2^n)) in Python's exact
  integers (round() ties to even), on random inputs and on constructed exact ties.
- quantize_multiplier: m in [2^30, 2^31), relative error <= 2^-31, exact for reals with at
  most 31 significant bits.
- The Q/DQ contract (`test_qdq_chain_*`): requantize(qconv2d or qlinear) against
  quantize(conv2d or linear(dequantize(...))) in the float64 interpreter is bit-exact, ties
  included, relu / relu6 folded into qmin / qmax, when the scales are dyadic with small
  numerators and the output scale a power of two (then the ratio is exactly m * 2^-(31+shift)
  and every float64 step of the chain is exact); for arbitrary float32 scales the two differ
  by at most one, in both interpreter precisions.
- The CPU backend: each op compiled equals the interpreter bit for bit (`test_compiled_*`).
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from quant_cases import (
    POW2,
    QUANT_CASES,
    bounds,
    dequantize_examples,
    python_requantize,
    qconv2d_examples,
    qlinear_examples,
    requantize_examples,
    torch_dequantize,
    torch_quantize,
)

import smelt
from smelt.ir import Graph, Node, TypeInferenceError, make, parse_graph, print_graph
from smelt.ir.op_table import get_op
from smelt.ir.ops.quant import (
    AccumulatorOverflowError,
    QuantizationError,
    quantize_multiplier,
    rounding_shift_right,
)
from smelt.ir.types import dtype_of_array


# -- running one op ------------------------------------------------------------------------
def one_op(op: str, args: tuple[np.ndarray, ...], attrs: dict,
           constants: frozenset[int] = frozenset()) -> tuple[Graph, list[np.ndarray]]:
    operands, inputs, feed = [], [], []
    for i, a in enumerate(args):
        if i in constants:
            operands.append(Node.constant(a))
            continue
        inputs.append(Node.input(f"a{i}", a.shape, dtype_of_array(a)))
        operands.append(inputs[-1])
        feed.append(a)
    return Graph(inputs, [Node.make(op, operands, **attrs)]), feed


def run(op: str, args: tuple[np.ndarray, ...], attrs: dict, precision: str = "float32"):
    graph, feed = one_op(op, args, attrs)
    return smelt.interpret(graph, *feed, precision=precision)[0]


# -- quantize and dequantize ---------------------------------------------------------------
@settings(max_examples=60)
@given(data=st.data())
def test_quantize_matches_torch_native(data: st.DataObject) -> None:
    """torch's own quint8/qint8 (zero point added before rounding) agree with smelt's
    rhe(x / scale) + zero_point whenever the zero point is even, ties included."""
    signed = data.draw(st.booleans())
    lo, hi = bounds(8, signed)
    zp = 2 * data.draw(st.integers(lo // 2, hi // 2))
    scale = data.draw(st.sampled_from(POW2))
    k = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).integers(-300, 300, 64)
    x = ((k + 0.5) * scale).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        want = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp,
                                         torch.qint8 if signed else torch.quint8).int_repr()
    got = run("quantize", (x,), {"scale": [scale], "zero_point": [zp], "signed": signed})
    np.testing.assert_array_equal(got, want.numpy())


def test_quantize_general_scales_near_torch() -> None:
    """Any float32 scale: torch's x * fl32(1 / scale) and smelt's float64 x / scale round to
    integers at most one apart, and only where x / scale is within a float32 ulp of a tie."""
    rng = np.random.default_rng(7)
    for _ in range(50):
        s = float(np.float32(rng.uniform(1e-3, 2)))
        x = np.concatenate([(rng.integers(-100, 100, 200) + 0.5) * s,
                            rng.normal(size=200) * 60 * s]).astype(np.float32)
        got = run("quantize", (x,), {"scale": [s], "bits": 32}).astype(np.int64)
        want = torch_quantize(torch.from_numpy(x), scale=[s], zero_point=[0], axis=None,
                              bits=32, signed=True).numpy()
        off = got != want
        assert np.abs(got - want).max() <= 1
        quotient = x[off].astype(np.float64) / s
        to_tie = np.abs(quotient - np.floor(quotient) - 0.5)
        assert (to_tie <= np.abs(quotient) * 2.0**-24).all()


def test_quantize_specials_and_ties() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -0.0],
                 np.float32)
    got = run("quantize", (x,), {"scale": [1.0], "zero_point": [3]})
    np.testing.assert_array_equal(got, [3, 127, -128, 127, -128, 3, 5, 5, 3, 1, 1, 3])
    four = run("quantize", (x,), {"scale": [1.0], "bits": 4, "signed": True})
    assert four.dtype == np.int8 and four.min() == -8 and four.max() == 7


def test_relu_folds_into_the_quantize_clamp() -> None:
    """quantize(relu(x)) = quantize(x) with qmin = zp; relu6 adds qmax = zp + rhe(6 / s)."""
    rng = np.random.default_rng(3)
    for s, zp in ((0.05, -20), (0.25, 7), (0.0625, 0)):
        x = np.concatenate([(rng.integers(-200, 200, 500) + 0.5) * s,
                            rng.normal(size=500) * 8]).astype(np.float32)
        q = {"scale": [s], "zero_point": [zp]}
        top = zp + round(6 / s)
        for act, qmax in (("relu", None), ("relu6", min(127, top))):
            xi = Node.input("x", x.shape)
            g = Graph([xi], [make("quantize", make(act, xi), **q),
                             make("quantize", xi, qmin=max(-128, zp), qmax=qmax, **q)])
            unfolded, folded = smelt.interpret(g, x)
            np.testing.assert_array_equal(unfolded, folded)


@settings(max_examples=60)
@given(data=st.data())
def test_dequantize_bit_exact_with_torch(data: st.DataObject) -> None:
    (q,), attrs = data.draw(dequantize_examples())
    want = torch_dequantize(torch.from_numpy(q), **attrs).numpy()
    got = run("dequantize", (q,), attrs)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


# -- integer contractions ------------------------------------------------------------------
@settings(max_examples=40)
@given(data=st.data())
def test_qconv2d_pads_with_the_zero_point(data: st.DataObject) -> None:
    """Padding inside qconv2d equals padding x with x_zp first: padded elements are zeros."""
    (x, w, *b), attrs = data.draw(qconv2d_examples())
    t, left, bot, right = attrs["padding"]
    xp = np.pad(x, ((0, 0), (0, 0), (t, bot), (left, right)), constant_values=attrs["x_zp"])
    want = run("qconv2d", (xp, w, *b), {**attrs, "padding": [0]})
    np.testing.assert_array_equal(run("qconv2d", (x, w, *b), attrs), want)


OVERFLOWS = [
    ("qlinear", (np.full((1, 4), 32767, np.int16), np.full((1, 4), -32768, np.int16)), {}),
    ("qmatmul", (np.full((2, 3), 32767, np.int16), np.full((3, 2), 32767, np.int16)),
     {"a_zp": -32768}),
    ("qconv2d", (np.full((1, 1, 3, 3), 255, np.uint8), np.full((1, 1, 3, 3), -128, np.int8),
                 np.array([-(2**31) + 1], np.int32)), {}),
]


@pytest.mark.parametrize("op, args, attrs", OVERFLOWS, ids=[o[0] for o in OVERFLOWS])
def test_int32_overflow_raises_naming_the_op(op: str, args, attrs) -> None:
    with pytest.raises(AccumulatorOverflowError, match=f"^{op}: the exact accumulator"):
        run(op, args, attrs)


def test_macs_count_the_integer_products() -> None:
    x, w = Node.input("x", (1, 3, 8, 8), "uint8"), Node.input("w", (4, 3, 3, 3), "int8")
    node = make("qconv2d", x, w, padding=[1])
    cost = get_op("qconv2d").cost([x.type, w.type], node.type, dict(node.attrs))
    assert cost.macs == 1 * 4 * 8 * 8 * 3 * 3 * 3
    lin = make("qlinear", Node.input("a", (5, 7), "int8"), Node.input("b", (2, 7), "int8"))
    assert get_op("qlinear").cost([t.type for t in lin.inputs], lin.type, {}).macs == 5 * 2 * 7


# -- requantize and its integer arithmetic -------------------------------------------------
@settings(max_examples=300)
@given(p=st.integers(-(2**62), 2**62), n=st.integers(0, 62), tie=st.booleans())
def test_rounding_shift_right_is_exact(p: int, n: int, tie: bool) -> None:
    if tie and n > 0:  # move p onto the nearest tie
        p = max(min((p >> n << n) + (1 << (n - 1)), 2**62), -(2**62))
    assert int(rounding_shift_right(np.int64(p), n)) == round(Fraction(p, 2**n))


@settings(max_examples=200)
@given(data=st.data())
def test_requantize_matches_exact_integers(data: st.DataObject) -> None:
    (acc,), attrs = data.draw(requantize_examples())
    want = python_requantize(torch.from_numpy(acc), **attrs).numpy()
    np.testing.assert_array_equal(run("requantize", (acc,), attrs), want)


def test_requantize_ties_go_to_even() -> None:
    """m = 2^30, shift 0: y = acc / 2, so odd accumulators are ties."""
    acc = np.array([1, 3, 5, -1, -3, -5, 7, -7], np.int32)
    got = run("requantize", (acc,), {"multiplier": [2**30], "out_scale": 1.0})
    np.testing.assert_array_equal(got, [0, 2, 2, 0, -2, -2, 4, -4])


@settings(max_examples=500)
@given(r=st.floats(2.0**-32, 2.0**31, exclude_max=True))
def test_quantize_multiplier_error_bound(r: float) -> None:
    m, shift = quantize_multiplier(r)
    assert 2**30 <= m < 2**31 and -31 <= shift <= 31
    err = abs(Fraction(m, 2 ** (31 + shift)) - Fraction(r))
    assert err <= Fraction(r) * Fraction(1, 2**31)


@settings(max_examples=200)
@given(mantissa=st.integers(1, 2**31 - 1), e=st.integers(-62, 0))
def test_quantize_multiplier_is_exact_on_31_bits(mantissa: int, e: int) -> None:
    r = Fraction(mantissa) * Fraction(2) ** e
    if not Fraction(1, 2**32) <= r < 2**31:
        return
    m, shift = quantize_multiplier(float(r))
    assert Fraction(m, 2 ** (31 + shift)) == r


def test_quantize_multiplier_edges() -> None:
    assert quantize_multiplier(1.0) == (2**30, -1)
    assert quantize_multiplier(0.5) == (2**30, 0)
    assert quantize_multiplier(1 - 2.0**-40) == (2**30, -1)  # the mantissa rounds up to 1
    assert quantize_multiplier(2.0**-33) == (0, 0)  # below 2^-32: every int32 acc -> 0
    acc = np.array([-(2**31), 2**31 - 1], np.int32)
    assert not run("requantize", (acc,), {"multiplier": [0], "out_scale": 1.0}).any()
    for bad in (0.0, -1.0, math.inf, math.nan, 2.0**31):
        with pytest.raises(QuantizationError):
            quantize_multiplier(bad)


# -- the Q/DQ contract ---------------------------------------------------------------------
def qdq_pair(anchor: str, args: tuple[np.ndarray, ...], attrs: dict, sx: float,
             sw: list[float], sy: float, zy: int, act: str | None) -> Graph:
    """Outputs (requantize(q<anchor>(...)), quantize(<anchor>(dequantize(...)))) on x_q, with
    the activation folded into requantize's clamp on the integer side."""
    xq, wq, *b = args
    x, w = Node.input("x", xq.shape, dtype_of_array(xq)), Node.constant(wq)
    bias = [Node.constant(b[0])] if b else []
    extra = {k: v for k, v in attrs.items() if k not in ("x_zp", "w_zp")}
    acc = make("q" + anchor, x, w, *bias, **attrs)
    pairs = [quantize_multiplier(sx * s / sy) for s in sw]
    w_axis = 0 if len(sw) > 1 else None
    qmin = max(-128, zy) if act else -128
    qmax = min(127, zy + round(6 / sy)) if act == "relu6" else 127
    integer = make("requantize", acc, multiplier=[m for m, _ in pairs],
                   shift=[s for _, s in pairs], out_zp=zy, out_scale=sy, qmin=qmin, qmax=qmax,
                   axis=1 if anchor == "conv2d" else -1)
    xf = make("dequantize", x, scale=[sx], zero_point=[attrs["x_zp"]])
    wf = make("dequantize", w, scale=sw, zero_point=attrs["w_zp"], axis=w_axis)
    bf = [make("dequantize", bias[0], scale=[sx * s for s in sw], axis=w_axis)] if b else []
    y = make(anchor, xf, wf, *bf, **extra)
    y = make(act, y) if act else y
    return Graph([x], [integer, make("quantize", y, scale=[sy], zero_point=[zy])])


@st.composite
def chain_examples(draw: st.DrawFn, dyadic: bool):
    """A qconv2d or qlinear example with scales: dyadic (sx = a 2^-i, sw = b 2^-j with a, b
    small odd, sy = 2^(e-i-j), so the ratio a b 2^-e is exact and ties are frequent) or any
    float32 scales."""
    anchor = draw(st.sampled_from(["conv2d", "linear"]))
    args, attrs = draw(qconv2d_examples() if anchor == "conv2d" else qlinear_examples())
    if dyadic:
        i, j, e = draw(st.integers(0, 8)), draw(st.integers(0, 8)), draw(st.integers(1, 12))
        odd = st.sampled_from([1, 3, 5, 7])
        sx = draw(odd) * 2.0**-i
        sw = [draw(odd) * 2.0**-j for _ in attrs["w_zp"]]
        sy = 2.0 ** (e - i - j)
    else:
        f32 = st.floats(1e-3, 1.0).map(lambda v: float(np.float32(v)))
        sx, sw = draw(f32), [draw(f32) for _ in attrs["w_zp"]]
        sy = float(np.float32(sx * sw[0] * 2.0 ** draw(st.floats(-2, 12))))
    if len(sw) == 1 and draw(st.booleans()):  # per-channel scales over shared zero points
        outs = args[1].shape[0]
        sw = sw * outs if dyadic else [draw(f32) for _ in range(outs)]
    act = draw(st.sampled_from([None, "relu", "relu6"]))
    return anchor, args, attrs, sx, sw, sy, draw(st.integers(-20, 20)), act


@settings(max_examples=150)
@given(ex=chain_examples(dyadic=True))
def test_qdq_chain_bit_exact_for_dyadic_scales(ex) -> None:
    integer, float_path = smelt.interpret(qdq_pair(*ex), ex[1][0], precision="float64")
    np.testing.assert_array_equal(integer, float_path)


@settings(max_examples=100)
@given(ex=chain_examples(dyadic=False))
def test_qdq_chain_within_one_for_any_scales(ex) -> None:
    graph = qdq_pair(*ex)
    for precision in ("float64", "float32"):
        integer, float_path = smelt.interpret(graph, ex[1][0], precision=precision)
        assert np.abs(integer.astype(int) - float_path.astype(int)).max() <= 1


def test_qdq_chain_exact_on_many_ties() -> None:
    """ratio 3/2: every odd accumulator is a tie; the two paths still agree on all of them."""
    rng = np.random.default_rng(11)
    x = rng.integers(-3, 4, (8, 16)).astype(np.int8)
    w = rng.integers(-3, 4, (5, 16)).astype(np.int8)
    attrs = {"x_zp": 0, "w_zp": [0]}
    acc = run("qlinear", (x, w), attrs)
    assert ((acc % 2 == 1) & (np.abs(acc) < 80)).sum() > 10  # ties inside the int8 range
    graph = qdq_pair("linear", (x, w), attrs, 3 * 2.0**-4, [2.0**-6], 2.0**-9, 1, None)
    integer, float_path = smelt.interpret(graph, x, precision="float64")
    np.testing.assert_array_equal(integer, float_path)


# -- types, messages, text -----------------------------------------------------------------
def _in(shape: tuple[int, ...], dtype: str = "float32") -> Node:
    return Node.input(f"t{len(shape)}_{dtype}", shape, dtype)


def _requant(**attrs) -> Node:
    return make("requantize", _in((2, 3), "int32"), **{"multiplier": [1], "out_scale": 1.0,
                                                       **attrs})


ILL_TYPED = [
    ("int input", lambda: make("quantize", _in((2,), "int8"), scale=[1.0]), "float tensor"),
    ("zero scale", lambda: make("quantize", _in((2,)), scale=[0.0]), "positive finite"),
    ("channels", lambda: make("quantize", _in((2, 3)), scale=[1.0, 2.0], axis=1),
     "axis 1 has 3 channels"),
    ("no axis", lambda: make("quantize", _in((2, 3)), scale=[1.0, 2.0]), "axis is none"),
    ("zp range", lambda: make("quantize", _in((2,)), scale=[1.0], zero_point=[200]),
     "must lie in [-128, 127]"),
    ("uint16", lambda: make("quantize", _in((2,)), scale=[1.0], bits=16, signed=False),
     "at most 8 bits"),
    ("clamp", lambda: make("quantize", _in((2,)), scale=[1.0], qmin=5, qmax=2),
     "qmin <= qmax"),
    ("float operand", lambda: make("qconv2d", _in((1, 1, 3, 3)), _in((1, 1, 1, 1), "int8")),
     "quantize it first"),
    ("bias dtype", lambda: make("qlinear", _in((2, 3), "int8"), _in((4, 3), "int8"),
                                _in((4,), "int64")), "bias must be int32"),
    ("w_zp count", lambda: make("qlinear", _in((2, 3), "int8"), _in((4, 3), "int8"),
                                w_zp=[0, 0]), "one per output channel (4)"),
    ("x_zp range", lambda: make("qmatmul", _in((2, 3), "uint8"), _in((3, 2), "int8"),
                                a_zp=-1), "uint8's range"),
    ("annotation", lambda: make("qmatmul", make("quantize", _in((2, 3)), scale=[1.0],
                                                zero_point=[4]), _in((3, 2), "int8")),
     "annotated with zero point [4]"),
    ("activation axis", lambda: make("qlinear", make("quantize", _in((2, 3)),
                                                     scale=[1.0] * 3, axis=1),
                                     _in((4, 3), "int8")), "needs it quantized per tensor"),
    ("dequantize", lambda: make("dequantize", make("quantize", _in((2,)), scale=[1.0]),
                                scale=[2.0]), "disagree with its input's annotation"),
    ("accumulator", lambda: make("requantize", _in((2,), "int8"), multiplier=[1],
                                 out_scale=1.0), "int32 accumulator"),
    ("shift", lambda: _requant(shift=[40]), "31 + shift"),
    ("multiplier", lambda: _requant(multiplier=[-1]), "see quantize_multiplier"),
    ("out_scale", lambda: _requant(out_scale=-1.0), "positive finite"),
    ("per channel", lambda: _requant(multiplier=[1, 2], axis=1), "give 3 or 1"),
]


@pytest.mark.parametrize("name, build, fragment", ILL_TYPED, ids=[c[0] for c in ILL_TYPED])
def test_ill_typed_builds_say_what_to_do(name: str, build, fragment: str) -> None:
    with pytest.raises(TypeInferenceError) as info:
        build()
    assert fragment in str(info.value), str(info.value)


def quant_graph() -> Graph:
    """Every quantized op, per-channel parameters and annotations included."""
    x = Node.input("x", (1, 3, 5, 5))
    q = make("quantize", x, scale=[0.5, 0.25, 0.125], zero_point=[1, 0, -1], axis=1)
    w = Node.constant(np.arange(-27, 27, dtype=np.int8).reshape(2, 3, 3, 3))
    xq = make("quantize", x, scale=[0.1], zero_point=[128], signed=False)
    acc = make("qconv2d", xq, w, Node.constant(np.array([5, -5], np.int32)), x_zp=128,
               w_zp=[0, 1], padding=[1])
    y = make("requantize", acc, multiplier=[2**30, 1717986918], shift=[3, 4], out_zp=-3,
             out_scale=0.2, axis=1, qmin=-3)
    lin = make("qlinear", make("reshape", y, shape=[2, 25]),
               Node.constant(np.ones((4, 25), np.int8)), x_zp=-3)
    mm = make("qmatmul", make("reshape", y, shape=[5, 10]),
              Node.constant(np.ones((10, 2), np.int8)), a_zp=-3, b_zp=1)
    return Graph([x], [make("dequantize", q, scale=[0.5, 0.25, 0.125], zero_point=[1, 0, -1],
                            axis=1), make("dequantize", y, scale=[0.2], zero_point=[-3]),
                       lin, mm])


def test_text_round_trips_quant_ops_and_annotations(tmp_path) -> None:
    g = quant_graph()
    text, weights = print_graph(g)
    assert "q(scale=[0.5, 0.25, 0.125], zero_point=[1, 0, -1], bits=8, axis=1" in text
    back = parse_graph(text, weights)
    assert print_graph(back)[0] == text
    for a, b in zip(g.nodes(), back.nodes(), strict=True):
        assert a.type == b.type and dict(a.attrs) == dict(b.attrs)
    loaded = smelt.load(smelt.save(g, tmp_path / "quant"))
    x = np.random.default_rng(0).normal(size=(1, 3, 5, 5)).astype(np.float32)
    for want, got in zip(smelt.interpret(g, x), smelt.interpret(loaded, x), strict=True):
        np.testing.assert_array_equal(want, got)


def test_verifier_accepts_inferred_annotations() -> None:
    quant_graph().verify()


# -- the CPU backend -----------------------------------------------------------------------
WEIGHTS = {"qconv2d": frozenset({1, 2}), "qlinear": frozenset({1, 2})}


def assert_compiled_exact(graph: Graph, feed: list[np.ndarray]) -> None:
    module = smelt.compile(graph, "cpu")
    assert all(rule is not None for rule in module.kernels.values()), module.kernels
    for got, want in zip(module(*feed), smelt.interpret(graph, *feed), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", sorted(op for op, case in QUANT_CASES.items() if case[2]))
@settings(max_examples=3)
@given(data=st.data())
def test_compiled_matches_interpreter(op: str, data: st.DataObject) -> None:
    args, attrs = data.draw(QUANT_CASES[op][0], label="example")
    constants = WEIGHTS.get(op, frozenset()) if data.draw(st.booleans(), label="const") else set()
    assert_compiled_exact(*one_op(op, args, attrs, frozenset(constants) & set(range(len(args)))))


def test_compiled_edges_are_bit_exact() -> None:
    """NaN, infinities and ties in quantize, and float64 near-ties (k + 1/2) * 0.1 where
    multiplying by 1 / 0.1 instead of dividing rounds differently (820 of 10^4); right
    shifts of 0 and 62, ties, the int32 extremes and per-channel parameters in requantize;
    a whole quantized graph."""
    x = Node.input("x", (12,))
    xv = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -0.0],
                  np.float32)
    near = Node.input("near", (10000,), "float64")
    nearv = (np.arange(-5000, 5000) + 0.5) * 0.1
    acc = Node.input("acc", (4, 6), "int32")
    accv = np.array([1, 3, -1, -3, 2**31 - 1, -(2**31)] * 4, np.int32).reshape(4, 6)
    outs = [make("quantize", x, scale=[1.0], zero_point=[3]),
            make("quantize", near, scale=[0.1], bits=16),
            make("quantize", x, scale=[0.1], zero_point=[-5], bits=4),
            make("requantize", acc, multiplier=[2**30], out_scale=1.0),
            make("requantize", acc, multiplier=[2**31 - 1], shift=[-31], out_scale=1.0),
            make("requantize", acc, multiplier=[2**30, 3 << 28, 1, 0, 2**31 - 1, 5],
                 shift=[31, 0, -31, 5, 12, -3], out_zp=7, out_scale=1.0, axis=1, signed=False)]
    assert_compiled_exact(Graph([x, near, acc], outs), [xv, nearv, accv])
    g = quant_graph()
    assert_compiled_exact(g, [np.random.default_rng(1).normal(size=(1, 3, 5, 5))
                              .astype(np.float32)])
