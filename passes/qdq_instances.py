"""Random Q/DQ graphs for the fold-qdq rules' property tests (hypothesis builders), named by
the rules (`instance=".qdq_instances:mean"`) and imported only when verification runs.

Scales follow smelt's quantize pass (passes/qscales.py): activation scales with 6-bit
mantissas, drawn often as powers of two so that rounding ties are common; weight scales
matched to the output scale, so the rescale is dyadic. Output scales are sometimes tiny, so
results saturate; zero points anywhere in range; weights and inputs reach their extremes.
"""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from smelt.ir.errors import SmeltError
from smelt.ir.graph import Graph
from smelt.ir.node import Node

from .qscales import weight_scale

U8 = {"bits": 8, "signed": False}
I8 = {"bits": 8, "signed": True}


def well_typed(build):
    """A builder whose ill-typed draws (an empty conv output, ...) are rejected, not errors."""

    @functools.wraps(build)
    def wrapped(draw) -> Graph:
        try:
            return build(draw)
        except SmeltError:
            assume(False)
            raise

    return wrapped


def _rng(draw) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def act_scale(draw) -> float:
    a = draw(st.sampled_from((1, 1, 1, 3, 5, 7, 33, 63)))
    return float(np.ldexp(a, draw(st.integers(-12, -3))))


def qtype(draw) -> tuple[str, dict, int]:
    """(dtype, clamp attrs, zero point) of a quantized activation."""
    if draw(st.integers(0, 3)) == 0:
        return "int8", I8, draw(st.integers(-128, 127))
    return "uint8", U8, draw(st.sampled_from((0, 0, 128, 255, 17)))


def dq_input(draw, name: str, shape: tuple[int, ...]) -> tuple[Node, Node, float]:
    dtype, _, zp = qtype(draw)
    x = Node.input(name, shape, dtype)
    s = act_scale(draw)
    return x, Node.make("dequantize", (x,), scale=(s,), zero_point=(zp,)), s


def quantize_out(draw, v: Node, s_y: float) -> Node:
    _, clamp, zp = qtype(draw)
    return Node.make("quantize", (v,), scale=(s_y,), zero_point=(zp,), **clamp)


def _weights(draw, shape: tuple[int, ...], s_y: float, per_channel: bool) -> tuple[Node, list]:
    rng = _rng(draw)
    w = rng.integers(-127, 128, size=shape).astype(np.int8)
    if draw(st.booleans()):
        w.reshape(-1)[0] = -127  # extremes
    ideal = rng.uniform(0.001, 0.05, size=shape[0] if per_channel else 1)
    s = weight_scale(ideal, s_y)
    zp = (0,)
    if draw(st.integers(0, 4)) == 0:
        zp = tuple(int(v) for v in rng.integers(-3, 4, size=len(s)))
    d = Node.make("dequantize", (Node.constant(w),), scale=tuple(float(v) for v in s),
                  zero_point=zp, axis=0 if len(s) > 1 else None)
    return d, list(s)


def _bias(draw, n: int, s_x: float, w_scales: list) -> Node:
    b = _rng(draw).integers(-5000, 5000, size=n).astype(np.int32)
    scales = [s_x * s for s in (w_scales * n if len(w_scales) == 1 else w_scales)]
    return Node.make("dequantize", (Node.constant(b),), scale=tuple(scales), zero_point=(0,),
                     axis=0 if n > 1 else None)


def _contraction(act: bool):
    @well_typed
    def build(draw) -> Graph:
        kind = draw(st.sampled_from(("conv2d", "linear", "matmul")))
        s_y = act_scale(draw) * draw(st.sampled_from((1, 1, 16, 2**-6)))
        per_channel = draw(st.booleans())
        if kind == "conv2d":
            c = draw(st.sampled_from((1, 2, 3, 4)))
            shape = (draw(st.integers(1, 2)), c, draw(st.integers(3, 6)), draw(st.integers(3, 6)))
            x, dx, s_x = dq_input(draw, "x0", shape)
            groups = draw(st.sampled_from(sorted({g for g in (1, 2, c) if c % g == 0})))
            out, k = groups * draw(st.integers(1, 3)), draw(st.integers(1, 3))
            dw, ws = _weights(draw, (out, c // groups, k, k), s_y, per_channel)
            ins = [dx, dw] + ([_bias(draw, out, s_x, ws)] if draw(st.booleans()) else [])
            y = Node.make("conv2d", ins, stride=(draw(st.integers(1, 2)),) * 2,
                          padding=(draw(st.integers(0, 1)),) * 2,
                          dilation=(draw(st.integers(1, 2)),) * 2, groups=groups)
        elif kind == "linear":
            k = draw(st.integers(1, 16))
            x, dx, s_x = dq_input(draw, "x0", (draw(st.integers(1, 3)), k))
            out = draw(st.integers(1, 5))
            dw, ws = _weights(draw, (out, k), s_y, per_channel)
            ins = [dx, dw] + ([_bias(draw, out, s_x, ws)] if draw(st.booleans()) else [])
            y = Node.make("linear", ins)
        else:
            k = draw(st.integers(1, 12))
            x, dx, s_x = dq_input(draw, "x0", (draw(st.integers(1, 3)), k))
            dw, _ = _weights(draw, (k, draw(st.integers(1, 4))), s_y, False)
            y = Node.make("matmul", (dx, dw))
        if act:
            y = Node.make(draw(st.sampled_from(("relu", "relu6"))), (y,))
        return Graph([x], [quantize_out(draw, y, s_y)])

    return build


def _add(act: bool, kind: str = "add"):
    @well_typed
    def build(draw) -> Graph:
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)))
        a, da, _ = dq_input(draw, "x0", shape)
        b, db, _ = dq_input(draw, "x1", shape if draw(st.booleans()) else shape[1:])
        y = Node.make(kind, (da, db))
        if act:
            y = Node.make(draw(st.sampled_from(("relu", "relu6"))), (y,))
        return Graph([a, b], [quantize_out(draw, y, act_scale(draw))])

    return build


