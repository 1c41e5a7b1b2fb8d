"""Pruning policy: the dependency groups, and which of their channels to remove. It decides
only; the exact step that removes them is `apply_pruning` (passes/pruning.py), so any choice
made here is applied the same way and its error is measured, not assumed.

Groups. A dependency group is a connected set of channel classes (passes/pruning_groups.py)
that share an axis: a conv's 48 outputs, 32 of them added to a residual trunk and 16 to zero
padding, are one group. Its subgroups are the classes that occur on exactly the same axes
(the trunk's 32, the padded 16); a policy counts and rounds them together. Only groups that
hold some layer's output channels are reported; a group all of whose classes are fixed is
reported as not prunable, with the reasons.

Importance of a channel (a class of passes/pruning_groups.py), per option `importance`:

- "l1" / "l2": the magnitude of the weights the channel owns, summed over the layers it
  occurs in: for each conv / linear / matmul weight whose output or contracted axis holds
  it, the L1 norm (or L2 norm) of the weight's slice at its positions (Li et al., "Pruning
  Filters for Efficient ConvNets", ICLR 2017; the group sum as in DepGraph). Run fold-bn
  first, so that batch-norm scales are part of the weights they scale.
- "taylor": first-order Taylor on calibration data (Molchanov et al., "Pruning Convolutional
  Neural Networks for Resource Efficient Inference", ICLR 2017; "Importance Estimation for
  Neural Network Pruning", CVPR 2019). A channel leaves its class only through the sums of
  contractions that read it (conv with groups 1, linear, matmul), so removing it is zeroing
  its values a_c there, which moves a sample's outputs y by about -J a_c. The importance is
  the sum over samples of ||J a_c||^2, the first-order squared output change; no labels are
  needed. With random probes r (Rademacher, seeded; E[r r^T] = I),
  E_r[(r . J a_c)^2] = ||J a_c||^2, and r . J a_c is the gradient of <r, y> with respect to
  a gate of ones multiplied into those contraction inputs, per sample and channel: one
  backward pass per probe scores every channel (torch autograd on `to_torch` of the gated
  graph, so a graph traced from JAX is scored the same way).

How many to keep (option `ratio`, the fraction removed; `scope`; `round_to`). A subgroup is
the set of classes of a group that occur on exactly the same axes (pruning_groups.py):

- scope "local": every subgroup keeps ceil(n (1 - ratio)) of its n channels; `ratio` may be
  a dict {layer name: ratio} ('*' for the rest, default 0), a layer's ratio then applying to
  the groups that layer writes;
- scope "global": the channels of all subgroups are ranked together and the ratio is taken
  over all of them (magnitudes divided by their subgroup's mean first, as layers differ in
  scale; Taylor scores are already in output units and are compared as they are);
- then a subgroup's kept count is rounded up so that its kept width (count x the class's
  width on a weight axis: 1 for a channel, the head size for a head) is a multiple of
  `round_to`, at most n; each axis of the graph is a sum of subgroups, so its size is a
  multiple of round_to too. At least one channel of every subgroup stays, and fixed classes
  are never removed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from smelt.ir.errors import SmeltError
from smelt.ir.graph import Graph
from smelt.ir.node import Node

from .pruning_groups import ChannelAnalysis

IMPORTANCE = ("l1", "l2", "taylor")
SCOPES = ("local", "global")
#: (weight operand index, its output axis, its contracted axis) of the layers pruning shrinks
LAYERS = {"conv2d": (1, 0, 1), "fused_conv2d": (1, 0, 1), "linear": (1, 0, 1),
          "fused_linear": (1, 0, 1), "matmul": (1, -1, -2), "fused_matmul": (1, -1, -2)}


class PruningError(SmeltError, ValueError):
    """Pruning was asked for something it cannot do (Taylor scores without calibration
    data, removing a fixed channel); the message says what to do instead."""


# -- groups -----------------------------------------------------------------------------------
@dataclass
class Group:
    """Classes that share axes. `subgroups` partition `classes` by the axes they occur on;
    `layers` are (layer node, its weight constant) whose output axis holds the group."""

    index: int
    classes: tuple[int, ...]
    subgroups: tuple[tuple[int, ...], ...]
    layers: tuple[tuple[Node, Node], ...]
    label: str
    kinds: tuple[str, ...]
    fixed: dict[int, str] = field(default_factory=dict)
    width: dict[int, int] = field(default_factory=dict)  # class -> positions on a weight axis

    @property
    def prunable(self) -> bool:
        return any(c not in self.fixed for c in self.classes)

    def reasons(self) -> list[str]:
        return sorted(set(self.fixed.values()))


def layer_weight(n: Node) -> tuple[Node, int, int] | None:
    """(weight constant, output axis, contracted axis) of a layer with a constant weight."""
    spec = LAYERS.get(n.op)
    if spec is None or n.inputs[spec[0]].op != "constant":
        return None
    w = n.inputs[spec[0]]
    return w, spec[1] % len(w.shape), spec[2] % len(w.shape)


def layer_name(graph: Graph, layer: Node, w: Node) -> str:
    name = graph.names.get(w) or graph.names.get(layer) or layer.op
    return name.removesuffix(".weight")


def find_groups(a: ChannelAnalysis) -> list[Group]:
    """The dependency groups of `a`'s graph that hold some layer's output channels, in the
    order of their first layer."""
    order = {n: i for i, n in enumerate(a.graph.nodes())}
    sig: dict[int, list[tuple[int, int, int]]] = {}
    links = nx.Graph()
    for (n, part), axes in a.roots.items():
        for ax, roots in enumerate(axes):
            uniq = list(dict.fromkeys(roots.tolist()))
            for r in uniq:
                sig.setdefault(r, []).append((order[n], part, ax))
            links.add_nodes_from(uniq)
            nx.add_path(links, uniq)
    width: dict[int, int] = {}  # positions on a weight axis: 1, or a head's size
    comps: dict[int, list[tuple[Node, Node]]] = {}
    comp_of = {r: k for k, c in enumerate(nx.connected_components(links)) for r in c}
    for n in a.graph.nodes():
        if (found := layer_weight(n)) is not None:
            w, out_ax, in_ax = found
            comps.setdefault(comp_of[int(a.roots[(w, -1)][out_ax][0])], []).append((n, w))
            for ax in (out_ax, in_ax):
                vals, counts = np.unique(a.roots[(w, -1)][ax], return_counts=True)
                for r, c in zip(vals.tolist(), counts.tolist(), strict=True):
                    width[r] = min(width.get(r, c), c)
    members: dict[int, list[int]] = {}
    for r in sorted(links, key=lambda r: min(sig[r])):
        members.setdefault(comp_of[r], []).append(r)
    groups = []
    for k, layers in comps.items():
        classes = members[k]
        subs: dict[tuple, list[int]] = {}
        for r in classes:
            subs.setdefault(tuple(sorted(set(sig[r]))), []).append(r)
        groups.append(Group(
            len(groups), tuple(classes), tuple(tuple(s) for s in subs.values()),
            tuple(dict.fromkeys(layers)), _label([layer_name(a.graph, *m) for m in layers]),
            tuple(sorted(set().union(*(a.cls.tags.get(r, set()) for r in classes)))),
            {r: a.cls.fixed[r] for r in classes if r in a.cls.fixed},
            {r: width[r] for r in classes if r in width}))
    return groups


def _label(names: list[str]) -> str:
    """Layer names, their common dotted prefix written once: `l0.attn.{query, key}`."""
    names = list(dict.fromkeys(names))
    if len(names) == 1:
        return names[0]
    head = names[0].split(".")
    k = 0
    while k < len(head) - 1 and all(n.split(".")[:k + 1] == head[:k + 1] for n in names):
        k += 1
    prefix = ".".join(head[:k]) + "." if k else ""
    rest = [n[len(prefix):] for n in names]
    shown = ", ".join(rest[:4]) + (f", +{len(rest) - 4}" if len(rest) > 4 else "")
    return f"{prefix}{{{shown}}}" if prefix else shown


# -- importance ---------------------------------------------------------------------------------
def magnitude_scores(analysis: ChannelAnalysis, p: int) -> dict[int, float]:
    """Per class, the sum over the layer weights it occurs in of the Lp norm of its slice."""
    scores: dict[int, float] = {}
    for n in analysis.graph.nodes():
        found = layer_weight(n)
        if found is None:
            continue
        w, out_ax, in_ax = found
        value = np.abs(np.asarray(w.value, np.float64)) ** p
        for ax in dict.fromkeys((out_ax, in_ax)):
            per_pos = np.moveaxis(value, ax, 0).reshape(value.shape[ax], -1).sum(axis=1)
            roots = analysis.roots[(w, -1)][ax]
            uniq, inv = np.unique(roots, return_inverse=True)
            sums = np.bincount(inv, weights=per_pos, minlength=len(uniq)) ** (1.0 / p)
            for r, s in zip(uniq.tolist(), sums.tolist(), strict=True):
                scores[r] = scores.get(r, 0.0) + s
    return scores


def taylor_scores(analysis: ChannelAnalysis, batches: Sequence[tuple[np.ndarray, ...]], *,
                  probes: int = 4, seed: int = 0) -> dict[int, float]:
    """Per class, sum over samples of (r . J a_c)^2, averaged over `probes` random probes r
    (see the module docstring): E ||J a_c||^2, the first-order output change of removing c."""
    import torch

    from smelt.backends.interop import TORCH_DTYPES, to_torch

    gated, gates = _gated(analysis)
    classes = sorted({int(r) for _, roots in gates for r in roots if r not in analysis.cls.fixed})
    column = {c: k for k, c in enumerate(classes)}
    module = to_torch(gated)
    gen = torch.Generator().manual_seed(seed)
    total = np.zeros(len(classes))
    for batch in batches:
        feed = [torch.from_numpy(np.ascontiguousarray(a)) for a in batch]
        for _ in range(probes):
            ones = [torch.ones(g.shape, dtype=TORCH_DTYPES[g.dtype], requires_grad=True)
                    for g, _ in gates]
            outs = [o for o in module(*feed, *ones) if o.is_floating_point()]
            if not outs:
                raise PruningError("importance='taylor' needs a float graph output to score "
                                   "against; use importance='l1' or 'l2'")
            probe = sum((o * _probe(o, gen)).sum() for o in outs)
            grads = torch.autograd.grad(probe, ones, allow_unused=True)
            per_sample = np.zeros((len(feed[0]) if feed else 1, len(classes)))
            for (_, roots), grad in zip(gates, grads, strict=True):
                if grad is not None:
                    _scatter(per_sample, grad.detach().double().numpy(), roots, column)
            total += (per_sample ** 2).sum(axis=0) / probes
    return dict(zip(classes, total.tolist(), strict=True))


def _gated(analysis: ChannelAnalysis) -> tuple[Graph, list[tuple[Node, np.ndarray]]]:
    """The graph with the activation operand x of every contraction that reads prunable
    channels on its contracted axis (conv with groups 1, linear, matmul: where a channel
    leaves its class) multiplied by a new input, a gate of ones with x's batch and contracted
    axes; and per gate, the classes along its contracted axis."""
    graph, gates, new = analysis.graph, [], {}
    for n in graph.nodes():
        if not n.inputs:
            continue
        ins = [new.get(x, x) for x in n.inputs]
        x = n.inputs[0]
        ax = (1 if n.op.endswith("conv2d") else len(x.shape) - 1) if n.op in LAYERS else None
        if ax is not None and x.op != "constant" and n.attrs.get("groups", 1) == 1:
            roots = analysis.roots[(x, -1)][ax]
            if any(int(r) not in analysis.cls.fixed for r in roots):
                shape = [1] * len(x.shape)
                shape[ax] = x.shape[ax]
                shape[0] = x.shape[0]
                gate = Node.input(f"smelt_gate_{len(gates)}", shape, x.dtype)
                ins[0] = Node.make("mul", (ins[0], gate))
                gates.append((gate, roots))
        new[n] = Node.rebuild(n, ins)
    inputs = list(graph.inputs) + [g for g, _ in gates]
    return Graph(inputs, [new.get(o, o) for o in graph.outputs]), gates


def _scatter(per_sample: np.ndarray, grad: np.ndarray, roots: np.ndarray,
             column: dict[int, int]) -> None:
    """Add a gate's gradient (batch x contracted axis, other axes 1) to its classes' columns;
    a gate whose first axis is not the batch is summed into the first sample."""
    g = grad.reshape(grad.shape[0], len(roots))
    if g.shape[0] != per_sample.shape[0]:
        g = np.pad(g.sum(axis=0, keepdims=True), ((0, per_sample.shape[0] - 1), (0, 0)))
    for k, r in enumerate(roots.tolist()):
        if r in column:
            per_sample[:, column[r]] += g[:, k]


def _probe(o, gen):  # noqa: ANN001, ANN202 - torch types, imported lazily
    import torch

    return (torch.randint(0, 2, o.shape, generator=gen) * 2 - 1).to(o.dtype)


def importance_scores(analysis: ChannelAnalysis, importance: str,
                      calibration: Sequence[tuple[np.ndarray, ...]] | None) -> dict[int, float]:
    if importance == "taylor":
        if not calibration:
            raise PruningError("prune-channels(importance='taylor') scores channels on "
                               "calibration data: give batches, pipeline(graph, "
                               "calibration=[...]), or use importance='l1' or 'l2'")
        return taylor_scores(analysis, calibration)
    return magnitude_scores(analysis, 1 if importance == "l1" else 2)


# -- selection ----------------------------------------------------------------------------------
def select(analysis: ChannelAnalysis, groups: Sequence[Group], scores: Mapping[int, float], *,
           ratio: float | Mapping[str, float], scope: str = "local", round_to: int = 1,
           normalize: bool = True) -> frozenset[int]:
    """The channel classes to remove (see the module docstring)."""
    subs = [(g, s) for g in groups if g.prunable for s in g.subgroups
            if any(c not in g.fixed for c in s)]
    if scope == "global":
        drop = _global_drop(subs, scores, float(ratio), normalize)  # type: ignore[arg-type]
    else:
        drop = {id(s): math.floor(len(s) * _ratio_of(analysis.graph, g, ratio) + 1e-9)
                for g, s in subs}
    removed: set[int] = set()
    for g, s in subs:
        keep = _rounded(len(s) - drop[id(s)], len(s), _unit(g, s, round_to))
        free = sorted((c for c in s if c not in g.fixed), key=lambda c: (scores.get(c, 0.0), c))
        removed.update(free[:min(len(s) - keep, len(free))])
    return frozenset(removed)


def _ratio_of(graph: Graph, group: Group, ratio: float | Mapping[str, float]) -> float:
    if not isinstance(ratio, Mapping):
        return float(ratio)
    for layer, w in group.layers:
        name = layer_name(graph, layer, w)
        if name in ratio:
            return float(ratio[name])
    return float(ratio.get("*", 0.0))


def _global_drop(subs: list[tuple[Group, tuple[int, ...]]], scores: Mapping[int, float],
                 ratio: float, normalize: bool) -> dict[int, int]:
    ranked = []
    for g, s in subs:
        free = [c for c in s if c not in g.fixed]
        mean = float(np.mean([scores.get(c, 0.0) for c in free])) if normalize else 1.0
        ranked += [(scores.get(c, 0.0) / (mean or 1.0), c, id(s)) for c in free]
    ranked.sort()
    total = sum(len(s) for _, s in subs)
    drop = {id(s): 0 for _, s in subs}
    for _, _, key in ranked[:math.floor(total * ratio + 1e-9)]:
        drop[key] += 1
    return drop


def _unit(group: Group, sub: tuple[int, ...], round_to: int) -> int:
    """The kept count must be a multiple of this for the kept width to be one of round_to."""
    width = math.gcd(*(group.width.get(c, 1) for c in sub))
    return round_to // math.gcd(round_to, width)


def _rounded(keep: int, n: int, unit: int) -> int:
    return min(n, max(unit, math.ceil(max(keep, 1) / unit) * unit))


def check_options(ratio: object, importance: object, round_to: object, scope: object,
                  error: type[Exception] = PruningError) -> None:
    """Raise `error` naming the first bad option and what it takes."""
    ratios = ratio.values() if isinstance(ratio, Mapping) else [ratio]
    if not all(isinstance(r, int | float) and not isinstance(r, bool) and 0 <= r < 1
               for r in ratios):
        raise error(f"prune-channels: ratio is the fraction of channels removed, a number in "
                    f"[0, 1) (or a dict {{layer name: ratio}}), not {ratio!r}")
    if importance not in IMPORTANCE:
        raise error(f"prune-channels: importance must be one of {', '.join(IMPORTANCE)}, not "
                    f"{importance!r}")
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise error(f"prune-channels: round_to is the multiple kept channel counts are "
                    f"rounded to, an int >= 1 (e.g. 8), not {round_to!r}")
    if scope not in SCOPES:
        raise error(f"prune-channels: scope must be 'local' (every layer loses `ratio`) or "
                    f"'global' (`ratio` of all channels, ranked together), not {scope!r}")
    if scope == "global" and isinstance(ratio, Mapping):
        raise error("prune-channels: a per-layer ratio dict needs scope='local'")


__all__ = ["IMPORTANCE", "LAYERS", "Group", "PruningError", "SCOPES", "check_options",
           "find_groups", "importance_scores", "layer_name", "layer_weight", "magnitude_scores",
           "select", "taylor_scores"]
