"""Structured channel pruning: `prune-channels(ratio=..., importance=..., round_to=...)`.

Three steps, each its own function (DESIGN.md: a policy that decides, an exact step that
applies):

1. `analyse(graph)` (passes/pruning_groups.py) finds the channel classes and the dependency
   groups: which positions of which tensors are one channel (residual adds, concatenation
   offsets, split, depthwise and grouped convs, batch norm, flatten into a linear, attention
   heads), and which are fixed, with the reason.
2. `select` (passes/pruning_importance.py) scores the channels (L1 / L2 magnitude or
   first-order Taylor on calibration data) and picks those to remove: a per-layer or global
   ratio, kept counts rounded to a multiple of `round_to`.
3. `apply_pruning(analysis, removed)` removes them: every constant is sliced along each axis
   at the kept positions, and every node is rebuilt with the attributes its new shapes need
   (reshape and expand targets, split sizes, slice bounds, pad widths, conv groups). Shapes
   shrink; the graph is rebuilt with Node.make, so it is well typed by construction.

Contract. `apply_pruning` is exact when the removed channels are zero: every kept value is
computed from kept positions only, except for the sums of contractions, which lose only the
removed (zero) terms (pruning_groups.py gives the argument; the tests check it on random
graphs with residual adds, concatenation and depthwise convs whose removed channels are
zeroed). The pass removes channels that are not zero. Seen from the kept positions, that
is a weight change: every contraction with a constant weight (conv2d, linear, matmul) has
its entries at removed positions zeroed (`zeroed_weights`), since a removed input channel
only ever reached a kept output through those entries. That holds when a removed channel
reaches a kept value only through such a contraction's reduction, or position by position
(elementwise ops, batch norm, pooling, data movement). Where it reaches anything that mixes
it with kept ones (a layer norm or softmax over channels, a reduction over them, a product of
two activations summed over them) the pass says so and gives no a-priori bound.

Contract: with calibration batches, the weight changes' a-priori bound (passes/error_bound.py:
the zeroed entries times the activation magnitudes seen on calibration, propagated through
the graph), when it is finite and no larger than the largest output magnitude seen; else the
error measured on the calibration batches, labelled `measured`. Without calibration batches:
bounded(inf), and the report says to give them. The report also gives the error measured on
the calibration batches (or on two seeded sample batches), with, per group, the channels
before and after and the MACs and parameters removed. `ratio=0` removes nothing and is exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.op_table import get_op
from smelt.ir.types import TensorType
from smelt.rewrite.contract import Contract, bounded, exact
from smelt.rewrite.errors import PipelineParseError
from smelt.rewrite.pass_api import Pass, PassContext, PassResult
from smelt.rewrite.registry import register_pass

from .error_bound import (
    INF,
    Bound,
    Measured,
    WeightChange,
    lossy_contract,
    measure,
    weight_bound,
    weight_index,
)
from .pruning_groups import ChannelAnalysis, analyse
from .pruning_importance import (
    Group,
    PruningError,
    check_options,
    find_groups,
    importance_scores,
    select,
)

LOSSY = bounded(math.inf)
Kept = list[np.ndarray | None]  # per axis: the kept positions, or None when all are kept


# -- apply: exact when the removed channels are zero ------------------------------------------
class _Kept:
    """Kept positions per axis of every node, for a set of removed classes."""

    def __init__(self, analysis: ChannelAnalysis, removed: frozenset[int]) -> None:
        self.analysis, self.removed = analysis, np.fromiter(removed, np.int64, len(removed))
        self._memo: dict[tuple[Node, int], Kept] = {}

    def __call__(self, n: Node, part: int = -1) -> Kept:
        key = (n, part)
        if key not in self._memo:
            out: Kept = []
            for roots in self.analysis.roots[key]:
                keep = ~np.isin(roots, self.removed)
                out.append(None if keep.all() else np.flatnonzero(keep))
            self._memo[key] = out
        return self._memo[key]

    def shape(self, n: Node, part: int = -1) -> tuple[int, ...]:
        t = n.type if part < 0 else n.type.elements[part]  # type: ignore[attr-defined]
        return tuple(d if k is None else len(k)
                     for d, k in zip(t.shape, self(n, part), strict=True))

    def mask(self, n: Node, axis: int) -> np.ndarray:
        k, d = self(n)[axis], n.shape[axis]
        return np.ones(d, bool) if k is None else np.isin(np.arange(d), k)


def _reshape_attrs(n: Node, kept: _Kept) -> dict:
    return {**n.attrs, "shape": kept.shape(n)}


def _split_attrs(n: Node, kept: _Kept) -> dict:
    axis = n.attrs["axis"] % len(n.inputs[0].shape)
    return {**n.attrs, "sizes": tuple(kept.shape(n, i)[axis] for i in range(len(n.type.elements)))}


def _slice_attrs(n: Node, kept: _Kept) -> dict:
    x = n.inputs[0]
    axis = n.attrs["axis"] % len(x.shape)
    if kept(x)[axis] is None:
        return dict(n.attrs)
    r = range(x.shape[axis])[slice(n.attrs["start"], n.attrs["stop"], n.attrs["step"])]
    m = kept.mask(x, axis)
    start = int(m[:r.start].sum())
    return {**n.attrs, "start": start, "stop": start + int(m[r.start:r.start + len(r)].sum())}


def _pad_attrs(n: Node, kept: _Kept) -> dict:
    pads = list(n.attrs["pads"])
    for axis in range(len(n.shape)):
        if kept(n)[axis] is not None:
            m, d = kept.mask(n, axis), n.shape[axis]
            before, after = pads[2 * axis], pads[2 * axis + 1]
            pads[2 * axis] = int(m[:before].sum())
            pads[2 * axis + 1] = int(m[d - after:].sum())
    return {**n.attrs, "pads": tuple(pads)}


def _conv_attrs(n: Node, kept: _Kept) -> dict:
    groups, x = n.attrs["groups"], n.inputs[0]
    if groups == 1:
        return dict(n.attrs)
    per_group = x.shape[1] // groups
    return {**n.attrs, "groups": kept.shape(x)[1] // per_group}


ATTRS: dict[str, Callable[[Node, _Kept], dict]] = {
    "reshape": _reshape_attrs, "expand": _reshape_attrs, "split": _split_attrs,
    "slice": _slice_attrs, "pad": _pad_attrs, "conv2d": _conv_attrs, "fused_conv2d": _conv_attrs,
}


def apply_pruning(analysis: ChannelAnalysis, removed: Iterable[int]) -> Graph:
    """The graph of `analysis` without the channel classes `removed` (see the module
    docstring: exact when those channels are zero)."""
    removed = frozenset(removed)
    fixed = sorted(c for c in removed if c in analysis.cls.fixed)
    if fixed:
        raise PruningError(f"channel class {fixed[0]} is fixed ({analysis.cls.fixed[fixed[0]]})"
                           "; remove only classes of prunable groups")
    graph = analysis.graph
    if not removed:
        return graph
    kept = _Kept(analysis, removed)
    new: dict[Node, Node] = {}
    for n in graph.nodes():
        if n.op == "input":
            new[n] = n
        elif n.op == "constant":
            new[n] = _sliced(n, kept(n))
        else:
            ins = [new[x] for x in n.inputs]
            attrs = ATTRS[n.op](n, kept) if n.op in ATTRS else dict(n.attrs)
            same = all(a is b for a, b in zip(ins, n.inputs, strict=True))
            new[n] = n if same and attrs == dict(n.attrs) else Node.make(n.op, ins, **attrs)
            _check(n, new[n], kept)
    return Graph(graph.inputs, [new[o] for o in graph.outputs], graph.name,
                 {new[n]: v for n, v in graph.names.items() if n in new},
                 {new[n]: v for n, v in graph.sources.items() if n in new})


def _sliced(n: Node, kept: Kept) -> Node:
    if all(k is None for k in kept):
        return n
    value = n.value
    for axis, k in enumerate(kept):
        if k is not None:
            value = np.take(value, k, axis=axis)
    return Node.constant(value, n.dtype)


def _check(old: Node, new: Node, kept: _Kept) -> None:
    if isinstance(old.type, TensorType):
        want = [kept.shape(old)]
        got = [new.shape]
    else:
        want = [kept.shape(old, i) for i in range(len(old.type.elements))]  # type: ignore[attr-defined]
        got = [t.shape for t in new.type.elements]  # type: ignore[attr-defined]
    if want != got:
        raise AssertionError(f"pruning rebuilt a {old.op} as {got}, expected {want}: a bug in "
                             "passes/pruning_groups.py's rule for it")


# -- the a-priori bound: pruning as zeroed weights ---------------------------------------------
POOLS = ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d")
POSITIONWISE = ("reshape", "flatten", "transpose", "squeeze", "unsqueeze", "expand", "concat",
                "split", "slice", "pad", "project", "batch_norm")


def zeroed_weights(analysis: ChannelAnalysis, removed: Iterable[int]
                   ) -> tuple[dict[Node, WeightChange], str | None]:
    """Pruning `removed` as weight changes (module docstring): per contraction with a
    constant weight, the change that zeroes the weight's entries at removed positions; or,
    when a removed channel reaches a kept value another way, no changes and the reason."""
    kept = _Kept(analysis, frozenset(removed))
    changes: dict[Node, WeightChange] = {}
    for n in analysis.graph.nodes():
        if n.op in ("input", "constant"):
            continue
        why = _mixes_removed(analysis.graph, n, kept)
        if why:
            return {}, why
        widx = weight_index(n)
        if widx is not None and any(k is not None for k in kept(n.inputs[widx])):
            w = n.inputs[widx]
            mask = np.ones(w.shape, bool)
            for axis in range(len(w.shape)):
                mask &= kept.mask(w, axis).reshape([-1 if i == axis else 1
                                                    for i in range(len(w.shape))])
            changes[n] = WeightChange(np.where(mask, 0.0, -np.asarray(w.value, np.float64)))
    return changes, None


def _mixes_removed(graph: Graph, n: Node, kept: _Kept) -> str | None:
    """Why removed positions of an input of `n` reach a kept value of `n` other than through
    a constant weight's entries or position by position (None when they do not)."""
    cut = {i: {a for a, k in enumerate(kept(x)) if k is not None}
           for i, x in enumerate(n.inputs) if isinstance(x.type, TensorType)}
    cut = {i: axes for i, axes in cut.items() if axes}
    if not cut or weight_index(n) is not None:
        return None
    op, rank = n.op, len(n.inputs[0].shape) if isinstance(n.inputs[0].type, TensorType) else 0
    if op == "matmul":
        mixed = (rank - 1 in cut.get(0, ())) or (len(n.inputs[1].shape) - 2 in cut.get(1, ()))
    elif get_op(op).category == "elementwise" or op in POSITIONWISE:
        mixed = False
    elif op in POOLS:
        mixed = bool(cut[0] - {0, 1})
    elif op.startswith("reduce_"):
        mixed = bool(cut[0] & set(n.attrs["axes"] or range(rank)))
    elif op in ("softmax", "log_softmax", "take"):
        mixed = n.attrs["axis"] % rank in cut[0]
    elif op == "layer_norm":
        mixed = bool(cut[0] & set(range(n.attrs["axis"] % rank, rank)))
    else:
        return f"removed channels reach {_named(graph, n)}, which the bound has no rule for"
    if not mixed:
        return None
    return (f"removed channels reach {_named(graph, n)}, which mixes them with kept ones "
            "(pruning is not a weight change there)")


