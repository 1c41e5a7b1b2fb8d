"""Per-layer error between two float graphs of one model: where a lossy pipeline loses accuracy.

    errors = layer_errors(reference, candidate, batches)
    for e in errors:
        print(e.index, e.op, e.shape, f"{e.relative:.2%}", f"{e.sqnr_db:.1f} dB")

A layer is a node whose op is a convolution, linear or matrix product (`LAYER_OPS`, fused forms
included) with a float result. The layers of each graph are taken in topological order and
aligned by (op, output shape) with difflib's longest common subsequence, so that a pipeline
that inserts nodes between layers (quantize's Q/DQ pairs), removes others (fold-bn) or
changes a layer's weights (prune at equal shapes, 2:4, W8A8) still pairs each layer with its
original. Layers without a partner (a pass that changed a layer's shape or merged two) are
counted in `unmatched`, never compared.

The error of a layer is that of its output, with everything before it as each graph computes
it, so it accumulates along the network: `relative = ||c - r|| / ||r||` over all elements of
all batches (Frobenius norms), `sqnr_db = -20 log10(relative)`, and the largest absolute
difference. Both graphs run in the float32 reference interpreter on the same batches.

For a quantized model, compare the Q/DQ graph (after `quantize`, before `fold-qdq`): fold-qdq
is bit-exact to it, and its layers still compute in float, so they have a float value to
compare; integer kernels (qconv2d, ...) are not layers here.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from smelt.ir.errors import SmeltError
from smelt.ir.graph import Graph
from smelt.ir.interpreter import interpret
from smelt.ir.node import Node
from smelt.ir.types import TensorType, is_float

LAYER_OPS = {  # op -> the family it is matched in
    "conv2d": "conv", "fused_conv2d": "conv", "conv3d": "conv", "conv_transpose": "conv",
    "linear": "linear", "fused_linear": "linear", "linear24": "linear", "linear_w4": "linear",
    "matmul": "matmul", "fused_matmul": "matmul",
}


class LayerErrorsError(SmeltError, ValueError):
    """The graphs cannot be compared layer by layer (no batches, inputs that differ)."""


@dataclass(frozen=True)
class LayerError:
    """One aligned layer: its position among the reference's layers, op, output shape, and
    the candidate's error against the reference there."""

    index: int
    op: str
    shape: tuple[int, ...]
    relative: float
    max_abs: float

    @property
    def sqnr_db(self) -> float:
        """Signal to quantization-noise ratio, -20 log10(relative); inf where equal."""
        return math.inf if self.relative == 0 else -20 * math.log10(self.relative)


@dataclass(frozen=True)
class LayerErrors:
    """`layers` in the reference's order; `unmatched` counts layers of either graph with no
    partner in the other."""

    layers: tuple[LayerError, ...]
    unmatched: int

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)


def layers(graph: Graph) -> list[Node]:
    """The layer nodes of `graph` (see LAYER_OPS) with a float result, in topological order."""
    return [n for n in graph.nodes() if n.op in LAYER_OPS and isinstance(n.type, TensorType)
            and is_float(n.dtype)]


def _key(n: Node) -> tuple:
    return LAYER_OPS[n.op], n.shape


def align(reference: Graph, candidate: Graph) -> tuple[list[tuple[Node, Node]], int]:
    """Pairs (reference layer, candidate layer) in order, and the count left unpaired."""
    ra, ca = layers(reference), layers(candidate)
    matcher = difflib.SequenceMatcher(a=[_key(n) for n in ra], b=[_key(n) for n in ca],
                                      autojunk=False)
    pairs = [(ra[b.a + k], ca[b.b + k]) for b in matcher.get_matching_blocks()
             for k in range(b.size)]
    return pairs, len(ra) + len(ca) - 2 * len(pairs)


def _values(graph: Graph, wanted: set[Node], batch: Sequence[np.ndarray]
            ) -> dict[Node, np.ndarray]:
    seen: dict[Node, np.ndarray] = {}

    def keep(n: Node, value: np.ndarray) -> None:
        if n in wanted:
            seen[n] = np.asarray(value, np.float64)

    interpret(graph, *batch, observe=keep)
    return seen


def layer_errors(reference: Graph, candidate: Graph,
                 batches: Iterable[Sequence[np.ndarray]]) -> LayerErrors:
    """Each aligned layer's error in `candidate` against `reference` over `batches` (input
    tuples both graphs accept)."""
    pairs, unmatched = align(reference, candidate)
    diff = np.zeros(len(pairs))
    norm = np.zeros(len(pairs))
    worst = np.zeros(len(pairs))
    count = 0
    for batch in batches:
        batch = tuple(batch)
        if len(batch) != len(reference.inputs) or len(batch) != len(candidate.inputs):
            raise LayerErrorsError(
                f"a batch has {len(batch)} arrays; the reference takes "
                f"{len(reference.inputs)} inputs and the candidate {len(candidate.inputs)}: "
                "compare graphs of the same model with one array per input")
        ref = _values(reference, {r for r, _ in pairs}, batch)
        got = _values(candidate, {c for _, c in pairs}, batch)
        for i, (r, c) in enumerate(pairs):
            d = got[c] - ref[r]
            diff[i] += float(np.sum(d * d))
            norm[i] += float(np.sum(ref[r] * ref[r]))
            worst[i] = max(worst[i], float(np.max(np.abs(d))) if d.size else 0.0)
        count += 1
    if count == 0:
        raise LayerErrorsError("no batches: give at least one tuple of input arrays")
    order = {n: i for i, n in enumerate(layers(reference))}
    out = [LayerError(order[r], r.op, tuple(r.shape),
                      math.sqrt(diff[i]) / math.sqrt(norm[i]) if norm[i] else math.sqrt(diff[i]),
                      worst[i])
           for i, (r, _) in enumerate(pairs)]
    return LayerErrors(tuple(out), unmatched)


__all__ = ["LAYER_OPS", "LayerError", "LayerErrors", "LayerErrorsError", "align",
           "layer_errors", "layers"]
