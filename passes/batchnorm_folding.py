"""Batch-norm folding: an inference-mode batch norm merged into the convolution or linear
layer beside it.

Inference batch norm is a per-channel affine map over axis 1 (gamma = 1 and beta = 0 when
the batch norm has no affine parameters):

    bn(y) = (y - mean) / sqrt(var + eps) * gamma + beta = s * y + t,
    s = gamma / sqrt(var + eps),        t = beta - mean * s.

Into the layer before it. Output channel o of a convolution reads only the weights W[o],
whatever its groups (depthwise included), so scaling W[o] scales output channel o:

    bn(conv2d(x, W, b)) = conv2d(x, W', b'),   W'[o] = s[o] W[o],   b' = s b + t

(b = 0 when the conv has none). The same holds for linear, W'[o, :] = s[o] W[o, :], when
batch norm's axis 1 is linear's feature axis: the linear output is (N, features).

Into the layer after it. conv2d(bn(x), W, b) = conv2d(s x + t, W, b). With G groups of
Cg = C / G input channels, output channel o (in group g(o)) reads input channel
g(o) Cg + k through W[o, k], so

    W'[o, k] = W[o, k] s[g(o) Cg + k],   b'[o] = b[o] + sum_{k,i,j} W[o, k, i, j] t[g(o) Cg + k].

The bias term assumes every tap reads a normalized value. A padded conv reads zeros at the
border, which the original normalizes to bn(0) = t but the folded conv leaves at 0: folding
a preceding batch norm into a padded conv is not exact, so it is done only when the padding
is zero (or t = 0). Linear: linear(bn(x), W, b) = linear(x, W diag(s), b + W t), x (N, F).

Preconditions: the weights and every statistic are constants of a float dtype (float16/32/64);
var + eps > 0; the layer (first case) or the batch norm (second case) has no other use, so
the folded value is not also needed unfolded; the folded weights are finite in their dtype.

Contract: exact. The new weights are computed in float64 from the stored constants and
rounded once to the weight dtype; the exact tolerance allows that rounding.

Source: Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference" (CVPR 2018), section 3.2; onnxscript's batch-norm fusion
rewriter; the following-layer case as in TVM's FoldScaleAxis (backward folding).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from hypothesis import strategies as st

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.types import numpy_dtype
from smelt.rewrite.contract import exact
from smelt.rewrite.dsl import any_of, const, op, var
from smelt.rewrite.pass_api import PassContext, PassResult, RewritePass
from smelt.rewrite.pattern import Pattern
from smelt.rewrite.registry import register_pass, register_rules
from smelt.rewrite.rule import NoMatch, RuleSet, reject, rule

FLOATS = ("float16", "float32", "float64")
x, w = var("x"), const("w")


def batch_norm_of(inner: Pattern) -> Pattern:
    """batch_norm(inner, mean, var[, gamma[, beta]]) with constant statistics, as `bn`."""
    m, v = const(), const()
    return any_of(op.batch_norm(inner, m, v), op.batch_norm(inner, m, v, const()),
                  op.batch_norm(inner, m, v, const(), const())).named("bn")


def layer_of(name: str, inner: Pattern) -> Pattern:
    """conv2d / linear (`name`) of `inner` with a constant weight `w` and optional constant
    bias, as `layer`."""
    return any_of(op(name, inner, w), op(name, inner, w, const())).named("layer")


# -- the algebra, in float64 --------------------------------------------------------------------
def bn_affine(bn: Node) -> tuple[np.ndarray, np.ndarray]:
    """(s, t) with bn(y) = s * y + t per channel, in float64."""
    mean, var_ = (np.asarray(n.value, np.float64) for n in bn.inputs[1:3])
    gamma = np.asarray(bn.inputs[3].value, np.float64) if len(bn.inputs) > 3 else 1.0
    beta = np.asarray(bn.inputs[4].value, np.float64) if len(bn.inputs) > 4 else 0.0
    s = gamma / np.sqrt(var_ + bn.attrs["eps"])
    return s, beta - mean * s


def input_shift_bias(layer: Node, t: np.ndarray) -> np.ndarray:
    """What a constant shift t of `layer`'s input channels adds to its output (float64):
    layer(x + t) = layer(x) + this, for linear and unpadded conv2d (any groups)."""
    wv = np.asarray(layer.inputs[1].value, np.float64)
    if layer.op == "linear":
        return wv @ t
    g = layer.attrs["groups"]
    o, cg = wv.shape[:2]
    return np.einsum("gocij,gc->go", wv.reshape(g, o // g, cg, *wv.shape[2:]),
                     t.reshape(g, cg)).reshape(o)


def scale_inputs(layer: Node, s: np.ndarray, wv: np.ndarray | None = None) -> np.ndarray:
    """`layer`'s weight (or `wv`, an array of its shape) in float64 with input channel c
    scaled by s[c] (any groups)."""
    if wv is None:
        wv = np.asarray(layer.inputs[1].value, np.float64)
    if layer.op == "linear":
        return wv * s[None, :]
    g = layer.attrs["groups"]
    o, cg = wv.shape[:2]
    view = wv.reshape(g, o // g, cg, *wv.shape[2:]) * s.reshape(g, 1, cg, 1, 1)
    return view.reshape(wv.shape)


def bias64(layer: Node) -> np.ndarray:
    if len(layer.inputs) > 2:
        return np.asarray(layer.inputs[2].value, np.float64)
    return np.zeros(layer.inputs[1].shape[0])


def stored(value: np.ndarray, dtype: str) -> Node | None:
    """A float64 result rounded once to `dtype`, as a constant (None: not finite there)."""
    array = value.astype(numpy_dtype(dtype))
    return Node.constant(array, dtype) if np.all(np.isfinite(array)) else None


def _unfoldable(layer: Node, bn: Node) -> str | None:
    if layer.dtype not in FLOATS:
        return f"dtype {layer.dtype} is not a float type"
    var_ = np.asarray(bn.inputs[2].value, np.float64) + bn.attrs["eps"]
    if not np.all(var_ > 0):
        return "var + eps is not positive: the batch norm divides by zero or NaN"
    if not all(np.all(np.isfinite(n.value)) for n in bn.inputs[1:] + layer.inputs[1:]):
        return "a weight or statistic is not finite"
    return None


_MEMO: OrderedDict[tuple, Node | NoMatch] = OrderedDict()
_MEMO_SIZE = 256


def memoized(key: tuple, build: Callable[[], Node | NoMatch]) -> Node | NoMatch:
    """One folded node per (rule, matched nodes): folding the same match twice gives the same
    node (new weight constants are identified by object, so they are built only once)."""
    hit = _MEMO.get(key)
    if hit is None:
        hit = _MEMO[key] = build()
        if len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    else:
        _MEMO.move_to_end(key)
    return hit


_DERIVED: weakref.WeakKeyDictionary[Node, weakref.ref] = weakref.WeakKeyDictionary()


def derive(new: Node, source: Node | None) -> None:
    """Remember that constant `new` was computed from constant `source` (for its name)."""
    if source is not None:
        _DERIVED[new] = weakref.ref(source)


def name_derived(graph: Graph) -> Graph:
    """Unnamed constants computed from named ones take their names (side table only), so
    reports keep saying `stem.0.weight` after folding."""
    names = {}
    for n in graph.constants():
        ref = _DERIVED.get(n) if n not in graph.names else None
        source = ref() if ref is not None else None
        if source is not None and source in graph.names:
            names[n] = graph.names[source]
    return graph.replace(names=names) if names else graph


def _rebuilt(layer: Node, inner: Node, w64: np.ndarray, b64: np.ndarray,
             bias_source: Node | None) -> Node | NoMatch:
    nw, nb = stored(w64, layer.dtype), stored(b64, layer.dtype)
    if nw is None or nb is None:
        return reject(f"the folded weights overflow {layer.dtype}")
    derive(nw, layer.inputs[1])
    derive(nb, layer.inputs[2] if len(layer.inputs) > 2 else bias_source)
    return Node.make(layer.op, (inner, nw, nb), **layer.attrs)


# -- into the layer before ----------------------------------------------------------------------
def _fold_into_previous(x: Node, layer: Node, bn: Node) -> Node | NoMatch:
    why = _unfoldable(layer, bn)
    if why:
        return reject(why)
    if layer.op == "linear" and len(layer.shape) != 2:
        return reject(f"batch norm's axis 1 is not linear's feature axis (output "
                      f"{list(layer.shape)})")

    def build() -> Node | NoMatch:
        s, t = bn_affine(bn)
        wv = np.asarray(layer.inputs[1].value, np.float64)
        w64 = wv * s.reshape((-1,) + (1,) * (wv.ndim - 1))
        beta = bn.inputs[4] if len(bn.inputs) > 4 else None
        return _rebuilt(layer, x, w64, bias64(layer) * s + t, beta)

    return memoized(("previous", layer, bn), build)


def _bn_conv_instance(draw: st.DrawFn) -> Graph:
    xin = draw_conv_input(draw)
    layer = draw_conv(draw, xin)
    return Graph([xin], [draw_batch_norm(draw, layer)])


def _bn_linear_instance(draw: st.DrawFn) -> Graph:
    xin = Node.input("x0", (draw(st.integers(1, 3)), draw(st.integers(1, 5))), draw_dtype(draw))
    layer = draw_linear(draw, xin)
    return Graph([xin], [draw_batch_norm(draw, layer)])


@rule(batch_norm_of(layer_of("conv2d", x).single_use()), contract=exact, family="fold-bn",
      instance=_bn_conv_instance)
def fold_bn_into_conv(x: Node, w: Node, layer: Node, bn: Node) -> Node | NoMatch:
    """batch_norm(conv2d(x, W, b)) -> conv2d(x, s W, s b + t)
    (s = gamma / sqrt(var + eps), t = beta - mean s; any groups; Jacob et al. 2018, 3.2)"""
    return _fold_into_previous(x, layer, bn)


@rule(batch_norm_of(layer_of("linear", x).single_use()), contract=exact, family="fold-bn",
      instance=_bn_linear_instance)
def fold_bn_into_linear(x: Node, w: Node, layer: Node, bn: Node) -> Node | NoMatch:
    """batch_norm(linear(x, W, b)) -> linear(x, s W, s b + t)   (output (N, features);
    s = gamma / sqrt(var + eps), t = beta - mean s; Jacob et al. 2018, 3.2)"""
    return _fold_into_previous(x, layer, bn)


# -- into the layer after -----------------------------------------------------------------------
def _fold_into_next(x: Node, layer: Node, bn: Node) -> Node | NoMatch:
    why = _unfoldable(layer, bn)
    if why:
        return reject(why)
    if layer.op == "linear" and len(bn.shape) != 2:
        return reject(f"batch norm's axis 1 is not linear's input feature axis (input "
                      f"{list(bn.shape)})")

    def build() -> Node | NoMatch:
        s, t = bn_affine(bn)
        if layer.op == "conv2d" and any(layer.attrs["padding"]) and np.any(t != 0):
            return reject("the conv pads its input: padded zeros would not be normalized "
                          "(bn(0) = beta - mean s != 0)")
        return _rebuilt(layer, x, scale_inputs(layer, s),
                        bias64(layer) + input_shift_bias(layer, t), None)

    return memoized(("next", layer, bn), build)


def _conv_bn_instance(draw: st.DrawFn) -> Graph:
    xin = draw_conv_input(draw)
    centered = draw(st.integers(0, 3)) == 0  # t = 0: padding allowed
    bn = draw_batch_norm(draw, xin, centered=centered)
    return Graph([xin], [draw_conv(draw, bn, padded=centered)])


def _linear_bn_instance(draw: st.DrawFn) -> Graph:
    xin = Node.input("x0", (draw(st.integers(1, 3)), draw(st.integers(1, 5))), draw_dtype(draw))
    return Graph([xin], [draw_linear(draw, draw_batch_norm(draw, xin))])


@rule(layer_of("conv2d", batch_norm_of(x).single_use()), contract=exact, family="fold-bn",
      instance=_conv_bn_instance)
def fold_bn_into_next_conv(x: Node, w: Node, layer: Node, bn: Node) -> Node | NoMatch:
    """conv2d(batch_norm(x), W, b) -> conv2d(x, W s_in, b + W * t)
    (zero padding only: padded zeros are not normalized; any groups; backward folding)"""
    return _fold_into_next(x, layer, bn)


@rule(layer_of("linear", batch_norm_of(x).single_use()), contract=exact, family="fold-bn",
      instance=_linear_bn_instance)
def fold_bn_into_next_linear(x: Node, w: Node, layer: Node, bn: Node) -> Node | NoMatch:
    """linear(batch_norm(x), W, b) -> linear(x, W diag(s), b + W t)   (x (N, features))"""
    return _fold_into_next(x, layer, bn)


# -- random instances (for the rule verifier) ----------------------------------------------------
def draw_dtype(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(("float32", "float32", "float32", "float64", "float16")))


def _rng(draw: st.DrawFn) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def _weights(draw: st.DrawFn, shape: tuple[int, ...], dtype: str) -> Node:
    rng = _rng(draw)
    scale = draw(st.sampled_from((0.1, 0.5, 1.0)))
    value = rng.standard_normal(shape) * scale
    if draw(st.booleans()):  # output channels of very different ranges
        spread = np.exp(rng.uniform(-3, 3, shape[0]))
        value = value * spread.reshape((-1,) + (1,) * (len(shape) - 1))
    return Node.constant(value.astype(numpy_dtype(dtype)), dtype)


def draw_conv_input(draw: st.DrawFn) -> Node:
    c = draw(st.sampled_from((1, 2, 3, 4, 6)))
    shape = (draw(st.integers(1, 2)), c, draw(st.integers(3, 6)), draw(st.integers(3, 6)))
    return Node.input("x0", shape, draw_dtype(draw))


def draw_conv(draw: st.DrawFn, inner: Node, padded: bool = True,
              groups: int | None = None) -> Node:
    """conv2d(inner): plain, grouped or depthwise (or `groups` given), any kernel, stride and
    dilation, padding when `padded`, with or without bias."""
    c = inner.shape[1]
    if groups is None:
        groups = draw(st.sampled_from(sorted({g for g in (1, 2, 3, c) if c % g == 0})))
    out = groups * draw(st.integers(1, 3))
    k = draw(st.integers(1, 3))
    attrs = {"stride": (draw(st.integers(1, 2)),) * 2, "dilation": (draw(st.integers(1, 2)),) * 2,
             "padding": (draw(st.integers(0, 1)) if padded else 0,) * 2, "groups": groups}
    span = (k - 1) * attrs["dilation"][0] + 1
    if span > min(inner.shape[2:]) + 2 * attrs["padding"][0]:
        k, span = 1, 1
    operands = [inner, _weights(draw, (out, c // groups, k, k), inner.dtype)]
    if draw(st.booleans()):
        operands.append(_weights(draw, (out,), inner.dtype))
    return Node.make("conv2d", operands, **attrs)


def draw_linear(draw: st.DrawFn, inner: Node) -> Node:
    out = draw(st.integers(1, 5))
    operands = [inner, _weights(draw, (out, inner.shape[-1]), inner.dtype)]
    if draw(st.booleans()):
        operands.append(_weights(draw, (out,), inner.dtype))
    return Node.make("linear", operands)


def draw_batch_norm(draw: st.DrawFn, inner: Node, centered: bool = False) -> Node:
    """batch_norm(inner) with random statistics (variances from 1e-3 to 10), with 0, 1 or 2
    affine parameters; `centered`: mean = beta = 0, so that bn(0) = 0."""
    c, dtype, rng = inner.shape[1], inner.dtype, _rng(draw)
    nd = numpy_dtype(dtype)
    mean = np.zeros(c) if centered else rng.standard_normal(c)
    var_ = np.exp(rng.uniform(np.log(1e-3), np.log(10.0), c))
    stats = [Node.constant(mean.astype(nd), dtype), Node.constant(var_.astype(nd), dtype)]
    arity = draw(st.integers(0, 2))
    if arity >= 1:
        stats.append(Node.constant(rng.uniform(-2, 2, c).astype(nd), dtype))
    if arity == 2:
        beta = np.zeros(c) if centered else rng.standard_normal(c)
        stats.append(Node.constant(beta.astype(nd), dtype))
    eps = draw(st.sampled_from((1e-5, 1e-3, 0.1)))
    return Node.make("batch_norm", [inner, *stats], eps=eps)


FOLD_BN = RuleSet([fold_bn_into_conv, fold_bn_into_linear, fold_bn_into_next_conv,
                   fold_bn_into_next_linear], name="fold-bn")
register_rules(FOLD_BN)


class FoldBatchNorm(RewritePass):
    """The fold-bn rules run to a fixpoint; folded weights keep their layers' names, and the
    report says why each batch norm left was not folded."""

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        res = super().run(graph, ctx)
        out = name_derived(res.graph)
        report = dict(res.report)
        report["notes"] = tuple(report.get("notes", ())) + tuple(kept_notes(out, self.rules))
        return PassResult(out, res.changed, report)


def kept_notes(graph: Graph, rules: RuleSet, limit: int = 20) -> list[str]:
    """One note per batch norm left in `graph`: the nearest fold and why it did not apply."""
    from smelt.rewrite.explain import explain

    kept = [n for n in graph.nodes() if n.op == "batch_norm"]
    users = graph.users() if kept else {}
    notes = []
    for bn in kept[:limit]:
        tried = [explain(bn, rules, graph).nearest]
        tried += [explain(u, rules, graph).nearest for u in users[bn]]
        best = max((a for a in tried if a is not None), default=None,
                   key=lambda a: (a.status == "rejected", a.matched / max(a.size, 1)))
        around = f"after {bn.inputs[0].op}" + "".join(f", before {u.op}" for u in users[bn])
        why = ("no conv2d or linear next to it" if best is None else
               f"{best.rule.name}: {best.reason}" + (f" (at {best.where})" if best.where else ""))
        notes.append(f"kept a batch_norm {around}: {why}")
    if len(kept) > limit:
        notes.append(f"... and {len(kept) - limit} more batch norms kept")
    return notes


def fold_batch_norm(budget: int | None = None) -> RewritePass:
    """Fold inference batch norms into the conv / linear layer before (or after) them (exact)."""
    return FoldBatchNorm("fold-bn", FOLD_BN, budget=budget, doc=__doc__ or "")


register_pass("fold-bn", fold_batch_norm)
