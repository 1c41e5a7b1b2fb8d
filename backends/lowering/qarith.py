"""Lowering of qadd, qmul and qmean (ir/ops/qarith.py) and qlookup (ir/ops/lookup.py) to TVM,
bit-exact with the reference.

Both compute an int64 numerator from the operands' centered values and the integer plan
of `rescale_plan`, then divide by the plan's divisor rounding to nearest, ties to even:
q = floordiv(n, d), r = floormod(n, d) in [0, d), up when 2r > d, or 2r = d and q is odd;
then add the output zero point and clamp. qmean sums over its axes in a TE reduction.
"""

from __future__ import annotations

from tvm import te, tirx

from smelt.ir.node import Node
from smelt.ir.ops.common import prod
from smelt.ir.ops.qarith import qmul_plan, rescale_plan
from smelt.ir.ops.quant import INT_RANGES, clamp_bounds

from . import te_kernels as K
from .registry import lowers

I64 = "int64"


def _c(v: int) -> tirx.PrimExpr:
    return tirx.const(int(v), I64)


def rounded_quotient(n: tirx.PrimExpr, d: int) -> tirx.PrimExpr:
    """n / d rounded to nearest, ties to even (int64, d >= 1)."""
    if d == 1:
        return n
    q = tirx.floordiv(n, _c(d))
    r2 = tirx.floormod(n, _c(d)) * _c(2)
    up = tirx.Or(r2 > _c(d), tirx.And(r2 == _c(d), (q & _c(1)) == _c(1)))
    return q + tirx.Cast(I64, up)


def clamped(v: tirx.PrimExpr, attrs: dict) -> tirx.PrimExpr:
    dtype, lo, hi = clamp_bounds(attrs)
    v = v + _c(attrs["out_zp"])
    return tirx.Cast(dtype, tirx.max(tirx.min(v, _c(hi)), _c(lo)))


def _centered(x: tirx.PrimExpr, zp: int) -> tirx.PrimExpr:
    return tirx.Cast(I64, x) - _c(zp)


@lowers("qadd")
def _qadd(bb, n: Node, xs):
    a = n.attrs
    (ca, cb), den = rescale_plan((a["a_scale"], a["b_scale"]), a["out_scale"])

    def fn(x, y):
        num = _centered(x, a["a_zp"]) * _c(ca) + _centered(y, a["b_zp"]) * _c(cb)
        return clamped(rounded_quotient(num, den), a)

    return bb.call_te(K.pointwise(fn, n.shape, "qadd"), xs[0], xs[1], primfunc_name_hint="qadd")


@lowers("qmul")
def _qmul(bb, n: Node, xs):
    a = n.attrs
    (c,), den = qmul_plan(a)

    def fn(x, y):
        num = _centered(x, a["a_zp"]) * _centered(y, a["b_zp"]) * _c(c)
        return clamped(rounded_quotient(num, den), a)

    return bb.call_te(K.pointwise(fn, n.shape, "qmul"), xs[0], xs[1], primfunc_name_hint="qmul")


@lowers("qmean")
def _qmean(bb, n: Node, xs):
    a = n.attrs
    x_shape = n.inputs[0].shape
    rank = len(x_shape)
    axes = sorted({ax % rank for ax in a["axes"]}) if a["axes"] else list(range(rank))
    count = prod(x_shape[ax] for ax in axes)
    (c,), den = rescale_plan((a["x_scale"],), a["out_scale"], count)

    def compute(x: te.Tensor) -> te.Tensor:
        red = [te.reduce_axis((0, x_shape[ax]), name=f"r{ax}") for ax in axes]

        def total(*out):
            it = iter(out)
            idx, k = [], 0
            for d in range(rank):
                if d in axes:
                    idx.append(red[k])
                    k += 1
                    if a["keepdims"]:
                        next(it)
                else:
                    idx.append(next(it))
            return te.sum(_centered(x[tuple(idx)], a["x_zp"]), axis=red)

        s = te.compute(n.shape, total, name="qmean_sum")
        return te.compute(n.shape, lambda *i: clamped(rounded_quotient(s[i] * _c(c), den), a),
                          name="qmean")

    return bb.call_te(compute, xs[0], primfunc_name_hint="qmean")


@lowers("qlookup")
def _qlookup(bb, n: Node, xs):
    """table[x - lo] as a TE gather (exact on every target: no arithmetic on the values)."""
    lo = INT_RANGES[n.inputs[0].dtype][0]

    def compute(x: te.Tensor, table: te.Tensor) -> te.Tensor:
        return te.compute(n.shape, lambda *i: table[tirx.Cast("int32", x[i]) - lo],
                          name="qlookup")

    return bb.call_te(compute, xs[0], xs[1], primfunc_name_hint="qlookup")
