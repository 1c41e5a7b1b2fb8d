"""Constant folding: a node whose operands are all constants becomes a constant.

    f(c1, c2, ...) -> constant(f(c1, c2, ...))

The value is the reference interpreter's, computed in the node's own dtype, so the folded
graph computes exactly what the original computes in its own precision.

Preconditions: every operand is a constant; the node produces one tensor (tuples are read
through `project`, which folds once its operand has); the result holds at most
`MAX_FOLDED` elements and no more than its operands together (folding `expand` of a scalar
to a large tensor would trade a cheap node for a big weight).

Contract: exact (the folded value is rounded once to the node's dtype, as the node's own
result is; the exact tolerance allows that rounding).

Source: constant propagation, as in every compiler (TVM FoldConstant, MLIR folders).
"""

from __future__ import annotations

import numpy as np

from smelt.ir.errors import SmeltError
from smelt.ir.interpreter import evaluate
from smelt.ir.node import Node
from smelt.ir.types import TensorType
from smelt.rewrite.contract import exact
from smelt.rewrite.dsl import any_op
from smelt.rewrite.rule import NoMatch, RuleSet, reject, rule

MAX_FOLDED = 1 << 20


def operands_constant(node: Node) -> str | None:
    if not node.inputs:
        return "has no operands"
    for i, x in enumerate(node.inputs):
        if x.op != "constant":
            return f"operand {i} is {x.op}, not a constant"
    return None


@rule(any_op().where(operands_constant).named("n"), contract=exact, family="canonicalize",
      instance=".constant_folding_instances:op_of_constants")
def fold_constants(n: Node) -> Node | NoMatch:
    """f(c1, c2, ...) -> constant(f(c1, c2, ...))   (constant propagation)"""
    t = n.type
    if not isinstance(t, TensorType):
        return reject("produces a tuple")
    if t.size > MAX_FOLDED or t.size > max(16, sum(x.type.size for x in n.inputs)):
        return reject(f"the result ({t.size} elements) is larger than its operands")
    try:
        value = evaluate(n, [x.value for x in n.inputs])
    except (SmeltError, ArithmeticError):
        return reject("the reference interpreter cannot evaluate it")
    return Node.constant(np.asarray(value), t.dtype)


FOLD_CONSTANTS = RuleSet([fold_constants], name="fold-constants")
