"""The error bound of a quantized graph, computed from its scales and calibrated ranges.

A quantized graph is the float graph with two kinds of change, both forms of the setting of
passes/error_bound.py, whose forward propagation computes the bound:

- a quantized weight: W' = dequantize(quantize(W)) = W + dW, and a quantized bias b + db
  (int32 at scale s_x s_w): a `WeightChange` of its layer, so
  e(y) = L(e(x); |W'|) + L(M_x; |dW|) + |db| per output element, with M_x = max |x| seen on
  calibration (the range of x's quantization source; transparent ops such as max pooling
  and reshapes move values without making them larger);
- a quantized activation tensor (scale s, zero point z, representable range
  [-z s, (255 - z) s]): it moves by at most `rounding` = c + s / 2 more, with c how far
  the seen extremes lie outside the representable range. If x' is within e of x and x
  within the seen extremes, then |clamp(x') - x| <= e + c (the clamp is 1-Lipschitz and
  moves x itself by at most c) and rounding moves a value by at most s / 2.

So, for every tensor t of the float graph, e(t) bounds |t' - t| elementwise, where t' is the
same tensor in the quantized graph, for inputs whose activations stay within the extremes
seen during calibration (`Range.seen_lo/seen_hi`, which hold for the calibration batches
themselves). Every other op follows error_bound.py's rules: products of two activations,
add, the Lipschitz functions, softmax, data movement and pooling; layer norm and the ops
without a rule give no bound (infinity), and the reason names the op.

Before the propagation was per element, e(t) was one number per tensor: a layer took
max_o ||W_o||_1 times the largest error of any input channel. Per element the W8A8 bound is
10x (hf_resnet) to 45,000x (mobilenet_v2) tighter on the zoo's CNNs, and never looser
(tests/test_lossy_bounds.py), but still a worst case that adds up layer after layer, 10^5
times and more above the measured error there: when it exceeds the largest output magnitude,
quantize states the error measured on calibration instead (error_bound.lossy_contract).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from smelt.ir.graph import Graph
from smelt.ir.node import Node

from .error_bound import Bound, WeightChange, propagate
from .quant_plan import source


def weight_change(w: np.ndarray, w_new: np.ndarray, db: np.ndarray | None = None
                  ) -> WeightChange:
    """The change quantizing a layer's weight (and bias) makes."""
    return WeightChange(np.asarray(w_new, np.float64) - np.asarray(w, np.float64),
                        None if db is None else np.asarray(db, np.float64))


def magnitude(ranges: Mapping) -> Callable[[Node], float | None]:
    """max |x| seen on calibration, read from the range of x's quantization source."""

    def of(n: Node) -> float | None:
        r = ranges.get(source(n))
        if r is None:
            return None
        return float(max(np.max(np.abs(r.seen_lo)), np.max(np.abs(r.seen_hi))))

    return of


def rounding(r, s: float, zp: int) -> float:
    """The extra error of a quantized tensor: how far its seen extremes lie outside the
    representable range, plus half a step."""
    lo, hi = -zp * s, (255 - zp) * s
    clip = max(0.0, lo - float(np.min(r.seen_lo)), float(np.max(r.seen_hi)) - hi) \
        if r is not None else 0.0
    return clip + s / 2


def error_bound(graph: Graph, params: Mapping[Node, tuple[float, int]], ranges: Mapping,
                layers: Mapping[Node, WeightChange]) -> Bound:
    """The bound on every output's change of `graph` quantized with activation `params`
    ((scale, zero point) per tensor) and weight changes `layers`."""
    rounded = {n: rounding(ranges.get(n), *p) for n, p in params.items()}
    return propagate(graph, layers, magnitude(ranges), rounded)
