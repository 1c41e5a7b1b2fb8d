"""Integer forms of two per-channel float ops, so that `quantize` + `fold-qdq` run them on
integers: a batch norm that no layer absorbed, and average pooling, each become a depthwise
convolution (groups = channels), which quantizes per output channel and folds into qconv2d.

    batch_norm(x)   -> conv2d(x, s, t, groups=C)              s, t: the (C, 1, 1, 1) scale and
                                                              the shift of bn (fold-bn's algebra)
    avg_pool2d(x)   -> conv2d(x, 1 / (kh kw), groups=C,       when every window divides by
                              stride, padding)                kh kw: padding counted, no
                                                              window cut short by ceil mode

Why. A batch norm left by fold-bn (densenet's norm after each concat, a pre-activation
resnet's) and average pooling (densenet's transitions) have no integer kernel: without these
forms they run in float between a dequantize and a quantize, and the convolutions before them
then stay float too (nothing quantizes their results), so the graph is not integer.

Contract: exact (the same real numbers; the new weights are rounded once to the dtype).
`quantize` applies these rules itself before planning, for the activation schemes when it
quantizes conv2d; they are registered, so they are verified like every rule.
"""

from __future__ import annotations

import numpy as np

from smelt.ir.node import Node
from smelt.ir.ops.nn import _pair
from smelt.ir.ops.pool import pool_out_size
from smelt.rewrite.contract import exact
from smelt.rewrite.dsl import op, var
from smelt.rewrite.registry import register_rules
from smelt.rewrite.rule import NoMatch, RuleSet, reject, rule

from .batchnorm_folding import batch_norm_of, bn_affine
from .weights import FLOATS, memoized, stored

x = var("x")


def _depthwise(x: Node, w64: np.ndarray, b64: np.ndarray | None, **attrs) -> Node | NoMatch:
    w = stored(w64, x.dtype)
    b = stored(b64, x.dtype) if b64 is not None else None
    if w is None or (b64 is not None and b is None):
        return reject(f"the depthwise weights overflow {x.dtype}")
    return Node.make("conv2d", (x, w) + ((b,) if b is not None else ()),
                     groups=x.shape[1], **attrs)


@rule(batch_norm_of(x), contract=exact, family="quant-forms",
      instance=".quant_forms_instances:batch_norm")
def batch_norm_as_depthwise(x: Node, bn: Node) -> Node | NoMatch:
    """batch_norm(x) -> conv2d(x, s, t, groups=C)   (x NCHW; s = gamma / sqrt(var + eps),
    t = beta - mean s, as a 1x1 depthwise convolution)"""
    if x.dtype not in FLOATS or len(x.shape) != 4:
        return reject(f"x is {x.type}: the depthwise form takes a float NCHW tensor")
    var_ = np.asarray(bn.inputs[2].value, np.float64) + bn.attrs["eps"]
    if not np.all(var_ > 0) or not all(np.all(np.isfinite(n.value)) for n in bn.inputs[1:]):
        return reject("a statistic is not finite or var + eps is not positive")

    def build() -> Node | NoMatch:
        s, t = bn_affine(bn)
        return _depthwise(x, s.reshape(-1, 1, 1, 1), t)

    return memoized(("bn-depthwise", bn), build)


@rule(op.avg_pool2d(x).named("pool"), contract=exact, family="quant-forms",
      instance=".quant_forms_instances:avg_pool")
def avg_pool_as_depthwise(x: Node, pool: Node) -> Node | NoMatch:
    """avg_pool2d(x) -> conv2d(x, 1 / (kh kw), groups=C, stride, padding)   (each window
    divides by kh kw: padding counted or none, and no window cut short by ceil mode)"""
    a = pool.attrs
    if x.dtype not in FLOATS:
        return reject(f"x is {x.dtype}, not a float type")
    kh, kw = _pair("kernel", a["kernel"])
    stride = _pair("stride", a["stride"] or a["kernel"])
    pad = _pair("padding", a["padding"])
    if any(pad) and not a["count_include_pad"]:
        return reject("windows at the border divide by fewer than kh kw taps "
                      "(count_include_pad is false)")
    if a["ceil_mode"] and any(
            pool_out_size(n, k, s, p, 1, True) != pool_out_size(n, k, s, p, 1, False)
            for n, k, s, p in zip(x.shape[2:], (kh, kw), stride, pad, strict=True)):
        return reject("ceil mode cuts the last window short: it divides by fewer taps")

    def build() -> Node | NoMatch:
        w = np.full((x.shape[1], 1, kh, kw), 1.0 / (kh * kw))
        return _depthwise(x, w, None, stride=stride, padding=pad)

    return memoized(("pool-depthwise", pool), build)


QUANT_FORMS = RuleSet([batch_norm_as_depthwise, avg_pool_as_depthwise], name="quant-forms")
register_rules(QUANT_FORMS)
