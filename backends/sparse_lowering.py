"""Lowering of `linear24` (ir/ops/sparse.py) to Relax: x flattened to (M, K), the compressed
contraction kernel (cpu/sparse24_kernels.py) on the values and meta as they are (constants
stay compressed in the module: the kernel also takes x, so FoldConstant cannot expand them),
then the bias add (FuseOps folds it into the kernel's write-back) and the leading shape."""

from __future__ import annotations

from tvm import relax

from smelt.ir.node import Node
from smelt.ir.ops.common import prod

from .cpu import sparse24_kernels as S
from .relax_lowering import lowers

R = relax.op


@lowers("linear24")
def _linear24(bb, n: Node, xs):
    x_shape = n.inputs[0].shape
    k = x_shape[-1]
    rows = prod(x_shape[:-1])
    x = xs[0] if len(x_shape) == 2 else bb.emit(R.reshape(xs[0], (rows, k)))
    y = bb.call_te(S.linear24, x, xs[1], xs[2], primfunc_name_hint="linear24")
    if len(xs) == 4:
        y = R.add(bb.emit(y), xs[3])
    if len(n.shape) == 2:
        return y
    return R.reshape(bb.emit(y), n.shape)
