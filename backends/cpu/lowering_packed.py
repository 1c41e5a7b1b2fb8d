"""The CPU's entries for the ops whose weights stay packed: `linear_w4` on the W4A16 kernel
(int4_kernels.py) and `linear24` on the 2:4 kernel (sparse24_kernels.py).

linear_w4: the packed weight and its scales are laid out in panels of nb output columns
(int4_kernels.py): a constant in numpy at lowering time (it stays uint8: the compiled
module's constants are the packed bytes), an activation by a reshape and a transpose. Then
`smelt_dense_w4` unpacks the nibbles inside the contraction, over x's leading axes as they
are. linear24: the compressed contraction on the values and meta as they are (constants
stay compressed in the module: the kernel also takes x, so FoldConstant cannot expand
them), x flattened to (M, K) and back (lowering/packed.py). For both, the bias is an
elementwise add that FuseOps folds into the kernel's write-back.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from smelt.ir.node import Node

from ..lowering.packed import as_rows, bias_and_shape
from ..lowering.registry import lowers
from . import int4_kernels
from . import sparse24_kernels as S
from .kernels import pack_dense_weight, pick_block

R = relax.op
PANEL_PREFS = (32, 16, 8)


def _in_panels(bb, node: Node, expr, nb: int):
    if node.op == "constant":
        return relax.const(pack_dense_weight(np.asarray(node.value).T, nb), node.dtype)
    n, c = node.shape
    return bb.emit(R.permute_dims(bb.emit(R.reshape(expr, (n // nb, nb, c))), (0, 2, 1)))


@lowers("linear_w4", target="cpu")
def _linear_w4(bb, n: Node, xs):
    x_node, packed, scales = n.inputs[:3]
    x = xs[0]
    if len(x_node.shape) == 1:  # the kernel takes any leading axes, but at least one
        x = bb.emit(R.reshape(x, (1, x_node.shape[0])))
    nb = pick_block(packed.shape[0], PANEL_PREFS)
    wp = _in_panels(bb, packed, xs[1], nb)
    sp = _in_panels(bb, scales, xs[2], nb)
    y = bb.call_te(int4_kernels.dense_w4, x, wp, sp, n.attrs["group"], n.dtype,
                   primfunc_name_hint="dense_w4")
    if len(xs) == 4:
        y = R.add(bb.emit(y), xs[3])
    return R.reshape(bb.emit(y), n.shape) if len(x_node.shape) == 1 else y


@lowers("linear24", target="cpu")
def _linear24(bb, n: Node, xs):
    y = bb.call_te(S.linear24, as_rows(bb, n, xs[0]), xs[1], xs[2],
                   primfunc_name_hint="linear24")
    return bias_and_shape(bb, n, y, xs)
