"""Random instances of the fold-bn rules' patterns (hypothesis builders), for the rule
verifier and the exact-pass tests; imported only when verification runs.

Layers come plain, grouped and depthwise, with any kernel, stride, dilation and (where the
rule allows it) padding, with and without bias; weights have output channels of very
different ranges; batch norms have 0, 1 or 2 affine parameters and variances from 1e-3 to 10.
Dtypes are mostly float32, sometimes float64 or float16.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.types import numpy_dtype


# -- the rules' instances -----------------------------------------------------------------------
def bn_of_conv(draw: st.DrawFn) -> Graph:
    """batch_norm(conv2d(x)): fold_bn_into_conv."""
    xin = draw_conv_input(draw)
    layer = draw_conv(draw, xin)
    return Graph([xin], [draw_batch_norm(draw, layer)])


def bn_of_linear(draw: st.DrawFn) -> Graph:
    """batch_norm(linear(x)), x (N, features): fold_bn_into_linear."""
    xin = Node.input("x0", (draw(st.integers(1, 3)), draw(st.integers(1, 5))), draw_dtype(draw))
    layer = draw_linear(draw, xin)
    return Graph([xin], [draw_batch_norm(draw, layer)])


def conv_of_bn(draw: st.DrawFn) -> Graph:
    """conv2d(batch_norm(x)), padded only when the batch norm is centered (bn(0) = 0):
    fold_bn_into_next_conv."""
    xin = draw_conv_input(draw)
    centered = draw(st.integers(0, 3)) == 0  # t = 0: padding allowed
    bn = draw_batch_norm(draw, xin, centered=centered)
    return Graph([xin], [draw_conv(draw, bn, padded=centered)])


def linear_of_bn(draw: st.DrawFn) -> Graph:
    """linear(batch_norm(x)), x (N, features): fold_bn_into_next_linear."""
    xin = Node.input("x0", (draw(st.integers(1, 3)), draw(st.integers(1, 5))), draw_dtype(draw))
    return Graph([xin], [draw_linear(draw, draw_batch_norm(draw, xin))])


# -- layers and batch norms ---------------------------------------------------------------------
def draw_dtype(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(("float32", "float32", "float32", "float64", "float16")))


def _rng(draw: st.DrawFn) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def _weights(draw: st.DrawFn, shape: tuple[int, ...], dtype: str) -> Node:
    rng = _rng(draw)
    scale = draw(st.sampled_from((0.1, 0.5, 1.0)))
    value = rng.standard_normal(shape) * scale
    if draw(st.booleans()):  # output channels of very different ranges
        spread = np.exp(rng.uniform(-3, 3, shape[0]))
        value = value * spread.reshape((-1,) + (1,) * (len(shape) - 1))
    return Node.constant(value.astype(numpy_dtype(dtype)), dtype)


def draw_conv_input(draw: st.DrawFn) -> Node:
    c = draw(st.sampled_from((1, 2, 3, 4, 6)))
    shape = (draw(st.integers(1, 2)), c, draw(st.integers(3, 6)), draw(st.integers(3, 6)))
    return Node.input("x0", shape, draw_dtype(draw))


def draw_conv(draw: st.DrawFn, inner: Node, padded: bool = True,
              groups: int | None = None) -> Node:
    """conv2d(inner): plain, grouped or depthwise (or `groups` given), any kernel, stride and
    dilation, padding when `padded`, with or without bias."""
    c = inner.shape[1]
    if groups is None:
        groups = draw(st.sampled_from(sorted({g for g in (1, 2, 3, c) if c % g == 0})))
    out = groups * draw(st.integers(1, 3))
    k = draw(st.integers(1, 3))
    attrs = {"stride": (draw(st.integers(1, 2)),) * 2, "dilation": (draw(st.integers(1, 2)),) * 2,
             "padding": (draw(st.integers(0, 1)) if padded else 0,) * 2, "groups": groups}
    span = (k - 1) * attrs["dilation"][0] + 1
    if span > min(inner.shape[2:]) + 2 * attrs["padding"][0]:
        k, span = 1, 1
    operands = [inner, _weights(draw, (out, c // groups, k, k), inner.dtype)]
    if draw(st.booleans()):
        operands.append(_weights(draw, (out,), inner.dtype))
    return Node.make("conv2d", operands, **attrs)


def draw_linear(draw: st.DrawFn, inner: Node) -> Node:
    out = draw(st.integers(1, 5))
    operands = [inner, _weights(draw, (out, inner.shape[-1]), inner.dtype)]
    if draw(st.booleans()):
        operands.append(_weights(draw, (out,), inner.dtype))
    return Node.make("linear", operands)


def draw_batch_norm(draw: st.DrawFn, inner: Node, centered: bool = False) -> Node:
    """batch_norm(inner) with random statistics (variances from 1e-3 to 10), with 0, 1 or 2
    affine parameters; `centered`: mean = beta = 0, so that bn(0) = 0."""
    c, dtype, rng = inner.shape[1], inner.dtype, _rng(draw)
    nd = numpy_dtype(dtype)
    mean = np.zeros(c) if centered else rng.standard_normal(c)
    var_ = np.exp(rng.uniform(np.log(1e-3), np.log(10.0), c))
    stats = [Node.constant(mean.astype(nd), dtype), Node.constant(var_.astype(nd), dtype)]
    arity = draw(st.integers(0, 2))
    if arity >= 1:
        stats.append(Node.constant(rng.uniform(-2, 2, c).astype(nd), dtype))
    if arity == 2:
        beta = np.zeros(c) if centered else rng.standard_normal(c)
        stats.append(Node.constant(beta.astype(nd), dtype))
    eps = draw(st.sampled_from((1e-5, 1e-3, 0.1)))
    return Node.make("batch_norm", [inner, *stats], eps=eps)
