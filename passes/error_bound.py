"""Forward error bounds: how far a graph's outputs can move when some layers' weights change
(quantized, 2:4-masked, pruned) and some tensors are rounded (quantized activations).

Setting. G is a float graph. G' is G where, for some contractions L (conv2d, linear, or a
matmul with one constant operand), the weight W becomes W' = W + dW and the bias b becomes
b + db (`WeightChange`), and some tensors t are replaced by a value within r_t of what G'
computes there (`rounding`: quantize's clamp and round, passes/quant_bound.py). For every
tensor t, e(t) is an array of t's shape with

    |t' - t| <= e(t)    elementwise,

for every input whose activations stay within the magnitudes M seen during calibration
(M(x) = the largest |x| over the calibration batches, one number per tensor; a constant's
magnitude is its own |value|, element by element). The calibration batches themselves are
such inputs. Forward, in graph order, e(input) = e(constant) = 0 and:

- a changed layer, y = L(x; W) + b -> y' = L(x'; W') + b':
      y' - y = L(x' - x; W') + L(x; dW) + db,
  so e(y) = L(e(x); |W'|) + L(M(x); |dW|) + |db|, where L(v; A) runs the layer's own op
  (the same stride, padding, groups) on the nonnegative array v with the weight A and no
  bias: each output element is sum_j |A_oj| v_j over exactly the inputs it reads. This is
  the bound per output element, so per output channel, instead of one number per tensor
  (which takes max_o ||W_o||_1 times the largest error of any input channel), and |W'| in
  the first term means a column that dW zeroes (a pruned input channel) passes no error on;
- an unchanged layer: L(e(x); |W|);
- a product of two activations, a b (elementwise) or a @ b (matmul):
      a'b' - ab = (a' - a) b' + a (b' - b),  e = e_a (M_b + e_b) + M_a e_b,
  with the matmul taken over the same axes (each M an array of its operand's shape; a
  constant operand's own |value|);
- add, sub: e_a + e_b; maximum, minimum and a `where` whose condition does not change:
  max(e_a, e_b); division by a constant c: e / |c|;
- elementwise functions: their Lipschitz constant times e (relu, relu6, clamp, neg, abs,
  tanh, sin, cos: 1; leaky_relu max(1, |alpha|); gelu 1.13; erf 2/sqrt(pi) = 1.129;
  silu 1.1; sigmoid 1/4; hardswish 3/2; hardsigmoid 1/6; elu |scale| max(1, |alpha
  input_scale|));
- data movement (reshape, transpose, slice, concat, split, pad, ...), max and average
  pooling, means, sums, maxima and minima: the op itself applied to e. Moving values moves
  their errors; |max_i a'_i - max_i a_i| <= max_i |a'_i - a_i|; an average or sum has
  nonnegative coefficients; padding adds values that do not change (error 0);
- batch norm with constant statistics: |gamma| / sqrt(var + eps) times e, per channel;
- softmax over an axis: max(e over the axis) / 2, since its Jacobian diag(p) - p p^T has
  rows whose absolute values sum to 2 p_i (1 - p_i) <= 1/2; log_softmax: 2 max(e over the
  axis) (rows of I - 1 p^T sum to 2 (1 - p_i) <= 2);
- a rounded tensor: e(t) + r_t;
- anything else (layer norm, exp, division by an activation, ...) when an input has moved:
  no bound, infinity, and the reason names the op.

The bound of the graph is the largest e over its outputs. Worst cases add up layer after
layer, so it is loose on deep graphs, but it is a bound: tests check that the measured
error never exceeds it. `lossy_contract` turns it into a pass's contract: the bound itself
when it says something (no larger than the largest output magnitude seen on calibration),
else the error measured on the calibration batches, labelled as measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.op_table import get_op
from smelt.ir.types import TensorType, is_float
from smelt.rewrite.contract import Contract, bounded, run64

from .calibration import calibrate
from .observers import make_observer
from .quant_plan import weight_operand

INF = float("inf")
Error = Any  # a float (the same bound everywhere: 0, a rounding, inf), an array, or a tuple
Magnitude = Callable[[Node], "float | None"]

LIPSCHITZ = {"relu": 1.0, "relu6": 1.0, "clamp": 1.0, "neg": 1.0, "abs": 1.0, "tanh": 1.0,
             "sin": 1.0, "cos": 1.0, "gelu": 1.13, "erf": 1.129, "silu": 1.1,
             "sigmoid": 0.25, "hardswish": 1.5, "hardsigmoid": 1 / 6}
MOVES = {"reshape", "flatten", "transpose", "squeeze", "unsqueeze", "expand", "slice",
         "concat", "split", "project", "pad", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
         "adaptive_max_pool2d", "max_pool3d", "avg_pool3d", "adaptive_avg_pool3d",
         "reduce_mean", "reduce_max", "reduce_min", "reduce_sum"}
LAYERS = ("conv2d", "conv3d", "conv_transpose", "linear", "matmul")


@dataclass(frozen=True)
class WeightChange:
    """A contraction's constant weight W becomes W + dw, its bias b becomes b + db."""

    dw: np.ndarray
    db: np.ndarray | None = None


