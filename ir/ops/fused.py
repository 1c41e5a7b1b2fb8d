"""Fused ops: one node for a chain that kernels run in one pass.

fused_matmul(a, b, bias?) {activation} = activation(a @ b + bias), with numpy/torch matmul
semantics (batched, broadcast) and a bias that broadcasts to the product's shape without
growing it. Rewrite rules (smelt.passes.fuse) build it from matmul, add and an activation;
its reference is that chain, op for op, so the fusion is exact.
"""

from __future__ import annotations

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType
from .common import same_dtype
from .elementwise import relu, relu6
from .nn import _matmul_infer, _matmul_macs

ACTIVATIONS = ("none", "relu", "relu6")


def broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """numpy broadcasting of two shapes in plain Python (None: they do not broadcast)."""
    if a == b:
        return a
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and x != 1 and y != 1:
            return None
        out.append(y if x == 1 else x)
    return tuple(out)


def _fused_matmul_infer(types: list[TensorType], attrs: dict) -> TensorType:
    a, b = types[0], types[1]
    if a.rank >= 2 and b.rank >= 2:  # the common case, without numpy
        if a.shape[-1] != b.shape[-2]:
            raise TypeInferenceError(f"contracted sizes differ: {list(a.shape)} @ "
                                     f"{list(b.shape)}")
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        if batch is None:
            raise TypeInferenceError(f"batch shapes {list(a.shape[:-2])} and "
                                     f"{list(b.shape[:-2])} do not broadcast")
        out = TensorType(batch + (a.shape[-2], b.shape[-1]), same_dtype(types[:2]))
    else:
        out = _matmul_infer(types[:2], attrs)
    if len(types) == 3:
        dtype = same_dtype(types)
        bias = types[2]
        if broadcast_shapes(out.shape, bias.shape) != out.shape:
            raise TypeInferenceError(
                f"bias {list(bias.shape)} must broadcast to the product's shape "
                f"{list(out.shape)} without growing it"
            )
        out = TensorType(out.shape, dtype)
    return out


def _fused_macs(types: list[TensorType], out: TensorType, attrs: dict) -> int:
    return _matmul_macs(types[:2], out, attrs)


@defop("fused_matmul", ("a", "b", "bias?"), _fused_matmul_infer, category="contraction",
       macs=_fused_macs,
       attrs={"activation": AttrSpec("str", "none", ACTIVATIONS)})
def fused_matmul(a, b, bias=None, *, activation):
    """activation(a @ b + bias); activation is none, relu or relu6."""
    out = np.matmul(a, b)
    if bias is not None:
        out = out + bias
    if activation == "relu":
        out = relu(out)
    elif activation == "relu6":
        out = relu6(out)
    return out
