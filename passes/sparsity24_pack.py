"""`pack-24`: a linear whose constant weight is already 2:4 sparse becomes `linear24` on the
compressed weight (ir/ops/sparse.py: kept values plus 2-bit positions).

    linear(x, W, b?) -> linear24(x, values(W), meta(W), b?)     (W 2:4 sparse along K)

Precondition: W is a constant float32/float64 (N, K) weight, K a multiple of 4, and every
group of four consecutive weights of a row holds at most two non-zeros (what `mask_24`
leaves, or a fine-tune that kept the mask). Contract: exact. `linear24` sums
values[n, r] x[4 (r // 2) + pos(n, r)], which are exactly the non-zero products of the
dense sum (a spare slot holds a zero weight); only the summation order changes. The rule
refuses, and says why, anything else. Source: Mishra et al. 2021, "Accelerating Sparse Deep
Neural Networks" (NVIDIA's 2:4 format).
"""

from __future__ import annotations

import weakref

import numpy as np

from smelt.ir.node import Node
from smelt.ir.ops.sparse import GROUP, SPARSE_DTYPES, is_24_sparse, pack_24
from smelt.rewrite.contract import exact
from smelt.rewrite.dsl import op
from smelt.rewrite.rule import NoMatch, RuleSet, reject, rule

from .weights import derive

_PACKED: weakref.WeakKeyDictionary[Node, tuple[Node, Node]] = weakref.WeakKeyDictionary()


def packed_constants(w: Node) -> tuple[Node, Node]:
    """(values, meta) constants of a 2:4-sparse weight constant; one pair per weight node, so
    packing a match twice gives the same nodes."""
    hit = _PACKED.get(w)
    if hit is None:
        values, meta = pack_24(np.asarray(w.value))
        hit = (Node.constant(values, w.dtype), Node.constant(meta, "uint8"))
        derive(hit[0], w)
        derive(hit[1], w)
        _PACKED[w] = hit
    return hit


def why_not_a_24_layout(w: Node) -> str | None:
    """Why the linear weight `w` cannot hold the 2:4 layout at all (None: it can): not a
    constant, another dtype, or K not in whole groups of four."""
    if w.op != "constant":
        return "its weight is not a constant"
    if w.dtype not in SPARSE_DTYPES:
        return f"its weight is {w.dtype}; linear24 takes {' or '.join(SPARSE_DTYPES)}"
    if w.shape[1] % GROUP:
        return f"K = {w.shape[1]} is not a multiple of 4"
    return None


def why_not_packable(w: Node) -> str | None:
    """Why the linear weight `w` cannot be packed as it is (None: it can)."""
    if (why := why_not_a_24_layout(w)) is not None:
        return why
    if not is_24_sparse(w.value):
        return "its weight is not 2:4 sparse (a group of four holds more than two non-zeros)"
    return None


@rule(op.linear(...).named("layer"), contract=exact, family="sparsity-24",
      instance=".sparsity24_instances:linear_24")
def pack_24_linear(layer: Node) -> Node | NoMatch:
    """linear(x, W, b?) -> linear24(x, values(W), meta(W), b?)   (W 2:4 sparse along K;
    exact: the same non-zero products; Mishra et al. 2021, NVIDIA 2:4 format)"""
    x, w, *bias = layer.inputs
    why = why_not_packable(w)
    if why:
        return reject(why)
    values, meta = packed_constants(w)
    return Node.make("linear24", (x, values, meta, *bias))


PACK_24 = RuleSet([pack_24_linear], name="pack-24")
