"""`sparsify-24(min_size=..., scope=..., pack=True)`: 2:4 structured sparsity for linear layers.

Two steps (DESIGN.md: a policy that decides, an exact step that applies):

1. policy, `mask_24(w)`: in every group of four consecutive weights along the reduction
   axis K of a row, keep the two of largest magnitude and zero the other two (ties go to the
   lower position, so the mask is deterministic). Lossy: this is where the error comes from.
2. apply, the `pack_24_linear` rule (passes/sparsity24_pack.py; also the pass `pack-24`):
   a linear whose constant weight is 2:4 sparse becomes `linear24` on the compressed weight
   (kept values plus 2-bit positions). Exact.

Eligible layers: `linear` with a constant float32/float64 weight, K a multiple of 4, at least
`min_size` weight elements, and (when `scope` is given) a name containing `scope`. Every
other linear is kept dense, and the report says why.

Contract. The mask is a known weight change, dW = mask(W) - W per sparsified linear; with
calibration batches, its a-priori bound (passes/error_bound.py: |dW| times the input
magnitude seen on calibration, per output element, propagated through the rest of the
graph) is the contract when it is finite and no larger than the largest output magnitude
seen; else the contract is the error measured on the calibration batches, labelled
`measured` (a layer norm after the linears has no rule, so a transformer block gets this).
Without calibration batches: bounded(inf), and the report says to give them. (Accuracy
depends on the model and on fine-tuning; the bound is about outputs, not accuracy.) The
report says which kind of bound the contract is, gives the output error measured on the
calibration batches (or on two seeded sample batches), and per linear its shape, whether it
was packed or why not, the magnitude fraction the mask removed, and its weight bytes before
and after (values + meta against the dense weight). `pack=False` stops after the mask (a dense graph
with 2:4-sparse weights, e.g. to fine-tune with the mask fixed, then run `pack-24`).
Source: Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks" (magnitude 2:4
pruning, then masked fine-tuning).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from smelt.ir.errors import SmeltError
from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.ops.sparse import GROUP, KEPT, meta_bytes
from smelt.ir.types import TensorType
from smelt.rewrite.contract import Contract, bounded, exact
from smelt.rewrite.driver import rewrite
from smelt.rewrite.errors import PipelineParseError
from smelt.rewrite.pass_api import Pass, PassContext, PassResult, RewritePass
from smelt.rewrite.registry import register_pass, register_rules

from . import sparsity24_pack
from .error_bound import Bound, WeightChange, lossy_contract, weight_bound
from .pruning import measured
from .sparsity24_pack import PACK_24, why_not_a_24_layout
from .weights import derive, name_derived

LOSSY = bounded(math.inf)


class SparsityError(SmeltError, ValueError):
    """A weight the 2:4 policy cannot mask (not 2-D, or K not a multiple of 4)."""


# -- the policy ---------------------------------------------------------------------------
def mask_24(w: np.ndarray) -> np.ndarray:
    """`w` (N, K) with the two smallest-magnitude weights of every group of four along K set
    to zero (ties: the lower position is kept). K must be a multiple of 4."""
    w = np.array(w, copy=True)
    if w.ndim != 2 or w.shape[1] % GROUP:
        raise SparsityError(f"mask_24 takes an (N, K) weight with K a multiple of 4, got "
                            f"shape {list(w.shape)}; keep this layer dense")
    n, k = w.shape
    groups = w.reshape(n, k // GROUP, GROUP)
    order = np.argsort(-np.abs(groups), axis=2, kind="stable")  # largest first, ties low
    np.put_along_axis(groups, order[:, :, KEPT:], 0, axis=2)
    return groups.reshape(n, k)


# -- eligibility and the report ------------------------------------------------------------
@dataclass(frozen=True)
class LayerReport:
    """One linear: its weight shape, whether it is packed (or why not), the fraction of the
    weight's L1 magnitude the mask removed, and weight bytes dense -> stored."""

    name: str
    shape: tuple[int, ...]
    packed: bool
    reason: str
    removed_l1: float
    bytes: tuple[int, int]

    def __str__(self) -> str:
        head = f"{self.name} {list(self.shape)}"
        if not self.packed:
            return f"kept dense: {head}: {self.reason}"
        return (f"packed 2:4: {head}, weight bytes {self.bytes[0]:,} -> {self.bytes[1]:,}, "
                f"mask removed {self.removed_l1:.1%} of |W|")


