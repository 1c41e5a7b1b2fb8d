"""`quantize(scheme=...)`: post-training quantization as quantize/dequantize pairs (a Q/DQ
graph, the ONNX QDQ form), from calibration statistics.

Schemes:
- `w8a8`: int8 weights per output channel (symmetric, [-127, 127]), uint8 activations per
  tensor (asymmetric, zero point from the calibrated range), int32 biases with scale
  s_x s_w; `fold-qdq` then turns the graph into integer kernels;
- `w8a8-tensor`: the same with one weight scale per tensor;
- `w8`: int8 weights per output channel only; activations stay float (needs no data);
- `w4a16`: 4-bit weights (symmetric, [-7, 7]); a linear layer's in groups of `group` input
  features (default 128; the whole row when the features are fewer or not a multiple) per
  output channel, stored as a (out * in / group, group) int8 constant dequantized per row
  and reshaped back; other layers per output channel; activations float.

Activation ranges come from observers (passes/observers.py: `observer='minmax'`, default,
'moving-average', 'percentile', 'mse') run over the pipeline's calibration batches
(`pipeline(graph, calibration=batches)`; a progress bar shows on long runs). Scales are then
rounded up to short mantissas and weight scales matched to the output scale of their layer
(passes/qscales.py), so `fold-qdq` is bit-exact.

Contract: bounded, a-priori, with the bound computed from the scales and calibrated ranges
(passes/quant_bound.py): the largest output change on inputs whose activations stay within
the calibration data's extremes. Where that bound is infinite (an op with no rule, such as
layer norm) or larger than the largest output magnitude seen on calibration (it says
nothing), the contract is the error measured on the calibration batches instead, labelled
`measured` (passes/error_bound.py, `lossy_contract`). The report says which, and why.
"""

from __future__ import annotations

import numpy as np

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.rewrite.contract import bounded
from smelt.rewrite.driver import rewrite
from smelt.rewrite.errors import PipelineParseError
from smelt.rewrite.pass_api import Pass, PassContext, PassResult
from smelt.rewrite.registry import register_pass

from . import qscales
from .calibration import calibrate
from .error_bound import Bound, WeightChange, lossy_contract
from .observers import OBSERVERS, make_observer
from .quant_bound import error_bound, weight_change
from .quant_forms import QUANT_FORMS
from .quant_plan import QUANTIZABLE, output_source, plan, source, weight_operand

SCHEMES = ("w8a8", "w8a8-tensor", "w8", "w4a16")
ACT = {"bits": 8, "signed": False, "qmin": 0, "qmax": 255}
W4_QMAX = 7


class QuantizationSetupError(PipelineParseError):
    """quantize cannot run as asked (no calibration data for an activation scheme, ...)."""


def describe(graph: Graph, n: Node) -> str:
    name = graph.names.get(n) or (n.attrs["name"] if n.op == "input" else None)
    where = graph.sources.get(n)
    return f"{n.op}" + (f" {name}" if name else "") + (f" ({where})" if where else "")


