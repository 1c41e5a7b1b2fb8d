"""Smoothing migration (SmoothQuant, AWQ): a per-channel scale moved from a linear layer's
input into whatever produced it, by exact rules.

A linear layer is invariant under x W^T = (x diag(1/s)) (W diag(s))^T for any positive
per-input-channel s. The policy (passes/smoothquant.py) picks s, scales the weight's columns
by s, and puts an explicit `mul(x, 1/s)` on the layer's input; these rules then absorb that
multiply into the op that produced x:

    mul(layer_norm(x, g, b), c)   -> layer_norm(x, g c, b c)      (normalized axis last)
    mul(linear(x, W, b), c)       -> linear(x, W diag(c)_rows, b c)  (c along the outputs)
    mul(mul(x, a), c)             -> mul(x, a c)                  (a, c constants: RMSNorm's
                                                                   weight, a previous scale)

Contract: exact (equal in real arithmetic; the new constants are computed in float64 and
rounded once). A multiply that nothing absorbs stays explicit, and the pass report names it.
Sources: Xiao et al., "SmoothQuant" (ICML 2023), section 4; Lin et al., "AWQ" (MLSys 2024),
section 3.2: the scale folded into the previous operator.
"""

from __future__ import annotations

import numpy as np

from smelt.ir.node import Node
from smelt.rewrite.contract import exact
from smelt.rewrite.dsl import const, op, var
from smelt.rewrite.registry import register_rules
from smelt.rewrite.rule import NoMatch, RuleSet, reject, rule

from .weights import memoized, stored

FLOATS = ("float32", "float64")


def channel_vector(c: Node, width: int) -> np.ndarray | None:
    """c as a float64 vector along the last axis (broadcast over the others), or None."""
    v = np.asarray(c.value, np.float64)
    if v.ndim == 0:
        return np.full(width, float(v))
    if v.shape[-1] in (1, width) and all(d == 1 for d in v.shape[:-1]):
        return np.broadcast_to(v.reshape(-1), (width,)).copy()
    return None


def _check(p: Node, c: Node) -> np.ndarray | NoMatch:
    if p.dtype not in FLOATS or c.dtype != p.dtype:
        return reject(f"dtypes {p.dtype} and {c.dtype}: only float32/float64 scales migrate")
    if len(c.shape) > len(p.shape):
        return reject("the scale would broadcast the result to a higher rank")
    vec = channel_vector(c, p.shape[-1])
    if vec is None:
        return reject("the multiplier is not a per-channel vector along the last axis")
    return vec


@rule(op.mul(op.layer_norm(...).single_use().named("ln"), const("c")), contract=exact,
      family="smooth", instance=".smoothing_instances:mul_of_layer_norm")
def absorb_scale_into_layer_norm(ln: Node, c: Node) -> Node | NoMatch:
    """mul(layer_norm(x, g, b), c) -> layer_norm(x, g c, b c)   (c per channel of the
    normalized last axis; SmoothQuant section 4)"""
    return memoized(("ln", ln, c), lambda: _absorb_scale_into_layer_norm(ln, c))


def _absorb_scale_into_layer_norm(ln: Node, c: Node) -> Node | NoMatch:
    if ln.attrs["axis"] not in (-1, len(ln.shape) - 1):
        return reject("the layer norm normalizes an axis other than the last")
    if any(x.op != "constant" for x in ln.inputs[1:]):
        return reject("the layer norm's weight or bias is not a constant")
    vec = _check(ln, c)
    if isinstance(vec, NoMatch):
        return vec
    d = ln.shape[-1]
    g = np.asarray(ln.inputs[1].value, np.float64) if len(ln.inputs) > 1 else np.ones(d)
    new = [ln.inputs[0], stored(np.broadcast_to(g, (d,)) * vec, ln.dtype)]
    if len(ln.inputs) > 2:
        new.append(stored(np.asarray(ln.inputs[2].value, np.float64) * vec, ln.dtype))
    if any(n is None for n in new):
        return reject("the scaled weight or bias overflows")
    return Node.make("layer_norm", new, **ln.attrs)


@rule(op.mul(op.linear(...).single_use().named("lin"), const("c")),
      contract=exact, family="smooth", instance=".smoothing_instances:mul_of_linear")
def absorb_scale_into_linear(lin: Node, c: Node) -> Node | NoMatch:
    """mul(linear(x, W, b), c) -> linear(x, diag(c) W, b c)   (c per output feature)"""
    return memoized(("linear", lin, c), lambda: _absorb_scale_into_linear(lin, c))


def _absorb_scale_into_linear(lin: Node, c: Node) -> Node | NoMatch:
    x, w = lin.inputs[:2]
    if w.op != "constant":
        return reject("the weight is not a constant")
    vec = _check(lin, c)
    if isinstance(vec, NoMatch):
        return vec
    new = [x, stored(np.asarray(w.value, np.float64) * vec[:, None], lin.dtype)]
    if len(lin.inputs) > 2:
        if lin.inputs[2].op != "constant":
            return reject("the bias is not a constant")
        new.append(stored(np.asarray(lin.inputs[2].value, np.float64) * vec, lin.dtype))
    if any(n is None for n in new):
        return reject("the scaled weights overflow")
    return Node.make("linear", new)


@rule(op.mul(op.mul(var("x"), const("a")).single_use().named("inner"), const("c")),
      contract=exact, family="smooth", instance=".smoothing_instances:mul_of_mul")
def absorb_scale_into_mul(x: Node, a: Node, inner: Node, c: Node) -> Node | NoMatch:
    """mul(mul(x, a), c) -> mul(x, a c)   (constants a, c; RMSNorm's weight)"""
    return memoized(("mul", inner, c), lambda: _absorb_scale_into_mul(x, a, inner, c))


def _absorb_scale_into_mul(x: Node, a: Node, inner: Node, c: Node) -> Node | NoMatch:
    vec = _check(inner, c)
    if isinstance(vec, NoMatch):
        return vec
    av = np.asarray(a.value, np.float64)
    if av.ndim > 1 and any(d != 1 for d in av.shape[:-1]):
        return reject("the inner constant is not per channel")
    prod = stored(np.broadcast_to(av.reshape(-1) if av.ndim else av, vec.shape) * vec,
                   inner.dtype)
    if prod is None:
        return reject("the product overflows")
    return Node.make("mul", (x, prod))


SMOOTH = RuleSet([absorb_scale_into_layer_norm, absorb_scale_into_linear,
                  absorb_scale_into_mul], name="smooth")
register_rules(SMOOTH)