def _named(graph: Graph, n: Node) -> str:
    name = graph.names.get(n)
    return n.op + (f" {name}" if name else "")


# -- the report -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupReport:
    """One dependency group: its layers, couplings, channels before and after, and what
    pruning it alone removes (or why it cannot be pruned)."""

    label: str
    kinds: tuple[str, ...]
    unit: str
    channels: tuple[int, int]
    macs_removed: int
    params_removed: int
    prunable: bool = True
    fixed: tuple[str, ...] = ()  # why some (or, when not prunable, all) channels are fixed

    def __str__(self) -> str:
        kinds = f" ({', '.join(self.kinds)})" if self.kinds else ""
        if not self.prunable:
            return (f"not prunable: {self.label}{kinds}, {self.channels[0]} {self.unit}: "
                    f"{'; '.join(self.fixed)}")
        s = (f"{self.label}{kinds}: {self.unit} {self.channels[0]} -> {self.channels[1]}, "
             f"MACs -{self.macs_removed:,}, params -{self.params_removed:,}")
        return s + (f" (kept fixed: {'; '.join(self.fixed)})" if self.fixed else "")


@dataclass(frozen=True)
class Pruned:
    """What `prune` returns: the graph, a report per group, and the measured output error
    (largest absolute difference, and that divided by the largest |output|)."""

    graph: Graph
    groups: tuple[GroupReport, ...]
    removed: frozenset[int]
    error: float
    relative_error: float
    batches: int
    on: str  # "calibration" or "seeded sample": the batches the error was measured on
    contract: Contract = field(default_factory=lambda: LOSSY)  # see the module docstring
    contract_note: str = ""  # which kind of bound the contract is, and why
    bound: Bound = field(default_factory=lambda: Bound(0.0, ()))  # the a-priori bound

    @property
    def changed(self) -> bool:
        return bool(self.removed)


