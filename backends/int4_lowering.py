"""Lowering of linear_w4 (ir/ops/int4.py) to the CPU's W4A16 kernel.

The packed weight and its scales are laid out in panels of nb output columns
(cpu/int4_kernels.py): a constant in numpy at lowering time (it stays uint8: the compiled
module's constants are the packed bytes), an activation by a reshape and a transpose. Then
`smelt_dense_w4` unpacks the nibbles inside the contraction, and the bias is an elementwise
add that FuseOps folds into the kernel's write-back. A 1-D x is lowered as one row.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from smelt.ir.node import Node

from .cpu import int4_kernels
from .cpu.kernels import pack_dense_weight, pick_block
from .relax_lowering import lowers

R = relax.op
PANEL_PREFS = (32, 16, 8)


def _in_panels(bb, node: Node, expr, nb: int):
    if node.op == "constant":
        return relax.const(pack_dense_weight(np.asarray(node.value).T, nb), node.dtype)
    n, c = node.shape
    return bb.emit(R.permute_dims(bb.emit(R.reshape(expr, (n // nb, nb, c))), (0, 2, 1)))


@lowers("linear_w4")
def _linear_w4(bb, n: Node, xs):
    x_node, packed, scales = n.inputs[:3]
    x = xs[0]
    if len(x_node.shape) == 1:
        x = bb.emit(R.reshape(x, (1, x_node.shape[0])))
    nb = pick_block(packed.shape[0], PANEL_PREFS)
    wp = _in_panels(bb, packed, xs[1], nb)
    sp = _in_panels(bb, scales, xs[2], nb)
    y = bb.call_te(int4_kernels.dense_w4, x, wp, sp, n.attrs["group"], n.dtype,
                   primfunc_name_hint="dense_w4")
    if len(xs) == 4:
        y = R.add(bb.emit(y), xs[3])
    return R.reshape(bb.emit(y), n.shape) if len(x_node.shape) == 1 else y
