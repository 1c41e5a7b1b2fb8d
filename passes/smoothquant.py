"""`smoothquant(alpha=0.5)`: SmoothQuant's migration, found from graph patterns, then W8A8.

Only groups whose scale a rule can absorb are smoothed (the producer is a layer norm, linear
or constant multiply used by nothing else), as in the reference implementation; with
`explicit=True` the others keep an explicit multiply, which the report names.

Policy (Xiao et al., ICML 2023, eq. 4): for the linear layers that read one activation x
(q, k and v read the same layer norm), per input channel j

    s_j = max|X_j|^alpha / max_k |W_kj|^(1 - alpha)

with max|X_j| from the calibration batches (per channel of x's last axis) and the weight
maximum over every layer of the group. The migration divides x's channel j by s_j (an
explicit multiply on x) and multiplies column j of each weight by s_j: exact. The smoothing
rules (passes/smoothing.py) then absorb the multiply into x's producer (a layer norm, a
linear, a constant multiply such as RMSNorm's weight); `quantize(scheme=w8a8)` follows.

The report lists every linear layer: smoothed or not, where its scale went, and why not.

Contract: the migration is exact in real arithmetic, so the a-priori bound of the W8A8 step
on the smoothed graph (passes/quant_bound.py) bounds the whole pass; it is the contract when
it is finite and no larger than the largest output magnitude seen on calibration, else the
error measured on the calibration batches, labelled `measured` (a transformer block's layer
norms have no rule, so they get this). The report says which.
"""

from __future__ import annotations

import numpy as np

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.types import is_float, numpy_dtype
from smelt.rewrite.contract import bounded
from smelt.rewrite.driver import RewriteResult, rewrite
from smelt.rewrite.errors import PipelineParseError
from smelt.rewrite.pass_api import Pass, PassContext, PassResult
from smelt.rewrite.registry import register_pass

from .calibration import calibrate
from .error_bound import Bound, lossy_contract
from .observers import make_observer
from .quantize import QuantizationSetupError, Quantize, describe
from .smoothing import SMOOTH


def groups(graph: Graph) -> tuple[dict[Node, list[Node]], list[str]]:
    """Linear layers with constant float weights, grouped by their activation input."""
    out: dict[Node, list[Node]] = {}
    skipped = []
    for n in graph.nodes():
        if n.op != "linear":
            continue
        x, w = n.inputs[:2]
        if w.op != "constant" or not is_float(w.dtype):
            skipped.append(f"{describe(graph, n)}: not smoothed, its weight is not a constant")
        elif not is_float(x.dtype) or x.op == "constant":
            skipped.append(f"{describe(graph, n)}: not smoothed, its input is not a float "
                           "activation")
        else:
            out.setdefault(x, []).append(n)
    return out, skipped


def absorbable(x: Node, users: dict[Node, list[Node]], layers: list[Node]) -> bool:
    """Can a smoothing rule take a scale on x: its producer is a layer norm, linear or
    constant multiply, and every user of x is one of the smoothed layers?"""
    if set(users.get(x, [])) != set(layers):
        return False
    if x.op in ("layer_norm", "linear"):
        return all(i.op == "constant" for i in x.inputs[1:])
    return x.op == "mul" and x.inputs[1].op == "constant"


def smoothing_scales(x_max: np.ndarray, weights: list[np.ndarray], alpha: float) -> np.ndarray:
    w_max = np.max([np.abs(w).max(axis=0) for w in weights], axis=0)
    s = np.power(np.maximum(x_max, 1e-5), alpha) / np.power(np.maximum(w_max, 1e-5), 1 - alpha)
    return np.where((x_max > 0) & (w_max > 0), np.clip(s, 1e-4, 1e4), 1.0)


def migrate(graph: Graph, scales: dict[Node, np.ndarray]) -> Graph:
    """x -> mul(x, 1/s) for each grouped input x; each consumer linear's W -> W diag(s)."""
    new: dict = {}
    for n in graph.nodes():
        ins = [new[x] for x in n.inputs]
        if n.op == "linear" and n.inputs[0] in scales:
            s = scales[n.inputs[0]]
            w = np.asarray(n.inputs[1].value, np.float64) * s[None, :]
            ins[0] = new[("scaled", n.inputs[0])]
            ins[1] = Node.constant(w.astype(n.inputs[1].value.dtype))
            new[n] = Node.make("linear", ins)
        else:
            new[n] = Node.rebuild(n, ins) if n.inputs else n
        if n in scales:
            inv = (1.0 / scales[n]).astype(numpy_dtype(n.dtype))
            new[("scaled", n)] = Node.make("mul", (new[n], Node.constant(inv)))
    names = {new[n]: nm for n, nm in graph.names.items() if n in new}
    return Graph(graph.inputs, [new[o] for o in graph.outputs], graph.name, names,
                 {new[n]: src for n, src in graph.sources.items() if n in new})