def group_report(analysis: ChannelAnalysis, group: Group, removed: frozenset[int],
                 base: tuple[int, int]) -> GroupReport:
    mine = removed & set(group.classes)
    macs = params = 0
    if mine:
        alone = apply_pruning(analysis, mine)
        macs, params = base[0] - alone.cost().macs, base[1] - alone.summary().params
    unit = "heads" if "heads" in group.kinds and max(group.width.values(), default=1) > 1 \
        else "channels"
    return GroupReport(group.label, group.kinds, unit,
                       (len(group.classes), len(group.classes) - len(mine)), macs, params,
                       group.prunable, tuple(group.reasons()))


def measured(before: Graph, after: Graph, calibration, changed: bool
             ) -> tuple[Measured, int, str]:
    """The error of `after` against `before` (error_bound.measure, in float64), the number of
    batches and what they were: the calibration batches, else a seeded sample of two; zero
    error where nothing `changed`."""
    if calibration:
        batches, on = list(calibration), "calibration"
    else:
        from smelt.rewrite.equivalence import sample_inputs

        batches, on = sample_inputs(before, 2, seed=0), "seeded sample"
    got = measure(before, after, batches) if changed else Measured(0.0, 0.0)
    return got, len(batches), on


def prune(graph: Graph, *, ratio: float | Mapping[str, float] = 0.5, importance: str = "l2",
          round_to: int = 1, scope: str = "local",
          calibration: Sequence[tuple[np.ndarray, ...]] | None = None) -> Pruned:
    """Analyse, score, select and apply (the three steps of the module docstring)."""
    check_options(ratio, importance, round_to, scope)
    analysis = analyse(graph)
    groups = find_groups(analysis)
    scores = importance_scores(analysis, importance, calibration) if _any(ratio) else {}
    removed = select(analysis, groups, scores, ratio=ratio, scope=scope, round_to=round_to,
                     normalize=importance != "taylor")
    out = apply_pruning(analysis, removed)
    base = (graph.cost().macs, graph.summary().params)
    reports = tuple(group_report(analysis, g, removed, base) for g in groups)
    got, n, on = measured(graph, out, calibration, bool(removed))
    rel = got.error / got.magnitude if got.magnitude else 0.0
    contract, note, bound = exact, "contract: exact, nothing removed", Bound(0.0, ())
    if removed:
        changes, why = zeroed_weights(analysis, removed)
        bound = Bound(INF, (), why) if why else weight_bound(graph, changes, calibration)
        contract, note = lossy_contract(bound, graph, out, calibration,
                                        got if on == "calibration" else None)
    return Pruned(out, reports, removed, got.error, rel, n, on, contract, note, bound)


