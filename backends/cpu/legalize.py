"""smelt's legalization of Relax contractions for the CPU: its own kernels (cpu/kernels.py)
with the weights packed at compile time, in place of TVM's generic ones.

- `relax.matmul` with a constant 2-D right operand (a linear layer) -> `smelt_dense` on the
  weight packed into (N / nb, K, nb) panels; with an activation operand -> `smelt_matmul`.
- `relax.nn.conv2d` (NCHW/OIHW, constant weight): groups = 1 -> `smelt_pad` + `smelt_conv2d`
  on the weight blocked OIHW{ob}o; depthwise -> `smelt_dwconv`; other group counts ->
  `smelt_gconv2d`.
Anything else (a non-constant conv weight, 1-D matmul operands) keeps TVM's own legalization.
"""

from __future__ import annotations

from tvm import relax
from tvm.ir.expr import Constant

from . import kernels

VECTOR_F32 = 16  # lanes of one AVX-512 register; panels and channel blocks use it


def _default(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    return call.op.get_attr("FLegalize")(bb, call)


def _shape(expr: relax.Expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape.values)


def _out_dtype(call: relax.Call) -> str:
    return str(call.ty.dtype)


def legalize_matmul(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    a, b = call.args
    sa, sb = _shape(a), _shape(b)
    if len(sa) < 2 or len(sb) < 2:
        return _default(bb, call)
    dtype = _out_dtype(call)
    if isinstance(b, Constant) and len(sb) == 2:
        k, n = sb
        nb = kernels.pick_block(n, (2 * VECTOR_F32, VECTOR_F32, 8))
        packed = kernels.pack_dense_weight(b.value.numpy(), nb)
        wp = relax.const(packed, str(b.ty.dtype))
        return bb.call_te(kernels.dense, a, wp, dtype, primfunc_name_hint="dense")
    return bb.call_te(kernels.matmul, a, b, _shape(call), dtype, primfunc_name_hint="matmul")


def legalize_conv2d(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    x, w = call.args
    at = call.attrs
    if (not isinstance(w, Constant) or str(at.data_layout) != "NCHW"
            or str(at.kernel_layout) != "OIHW" or str(at.out_layout) != "NCHW"):
        return _default(bb, call)
    dtype = _out_dtype(call)
    groups = int(at.groups)
    stride = tuple(int(s) for s in at.strides)
    dilation = tuple(int(d) for d in at.dilation)
    pads = tuple(int(p) for p in at.padding)
    out_hw = _shape(call)[2:]
    cin = _shape(x)[1]
    weight = w.value.numpy()
    xp = bb.emit_te(kernels.pad_nchw, x, pads, primfunc_name_hint="pad") if any(pads) else x
    if groups == 1:
        ob = kernels.pick_block(weight.shape[0], (VECTOR_F32, 8, 4))
        wp = relax.const(kernels.pack_conv_weight(weight, ob), str(w.ty.dtype))
        return bb.call_te(kernels.conv2d, xp, wp, out_hw, stride, dilation, dtype,
                          primfunc_name_hint="conv2d")
    if groups == cin and weight.shape[1] == 1:
        return bb.call_te(kernels.depthwise_conv2d, xp, w, out_hw, stride, dilation, dtype,
                          primfunc_name_hint="dwconv2d")
    return bb.call_te(kernels.grouped_conv2d, xp, w, out_hw, stride, dilation, groups, dtype,
                      primfunc_name_hint="gconv2d")


LEGALIZE = {
    "relax.matmul": legalize_matmul,
    "relax.nn.conv2d": legalize_conv2d,
}

