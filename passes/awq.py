"""`awq(bits=4, group=128, grid=20)`: activation-aware weight quantization (W4A16): a
per-channel scale searched per group of linear layers, migrated from the activation into the
weights by the exact smoothing rules, then `quantize(scheme=w4a16)` with the weights packed
two per byte (passes/pack_int4.py).

Policy (Lin et al., "AWQ", MLSys 2024, section 3.2). For the linear layers that read one
activation x (q, k and v read the same norm), with X the calibration rows of x and
m_j = mean |X_j| per input channel:

    s(a) = m^a / sqrt(max(m^a) min(m^a)),   a in {0, 1/grid, ..., (grid - 1)/grid}
    err(a) = sum over the group's layers of || (X diag(1/s)) Q(W diag(s))^T - X W^T ||_F

with Q the w4a16 quantizer itself (group-wise round to nearest, `quantize.group_quantize`);
the a with the least err is kept. a = 0 gives s = 1, plain round to nearest, so the chosen
scale is never worse than RTN on the calibration rows. The migration x -> x / s,
W -> W diag(s) is exact (passes/smoothing.py absorbs 1/s into the layer norm, linear or
constant multiply that produced x); a group whose best a is 0 is left as it is.

Only groups whose scale a rule can absorb are searched, unless `explicit=True` (then the
others keep an explicit multiply). The report lists every linear layer: the chosen exponent,
the relative output error on the calibration rows with RTN and with the chosen scale, where
the scale went, or why it was not smoothed.

Contract: the migration is exact in real arithmetic and packing is exact, so the a-priori
bound of the w4a16 step on the smoothed graph (passes/quant_bound.py: the weight changes
times the activation magnitudes seen on calibration, propagated) bounds the whole pass; it
is the contract when it is finite and no larger than the largest output magnitude seen on
calibration, else the error measured on the calibration batches, labelled `measured` (a
layer norm or RMSNorm has no rule, so a transformer block gets this). The report says which.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.rewrite.contract import bounded
from smelt.rewrite.errors import PipelineParseError
from smelt.rewrite.pass_api import Pass, PassContext, PassResult
from smelt.rewrite.registry import register_pass

from .calibration import calibrate
from .error_bound import Bound, lossy_contract
from .observers import Observer
from .pack_int4 import packed
from .quantize import QuantizationSetupError, Quantize, describe, group_quantize, group_size
from .smoothquant import apply_migration, smoothable

MAX_ROWS = 1024  # calibration rows kept per activation for the search


class RowSampler(Observer):
    """Keeps up to `MAX_ROWS` rows of a tensor (its last axis the channels, the rows spread
    evenly over every batch) and the mean |x| of each channel over all rows."""

    kind: ClassVar[str] = "rows"

    def __init__(self, *, axis: int | None = -1) -> None:
        super().__init__(axis=axis)
        self.rows: list[np.ndarray] = []
        self.abs_sum: np.ndarray | float = 0.0
        self.count = 0

    def _observe(self, a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        flat = a.reshape(-1, a.shape[-1]).astype(np.float32)
        self.abs_sum = self.abs_sum + np.abs(flat).sum(axis=0, dtype=np.float64)
        self.count += flat.shape[0]
        self.rows.append(flat[:: max(1, flat.shape[0] // MAX_ROWS)][:MAX_ROWS].copy())

    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        return self.seen_lo, self.seen_hi

    def samples(self) -> np.ndarray:
        x = np.concatenate(self.rows)
        return x[:: max(1, x.shape[0] // MAX_ROWS)][:MAX_ROWS]

    def mean_abs(self) -> np.ndarray:
        return np.asarray(self.abs_sum, np.float64) / max(self.count, 1)


def rtn(w: np.ndarray, group: int) -> np.ndarray:
    """w after w4a16's group-wise round to nearest (quantized, then dequantized)."""
    q, s = group_quantize(w, group)
    return (q * s[:, None]).reshape(w.shape)


def awq_scales(m: np.ndarray, a: float) -> np.ndarray:
    """s = m^a normalized by the geometric mean of its extremes (AWQ's reference code)."""
    s = np.power(np.maximum(m, 1e-8), a)
    s = s / np.sqrt(s.max() * s.min())
    return np.clip(s, 1e-4, 1e4)


def group_error(x: np.ndarray, weights: list[np.ndarray], s: np.ndarray, group: int,
                refs: list[np.ndarray] | None = None) -> float:
    """sum || (x / s) Q(W s)^T - x W^T || / || x W^T || over the group's layers; `refs`, the
    x W^T of each layer, when the caller has them already."""
    if refs is None:
        refs = [x @ w.T.astype(np.float32) for w in weights]
    num = den = 0.0
    xs = (x / s).astype(np.float32)
    for w, ref in zip(weights, refs, strict=True):
        got = xs @ rtn(w * s[None, :], group).T.astype(np.float32)
        num += float(np.sum((got - ref).astype(np.float64) ** 2))
        den += float(np.sum(ref.astype(np.float64) ** 2))
    return float(np.sqrt(num / den)) if den > 0 else 0.0


