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

`graphs()` (in `random_graphs`) builds random well-typed float32 graphs from an op
vocabulary, keeping every value finite and every op inside its domain; `graph_inputs(graph)`
draws inputs in the range those guarantees assume. See `random_graphs` for the details.
"""

from .graph_builders import (  # noqa: F401
    DEFAULT_VOCABULARY,
    DISCONTINUOUS_OPS,
    SUPPORTED_VOCABULARY,
)
from .random_graphs import graphs  # noqa: F401
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