def where_scales_went(graph: Graph, smoothed: Graph, grouped: dict[Node, list[Node]]
                      ) -> list[tuple[Node, str]]:
    """Per smoothed linear layer, where its input's scale went: into the producer (the rule
    fired) or an explicit multiply (the producer has other users, or no rule takes it)."""
    before = [n for n in graph.nodes() if n.op == "linear"]
    after = [n for n in smoothed.nodes() if n.op == "linear"]
    if len(before) != len(after):  # pragma: no cover - the rules never add or drop layers
        return [(n, "could not match the layers before and after smoothing") for n in before]
    notes = []
    for old, new in zip(before, after, strict=True):
        x = old.inputs[0]
        if x not in grouped:
            continue
        kept = new.inputs[0].op == "mul" and new.inputs[0].inputs[1].op == "constant" and \
            not (x.op == "mul" and x.inputs[1].op == "constant")
        where = (f"kept as an explicit multiply after {describe(graph, x)} (it has other "
                 "users, or nothing can absorb it)" if kept
                 else f"absorbed into {describe(graph, x)}")
        notes.append((old, f"scale {where}"))
    return notes


def smoothable(graph: Graph, explicit: bool) -> tuple[dict[Node, list[Node]], list[str]]:
    """The groups of linear layers to smooth (by shared input) and a note for each layer left
    out; unless `explicit`, only groups whose scale a smoothing rule can absorb."""
    grouped, notes = groups(graph)
    if not explicit:
        users = graph.users()
        for x in list(grouped):
            if not absorbable(x, users, grouped[x]):
                notes += [f"{describe(graph, n)}: not smoothed, nothing absorbs a scale "
                          f"on its input ({describe(graph, x)} has other users or is "
                          "not a layer norm, linear or constant multiply); "
                          "explicit=True keeps an explicit multiply"
                          for n in grouped.pop(x)]
    return grouped, notes


def apply_migration(graph: Graph, grouped: dict[Node, list[Node]],
                    scales: dict[Node, np.ndarray]
                    ) -> tuple[RewriteResult, list[tuple[Node, str]]]:
    """The exact migration of `scales` (per grouped input) into the weights, its multiplies
    absorbed by the smoothing rules, and per smoothed layer where its scale went."""
    smoothed = rewrite(migrate(graph, scales), SMOOTH)
    return smoothed, where_scales_went(graph, smoothed.graph,
                                       {x: v for x, v in grouped.items() if x in scales})


class SmoothQuant(Pass):
    """smoothquant(alpha=0.5): migration by smoothing rules, then quantize(w8a8)."""

    name = "smoothquant"

    def __init__(self, alpha: float = 0.5, *, explicit: bool = False,
                 **quantize_options) -> None:
        if not (isinstance(alpha, int | float) and 0 <= alpha <= 1):
            raise PipelineParseError(f"smoothquant: alpha must be in [0, 1], got {alpha!r}")
        if not isinstance(explicit, bool):
            raise PipelineParseError(f"smoothquant: explicit must be True or False, got "
                                     f"{explicit!r}")
        self.alpha, self.explicit = float(alpha), explicit
        self.quantize = Quantize("w8a8", **quantize_options)
        self.options = {"alpha": self.alpha, **quantize_options}
        if explicit:
            self.options["explicit"] = True
        self.contract = bounded(float("inf"))
        self.last_bound: Bound | None = None  # the last run's a-priori bound

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        if not ctx.calibration:
            raise QuantizationSetupError("smoothquant needs calibration batches for the "
                                         "activation ranges: pipeline(graph, calibration=...)")
        grouped, notes = smoothable(graph, self.explicit)
        observers = {x: make_observer("minmax", axis=len(x.shape) - 1) for x in grouped}
        done = calibrate(graph, ctx.calibration, observers) if observers else {}
        scales = {}
        for x, layers in grouped.items():
            r = done[x].range()
            x_max = np.maximum(np.abs(r.seen_lo), np.abs(r.seen_hi))
            scales[x] = smoothing_scales(x_max, [np.asarray(n.inputs[1].value) for n in layers],
                                         self.alpha)
        smoothed, where = apply_migration(graph, grouped, scales)
        notes = [f"{describe(graph, n)}: smoothed, {w}" for n, w in where] + notes
        out, bound, q_notes = self.quantize.apply(smoothed.graph, ctx)
        self.contract, note = lossy_contract(bound, graph, out, ctx.calibration)
        self.last_bound = bound
        return PassResult(out, True, {"notes": notes + q_notes + [note],
                                      "contract": self.contract,
                                      "rewrites": smoothed.rewrites,
                                      "fired": smoothed.stats.fired()})


def smoothquant(alpha: float = 0.5, **options) -> SmoothQuant:
    """SmoothQuant: per-channel migration from activations to weights, then W8A8."""
    return SmoothQuant(alpha, **options)


register_pass("smoothquant", smoothquant, "SmoothQuant migration (exact rules), then "
              "quantize(w8a8); bounded")