def search(x: np.ndarray, m: np.ndarray, weights: list[np.ndarray], group: int, grid: int
           ) -> tuple[float, np.ndarray, float, float]:
    """(best exponent, its scale, RTN's error, the best error) over the grid."""
    refs = [x @ w.T.astype(np.float32) for w in weights]  # the same at every exponent
    base = group_error(x, weights, np.ones_like(m), group, refs)  # a = 0: round to nearest
    best = (0.0, np.ones_like(m), base)
    for i in range(1, grid):
        a = i / grid
        s = awq_scales(m, a)
        err = group_error(x, weights, s, group, refs)
        if err < best[2]:
            best = (a, s, err)
    return best[0], best[1], base, best[2]


class AWQ(Pass):
    """awq(bits=4, group=128, grid=20): activation-aware scales, migration, w4a16, packed."""

    name = "awq"

    def __init__(self, bits: int = 4, group: int = 128, grid: int = 20, *,
                 explicit: bool = False) -> None:
        if bits != 4:
            raise PipelineParseError(f"awq: bits={bits!r} is not supported; awq quantizes "
                                     "weights to 4 bits (bits=4), use quantize(w8) for 8")
        if isinstance(group, bool) or not isinstance(group, int) or group < 2 or group % 2:
            raise PipelineParseError(f"awq: group must be an even int >= 2, got {group!r}")
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
            raise PipelineParseError(f"awq: grid must be a positive int (the number of "
                                     f"exponents tried in [0, 1)), got {grid!r}")
        if not isinstance(explicit, bool):
            raise PipelineParseError(f"awq: explicit must be True or False, got {explicit!r}")
        self.group, self.grid, self.explicit = group, grid, explicit
        self.options = {"bits": bits, "group": group}
        if grid != 20:
            self.options["grid"] = grid
        if explicit:
            self.options["explicit"] = True
        self.contract = bounded(float("inf"))
        self.last_bound: Bound | None = None  # the last run's a-priori bound

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        if not ctx.calibration:
            raise QuantizationSetupError("awq needs calibration batches for the activation-"
                                         "aware search: pipeline(graph, calibration=...)")
        grouped, notes = smoothable(graph, self.explicit)
        samplers = {x: RowSampler() for x in grouped}
        done = calibrate(graph, ctx.calibration, samplers) if samplers else {}
        scales, found = {}, {}
        for x, layers in grouped.items():
            weights = [np.asarray(n.inputs[1].value, np.float32) for n in layers]
            obs = done[x]
            a, s, before, after = search(obs.samples(), obs.mean_abs(), weights, self.group,
                                         self.grid)
            for n in layers:
                found[n] = (a, before, after)
            if a > 0:
                scales[x] = s
            else:
                notes += [f"{describe(graph, n)}: not smoothed, the best exponent was 0 "
                          f"(round to nearest; error {before:.4g})" for n in layers]
        smoothed, where = apply_migration(graph, grouped, scales)
        notes = [self._searched(graph, n, found, w) for n, w in where] + notes
        notes += self._group_notes(graph)
        q, bound, q_notes = Quantize("w4a16", group=self.group).apply(smoothed.graph, ctx)
        out, packing = packed(q)
        self.contract, note = lossy_contract(bound, graph, out, ctx.calibration)
        self.last_bound = bound
        return PassResult(out, True, {"notes": notes + q_notes + [packing, note],
                                      "contract": self.contract,
                                      "rewrites": smoothed.rewrites,
                                      "fired": smoothed.stats.fired()})

    @staticmethod
    def _searched(graph: Graph, n: Node, found: dict, where: str) -> str:
        a, before, after = found[n]
        return (f"{describe(graph, n)}: smoothed, exponent {a:.2f}, relative output error "
                f"{before:.4g} (round to nearest) -> {after:.4g}; {where}")

    def _group_notes(self, graph: Graph) -> list[str]:
        out = []
        for n in graph.nodes():
            if n.op == "linear" and n.inputs[1].op == "constant":
                k = n.inputs[1].shape[1]
                g = group_size(k, self.group)
                if g != self.group:
                    out.append(f"{describe(graph, n)}: group {self.group} does not divide its "
                               f"{k} input features; its groups are whole rows of {g}")
        return out


def awq(bits: int = 4, group: int = 128, grid: int = 20, **options) -> AWQ:
    """AWQ: activation-aware per-channel scales, migrated exactly, then W4A16 packed."""
    return AWQ(bits, group, grid, **options)


register_pass("awq", awq, "AWQ scale search, migration (exact rules), then quantize(w4a16) "
              "packed two per byte; bounded")