def layer_name(graph: Graph, layer: Node) -> str:
    return graph.names.get(layer) or graph.names.get(layer.inputs[1]) or f"linear{layer.shape}"


def why_not_eligible(graph: Graph, layer: Node, min_size: int, scope: str) -> str | None:
    w = layer.inputs[1]
    if (why := why_not_a_24_layout(w)) is not None:
        return why
    if w.tensor_type.size < min_size:
        return f"{w.tensor_type.size} weights < min_size={min_size}"
    if scope and scope not in layer_name(graph, layer):
        return f"its name is outside scope={scope!r}"
    return None


def packed_bytes(w: TensorType) -> int:
    n, k = w.shape
    return n * (k // 2) * (w.nbytes // max(w.size, 1)) + n * meta_bytes(k)


# -- apply --------------------------------------------------------------------------------
def masked(graph: Graph, min_size: int = 0, scope: str = ""
           ) -> tuple[Graph, list[tuple[Node, str | None, float]]]:
    """The graph with every eligible linear's weight 2:4-masked, and per linear (layer,
    why not eligible or None, fraction of |W| removed)."""
    new_w: dict[Node, Node] = {}
    layers = []
    for n in graph.nodes():
        if n.op != "linear":
            continue
        why = why_not_eligible(graph, n, min_size, scope)
        removed = 0.0
        w = n.inputs[1]
        if why is None and w not in new_w:
            value = np.asarray(w.value)
            m = mask_24(value)
            total = float(np.abs(value).sum())
            removed = float(np.abs(value - m).sum()) / total if total else 0.0
            new_w[w] = Node.constant(m.astype(value.dtype), w.dtype)
            derive(new_w[w], w)
        layers.append((n, why, removed))
    return substitute(graph, new_w), layers


def substitute(graph: Graph, mapping: Mapping[Node, Node]) -> Graph:
    """`graph` with the nodes in `mapping` replaced (same types), everything above rebuilt."""
    if not mapping:
        return graph
    new: dict[Node, Node] = {}
    for n in graph.nodes():
        if n in mapping:
            new[n] = mapping[n]
        elif n.inputs:
            ins = [new[x] for x in n.inputs]
            same = all(a is b for a, b in zip(ins, n.inputs, strict=True))
            new[n] = n if same else Node.rebuild(n, ins)
        else:
            new[n] = n
    return Graph(graph.inputs, [new[o] for o in graph.outputs], graph.name,
                 {new[n]: v for n, v in graph.names.items() if n in new},
                 {new[n]: v for n, v in graph.sources.items() if n in new})


def mask_changes(layers: Sequence[tuple[Node, str | None, float]]) -> dict[Node, WeightChange]:
    """The weight change dW = mask_24(W) - W of each masked linear (`masked`'s layers)."""
    out = {}
    for layer, why, _ in layers:
        if why is None:
            w = np.asarray(layer.inputs[1].value, np.float64)
            out[layer] = WeightChange(mask_24(w) - w)
    return out


@dataclass(frozen=True)
class Sparsified:
    """What `sparsify_24` returns: the graph, a report per linear, and the measured output
    error (largest absolute difference, and that over the largest |output|)."""

    graph: Graph
    layers: tuple[LayerReport, ...]
    error: float
    relative_error: float
    batches: int
    on: str
    contract: Contract = field(default_factory=lambda: LOSSY)  # see the module docstring
    contract_note: str = ""  # which kind of bound the contract is, and why
    bound: Bound = field(default_factory=lambda: Bound(0.0, ()))  # the a-priori bound

    @property
    def changed(self) -> bool:
        return any(r.packed or r.reason == "masked (pack=False)" for r in self.layers)

    def bytes(self) -> tuple[int, int]:
        """Weight bytes of the sparsified linears, dense -> stored."""
        done = [r for r in self.layers if r.packed]
        return sum(r.bytes[0] for r in done), sum(r.bytes[1] for r in done)


def sparsify_24(graph: Graph, *, min_size: int = 0, scope: str = "", pack: bool = True,
                calibration: Sequence[tuple[np.ndarray, ...]] | None = None) -> Sparsified:
    """Mask (policy) then pack (exact), with the per-layer report of the module docstring."""
    out, layers = masked(graph, min_size, scope)
    if pack:
        out = name_derived(rewrite(out, PACK_24).graph)
    reports = []
    for layer, why, removed in layers:
        w = layer.inputs[1].tensor_type
        name = layer_name(graph, layer)
        dense = w.nbytes
        if why is not None:
            reports.append(LayerReport(name, w.shape, False, why, 0.0, (dense, dense)))
        elif not pack:
            reports.append(LayerReport(name, w.shape, False, "masked (pack=False)", removed,
                                       (dense, dense)))
        else:
            reports.append(LayerReport(name, w.shape, True, "", removed,
                                       (dense, packed_bytes(w))))
    got, n, on = measured(graph, out, calibration, out is not graph)
    rel = got.error / got.magnitude if got.magnitude else 0.0
    contract, note = exact, "contract: exact, no linear was sparsified"
    bound = weight_bound(graph, mask_changes(layers), calibration)
    if out is not graph:
        contract, note = lossy_contract(bound, graph, out, calibration,
                                        got if on == "calibration" else None)
    return Sparsified(out, tuple(reports), got.error, rel, n, on, contract, note, bound)


class Sparsify24(Pass):
    """2:4 sparsity for linear layers: magnitude mask (policy), then exact packing into
    linear24 (see the module docstring). Options: min_size (smallest weight, in elements,
    worth sparsifying), scope (only linears whose name contains it), pack (False: mask
    only)."""

    name = "sparsify-24"
    contract: Contract = LOSSY

    def __init__(self, *, min_size: int = 0, scope: str = "", pack: bool = True) -> None:
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
            raise PipelineParseError(f"sparsify-24: min_size is a weight count >= 0, got "
                                     f"{min_size!r}")
        if not isinstance(scope, str) or not isinstance(pack, bool):
            raise PipelineParseError("sparsify-24: scope is a string (part of a layer name) "
                                     "and pack is True or False")
        self.min_size, self.scope, self.pack = min_size, scope, pack
        given = {"min_size": min_size, "scope": scope, "pack": pack}
        defaults = {"min_size": 0, "scope": "", "pack": True}
        self.options = {k: v for k, v in given.items() if v != defaults[k]}
        self.last: Sparsified | None = None
        self.__doc__ = __doc__

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        res = sparsify_24(graph, min_size=self.min_size, scope=self.scope, pack=self.pack,
                          calibration=ctx.calibration)
        self.last = res
        done = [r for r in res.layers if r.packed]
        before, after = res.bytes()
        notes = [f"packed {len(done)} of {len(res.layers)} linears 2:4: their weight bytes "
                 f"{before:,} -> {after:,}; measured output error {res.error:.3g} (relative "
                 f"{res.relative_error:.3g}) on {res.batches} {res.on} batches"]
        notes += [str(r) for r in res.layers] + [res.contract_note]
        self.contract = res.contract
        return PassResult(res.graph, res.changed, {"rewrites": len(done),
                                                   "fired": {"pack_24_linear": len(done)}
                                                   if done else {}, "notes": notes,
                                                   "contract": res.contract})


def sparsify24(*, min_size: int = 0, scope: str = "", pack: bool = True) -> Sparsify24:
    """2:4 sparsity for linears: magnitude mask, exact packing (lossy; a-priori or measured)."""
    return Sparsify24(min_size=min_size, scope=scope, pack=pack)


def pack24(budget: int | None = None) -> RewritePass:
    """Pack linears whose constant weight is already 2:4 sparse into linear24 (exact)."""
    return RewritePass("pack-24", PACK_24, budget=budget, doc=sparsity24_pack.__doc__ or "")


register_rules(PACK_24)
register_pass("sparsify-24", sparsify24)
register_pass("pack-24", pack24)

__all__ = ["LayerReport", "PACK_24", "Sparsified", "SparsityError", "Sparsify24", "mask_24",
           "masked", "pack24", "sparsify24", "sparsify_24", "substitute"]
