"""`fold-qdq`: quantize/dequantize pairs folded into integer kernels, bit-exact.

    quantize(act?(conv2d|linear(dq(x), dq(W), dq(b)?)))  -> requantize(qconv2d|qlinear(x, W, b))
    quantize(matmul(dq(a), dq(b)))                       -> requantize(qmatmul(a, b))
    quantize(act?(add(dq(a), dq(b))))                    -> qadd(a, b)
    quantize(mul(dq(a), dq(b)))                          -> qmul(a, b)
    quantize(reduce_mean(dq(x)))                         -> qmean(x)
    t(dq(x))                                             -> dq(t(x))   (t: reshape, flatten,
                       transpose, squeeze, unsqueeze, max_pool2d, slice, expand, pad with 0,
                       adaptive_max_pool2d, reduce_max, reduce_min)
    concat(dq(a), dq(b), ...), one scale and zero point  -> dq(concat(a, b, ...))
    quantize(f(dq(x))), f elementwise in x alone, 8 bits  -> qlookup(x, table)
                                          (the chain on all 256 values: fold_lookup.py)
    quantize(dq(x)), same parameters                     -> x

act is relu or relu6, folded into the clamp: rounding and clamping are monotone and
rhe(0) = 0, so quantize(relu(v)) clamps from max(qmin, zp) and quantize(relu6(v)) up to
min(qmax, zp + rhe(6 / s)) (ir/ops/quant.py). The integer tensors then flow from op to op.

Contract: exact, bit for bit, ties included, against the Q/DQ graph in real arithmetic:
- contractions: the float value is s_x s_w (acc + b) with acc the exact integer sum, when
  the bias scale is s_x s_w; quantize rounds (acc + b) s_x s_w / s_y, and requantize rounds
  (acc + b) m / 2^n, the same number exactly when r = s_x s_w / s_y is the dyadic m / 2^n
  (passes/qscales.py; the rule refuses other scales, and says so);
- qadd, qmul and qmean compute their rational rescale exactly (ir/ops/qarith.py);
- sinking a per-tensor dequantize through an op that only moves, selects or pads values is
  exact (dequantize is increasing, so max pooling commutes; pad's 0 is the zero point).
The Q/DQ graph of smelt's `quantize` evaluates exactly in float64 too (short mantissas), so
the rule tests check bit equality of the integer outputs.

After the pass, `legality(graph)` lists each float op left between quantized tensors, with
the reason no rule folded it; the pass report carries the same list.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from smelt.ir.errors import SmeltError
from smelt.ir.node import Node
from smelt.ir.ops.quant import CONTRACTION_DTYPES, INT_RANGES, clamp_bounds
from smelt.rewrite.contract import exact
from smelt.rewrite.dsl import op, var
from smelt.rewrite.rule import NoMatch, RuleSet, reject, rule

from .fold_lookup import fold_lookup
from .qscales import dyadic_multiplier

SINKABLE = ("reshape|flatten|transpose|squeeze|unsqueeze|max_pool2d|pad|slice|expand|"
            "adaptive_max_pool2d|reduce_max|reduce_min")
CLAMP_KEYS = ("bits", "signed", "qmin", "qmax")


# -- the parameters of a quantize / dequantize node -------------------------------------------
def per_tensor(n: Node) -> tuple[float, int] | None:
    """(scale, zero point) of a per-tensor quantize/dequantize node, else None."""
    a = n.attrs
    if a["axis"] is not None or len(a["scale"]) != 1 or len(set(a["zero_point"])) != 1:
        return None
    return a["scale"][0], a["zero_point"][0]


def clamp_of(q: Node, act: Node | None) -> dict | NoMatch:
    """The requantize clamp of quantize node `q`, with relu/relu6 `act` folded in."""
    _, qmin, qmax = clamp_bounds(q.attrs)
    s, zp = q.attrs["scale"][0], q.attrs["zero_point"][0]
    if act is not None:
        qmin = max(qmin, zp)
        if act.op == "relu6":
            qmax = min(qmax, zp + int(np.rint(np.float64(6.0) / np.float64(s))))
        if qmin > qmax:
            return reject(f"the {act.op} leaves an empty range [{qmin}, {qmax}]")
    return {"bits": q.attrs["bits"], "signed": q.attrs["signed"], "qmin": qmin, "qmax": qmax}


def _int_operand(d: Node, what: str) -> str | None:
    if d.op != "dequantize":
        return f"the {what} is not dequantized (it is {d.op})"
    if d.inputs[0].dtype not in CONTRACTION_DTYPES:
        return f"the {what} is {d.inputs[0].dtype}, not an int8-class type"
    return None


def _channel_values(d: Node, n: int) -> tuple[list[float], list[int]] | None:
    """Per-output-channel (axis 0) or per-tensor scales and zero points, expanded to n."""
    a = d.attrs
    if a["axis"] not in (None, 0):
        return None
    s, z = list(a["scale"]), list(a["zero_point"])
    return (s * n if len(s) == 1 else s), (z * n if len(z) == 1 else z)


# -- contractions ---------------------------------------------------------------------------
def _fold_contraction(layer: Node, q: Node, act: Node | None) -> Node | NoMatch:
    out_q = per_tensor(q)
    if out_q is None:
        return reject("the output quantize is per channel; integer kernels write per tensor")
    s_y, out_zp = out_q
    if layer.op == "matmul":
        return _fold_matmul(layer, q, s_y, out_zp, act)
    dx, dw = layer.inputs[0], layer.inputs[1]
    for d, what in ((dx, "input"), (dw, "weight")):
        if why := _int_operand(d, what):
            return reject(why)
    x_q = per_tensor(dx)
    if x_q is None:
        return reject("the input is quantized per channel; it must be per tensor")
    s_x, x_zp = x_q
    n_out = layer.shape[1] if layer.op == "conv2d" else layer.shape[-1]
    wv = _channel_values(dw, n_out)
    if wv is None:
        return reject("the weight is quantized along an axis other than the output channels")
    w_scales, w_zps = wv
    bias = None
    if len(layer.inputs) > 2:
        bias = _bias(layer.inputs[2], s_x, w_scales)
        if isinstance(bias, NoMatch):
            return bias
    mults = [dyadic_multiplier(s_x, sw, s_y) for sw in w_scales]
    if any(m is None for m in mults):
        return reject(f"the rescale s_x s_w / s_y = {s_x} * {w_scales[0]} / {s_y} is not a "
                      "dyadic number with a 31-bit mantissa: requantize would round it; "
                      "quantize with smelt's scales (quantize pass) to fold exactly")
    clamp = clamp_of(q, act)
    if isinstance(clamp, NoMatch):
        return clamp
    w_zp = tuple(sorted(set(w_zps))) if len(set(w_zps)) == 1 else tuple(w_zps)
    ins = [dx.inputs[0], dw.inputs[0]] + ([bias] if bias is not None else [])
    attrs = {k: layer.attrs[k] for k in ("stride", "padding", "dilation", "groups")} \
        if layer.op == "conv2d" else {}
    try:
        acc = Node.make("qconv2d" if layer.op == "conv2d" else "qlinear", ins, x_zp=x_zp,
                        w_zp=w_zp, **attrs)
        return _requantize(acc, mults, 1 if layer.op == "conv2d" else len(layer.shape) - 1,
                           s_y, out_zp, clamp)
    except SmeltError as e:
        return reject(f"no integer kernel takes it: {e}")


def _bias(db: Node, s_x: float, w_scales: list[float]) -> Node | NoMatch:
    if db.op != "dequantize" or db.inputs[0].dtype != "int32":
        return reject("the bias is not an int32 tensor dequantized (quantize it with scale "
                      "s_x s_w)")
    vals = _channel_values(db, len(w_scales))
    if vals is None or any(z != 0 for z in vals[1]):
        return reject("the bias has a zero point or is quantized along the wrong axis")
    if any(Fraction(sb) != Fraction(s_x) * Fraction(sw)
           for sb, sw in zip(vals[0], w_scales, strict=True)):
        return reject("the bias scale is not exactly s_x s_w: the bias cannot join the "
                      "int32 sum")
    return db.inputs[0]


def _requantize(acc: Node, mults: list, axis: int, s_y: float, out_zp: int,
                clamp: dict) -> Node:
    ms, shifts = zip(*mults, strict=True)
    if len(set(mults)) == 1:
        ms, shifts, axis = ms[:1], shifts[:1], None
    return Node.make("requantize", (acc,), multiplier=ms, shift=shifts, axis=axis,
                     out_zp=out_zp, out_scale=s_y, **clamp)


def _fold_matmul(layer: Node, q: Node, s_y: float, out_zp: int,
                 act: Node | None) -> Node | NoMatch:
    da, db = layer.inputs
    for d, what in ((da, "left operand"), (db, "right operand")):
        if why := _int_operand(d, what):
            return reject(why)
    pa, pb = per_tensor(da), per_tensor(db)
    if pa is None or pb is None:
        return reject("a matmul operand is quantized per channel; qmatmul takes per tensor")
    m = dyadic_multiplier(pa[0], pb[0], s_y)
    if m is None:
        return reject(f"the rescale {pa[0]} * {pb[0]} / {s_y} is not dyadic")
    clamp = clamp_of(q, act)
    if isinstance(clamp, NoMatch):
        return clamp
    try:
        acc = Node.make("qmatmul", (da.inputs[0], db.inputs[0]), a_zp=pa[1], b_zp=pb[1])
        return _requantize(acc, [m], None, s_y, out_zp, clamp)
    except SmeltError as e:
        return reject(f"no integer kernel takes it: {e}")


layer_p = op("conv2d|linear|matmul", ...).single_use().named("layer")


@rule(op.quantize(layer_p).named("q"), contract=exact, family="fold-qdq",
      instance=".qdq_instances:contraction")
def fold_contraction(layer: Node, q: Node) -> Node | NoMatch:
    """quantize(conv2d|linear|matmul(dq(x), dq(W), dq(b)?)) -> requantize(qconv2d|qlinear|
    qmatmul(x, W, b))   (exact for a dyadic rescale s_x s_w / s_y; Jacob et al. 2018, 2.2)"""
    return _fold_contraction(layer, q, None)


@rule(op.quantize(op("relu|relu6", layer_p).single_use().named("act")).named("q"),
      contract=exact, family="fold-qdq", instance=".qdq_instances:contraction_act")
def fold_contraction_act(layer: Node, act: Node, q: Node) -> Node | NoMatch:
    """quantize(relu|relu6(conv2d|linear|matmul(dq(x), dq(W), dq(b)?))) ->
    requantize(qconv2d|qlinear|qmatmul(x, W, b)){clamp from the activation}"""
    return _fold_contraction(layer, q, act)


# -- add and mean ---------------------------------------------------------------------------
add_p = op.add(op.dequantize(var("a")).named("da"),
               op.dequantize(var("b")).named("db")).single_use().named("s")


def _fold_add(da: Node, db: Node, q: Node, act: Node | None, kind: str = "qadd"
              ) -> Node | NoMatch:
    pa, pb, pq = per_tensor(da), per_tensor(db), per_tensor(q)
    if pa is None or pb is None or pq is None:
        return reject(f"{kind} needs per-tensor quantization of both operands and the result")
    clamp = clamp_of(q, act)
    if isinstance(clamp, NoMatch):
        return clamp
    try:
        return Node.make(kind, (da.inputs[0], db.inputs[0]), a_scale=pa[0], a_zp=pa[1],
                         b_scale=pb[0], b_zp=pb[1], out_scale=pq[0], out_zp=pq[1], **clamp)
    except SmeltError as e:
        return reject(str(e))


@rule(op.quantize(add_p).named("q"), contract=exact, family="fold-qdq",
      instance=".qdq_instances:add")
def fold_add(a: Node, b: Node, da: Node, db: Node, s: Node, q: Node) -> Node | NoMatch:
    """quantize(add(dq(a), dq(b))) -> qadd(a, b)   (exact rational rescale)"""
    return _fold_add(da, db, q, None)


@rule(op.quantize(op("relu|relu6", add_p).single_use().named("act")).named("q"),
      contract=exact, family="fold-qdq", instance=".qdq_instances:add_act")
def fold_add_act(a: Node, b: Node, da: Node, db: Node, s: Node, act: Node,
                 q: Node) -> Node | NoMatch:
    """quantize(relu|relu6(add(dq(a), dq(b)))) -> qadd(a, b){clamp from the activation}"""
    return _fold_add(da, db, q, act)


@rule(op.quantize(op.mul(op.dequantize(var("a")).named("da"), op.dequantize(var("b"))
                         .named("db")).single_use().named("s")).named("q"),
      contract=exact, family="fold-qdq", instance=".qdq_instances:mul")
def fold_mul(a: Node, b: Node, da: Node, db: Node, s: Node, q: Node) -> Node | NoMatch:
    """quantize(mul(dq(a), dq(b))) -> qmul(a, b)   (exact rational rescale; squeeze-
    excitation's x * gate)"""
    return _fold_add(da, db, q, None, "qmul")


@rule(op.quantize(op.reduce_mean(op.dequantize(var("x")).named("dx")).single_use()
                  .named("m")).named("q"), contract=exact, family="fold-qdq",
      instance=".qdq_instances:mean")
def fold_mean(x: Node, dx: Node, m: Node, q: Node) -> Node | NoMatch:
    """quantize(reduce_mean(dq(x))) -> qmean(x)   (exact rational rescale)"""
    px, pq = per_tensor(dx), per_tensor(q)
    if px is None or pq is None:
        return reject("qmean needs per-tensor quantization of its input and result")
    try:
        return Node.make("qmean", (x,), axes=m.attrs["axes"], keepdims=m.attrs["keepdims"],
                         x_scale=px[0], x_zp=px[1], out_scale=pq[0], out_zp=pq[1],
                         **{k: q.attrs[k] for k in CLAMP_KEYS})
    except SmeltError as e:
        return reject(str(e))


# -- moving and cancelling --------------------------------------------------------------------
@rule(op(SINKABLE, op.dequantize(var("x")).named("dx")).named("t"), contract=exact,
      family="fold-qdq", instance=".qdq_instances:sink")
def sink_dequantize(x: Node, dx: Node, t: Node) -> Node | NoMatch:
    """t(dq(x)) -> dq(t(x))   (t moves, selects or zero-pads values; per-tensor dq)"""
    p = per_tensor(dx)
    if p is None:
        return reject("the dequantize is per channel")
    attrs = dict(t.attrs)
    if t.op == "pad":
        if attrs["mode"] != "constant" or attrs["value"] != 0.0:
            return reject("only padding with 0 (the zero point) commutes with dequantize")
        attrs["value"] = float(p[1])
    try:
        moved = Node.make(t.op, (x,), **attrs)
    except SmeltError as e:
        return reject(f"{t.op} does not take {x.dtype}: {e}")
    return Node.make("dequantize", (moved,), scale=(p[0],), zero_point=(p[1],))


@rule(op.concat(...).named("c"), contract=exact, family="fold-qdq",
      instance=".qdq_instances:concat")
def sink_dequantize_concat(c: Node) -> Node | NoMatch:
    """concat(dq(a), dq(b), ...) -> dq(concat(a, b, ...))   (one per-tensor scale, zero
    point and integer type for every operand)"""
    ds = c.inputs
    if not all(d.op == "dequantize" for d in ds):
        return reject("an operand is not dequantized")
    params = {(per_tensor(d), d.inputs[0].dtype) for d in ds}
    if len(params) != 1 or None in next(iter(params)):
        return reject("the operands are not quantized per tensor with one scale, zero point "
                      "and type (quantize gives a concat's operands its parameters)")
    (s, zp), _ = next(iter(params))
    try:
        joined = Node.make("concat", tuple(d.inputs[0] for d in ds), **c.attrs)
    except SmeltError as e:
        return reject(f"concat does not take the integer operands: {e}")
    return Node.make("dequantize", (joined,), scale=(s,), zero_point=(zp,))


@rule(op.quantize(op.dequantize(var("x")).named("dx")).named("q"), contract=exact,
      family="fold-qdq", instance=".qdq_instances:cancel")
def cancel_qdq(x: Node, dx: Node, q: Node) -> Node | NoMatch:
    """quantize(dq(x)) -> x   (same scale, zero point and type; the clamp keeps x's range)"""
    if (dx.attrs["scale"], dx.attrs["zero_point"], dx.attrs["axis"]) != \
            (q.attrs["scale"], q.attrs["zero_point"], q.attrs["axis"]):
        return reject("the quantize and dequantize parameters differ")
    dtype, qmin, qmax = clamp_bounds(q.attrs)
    if dtype != x.dtype or (qmin, qmax) != INT_RANGES.get(x.dtype):
        return reject("the quantize narrows or changes the type")
    if x.type != q.type:
        return reject(f"x is typed {x.type}, the quantize {q.type}: annotate x first")
    return x


FOLD_QDQ = RuleSet([fold_contraction_act, fold_contraction, fold_add_act, fold_add,
                    fold_mul, fold_mean, sink_dequantize, sink_dequantize_concat, cancel_qdq,
                    fold_lookup], name="fold-qdq")
