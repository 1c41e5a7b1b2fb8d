"""Cross-layer equalization (CLE): rescale the channels between two layers so that each
channel uses the same share of its weight tensor's range, which per-tensor quantization needs.

The identity. Let layer 1 (conv2d or linear) compute h = W1 x + b1 and layer 2 read
act(h), with act positively homogeneous channel by channel: act(a z) = a act(z) for a > 0
(relu, leaky_relu, the identity, or a chain of such ops; the op table's `homogeneous` flag).
For any s_c > 0 per channel c of h, with S = diag(s),

    W2 * act(W1 x + b1) = (W2 S) * act(S^-1 W1 x + S^-1 b1),

so dividing output channel c of layer 1 (weights and bias) by s_c and multiplying input
channel c of layer 2 by s_c changes no number in real arithmetic. Output channel c of a conv
is W1[c] whatever its groups; input channel c of a conv with groups of Cg channels is read by
W2[o, c mod Cg] for the outputs o of its group (W2[c] for a depthwise conv). Layer 2's zero
padding stays zero (0 * s_c = 0). Linear's channels are its last axis.

The choice of s (Nagel et al. 2019, section 4.1). With r1_c = max |W1[c]| (the range of
output channel c of layer 1) and r2_c = max |W2 reading input channel c|, the scaled
ranges are r1_c / s_c and r2_c s_c; the summed per-channel precision
sum_c (r1_c / s_c) / R1 * (r2_c s_c) / R2 is largest when the two are equal:

    s_c = sqrt(r1_c / r2_c) = sqrt(r1_c r2_c) / r2_c,    r1_c / s_c = r2_c s_c = sqrt(r1_c r2_c)

(s_c = 1 where r1_c or r2_c is 0: a dead channel has nothing to balance).

Chains. A layer may be the second layer of one pair and the first of the next (the depthwise
conv of 1x1 -> relu -> depthwise -> relu -> 1x1). Pairs are balanced in turn, and the sweep
repeated until no scale moves by more than `tol` (max |log s_c| < tol) or for `iterations`
sweeps. The scales of all sweeps multiply; the weights are rebuilt once, from the originals.

Policy and apply are split (DESIGN.md): `find_pairs` and `plan_scales` decide, in float64;
`rescale(graph, pairs, scales)` applies any positive scales, exactly; the tests check it
with random scales.

High-bias absorption (section 4.2), `absorb="calibration"`. If the pre-activation satisfies
h_c >= a_c >= 0 for every input, relu(h) = relu(h - a) + a, so

    W2 relu(h) + b2 = W2 relu(h - a) + (b2 + W2 a):    b1 <- b1 - a,   b2 <- b2 + W2 a,

which narrows the activation range by a. Nagel et al. take a = max(0, beta - 3 gamma) from the
batch norm; fold-bn has usually folded it away by now, so smelt takes a = max(0, the minimum
of h over the calibration batches and positions): the identity then holds on every
calibration sample, not on every input, so the step is lossy. Only relu / leaky_relu pairs
whose second layer is linear or an unpadded conv qualify (a padded conv reads 0, not a, at
the border).

ReLU6 is not homogeneous (relu6(a z) != a relu6(z) once a z > 6). `relu6="keep"` (default)
skips such pairs and says so; `relu6="to-relu"` first replaces the pair's ReLU6 with ReLU (as
Nagel et al. do for MobileNetV2), a lossy step that the report marks as one.

Contract: exact with the defaults (relu6="keep", absorb="off"): positive rescaling only, the
weights computed in float64 and rounded once to their dtype, and exact for a run whose lossy
option found nothing to do. Its notes name every lossy step. relu6 -> relu changes a value
h by relu(h) - relu6(h) = max(0, h - 6) <= max(0, M_h - 6), M_h the largest |h| seen on
calibration: the a-priori bound propagates that through the graph (passes/error_bound.py,
as a rounding of the relu6 tensor; the rescaling around it is exact). High-bias absorption
holds exactly on the calibration batches only, so with it the contract is the error
measured on those batches, labelled `measured`, as it is when the a-priori bound is larger
than the largest output magnitude seen. Without calibration batches a lossy run states
bounded(inf), and the report says to give them.

Source: Nagel, van Baalen, Blankevoort, Welling, "Data-Free Quantization Through Weight
Equalization and Bias Correction", ICCV 2019, sections 4.1-4.2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from smelt.ir.graph import Graph
from smelt.ir.interpreter import interpret
from smelt.ir.node import Node
from smelt.ir.op_table import get_op
from smelt.rewrite.contract import Contract, bounded, exact
from smelt.rewrite.errors import PipelineParseError
from smelt.rewrite.pass_api import Pass, PassContext, PassResult
from smelt.rewrite.registry import register_pass

from .error_bound import INF, Bound, calibrated_magnitudes, lossy_contract, propagate
from .weights import (
    FLOATS,
    bias64,
    derive,
    input_shift_bias,
    name_derived,
    scale_inputs,
    stored,
)

LAYERS = ("conv2d", "linear")
LOSSY = bounded(math.inf)
SCALE_LIMIT = 1e8  # one step's scale is clipped to [1 / SCALE_LIMIT, SCALE_LIMIT]


@dataclass(frozen=True)
class Pair:
    """layer `first` -> the ops of `chain` -> layer `second`, balanced together."""

    first: Node
    chain: tuple[Node, ...]
    second: Node
    label: str

    @property
    def channels(self) -> int:
        return self.first.inputs[1].shape[0]


# -- ranges ---------------------------------------------------------------------------------
def output_ranges(w: np.ndarray) -> np.ndarray:
    """max |w| per output channel (axis 0) of a conv or linear weight."""
    return np.abs(w).reshape(w.shape[0], -1).max(axis=1)


def input_ranges(layer: Node, w: np.ndarray) -> np.ndarray:
    """max |w| over the weights that read each input channel of `layer` (a weight of its
    shape); grouped and depthwise convs included."""
    if layer.op == "linear":
        return np.abs(w).max(axis=0)
    g = layer.attrs["groups"]
    o, cg = w.shape[:2]
    return np.abs(w).reshape(g, o // g, cg, -1).max(axis=(1, 3)).reshape(-1)


def balance(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """s with r1 / s = r2 * s = sqrt(r1 r2) per channel (1 where either range is 0)."""
    live = (r1 > 0) & (r2 > 0)
    s = np.sqrt(np.where(live, r1, 1.0) / np.where(live, r2, 1.0))
    return np.clip(s, 1.0 / SCALE_LIMIT, SCALE_LIMIT)


# -- policy: which pairs, which scales ------------------------------------------------------
def _label(graph: Graph, node: Node, index: dict[Node, int]) -> str:
    name = graph.names.get(node.inputs[1]) or graph.names.get(node)
    if name and name.endswith(".weight"):
        name = name[: -len(".weight")]
    return name or f"{node.op}#{index[node]}"


def _walks_through(n: Node) -> bool:
    """Ops a candidate pair may have between its layers: unary elementwise ops and batch norm
    (the latter only to say why the pair is skipped)."""
    if n.op == "batch_norm":
        return True
    return len(n.inputs) == 1 and get_op(n.op).category == "elementwise"


def find_pairs(graph: Graph, relu6: str = "keep") -> tuple[list[Pair], list[str]]:
    """The pairs to equalize, in graph order, and the candidate pairs skipped (with why)."""
    users, index = graph.users(), {n: i for i, n in enumerate(graph.nodes())}
    outputs = {id(o) for o in graph.outputs}
    pairs: list[Pair] = []
    skipped: list[str] = []
    for second in graph.nodes():
        if second.op not in LAYERS:
            continue
        chain, first = [], second.inputs[0]
        while first.op not in LAYERS and first.inputs and _walks_through(first):
            chain.append(first)
            first = first.inputs[0]
        if first.op not in LAYERS:
            continue
        chain.reverse()
        label = " -> ".join([_label(graph, first, index)] + [c.op for c in chain]
                            + [_label(graph, second, index)])
        why = _why_not(first, tuple(chain), second, users, outputs, relu6)
        if why is None:
            pairs.append(Pair(first, tuple(chain), second, label))
        else:
            skipped.append(f"{label}: {why}")
    return pairs, skipped


def _why_not(first: Node, chain: tuple[Node, ...], second: Node, users: dict, outputs: set,
             relu6: str) -> str | None:
    if first.op != second.op:
        return (f"{first.op} -> {second.op}: the channel axes differ (conv2d's is axis 1, "
                "linear's the last)")
    if first.dtype not in FLOATS:
        return f"dtype {first.dtype} is not a float type"
    if not all(x.op == "constant" for x in first.inputs[1:] + second.inputs[1:]):
        return "a weight or bias is not a constant"
    for n in (first, *chain):
        if id(n) in outputs:
            return f"the {n.op} output is also a graph output"
        if len(users[n]) != 1:
            return f"the {n.op} output has {len(users[n])} users"
    for n in chain:
        if n.op == "batch_norm":
            return "a batch_norm is between them; run fold-bn first"
        if n.op == "relu6" and relu6 == "keep":
            return ("relu6 is not positively homogeneous (relu6(a z) != a relu6(z) once a z > 6)"
                    "; kept. equalize(relu6='to-relu') replaces it with relu, a lossy step")
        if n.op != "relu6" and not get_op(n.op).homogeneous:
            return f"{n.op} is not positively homogeneous"
    return None


def plan_scales(pairs: Sequence[Pair], iterations: int = 100, tol: float = 1e-4
                ) -> tuple[list[np.ndarray], int, float]:
    """Per pair, the product of the balancing scales of every sweep; the number of sweeps
    run; and the largest |log s| of the last sweep (< tol: converged)."""
    weights: dict[Node, np.ndarray] = {}
    for p in pairs:
        for layer in (p.first, p.second):
            weights.setdefault(layer, np.asarray(layer.inputs[1].value, np.float64))
    scales = [np.ones(p.channels) for p in pairs]
    moved, sweeps = 0.0, 0
    while sweeps < iterations:
        sweeps, moved = sweeps + 1, 0.0
        for k, p in enumerate(pairs):
            w1, w2 = weights[p.first], weights[p.second]
            s = balance(output_ranges(w1), input_ranges(p.second, w2))
            weights[p.first] = w1 / s.reshape((-1,) + (1,) * (w1.ndim - 1))
            weights[p.second] = scale_inputs(p.second, s, w2)
            scales[k] = scales[k] * s
            moved = max(moved, float(np.max(np.abs(np.log(s)), initial=0.0)))
        if moved < tol:
            break
    return scales, sweeps, moved


# -- apply: exact for every positive scale ------------------------------------------------------
def _rebuilt(graph: Graph, replace: dict[Node, Callable[[list[Node]], Node]]) -> Graph:
    """`graph` with each node in `replace` rebuilt by its function (of the new operands), the
    rest rebuilt over their new operands; names carried over."""
    new: dict[Node, Node] = {}
    for n in graph.nodes():
        if n.inputs:
            ins = [new.get(x, x) for x in n.inputs]
            fn = replace.get(n)
            new[n] = fn(ins) if fn is not None else Node.rebuild(n, ins)
    names = {new[n]: name for n, name in graph.names.items() if n in new}
    out = graph.replace(outputs=[new.get(o, o) for o in graph.outputs], names=names)
    return name_derived(out)


def _layer(layer: Node, ins: list[Node], w64: np.ndarray, b64: np.ndarray | None) -> Node:
    nw = stored(w64, layer.dtype)
    nb = None if b64 is None else stored(b64, layer.dtype)
    if nw is None or (b64 is not None and nb is None):
        raise ValueError(f"the rescaled weights of a {layer.op} overflow {layer.dtype}")
    derive(nw, layer.inputs[1])
    if nb is not None:
        derive(nb, layer.inputs[2] if len(layer.inputs) > 2 else None)
    return Node.make(layer.op, [ins[0], nw] + ([nb] if nb is not None else []), **layer.attrs)


def rescale(graph: Graph, pairs: Sequence[Pair], scales: Sequence[np.ndarray], *,
            relu6_to_relu: bool = False) -> Graph:
    """Divide output channel c of each pair's first layer (weights and bias) by s_c and
    multiply input channel c of its second layer by s_c. Exact for positive scales when the
    ops between are positively homogeneous; `relu6_to_relu` first replaces a pair's relu6 with
    relu (lossy)."""
    down: dict[Node, np.ndarray] = {}
    up: dict[Node, np.ndarray] = {}
    for p, s in zip(pairs, scales, strict=True):
        s = np.asarray(s, np.float64)
        if s.shape != (p.channels,) or not np.all((s > 0) & np.isfinite(s)):
            raise ValueError(f"{p.label}: scales must be {p.channels} positive finite numbers")
        down[p.first], up[p.second] = s, s
    replace: dict[Node, Callable[[list[Node]], Node]] = {}
    for layer in {**down, **up}:
        replace[layer] = _scaler(layer, down.get(layer), up.get(layer))
    if relu6_to_relu:
        for p in pairs:
            for n in p.chain:
                if n.op == "relu6":
                    replace[n] = _to_relu
    return _rebuilt(graph, replace)


def _to_relu(ins: list[Node]) -> Node:
    return Node.make("relu", ins)


def _scaler(layer: Node, down: np.ndarray | None, up: np.ndarray | None
            ) -> Callable[[list[Node]], Node]:
    def build(ins: list[Node]) -> Node:
        w64 = np.asarray(layer.inputs[1].value, np.float64)
        b64 = bias64(layer) if len(layer.inputs) > 2 else None
        if up is not None:
            w64 = scale_inputs(layer, up, w64)
        if down is not None:
            w64 = w64 / down.reshape((-1,) + (1,) * (w64.ndim - 1))
            b64 = None if b64 is None else b64 / down
        return _layer(layer, ins, w64, b64)

    return build


# -- high-bias absorption (lossy) ---------------------------------------------------------------
def _absorbable(p: Pair) -> bool:
    if [n.op for n in p.chain] not in (["relu"], ["leaky_relu"]):
        return False
    return p.second.op == "linear" or not any(p.second.attrs["padding"])


def calibration_minima(graph: Graph, nodes: Sequence[Node], batches: Sequence[tuple]
                       ) -> dict[Node, np.ndarray]:
    """Per node, the minimum of each channel (axis 1 of a conv, the last axis of a linear)
    over every calibration batch and position."""
    wanted = {id(n): n for n in nodes}
    mins: dict[Node, np.ndarray] = {}

    def observe(n: Node, value: np.ndarray) -> None:
        if id(n) in wanted:
            axis = 1 if n.op == "conv2d" else value.ndim - 1
            m = np.moveaxis(np.asarray(value, np.float64), axis, 0).reshape(value.shape[axis], -1)
            low = m.min(axis=1)
            mins[n] = np.minimum(mins[n], low) if n in mins else low

    for batch in batches:
        interpret(graph, *batch, observe=observe)
    return mins


def absorb_high_bias(graph: Graph, batches: Sequence[tuple]) -> tuple[Graph, list[str]]:
    """b1 <- b1 - a, b2 <- b2 + W2 a with a = max(0, calibration minimum of layer 1's output),
    for the relu pairs that qualify. Exact on the calibration batches only."""
    pairs = [p for p in find_pairs(graph)[0] if _absorbable(p)]
    mins = calibration_minima(graph, [p.first for p in pairs], batches)
    replace: dict[Node, Callable[[list[Node]], Node]] = {}
    notes = []
    for p in pairs:
        a = np.maximum(mins[p.first], 0.0)
        if not np.any(a > 0):
            continue
        b1 = bias64(p.first) - a
        b2 = bias64(p.second) + input_shift_bias(p.second, a)
        w1 = np.asarray(p.first.inputs[1].value, np.float64)
        w2 = np.asarray(p.second.inputs[1].value, np.float64)
        replace[p.first] = _fixed(p.first, w1, b1)
        replace[p.second] = _fixed(p.second, w2, b2)
        notes.append(f"LOSSY high-bias absorption, {p.label}: {int(np.sum(a > 0))} of "
                     f"{p.channels} channels shifted by up to {float(a.max()):.3g}")
    return (_rebuilt(graph, replace) if replace else graph), notes


def _fixed(layer: Node, w64: np.ndarray, b64: np.ndarray) -> Callable[[list[Node]], Node]:
    def build(ins: list[Node]) -> Node:
        return _layer(layer, ins, w64, b64)

    return build


# -- the pass -----------------------------------------------------------------------------------
class Equalize(Pass):
    """Cross-layer equalization (see the module docstring). Options: relu6 ("keep" or
    "to-relu"), absorb ("off" or "calibration"), iterations (the sweep cap), tol."""

    name = "equalize"

    def __init__(self, *, relu6: str = "keep", absorb: str = "off", iterations: int = 100,
                 tol: float = 1e-4) -> None:
        if relu6 not in ("keep", "to-relu"):
            raise PipelineParseError(f"equalize: relu6 must be 'keep' or 'to-relu', not "
                                     f"{relu6!r}")
        if absorb not in ("off", "calibration"):
            raise PipelineParseError(f"equalize: absorb must be 'off' or 'calibration', not "
                                     f"{absorb!r}")
        if iterations < 1 or not tol > 0:
            raise PipelineParseError("equalize: iterations must be >= 1 and tol > 0")
        self.relu6, self.absorb, self.iterations, self.tol = relu6, absorb, iterations, tol
        given = {"relu6": relu6, "absorb": absorb, "iterations": iterations, "tol": tol}
        defaults = {"relu6": "keep", "absorb": "off", "iterations": 100, "tol": 1e-4}
        self.options = {k: v for k, v in given.items() if v != defaults[k]}
        self.last_contract: Contract | None = None
        self.__doc__ = __doc__

    @property
    def contract(self) -> Contract:  # type: ignore[override]
        """The last run's contract (module docstring); before a run, exact with the
        defaults and bounded(inf) with a lossy option."""
        if self.last_contract is not None:
            return self.last_contract
        return exact if self.relu6 == "keep" and self.absorb == "off" else LOSSY

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        pairs, skipped = find_pairs(graph, self.relu6)
        scales, sweeps, moved = plan_scales(pairs, self.iterations, self.tol)
        out = rescale(graph, pairs, scales, relu6_to_relu=self.relu6 == "to-relu")
        notes = [_summary(pairs, sweeps, moved, self.tol)]
        notes += [f"{p.label}: {p.channels} channels, s in [{s.min():.3g}, {s.max():.3g}]"
                  for p, s in zip(pairs, scales, strict=True)]
        notes += [f"skipped {why}" for why in skipped]
        swapped = [p for p in pairs if any(n.op == "relu6" for n in p.chain)]
        notes += [f"LOSSY relu6 -> relu, {p.label}: values above 6 are no longer clipped"
                  for p in swapped]
        fired = {"equalize_pair": len(pairs)} if pairs else {}
        if swapped:
            fired["relu6_to_relu"] = len(swapped)
        if self.absorb == "calibration":
            if ctx.calibration:
                out, absorbed = absorb_high_bias(out, ctx.calibration)
                notes += absorbed
                if absorbed:
                    fired["absorb_high_bias"] = len(absorbed)
            else:
                notes.append("high-bias absorption skipped: it needs calibration batches "
                             "(pipeline(graph, calibration=...))")
        contract = exact
        if swapped or "absorb_high_bias" in fired:
            bound = lossy_bound(graph, swapped, "absorb_high_bias" in fired, ctx.calibration)
            contract, note = lossy_contract(bound, graph, out, ctx.calibration)
            notes.append(note)
        elif self.relu6 != "keep" or self.absorb != "off":
            notes.append("a lossy option was given, but no lossy step was needed")
        self.last_contract = contract
        return PassResult(out, bool(fired), {"rewrites": sum(fired.values()), "fired": fired,
                                             "notes": notes, "contract": contract})


def _summary(pairs: Sequence[Pair], sweeps: int, moved: float, tol: float) -> str:
    if not pairs:
        return "no pair to equalize"
    state = "converged" if moved < tol else f"stopped at the sweep cap (max |log s| {moved:.2g})"
    plural = "s" if len(pairs) > 1 else ""
    return f"equalized {len(pairs)} pair{plural} in {sweeps} sweeps, {state}"


def lossy_bound(graph: Graph, swapped: Sequence[Pair], absorbed: bool,
                calibration: Sequence[tuple] | None) -> Bound:
    """The a-priori bound of the lossy steps (module docstring): relu6 -> relu as a rounding
    of each replaced relu6 by max(0, M_h - 6); none with high-bias absorption."""
    if absorbed:
        return Bound(INF, (), "high-bias absorption is exact on the calibration batches and "
                     "has no bound for other inputs here")
    relu6 = [n for p in swapped for n in p.chain if n.op == "relu6"]
    if not calibration:
        return Bound(INF, (), "relu6 -> relu needs the largest pre-activation seen on "
                     "calibration")
    mags = calibrated_magnitudes(graph, calibration, [n.inputs[0] for n in relu6])
    rounding = {n: max(0.0, mags[n.inputs[0]] - 6.0) for n in relu6}
    return propagate(graph, {}, mags.get, rounding)


def equalize_weights(*, relu6: str = "keep", absorb: str = "off", iterations: int = 100,
                     tol: float = 1e-4) -> Equalize:
    """Cross-layer equalization of conv/linear pairs (Nagel et al. 2019); exact by default."""
    return Equalize(relu6=relu6, absorb=absorb, iterations=iterations, tol=tol)


register_pass("equalize", equalize_weights)
