"""Random instances of the pack-24 rule's pattern (hypothesis builder), for the rule
verifier; imported only when verification runs.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.ops.sparse import GROUP
from smelt.ir.types import numpy_dtype

from .sparsity24 import mask_24


def linear_24(draw: st.DrawFn) -> Graph:
    """A linear on a random 2:4-masked weight (some groups with fewer than two non-zeros),
    leading axes 0-2, float32 or float64, with or without a bias."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(("float32", "float32", "float64")))
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    k, n = GROUP * draw(st.integers(1, 6)), draw(st.integers(1, 6))
    w = mask_24(rng.standard_normal((n, k)) * draw(st.sampled_from((0.1, 1.0, 30.0))))
    w[rng.random(w.shape) < draw(st.sampled_from((0.0, 0.3)))] = 0.0
    x = Node.input("x0", lead + (k,), dtype)
    ops = [x, Node.constant(w.astype(numpy_dtype(dtype)), dtype)]
    if draw(st.booleans()):
        ops.append(Node.constant(rng.standard_normal(n).astype(numpy_dtype(dtype)), dtype))
    return Graph([x], [Node.make("linear", ops)])