def _any(ratio: float | Mapping[str, float]) -> bool:
    return any(ratio.values()) if isinstance(ratio, Mapping) else bool(ratio)


# -- the pass -----------------------------------------------------------------------------------
class PruneChannels(Pass):
    """Structured channel pruning by dependency groups (see the module docstring).
    Options: ratio (fraction removed, or {layer: ratio}), importance (l1, l2, taylor),
    round_to (kept counts a multiple of it), scope (local or global)."""

    name = "prune-channels"

    def __init__(self, *, ratio: float | Mapping[str, float] = 0.5, importance: str = "l2",
                 round_to: int = 1, scope: str = "local") -> None:
        check_options(ratio, importance, round_to, scope, PipelineParseError)
        self.ratio, self.importance, self.round_to, self.scope = ratio, importance, round_to, scope
        given = {"ratio": ratio, "importance": importance, "round_to": round_to, "scope": scope}
        defaults = {"ratio": 0.5, "importance": "l2", "round_to": 1, "scope": "local"}
        self.options = {k: v for k, v in given.items() if v != defaults[k]}
        self.last: Pruned | None = None
        self.__doc__ = __doc__

    @property
    def contract(self) -> Contract:  # type: ignore[override]
        """The last run's contract (module docstring); before a run, bounded(inf) (exact for
        ratio=0)."""
        if self.last is not None:
            return self.last.contract
        return LOSSY if _any(self.ratio) else exact

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        res = prune(graph, ratio=self.ratio, importance=self.importance,
                    round_to=self.round_to, scope=self.scope, calibration=ctx.calibration)
        self.last = res
        pruned = [g for g in res.groups if g.channels[1] < g.channels[0]]
        notes = [_summary(graph, res, len(pruned))]
        notes += [str(g) for g in res.groups] + [res.contract_note]
        fired = {"prune_group": len(pruned)} if pruned else {}
        return PassResult(res.graph, res.changed, {"rewrites": len(pruned), "fired": fired,
                                                   "notes": notes, "contract": res.contract})


def _summary(graph: Graph, res: Pruned, pruned: int) -> str:
    if not res.changed:
        return "nothing pruned" + ("" if res.groups else ": no layer with a constant weight")
    before, after = graph.cost().macs, res.graph.cost().macs
    pb, pa = graph.summary().params, res.graph.summary().params
    return (f"pruned {pruned} of {len(res.groups)} groups: MACs {before:,} -> {after:,} "
            f"({1 - after / max(before, 1):.0%} fewer), params {pb:,} -> {pa:,}; measured "
            f"output error {res.error:.3g} (relative {res.relative_error:.3g}) on "
            f"{res.batches} {res.on} batches")


def prune_channels(*, ratio: float | Mapping[str, float] = 0.5, importance: str = "l2",
                   round_to: int = 1, scope: str = "local") -> PruneChannels:
    """Structured channel pruning by dependency groups (lossy; a-priori or measured bound)."""
    return PruneChannels(ratio=ratio, importance=importance, round_to=round_to, scope=scope)


register_pass("prune-channels", prune_channels)

__all__ = ["ATTRS", "GroupReport", "PruneChannels", "Pruned", "apply_pruning", "measured",
           "prune", "prune_channels", "zeroed_weights"]
