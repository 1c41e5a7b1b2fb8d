"""smelt.testing: property-based verification that ships with smelt.

    from hypothesis import given
    import smelt.testing as st_

    st_.verify_rule(my_rule, max_examples=200)        # shrunk counterexample on failure
    st_.assert_equivalent(g1, g2, smelt.rewrite.exact)
    st_.verify_pass(my_pass, st_.graphs())

Strategies: `shapes`, `dtypes`, `tensors` (kinds: normal, outliers, ties, uniform),
`graphs` (random well-typed graphs from an op vocabulary), `graph_inputs(graph)`, and
`instances(rule)` (random graphs matching a rule's pattern).
"""

from smelt.rewrite.contract import Contract, bounded, exact
from smelt.rewrite.equivalence import assert_equivalent, format_counterexample, sample_inputs
from smelt.rewrite.errors import ContractViolation, InstanceError
from smelt.rewrite.instances import ATTRS, attr_maker, instances, pattern_instances
from smelt.rewrite.strategies import (
    DEFAULT_VOCABULARY,
    INPUT_RANGE,
    SUPPORTED_VOCABULARY,
    TENSOR_KINDS,
    broadcastable_shapes,
    dtypes,
    graph_inputs,
    graphs,
    shapes,
    tensors,
    to_dtype,
)
from smelt.rewrite.verify import RuleReport, verify_pass, verify_rule

__all__ = [
    "ATTRS", "Contract", "ContractViolation", "DEFAULT_VOCABULARY", "INPUT_RANGE",
    "InstanceError", "RuleReport", "SUPPORTED_VOCABULARY", "TENSOR_KINDS", "assert_equivalent",
    "attr_maker", "bounded", "broadcastable_shapes", "dtypes", "exact",
    "format_counterexample", "graph_inputs", "graphs", "instances", "pattern_instances",
    "sample_inputs", "shapes", "tensors", "to_dtype", "verify_pass", "verify_rule",
]
