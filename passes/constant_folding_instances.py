"""Random instances of the fold_constants rule's pattern (hypothesis builder), for the rule
verifier; imported only when verification runs.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.rewrite.strategies import TENSOR_KINDS, tensors

VOCABULARY: dict[str, tuple[int, dict]] = {
    "add": (2, {}), "mul": (2, {}), "sub": (2, {}), "maximum": (2, {}), "relu": (1, {}),
    "neg": (1, {}), "exp": (1, {}), "log": (1, {}), "sqrt": (1, {}), "tanh": (1, {}),
    "matmul": (2, {}), "reduce_sum": (1, {}), "softmax": (1, {}),
}


def op_of_constants(draw: st.DrawFn) -> Graph:
    """An op from a small vocabulary over constant operands (with outliers and ties)."""
    name = draw(st.sampled_from(sorted(VOCABULARY)))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    kind = draw(st.sampled_from(TENSOR_KINDS))
    arity, attrs = VOCABULARY[name]
    if name == "matmul":
        shapes = [shape[:-1] + (shape[-1],), (shape[-1], draw(st.integers(1, 4)))]
    else:
        shapes = [shape] * arity
    args = [Node.constant(draw(tensors(s, "float32", kind=kind)), "float32") for s in shapes]
    if name in ("log", "sqrt"):
        args = [Node.constant(np.abs(a.value) + np.float32(0.5)) for a in args]
    node = Node.make(name, args, **attrs)
    return Graph([], [node])