@dataclass(frozen=True)
class Bound:
    """The largest change of any output element (`value`), per output (`outputs`), and why
    it is infinite (`why`, empty when finite)."""

    value: float
    outputs: tuple[float, ...]
    why: str = ""

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.value))


def weight_index(n: Node) -> int | None:
    """The operand of a contraction that is its constant float weight, or None."""
    return weight_operand(n, ("conv2d", "conv3d", "conv_transpose", "linear"))


def activation_operand(n: Node) -> Node:
    """The activation a contraction with a constant weight reads."""
    return n.inputs[1 - weight_index(n)] if n.op == "matmul" else n.inputs[0]  # type: ignore


# -- the propagation ----------------------------------------------------------------------------
class _Run:
    def __init__(self, magnitude: Magnitude) -> None:
        self.magnitude = magnitude
        self.why = ""

    def fail(self, why: str) -> float:
        self.why = self.why or why
        return INF

    def mag(self, x: Node) -> np.ndarray | float | None:
        if x.op == "constant":
            return np.abs(np.asarray(x.value, np.float64))
        return self.magnitude(x)


def propagate(graph: Graph, changes: Mapping[Node, WeightChange], magnitude: Magnitude,
              rounding: Mapping[Node, float] | None = None) -> Bound:
    """The bound of the module docstring: `changes` per changed layer of `graph`,
    `magnitude(x)` the largest |x| seen on calibration (None: not observed), `rounding`
    the extra error a rounded tensor gets."""
    run = _Run(magnitude)
    rounding = rounding or {}
    if not _concrete(graph):  # the error arrays need the sizes
        return Bound(INF, tuple(INF for _ in graph.outputs),
                     "the graph has symbolic dimensions; specialize it for an a-priori bound")
    e: dict[Node, Error] = {}
    for n in graph.nodes():
        if n.op in ("input", "constant"):
            v: Error = 0.0
        else:
            ins = [e[x] for x in n.inputs]
            if n in changes:
                v = _changed(run, n, ins, changes[n])
            elif all(_is_zero(i) for i in ins):
                v = 0.0
            elif any(_is_inf(i) for i in ins):
                v = INF
            else:
                v = _rule(run, n, ins)
        if n in rounding:
            v = _plus(v, rounding[n])
        e[n] = v
    outs = tuple(_largest(e[o]) for o in graph.outputs)
    value = max(outs, default=0.0)
    return Bound(value, outs, run.why if not np.isfinite(value) else "")


def _concrete(graph: Graph) -> bool:
    return all(n.type.is_static for n in graph.nodes() if isinstance(n.type, TensorType))


def _is_zero(v: Error) -> bool:
    if isinstance(v, tuple):
        return all(_is_zero(p) for p in v)
    return isinstance(v, float) and v == 0.0


