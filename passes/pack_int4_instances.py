"""Random instances of the pack-int4 rule's pattern (hypothesis builder), for the rule
verifier; imported only when verification runs.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.ops.int4 import INT4_MAX, INT4_MIN

from .qscales import weight_scale


def linear_of_int4(draw: st.DrawFn) -> Graph:
    """linear(x, reshape?(dequantize(q){s per row of g}), b?): q in [-8, 7] with its
    extremes, x float32, scales as the quantize pass makes them."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, k = draw(st.integers(1, 6)), 2 * draw(st.integers(1, 8))
    g = draw(st.sampled_from([d for d in range(1, k + 1) if k % d == 0]))
    q = rng.integers(INT4_MIN, INT4_MAX + 1, size=(n * k // g, g)).astype(np.int8)
    q.reshape(-1)[0] = draw(st.sampled_from((INT4_MIN, INT4_MAX, 0)))  # extremes
    s = weight_scale(rng.uniform(1e-3, 1.0, size=q.shape[0]), None)
    axis = 0 if len(s) > 1 else None
    d = Node.make("dequantize", (Node.constant(q),), scale=tuple(float(v) for v in s),
                  zero_point=(0,), axis=axis)
    w = Node.make("reshape", (d,), shape=(n, k)) if g != k or draw(st.booleans()) else d
    x = Node.input("x0", (draw(st.integers(1, 3)), k), "float32")
    ins = [x, w]
    if draw(st.booleans()):
        ins.append(Node.constant(rng.normal(size=n).astype(np.float32)))
    return Graph([x], [Node.make("linear", ins)])
