"""Hypothesis strategies for smelt: shapes, dtypes, tensors, and random well-typed graphs.

Part of the shipped testing API (`smelt.testing`). A researcher checking a transformation draws
graphs and inputs from here:

    from hypothesis import given, strategies as st
    from smelt.rewrite import strategies as sst

    @given(sst.graphs(), st.data())
    def test_my_pass_keeps_meaning(graph, data):
        args = data.draw(sst.graph_inputs(graph))
        ...

Tensors come in kinds (`TENSOR_KINDS`): plain normals; outlier-heavy channels (a few channels
scaled by 10-100x, as in LLM activations, the case SmoothQuant exists for); rounding ties
(every value exactly (k + 0.5) * scale, the case where round-half-to-even and round-half-away
disagree); and uniforms. Array contents come from a numpy generator seeded by hypothesis, so
drawing stays fast on large tensors and is reproducible under the `ci` profile.

`graphs()` (in `random_graphs`) builds float32 graphs node by node from an op vocabulary.
Every node is built with `Node.make`, with attributes chosen valid for its operands' shapes,
so every drawn graph verifies. The builder tracks each node's value range in real arithmetic
(interval bounds); it keeps every value finite and within `MAX_MAGNITUDE`, and applies log, sqrt, rsqrt, reciprocal
and the divisor of div and base of pow only to operands provably at least `SAFE_MARGIN` away
from zero. These guarantees hold for inputs inside `INPUT_RANGE`, which is where
`graph_inputs()` draws them. The default vocabulary holds continuous ops only (no floor, round,
comparisons or where), so float32 and float64 interpretations of a drawn graph agree within
rounding error. When the op drawn needs a positive operand and the graph has none, the builder
shifts one into range with `add(x, c)`, so log, sqrt and friends appear in graphs of any
vocabulary.
"""

from .random_graphs import (  # noqa: F401
    DEFAULT_VOCABULARY,
    DISCONTINUOUS_OPS,
    SUPPORTED_VOCABULARY,
    graphs,
)
from .tensor_strategies import (  # noqa: F401
    CONSTANT_SCALES,
    INPUT_RANGE,
    MAX_ELEMENTS,
    MAX_MAGNITUDE,
    SAFE_MARGIN,
    TENSOR_KINDS,
    broadcastable_shapes,
    dtypes,
    graph_inputs,
    shapes,
    tensors,
    to_dtype,
)

__all__ = [
    "CONSTANT_SCALES", "DEFAULT_VOCABULARY", "DISCONTINUOUS_OPS", "INPUT_RANGE",
    "MAX_ELEMENTS", "MAX_MAGNITUDE", "SAFE_MARGIN", "SUPPORTED_VOCABULARY", "TENSOR_KINDS",
    "broadcastable_shapes", "dtypes", "graph_inputs", "graphs", "shapes", "tensors",
    "to_dtype",
]