def _is_inf(v: Error) -> bool:
    if isinstance(v, tuple):
        return any(_is_inf(p) for p in v)
    return isinstance(v, float) and v == INF


def _largest(v: Error) -> float:
    if isinstance(v, tuple):
        return max((_largest(p) for p in v), default=0.0)
    return float(np.max(v)) if np.size(v) else 0.0


def _plus(v: Error, r: float) -> Error:
    return tuple(_plus(p, r) for p in v) if isinstance(v, tuple) else v + r


def _full(x: Node, v: Error) -> np.ndarray:
    """e as an array of x's shape."""
    if isinstance(v, np.ndarray) and v.shape == x.shape:
        return v
    return np.broadcast_to(np.asarray(v, np.float64), x.shape)


def _apply(n: Node, args: Sequence[Any], **attrs: Any) -> Any:
    out = get_op(n.op).ref(*args, **{**dict(n.attrs), **attrs})
    if isinstance(out, tuple):
        return tuple(np.asarray(p, np.float64) for p in out)
    return np.asarray(out, np.float64)


def _layer(n: Node, widx: int, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """L(x; w): the layer's own op on x with weight w and no bias."""
    args = [w, x] if widx == 0 else [x, w]
    return _apply(n, args)


def _bias(n: Node, db: np.ndarray) -> np.ndarray:
    db = np.abs(np.asarray(db, np.float64))
    if n.op in ("conv2d", "conv3d", "conv_transpose"):
        return db.reshape((1, -1) + (1,) * (len(n.shape) - 2))
    return db


def _changed(run: _Run, n: Node, ins: list[Error], change: WeightChange) -> Error:
    widx = weight_index(n)
    if widx is None:
        raise ValueError(f"a weight change on {n.op}, which has no constant float weight")
    xi = 1 - widx if n.op == "matmul" else 0
    x = n.inputs[xi]
    if _is_inf(ins[xi]):
        return INF
    w = np.asarray(n.inputs[widx].value, np.float64)
    dw = np.asarray(change.dw, np.float64)
    out: Error = 0.0
    if not _is_zero(ins[xi]):
        out = _layer(n, widx, _full(x, ins[xi]), np.abs(w + dw))
    if np.any(dw):
        m = run.mag(x)
        if m is None:
            return run.fail(f"no calibrated range for the input of a changed {n.op}")
        out = out + _layer(n, widx, _full(x, m), np.abs(dw))
    if change.db is not None and np.any(change.db):
        out = out + _bias(n, change.db)
    return _bias_error(n, ins, out)


def _bias_error(n: Node, ins: list[Error], out: Error) -> Error:
    """`out` plus the error of a computed (not constant) bias operand, if it moved."""
    if n.op == "matmul" or len(ins) < 3 or _is_zero(ins[2]):
        return out
    return out + _bias(n, _full(n.inputs[2], ins[2]))


def _rule(run: _Run, n: Node, ins: list[Error]) -> Error:
    op = n.op
    if op in LAYERS:
        widx = weight_index(n)
        if widx is not None:
            xi = 1 - widx if op == "matmul" else 0
            w = np.abs(np.asarray(n.inputs[widx].value, np.float64))
            return _bias_error(n, ins, _layer(n, widx, _full(n.inputs[xi], ins[xi]), w))
        if op == "matmul":
            return _product(run, n, ins)
        return run.fail(f"no error bound through {op} with a non-constant weight")
    if op == "mul":
        return _product(run, n, ins)
    if op in ("add", "sub"):
        return _sum(n, ins)
    if op in ("maximum", "minimum"):
        return np.maximum(_full(n.inputs[0], ins[0]), _full(n.inputs[1], ins[1]))
    if op == "div" and n.inputs[1].op == "constant" and _is_zero(ins[1]):
        c = np.abs(np.asarray(n.inputs[1].value, np.float64))
        if np.all(c > 0):
            return _full(n.inputs[0], ins[0]) / c
    if op == "where" and _is_zero(ins[0]):
        a, b = (_full(x, v) for x, v in zip(n.inputs[1:], ins[1:], strict=True))
        return np.broadcast_to(np.maximum(a, b), n.shape)
    if op in LIPSCHITZ or op in ("leaky_relu", "elu"):
        return _lipschitz(n) * ins[0]
    if op == "cast" and is_float(n.dtype):
        return ins[0]
    if op in MOVES:
        return _moved(n, ins)
    if op == "take" and n.inputs[1].op == "constant":
        return _apply(n, [_full(n.inputs[0], ins[0]), n.inputs[1].value])
    if op == "batch_norm" and all(x.op == "constant" for x in n.inputs[1:]):
        return _batch_norm(n, ins[0])
    if op in ("softmax", "log_softmax"):
        e = _full(n.inputs[0], ins[0])
        worst = np.max(e, axis=n.attrs["axis"], keepdims=True)
        return np.broadcast_to((0.5 if op == "softmax" else 2.0) * worst, n.shape)
    return run.fail(f"no error bound through {op}")


def _sum(n: Node, ins: list[Error]) -> Error:
    a, b = ins
    if isinstance(a, float) and isinstance(b, float):
        return a + b
    return np.broadcast_to(np.asarray(a) + np.asarray(b), n.shape)


def _product(run: _Run, n: Node, ins: list[Error]) -> Error:
    (a, b), (ea, eb) = n.inputs, ins
    out: Error = 0.0
    if not _is_zero(ea):
        mb = run.mag(b)
        if mb is None:
            return run.fail(f"no calibrated range for an operand of {n.op}")
        out = _apply(n, [_full(a, ea), _full(b, mb) + _full(b, eb)])
    if not _is_zero(eb):
        ma = run.mag(a)
        if ma is None:
            return run.fail(f"no calibrated range for an operand of {n.op}")
        out = out + _apply(n, [_full(a, ma), _full(b, eb)])
    return out


def _lipschitz(n: Node) -> float:
    if n.op == "leaky_relu":
        return max(1.0, abs(n.attrs["alpha"]))
    if n.op == "elu":
        a = n.attrs
        return abs(a["scale"]) * max(1.0, abs(a["alpha"] * a["input_scale"]))
    return LIPSCHITZ[n.op]


def _moved(n: Node, ins: list[Error]) -> Error:
    if n.op == "project":
        v = ins[0]
        return v[n.attrs["index"]] if isinstance(v, tuple) else v
    args = [_full(x, v) for x, v in zip(n.inputs, ins, strict=True)]
    extra = {"value": 0.0} if n.op == "pad" and n.attrs.get("mode") == "constant" else {}
    return _apply(n, args, **extra)


def _batch_norm(n: Node, e: Error) -> np.ndarray:
    x, _, var, *affine = n.inputs
    args = [_full(x, e), np.zeros(var.shape), np.asarray(var.value, np.float64)]
    if affine:
        args.append(np.abs(np.asarray(affine[0].value, np.float64)))
    return _apply(n, args)


# -- calibration: magnitudes, measurement, and the contract a lossy pass states -----------------
def needs_magnitude(graph: Graph, changes: Mapping[Node, WeightChange]) -> list[Node]:
    """The activations whose magnitude `propagate` may read: the inputs of changed layers and
    the non-constant operands of products of two activations."""
    out: list[Node] = []
    for n in graph.nodes():
        if n in changes:
            cand = [activation_operand(n)]
        elif n.op in ("mul", "matmul") and weight_index(n) is None:
            cand = list(n.inputs[:2])
        else:
            cand = []
        out += [x for x in cand if x.op != "constant" and isinstance(x.type, TensorType)
                and is_float(x.dtype) and x not in out]
    return out


def calibrated_magnitudes(graph: Graph, batches: Sequence[tuple[np.ndarray, ...]],
                          nodes: Sequence[Node]) -> dict[Node, float]:
    """max |x| over the calibration batches, for each of `nodes`."""
    observers = {n: make_observer("minmax") for n in nodes}
    done = calibrate(graph, batches, observers, progress=False) if observers else {}
    out = {}
    for n, obs in done.items():
        r = obs.range()
        out[n] = float(max(np.max(np.abs(r.seen_lo)), np.max(np.abs(r.seen_hi))))
    return out


def weight_bound(graph: Graph, changes: Mapping[Node, WeightChange],
                 calibration: Sequence[tuple[np.ndarray, ...]] | None) -> Bound:
    """`propagate` for weight changes alone, with magnitudes from the calibration batches
    (without them, a changed layer's input has no magnitude and the bound is infinite)."""
    if not changes:
        return Bound(0.0, tuple(0.0 for _ in graph.outputs))
    mags = calibrated_magnitudes(graph, calibration, needs_magnitude(graph, changes)) \
        if calibration else {}
    return propagate(graph, changes, mags.get)


@dataclass(frozen=True)
class Measured:
    """The largest output change on some batches, and the largest |output| of `before`."""

    error: float
    magnitude: float


def measure(before: Graph, after: Graph, batches: Sequence[tuple[np.ndarray, ...]]
            ) -> Measured:
    """The largest float output change of `after` against `before` over `batches`, both run
    in float64 (`run64`, as verify-each runs them, so a verify-each check on these batches
    sees the same numbers)."""
    worst = scale = 0.0
    for batch in batches:
        ref, got = run64(before, batch), run64(after, batch)
        for a, b in zip(ref.outputs, got.outputs, strict=True):
            if np.issubdtype(a.dtype, np.floating) and a.size:
                diff = np.abs(a - np.asarray(b, np.float64))
                worst = max(worst, float(np.max(np.where(np.isnan(diff), np.inf, diff))))
                scale = max(scale, float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0)))
    return Measured(worst, scale)