# -- parameters ------------------------------------------------------------------------------
def activation_params(lo: float, hi: float, product_of: tuple[float, float] | None = None
                      ) -> tuple[float, int]:
    """(scale, zero point) of a uint8 tensor covering [lo, hi] (widened to hold 0); for the
    product of two activations of scales `product_of`, a scale matched to theirs."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    s = qscales.activation_scale((hi - lo) / 255.0) if product_of is None else \
        qscales.product_scale((hi - lo) / 255.0, *product_of)
    zp = int(np.clip(np.rint(-lo / s), 0, 255))
    return s, zp


def quantize_values(v: np.ndarray, scale: np.ndarray, lo: int, hi: int, dtype) -> np.ndarray:
    """clamp(rhe(v / scale), lo, hi) in float64 (the quantize op's rule, zero point 0)."""
    return np.clip(np.rint(np.asarray(v, np.float64) / scale), lo, hi).astype(dtype)


def group_size(k: int, group: int) -> int:
    """The w4a16 group of a layer with k input features: `group`, or all k when they are
    fewer or not a multiple of it."""
    g = min(group, k)
    return g if k % g == 0 else k


def group_quantize(w: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """w4a16's round to nearest of a linear weight (N, K): int8 rows (N K / g, g) of values in
    [-7, 7] and one 10-bit-mantissa scale per row (g = group_size(K, group))."""
    rows = np.asarray(w, np.float64).reshape(-1, group_size(w.shape[1], group))
    s = qscales.weight_scale(np.abs(rows).max(axis=1) / W4_QMAX, None)
    return quantize_values(rows, s[:, None], -W4_QMAX, W4_QMAX, np.int8), s


def dq(value: np.ndarray, scale, axis: int | None) -> Node:
    scale = tuple(float(s) for s in np.ravel(scale))
    return Node.make("dequantize", (Node.constant(value),), scale=scale,
                     zero_point=(0,), axis=axis if len(scale) > 1 else None)


def qdq(x: Node, scale: float, zp: int) -> Node:
    q = Node.make("quantize", (x,), scale=(scale,), zero_point=(zp,), **ACT)
    return Node.make("dequantize", (q,), scale=(scale,), zero_point=(zp,))


# -- weights -----------------------------------------------------------------------------------
def quantized_layer(layer: Node, ins: list[Node], scheme: str, s_x: float | None,
                    s_y: float | None, group: int) -> tuple[Node, WeightChange]:
    """The layer over dequantized int weights (and bias), and the change it makes."""
    widx = weight_operand(layer)
    w = np.asarray(layer.inputs[widx].value, np.float64)
    qmax = W4_QMAX if scheme == "w4a16" else 127
    if scheme == "w4a16" and layer.op == "linear":
        q, s = group_quantize(w, group)
        new_w = Node.make("reshape", (dq(q, s, 0),), shape=w.shape)
        err = weight_change(w, (q * s[:, None]).reshape(w.shape))
        return _rebuilt(layer, ins, widx, new_w, None), err
    per_channel = scheme in ("w8a8", "w8", "w4a16") and layer.op in ("conv2d", "linear")
    ideal = (np.abs(w).reshape(w.shape[0], -1).max(axis=1) if per_channel
             else np.array([np.abs(w).max()])) / qmax
    s = qscales.weight_scale(ideal, s_y if s_x is not None else None)
    s_b = s.reshape((-1,) + (1,) * (w.ndim - 1)) if per_channel else s[0]
    q = quantize_values(w, s_b, -qmax, qmax, np.int8)
    new_b, db = None, None
    if s_x is not None and layer.op in ("conv2d", "linear") and len(layer.inputs) > 2 \
            and layer.inputs[2].op == "constant":
        bias_scale = s_x * s  # exact: at most 22 significant bits (qscales)
        b = np.asarray(layer.inputs[2].value, np.float64)
        bq = np.rint(b / bias_scale)
        if np.all(np.abs(bq) < 2**31):
            new_b = dq(bq.astype(np.int32), np.broadcast_to(bias_scale, b.shape), 0)
            db = bq * bias_scale - b
    err = weight_change(w, q * s_b, db)
    return _rebuilt(layer, ins, widx, dq(q, s, 0), new_b), err


def _rebuilt(layer: Node, ins: list[Node], widx: int, w: Node, b: Node | None) -> Node:
    ins = list(ins)
    ins[widx] = w
    if b is not None:
        ins[2] = b
    return Node.make(layer.op, ins, **layer.attrs)


def quantized_ops(ops: str | None) -> tuple[str, ...]:
    """The op kinds `ops='linear,matmul'` asks to quantize (None: all quantizable ops)."""
    if ops is None:
        return QUANTIZABLE
    names = tuple(o.strip() for o in str(ops).split(",") if o.strip())
    bad = [o for o in names if o not in QUANTIZABLE]
    if bad or not names:
        raise PipelineParseError(f"quantize: ops={ops!r} names {', '.join(bad) or 'no op'}; "
                                 f"give a comma-separated subset of {', '.join(QUANTIZABLE)}")
    return names


# -- the pass --------------------------------------------------------------------------------
class Quantize(Pass):
    """quantize(scheme='w8a8'|'w8a8-tensor'|'w8'|'w4a16', observer='minmax', group=128)."""

    name = "quantize"

    def __init__(self, scheme: str = "w8a8", *, observer: str = "minmax", group: int = 128,
                 ops: str | None = None, progress: bool | None = None,
                 **observer_options) -> None:
        if scheme not in SCHEMES:
            raise PipelineParseError(f"quantize: unknown scheme {scheme!r}; choose one of "
                                     f"{', '.join(SCHEMES)}")
        if observer not in OBSERVERS:
            raise PipelineParseError(f"quantize: unknown observer {observer!r}; choose one of "
                                     f"{', '.join(OBSERVERS)}")
        if not (isinstance(group, int) and group > 0):
            raise PipelineParseError(f"quantize: group must be a positive int, got {group!r}")
        self.ops = quantized_ops(ops)
        make_observer(observer, **observer_options)  # options checked now, not mid-pipeline
        self.scheme, self.observer, self.group, self.progress = scheme, observer, group, progress
        self.observer_options = dict(observer_options)
        self.options = {"scheme": scheme}
        if observer != "minmax":
            self.options["observer"] = observer
        if scheme == "w4a16" and group != 128:
            self.options["group"] = group
        if ops is not None:
            self.options["ops"] = ",".join(self.ops)
        self.options.update(observer_options)
        self.contract = bounded(float("inf"))
        self.last_bound: Bound | None = None  # the last run's a-priori bound

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        out, bound, notes = self.apply(graph, ctx)
        contract, note = lossy_contract(bound, graph, out, ctx.calibration)
        self.contract, self.last_bound = contract, bound
        return PassResult(out, True, {"notes": notes + [note], "contract": contract})

    def apply(self, graph: Graph, ctx: PassContext) -> tuple[Graph, Bound, list[str]]:
        """The quantized graph, its a-priori bound (passes/quant_bound.py) and the notes;
        `run` turns the bound into the contract (smoothquant and awq, on their smoothed
        graph, too)."""
        acts = self.scheme.endswith("a8") or self.scheme == "w8a8-tensor"
        forms = 0
        if acts and "conv2d" in self.ops:  # batch norms and average pools on integers too
            res = rewrite(graph, QUANT_FORMS)
            graph, forms = res.graph, res.rewrites
        p = plan(graph, acts, lambda n: describe(graph, n), self.ops)
        if forms:
            p.notes.append(f"{forms} batch norms and average pools quantized as depthwise "
                           "convolutions (quant-forms); run fold-bn first to fold the batch "
                           "norms beside a conv into it")
        ranges = {}
        observed = [n for n in p.sources if n.op != "constant"]
        for layer in p.layers:
            w = weight_operand(layer)
            x = source(layer.inputs[1 - w if layer.op == "matmul" else 0])
            if x not in observed and x.op != "constant":
                observed.append(x)
        if acts and p.sources:
            if not ctx.calibration:
                raise QuantizationSetupError(
                    f"quantize(scheme={self.scheme}) needs calibration batches for the "
                    "activation ranges: run the pipeline as pipeline(graph, calibration="
                    "batches), or choose a weight-only scheme (w8, w4a16)")
        nonfinite: set[Node] = set()
        if ctx.calibration and observed:
            observers = {n: make_observer(self.observer, **self.observer_options)
                         for n in observed}
            done = calibrate(graph, ctx.calibration, observers, progress=self.progress,
                             nonfinite=nonfinite)
            ranges = {n: o.range() for n, o in done.items()}
        for n in [s for s in p.sources if s in nonfinite]:  # an attention mask's -inf
            p.notes.append(f"{describe(graph, n)} stays float: it holds NaN or infinite "
                           "values (an attention mask's -inf), which no integer range covers")
        for g in p.groups:  # a concat's members are quantized together, or not at all
            if nonfinite.intersection(g) and not nonfinite.issuperset(g):
                p.notes.append(f"the {len(g)} tensors concatenated with it stay float too")
                nonfinite.update(g)
        p.sources = [s for s in p.sources if s not in nonfinite]
        span = {}
        for n in p.sources:
            if n.op == "constant":
                v = np.asarray(n.value, np.float64)
                span[n] = (v.min(initial=0.0), v.max(initial=0.0))
            else:
                span[n] = (ranges[n].lo, ranges[n].hi)
        for g in p.groups:
            if g[0] in span:
                lo, hi = min(span[n][0] for n in g), max(span[n][1] for n in g)
                span.update((n, (lo, hi)) for n in g)
        params = {n: activation_params(*span[n]) for n in p.sources}
        self._match_products(graph, p, params, span)
        out, errors = self._build(graph, p, params)
        bound = error_bound(graph, params, ranges, errors)
        notes = list(p.notes)
        notes.append(f"{len(p.sources)} activation tensors and {len(p.layers)} weights "
                     f"quantized ({self.scheme}); a-priori bound {bound.value:.3g}"
                     + (f" ({bound.why})" if bound.why else ""))
        return out, bound, notes

    @staticmethod
    def _match_products(graph: Graph, p, params: dict, span: dict) -> None:
        """Give the result of each product of two quantized activations (a matmul with no
        constant operand) a scale its rescale is dyadic with, so fold-qdq folds it."""
        users, srcs = graph.users(), set(p.sources)
        grouped = {n for g in p.groups for n in g}
        for n in graph.nodes():
            if n.op != "matmul" or weight_operand(n) is not None:
                continue
            a, b = (params.get(source(x)) for x in n.inputs)
            o = output_source(n, users, srcs)
            if a is not None and b is not None and o is not None and o not in grouped:
                params[o] = activation_params(*span[o], product_of=(a[0], b[0]))

    def _build(self, graph: Graph, p, params) -> tuple[Graph, dict[Node, WeightChange]]:
        users = graph.users()
        srcs = set(p.sources)
        layers = set(p.layers)
        new: dict[Node, Node] = {}
        errors: dict[Node, WeightChange] = {}
        sources = dict(graph.sources)
        for n in graph.nodes():
            if n.op in ("input", "constant"):
                m = n
            else:
                ins = [new[x] for x in n.inputs]
                if n in layers:
                    x = n.inputs[1 - weight_operand(n) if n.op == "matmul" else 0]
                    x_params = params.get(source(x))
                    s_x = x_params[0] if x_params else None
                    o = output_source(n, users, srcs)
                    s_y = params[o][0] if o is not None and o in params else None
                    if s_y is None:
                        s_x = None
                    m, errors[n] = quantized_layer(n, ins, self.scheme, s_x, s_y, self.group)
                else:
                    m = Node.rebuild(n, ins)
            if n in params and not joined(n, params):
                m = qdq(m, *params[n])
            new[n] = m
            if n in graph.sources:
                sources[m] = graph.sources[n]
        names = {new[n]: nm for n, nm in graph.names.items() if n in new}
        out = Graph(graph.inputs, [new[o] for o in graph.outputs], graph.name, names, sources)
        return out, errors


def joined(n: Node, params: dict) -> bool:
    """Is `n` a concat of tensors quantized with its own parameters? Then it needs no
    quantize of its own: fold-qdq makes it the concat of their integers."""
    return n.op == "concat" and all(params.get(source(x)) == params[n] for x in n.inputs)


def quantize(scheme: str = "w8a8", **options) -> Quantize:
    """Insert quantize/dequantize pairs (w8a8, w8a8-tensor, w8, w4a16) from calibration."""
    return Quantize(scheme, **options)


register_pass("quantize", quantize, "Insert Q/DQ pairs (w8a8, w8a8-tensor, w8, w4a16) "
              "from calibration data; bounded")
