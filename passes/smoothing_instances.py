"""Random instances of the smoothing-migration rules' patterns (hypothesis builders), for the
rule verifier; imported only when verification runs. Scales are positive, from 0.1 to 4.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from smelt.ir.graph import Graph
from smelt.ir.node import Node


def mul_of_layer_norm(draw: st.DrawFn) -> Graph:
    """mul(layer_norm(x, g?, b?), c): absorb_scale_into_layer_norm."""
    d = draw(st.integers(1, 6))
    x = Node.input("x0", (draw(st.integers(1, 3)), d), "float32")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ins = [x] + [Node.constant(rng.normal(size=d).astype(np.float32))
                 for _ in range(draw(st.integers(0, 2)))]
    ln = Node.make("layer_norm", ins, axis=-1)
    c = Node.constant(rng.uniform(0.1, 4, size=d).astype(np.float32))
    return Graph([x], [Node.make("mul", (ln, c))])


def mul_of_linear(draw: st.DrawFn) -> Graph:
    """mul(linear(x, W, b?), c): absorb_scale_into_linear."""
    k, n = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    x = Node.input("x0", (draw(st.integers(1, 3)), k), "float32")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ins = [x, Node.constant(rng.normal(size=(n, k)).astype(np.float32))]
    if draw(st.booleans()):
        ins.append(Node.constant(rng.normal(size=n).astype(np.float32)))
    c = Node.constant(rng.uniform(0.1, 4, size=n).astype(np.float32))
    return Graph([x], [Node.make("mul", (Node.make("linear", ins), c))])


def mul_of_mul(draw: st.DrawFn) -> Graph:
    """mul(mul(x, a), c): absorb_scale_into_mul."""
    d = draw(st.integers(1, 6))
    x = Node.input("x0", (draw(st.integers(1, 3)), d), "float32")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = Node.constant(rng.uniform(-2, 2, size=d).astype(np.float32))
    c = Node.constant(rng.uniform(0.1, 4, size=d).astype(np.float32))
    return Graph([x], [Node.make("mul", (Node.make("mul", (x, a)), c))])