def lossy_contract(bound: Bound, before: Graph, after: Graph,
                   calibration: Sequence[tuple[np.ndarray, ...]] | None,
                   measured: Measured | None = None) -> tuple[Contract, str]:
    """The contract a lossy pass states, and a note that says which kind it is:

    - the a-priori `bound`, when it is finite and no larger than the largest output
      magnitude seen on the calibration batches;
    - else, given calibration batches, the error measured on them, labelled as measured
      (`bounded(..., basis="measured")`): no promise for other inputs;
    - else bounded(inf), and the note says what to give (a finite bound without calibration
      read no calibrated magnitude, so it holds for every input and is stated as it is).

    `measured`: `measure(before, after, calibration)`, when the caller has it already."""
    if not calibration:
        if bound.finite:  # it read no calibrated magnitude: it holds for every input
            return bounded(bound.value), (f"contract: a-priori bound {bound.value:.3g}, for "
                                          "every input (it rests on no calibrated range)")
        return bounded(INF), (f"contract: bounded(inf), no bound: {bound.why}; give "
                              "calibration batches (pipeline(graph, calibration=batches)) "
                              "for one")
    if measured is None:
        measured = measure(before, after, calibration)
    if bound.finite and bound.value <= measured.magnitude:
        return bounded(bound.value), (
            f"contract: a-priori bound {bound.value:.3g}, from the weight changes and the "
            "activation ranges seen on calibration: it holds for every input whose activations "
            f"stay within those ranges (measured on calibration: {measured.error:.3g})")
    reason = (f"the a-priori bound {bound.value:.3g} exceeds the largest output magnitude "
              f"{measured.magnitude:.3g} seen on calibration, so it says nothing"
              if bound.finite else f"no a-priori bound: {bound.why or 'unbounded'}")
    return bounded(measured.error, basis="measured"), (
        f"contract: measured bound {measured.error:.3g}, the largest output change on the "
        f"{len(calibration)} calibration batches, not a promise for other inputs ({reason})")


__all__ = ["Bound", "Measured", "WeightChange", "activation_operand", "calibrated_magnitudes",
           "lossy_contract", "measure", "needs_magnitude", "propagate", "weight_bound",
           "weight_index"]
