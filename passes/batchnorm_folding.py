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

import numpy as np

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.rewrite.contract import exact
from smelt.rewrite.dsl import any_of, const, op, var
from smelt.rewrite.pass_api import PassContext, PassResult, RewritePass
from smelt.rewrite.pattern import Pattern
from smelt.rewrite.registry import register_pass, register_rules
from smelt.rewrite.rule import NoMatch, RuleSet, reject, rule

from .weights import (
    FLOATS,
    bias64,
    derive,
    input_shift_bias,
    memoized,
    name_derived,
    scale_inputs,
    stored,
)

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


def _unfoldable(layer: Node, bn: Node) -> str | None:
    if layer.dtype not in FLOATS:
        return f"dtype {layer.dtype} is not a float type"
    var_ = np.asarray(bn.inputs[2].value, np.float64) + bn.attrs["eps"]
    if not np.all(var_ > 0):
        return "var + eps is not positive: the batch norm divides by zero or NaN"
    if not all(np.all(np.isfinite(n.value)) for n in bn.inputs[1:] + layer.inputs[1:]):
        return "a weight or statistic is not finite"
    return None


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


@rule(batch_norm_of(layer_of("conv2d", x).single_use()), contract=exact, family="fold-bn",
      instance=".batchnorm_instances:bn_of_conv")
def fold_bn_into_conv(x: Node, w: Node, layer: Node, bn: Node) -> Node | NoMatch:
    """batch_norm(conv2d(x, W, b)) -> conv2d(x, s W, s b + t)
    (s = gamma / sqrt(var + eps), t = beta - mean s; any groups; Jacob et al. 2018, 3.2)"""
    return _fold_into_previous(x, layer, bn)


@rule(batch_norm_of(layer_of("linear", x).single_use()), contract=exact, family="fold-bn",
      instance=".batchnorm_instances:bn_of_linear")
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


@rule(layer_of("conv2d", batch_norm_of(x).single_use()), contract=exact, family="fold-bn",
      instance=".batchnorm_instances:conv_of_bn")
def fold_bn_into_next_conv(x: Node, w: Node, layer: Node, bn: Node) -> Node | NoMatch:
    """conv2d(batch_norm(x), W, b) -> conv2d(x, W s_in, b + W * t)
    (zero padding only: padded zeros are not normalized; any groups; backward folding)"""
    return _fold_into_next(x, layer, bn)


@rule(layer_of("linear", batch_norm_of(x).single_use()), contract=exact, family="fold-bn",
      instance=".batchnorm_instances:linear_of_bn")
def fold_bn_into_next_linear(x: Node, w: Node, layer: Node, bn: Node) -> Node | NoMatch:
    """linear(batch_norm(x), W, b) -> linear(x, W diag(s), b + W t)   (x (N, features))"""
    return _fold_into_next(x, layer, bn)


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