contraction = _contraction(False)  # quantize(conv2d|linear|matmul(dq(x), dq(W), dq(b)?))
contraction_act = _contraction(True)  # ... with relu or relu6 before the quantize
add = _add(False)  # quantize(add(dq(a), dq(b)))
add_act = _add(True)  # ... with relu or relu6 before the quantize
mul = _add(False, "mul")  # quantize(mul(dq(a), dq(b)))


@well_typed
def mean(draw) -> Graph:
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 7)),
             draw(st.integers(1, 7)))
    x, dx, _ = dq_input(draw, "x0", shape)
    axes = draw(st.sampled_from(((2, 3), (1,), (-1,), ())))
    m = Node.make("reduce_mean", (dx,), axes=axes, keepdims=draw(st.booleans()))
    return Graph([x], [quantize_out(draw, m, act_scale(draw))])


@well_typed
def sink(draw) -> Graph:
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(2, 6)),
             draw(st.integers(2, 6)))
    x, dx, _ = dq_input(draw, "x0", shape)
    kind = draw(st.sampled_from(("reshape", "flatten", "transpose", "max_pool2d", "pad",
                                 "slice", "expand", "adaptive_max_pool2d", "reduce_max")))
    if kind == "reshape":
        y = Node.make("reshape", (dx,), shape=(shape[0], int(np.prod(shape[1:]))))
    elif kind == "flatten":
        y = Node.make("flatten", (dx,), start_axis=1)
    elif kind == "transpose":
        y = Node.make("transpose", (dx,), perm=(0, 2, 3, 1))
    elif kind == "max_pool2d":
        y = Node.make("max_pool2d", (dx,), kernel=(2, 2), stride=(2, 2),
                      padding=(draw(st.integers(0, 1)),) * 2)
    elif kind == "adaptive_max_pool2d":
        y = Node.make("adaptive_max_pool2d", (dx,), output_size=(2, draw(st.integers(1, 3))))
    elif kind == "reduce_max":
        y = Node.make(draw(st.sampled_from(("reduce_max", "reduce_min"))), (dx,),
                      axes=draw(st.sampled_from(((2, 3), (1,), (-1,)))),
                      keepdims=draw(st.booleans()))
    elif kind == "expand":
        y = Node.make("expand", (dx,), shape=(2,) + shape)
    elif kind == "slice":
        y = Node.make("slice", (dx,), axis=draw(st.integers(-4, 3)), start=draw(
            st.integers(-2, 1)), step=draw(st.integers(1, 2)))
    else:
        y = Node.make("pad", (dx,), pads=(0, 0, 0, 2, 1, 0, 0, 1), value=0.0)
    return Graph([x], [y])


def cancel(draw) -> Graph:
    """quantize(dq(quantize(x))): the outer quantize repeats the inner one's parameters."""
    x = Node.input("x0", (draw(st.integers(1, 3)), draw(st.integers(1, 4))), "float32")
    dtype, clamp, zp = qtype(draw)
    s = act_scale(draw)
    q = Node.make("quantize", (x,), scale=(s,), zero_point=(zp,), **clamp)
    dx = Node.make("dequantize", (q,), scale=(s,), zero_point=(zp,))
    return Graph([x], [Node.make("quantize", (dx,), scale=(s,), zero_point=(zp,), **clamp)])


def concat(draw) -> Graph:
    """concat(dq(x0), dq(x1), ...) with one scale, zero point and type (sink_dequantize_concat);
    NCHW or (N, F) operands of different sizes along the joined axis."""
    dtype, _, zp = qtype(draw)
    s = act_scale(draw)
    rank = draw(st.sampled_from((2, 4)))
    axis = draw(st.integers(-rank, rank - 1))
    base = [draw(st.integers(1, 3)) for _ in range(rank)]
    xs, ds = [], []
    for i in range(draw(st.integers(1, 4))):
        shape = list(base)
        shape[axis] = draw(st.integers(1, 3))
        x = Node.input(f"x{i}", tuple(shape), dtype)
        xs.append(x)
        ds.append(Node.make("dequantize", (x,), scale=(s,), zero_point=(zp,)))
    return Graph(xs, [Node.make("concat", ds, axis=axis)])


def lookup(draw) -> Graph:
    """quantize(f(dq(x))), f an elementwise chain of x alone (fold_lookup): activations,
    x * sigmoid(x), exp, scalar arithmetic, or nothing (a change of scale)."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 6)))
    x, dx, s = dq_input(draw, "x0", shape)
    y = dx
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(("gelu", "silu", "sigmoid", "tanh", "hardswish", "exp",
                                     "swish", "scale", "shift")))
        if kind == "swish":
            y = Node.make("mul", (y, Node.make("sigmoid", (y,))))
        elif kind in ("scale", "shift"):
            c = Node.constant(np.array(draw(st.sampled_from((-1.5, 0.5, 3.0))), np.float32))
            y = Node.make("mul" if kind == "scale" else "add", (y, c))
        else:
            y = Node.make(kind, (y,))
    return Graph([x], [quantize_out(draw, y, draw(st.sampled_from((s, act_scale(draw)))))])
