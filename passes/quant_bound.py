"""The error bound of a quantized graph, computed from its scales and calibrated ranges.

For every tensor t of the float graph, e(t) bounds |t' - t| elementwise, where t' is the
same tensor in the quantized graph, for inputs whose activations stay within the extremes
seen during calibration (`Range.seen_lo/seen_hi`, which hold for the calibration batches
themselves). Forward, in graph order:

- a quantized tensor (scale s, zero point z, representable range [-z s, (255 - z) s]):
  e' = e + c + s / 2, with c how far the seen extremes lie outside the representable range
  (the clamp is 1-Lipschitz, rounding moves a value by at most s / 2);
- a layer y = W x + b with quantized weights W' = W + dW and bias b' = b + db:
  y' - y = W (x' - x) + dW x' + db, so per output channel o
  e(y) = ||W_o||_1 e(x) + ||dW_o||_1 (M_x + e(x)) + |db_o|, with M_x = max |x| seen
  (||.||_1 over the reduction: the input channels and kernel taps of a conv);
- a product of two activations over K terms: K (e_a (M_b + e_b) + M_a e_b);
- add / sub: e_a + e_b; a constant multiple: max |c| e; relu, relu6, clamp, max pooling,
  means, shape ops, concat: e (1-Lipschitz in the max norm); softmax: e / 2 (its Jacobian
  diag(p) - p p^T has max-row-sum norm max_i 2 p_i (1 - p_i) <= 1/2); gelu 1.13 e, silu
  1.1 e, sigmoid e / 4, tanh e, hardswish 1.5 e, leaky_relu e (their Lipschitz constants);
- anything else (layer norm, exp, division, ...) has no bound here: infinity, and the reason
  names the op.

The graph's bound is the largest e over its outputs. It is loose (worst cases add up layer
after layer) but it is a bound: tests check the measured error never exceeds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from smelt.ir.graph import Graph
from smelt.ir.node import Node

from .quant_plan import source, weight_operand

LIPSCHITZ_ONE = {"relu", "relu6", "clamp", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
                 "reduce_mean", "reduce_max", "reduce_min", "reshape", "flatten", "transpose",
                 "squeeze", "unsqueeze", "pad", "slice", "concat", "neg", "dropout", "identity",
                 "leaky_relu", "tanh", "expand", "broadcast_to", "contiguous", "cast"}
SCALED = {"softmax": 0.5, "gelu": 1.13, "silu": 1.1, "sigmoid": 0.25, "hardswish": 1.5}


@dataclass(frozen=True)
class LayerError:
    """Per output channel: ||W_o||_1, ||dW_o||_1 and |db_o| of a quantized layer."""

    w_l1: np.ndarray
    dw_l1: np.ndarray
    db: np.ndarray

    @staticmethod
    def of(layer: Node, widx: int, w: np.ndarray, w_new: np.ndarray,
           db: np.ndarray | None) -> LayerError:
        if layer.op in ("conv2d", "linear"):
            axes = tuple(range(1, w.ndim))
            l1 = np.abs(w).sum(axis=axes)
            dl1 = np.abs(w_new - w).sum(axis=axes)
        else:  # matmul: the reduction is the const's axis -2 (right operand) or -1 (left)
            ax = -2 if widx == 1 else -1
            l1 = np.abs(w).sum(axis=ax).reshape(-1)
            dl1 = np.abs(w_new - w).sum(axis=ax).reshape(-1)
        return LayerError(l1, dl1, np.zeros(1) if db is None else np.abs(db).reshape(-1))

    def propagate(self, e_x: float, m_x: float) -> float:
        per = self.w_l1 * e_x + self.dw_l1 * (m_x + e_x)
        return float(np.max(per) + np.max(self.db))


def _magnitude(n: Node, ranges: Mapping) -> float | None:
    r = ranges.get(source(n))
    if r is None:
        if n.op == "constant":
            return float(np.abs(n.value).max(initial=0.0))
        return None
    return float(max(np.max(np.abs(r.seen_lo)), np.max(np.abs(r.seen_hi))))


def _quantized(e: float, r, s: float, zp: int) -> float:
    lo, hi = -zp * s, (255 - zp) * s
    clip = max(0.0, lo - float(np.min(r.seen_lo)), float(np.max(r.seen_hi)) - hi) \
        if r is not None else 0.0
    return e + clip + s / 2


def error_bound(graph: Graph, params: Mapping[Node, tuple[float, int]], ranges: Mapping,
                layers: Mapping[Node, LayerError]) -> tuple[float, str]:
    """(bound, why): the bound on every output's change, and, when it is infinite, why."""
    e: dict[Node, float] = {}
    why = ""
    for n in graph.nodes():
        ins = [e[x] for x in n.inputs]
        if n.op in ("input", "constant"):
            v = 0.0
        elif n in layers:
            xi = 1 - weight_operand(n) if n.op == "matmul" else 0
            m = _magnitude(n.inputs[xi], ranges)
            if m is None:
                v = float("inf")
                why = why or "no calibrated range for the input of a quantized layer"
            else:
                v = layers[n].propagate(ins[xi], m)
        elif n.op in ("matmul", "mul") and len(ins) == 2:
            ma, mb = (_magnitude(x, ranges) for x in n.inputs)
            k = n.inputs[0].shape[-1] if n.op == "matmul" else 1
            if ma is None or mb is None:
                v = 0.0 if ins[0] == ins[1] == 0.0 else float("inf")
                if v:
                    why = why or f"no calibrated range for an operand of {n.op}"
            else:
                v = k * (ins[0] * (mb + ins[1]) + ma * ins[1])
        elif n.op in ("add", "sub"):
            v = sum(ins)
        elif n.op in LIPSCHITZ_ONE:
            v = max(ins, default=0.0)
        elif n.op in SCALED:
            v = SCALED[n.op] * max(ins, default=0.0)
        elif not any(ins):
            v = 0.0  # nothing upstream changed
        else:
            v = float("inf")
            why = why or f"no error bound through {n.op}"
        if n in params:
            v = _quantized(v, ranges.get(n), *params[n])
        e[n] = v
    return max(e[o] for o in graph.outputs), why
