"""Fused ops: one node for a contraction and its epilogue, which kernels run in one pass.

    fused_matmul(a, b, bias?, residual?)  = act(a @ b + bias + residual)
    fused_linear(x, w, bias?, residual?)  = act(linear(x, w, bias) + residual)
    fused_conv2d(x, w, bias?, residual?)  = act(conv2d(x, w, bias) + residual)

`activation` is none, relu, relu6, leaky_relu (slope `alpha`), gelu, gelu_tanh, silu or
hardswish; the flag `residual` says the last input is the residual addend (so a residual can
be present without a bias). Bias and residual broadcast to the product's shape without
growing it. The fuse pass (passes/fusion.py) builds these from the unfused chain; each
reference below is that chain, op for op, in the same order, so fusion is exact: the numbers
are identical, not merely close. `unfused(node)` rebuilds the chain, which is how a backend
without a fused kernel (and the lowering to Relax, whose fusion then happens in TVM) takes it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType, is_float
from .common import same_dtype
from .elementwise import gelu, hardswish, leaky_relu, relu, relu6, silu
from .nn import _conv_infer, _conv_macs, _linear_infer, _linear_macs, _matmul_infer, _matmul_macs
from .nn import conv2d as conv2d_ref
from .nn import linear as linear_ref

ACTIVATIONS = ("none", "relu", "relu6", "leaky_relu", "gelu", "gelu_tanh", "silu", "hardswish")
# activation name -> (smelt op, its attrs given the fused node's attrs)
ACTIVATION_OPS = {
    "relu": ("relu", lambda a: {}),
    "relu6": ("relu6", lambda a: {}),
    "leaky_relu": ("leaky_relu", lambda a: {"alpha": a["alpha"]}),
    "gelu": ("gelu", lambda a: {"approximate": "none"}),
    "gelu_tanh": ("gelu", lambda a: {"approximate": "tanh"}),
    "silu": ("silu", lambda a: {}),
    "hardswish": ("hardswish", lambda a: {}),
}
EPILOGUE_ATTRS = {"activation": AttrSpec("str", "none", ACTIVATIONS),
                  "alpha": AttrSpec("float", 0.01), "residual": AttrSpec("bool", False)}


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


def split_operands(rest: tuple, has_residual: bool) -> tuple:
    """(bias or None, residual or None) from the inputs after the two contraction operands."""
    if has_residual:
        return (rest[0] if len(rest) == 2 else None), rest[-1]
    return (rest[0] if rest else None), None


def _product_matmul(types: list[TensorType], attrs: dict) -> TensorType:
    a, b = types[0], types[1]
    if a.rank >= 2 and b.rank >= 2:  # the common case, without numpy
        if a.shape[-1] != b.shape[-2]:
            raise TypeInferenceError(f"contracted sizes differ: {list(a.shape)} @ "
                                     f"{list(b.shape)}")
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        if batch is None:
            raise TypeInferenceError(f"batch shapes {list(a.shape[:-2])} and "
                                     f"{list(b.shape[:-2])} do not broadcast")
        return TensorType(batch + (a.shape[-2], b.shape[-1]), same_dtype(types[:2]))
    return _matmul_infer(types[:2], attrs)


def _epilogue_infer(product: Callable[[list[TensorType], dict], TensorType],
                    bias_in_product: bool) -> Callable[[list[TensorType], dict], TensorType]:
    """Inference of a fused op: the product's type, checked against bias and residual."""

    def infer(types: list[TensorType], attrs: dict) -> TensorType:
        if len(types) > 3 + attrs["residual"]:
            raise TypeInferenceError("a fourth input is the residual: set residual=True")
        if attrs["residual"] and len(types) < 3:
            raise TypeInferenceError("residual=True needs a residual input")
        bias, res = split_operands(tuple(types[2:]), attrs["residual"])
        if attrs["activation"] not in ("none", "relu", "relu6") and not is_float(types[0].dtype):
            raise TypeInferenceError(f"activation {attrs['activation']} needs a float dtype, "
                                     f"got {types[0].dtype}")
        head = types[:2] + ([bias] if bias is not None and bias_in_product else [])
        out = product(head, attrs)
        for name, t in (("bias", None if bias_in_product else bias), ("residual", res)):
            if t is not None and broadcast_shapes(out.shape, t.shape) != out.shape:
                raise TypeInferenceError(f"{name} {list(t.shape)} must broadcast to the "
                                         f"product's shape {list(out.shape)} without growing it")
        return TensorType(out.shape, same_dtype(types))

    return infer


def activate(y, activation: str, alpha: float):
    """The activation's reference, the same function the unfused op uses."""
    fns = {"relu": relu, "relu6": relu6, "silu": silu, "hardswish": hardswish,
           "leaky_relu": lambda v: leaky_relu(v, alpha=alpha),
           "gelu": lambda v: gelu(v, approximate="none"),
           "gelu_tanh": lambda v: gelu(v, approximate="tanh")}
    return y if activation == "none" else fns[activation](y)


def _finish(y, residual, activation: str, alpha: float):
    if residual is not None:
        y = y + residual
    return activate(y, activation, alpha)


def _fused_macs(types: list[TensorType], out: TensorType, attrs: dict) -> int:
    return _matmul_macs(types[:2], out, attrs)


@defop("fused_matmul", ("a", "b", "bias?", "residual?"),
       _epilogue_infer(_product_matmul, bias_in_product=False), category="contraction",
       macs=_fused_macs, attrs=EPILOGUE_ATTRS)
def fused_matmul(a, b, *rest, activation, alpha, residual):
    """act(a @ b + bias + residual); numpy matmul semantics (batched, broadcast)."""
    bias, res = split_operands(rest, residual)
    out = np.matmul(a, b)
    if bias is not None:
        out = out + bias
    return _finish(out, res, activation, alpha)


@defop("fused_linear", ("x", "w", "bias?", "residual?"),
       _epilogue_infer(_linear_infer, bias_in_product=True), category="contraction",
       macs=lambda types, out, attrs: _linear_macs(types, out, attrs), attrs=EPILOGUE_ATTRS)
def fused_linear(x, w, *rest, activation, alpha, residual):
    """act(x @ w.T + bias + residual)."""
    bias, res = split_operands(rest, residual)
    return _finish(linear_ref(x, w, bias), res, activation, alpha)


_CONV_ATTRS = {"stride": AttrSpec("ints", (1, 1)), "padding": AttrSpec("ints", (0, 0)),
               "dilation": AttrSpec("ints", (1, 1)), "groups": AttrSpec("int", 1)}


@defop("fused_conv2d", ("x", "w", "bias?", "residual?"),
       _epilogue_infer(_conv_infer, bias_in_product=True), category="contraction",
       macs=lambda types, out, attrs: _conv_macs(types, out, attrs),
       attrs={**_CONV_ATTRS, **EPILOGUE_ATTRS})
def fused_conv2d(x, w, *rest, stride, padding, dilation, groups, activation, alpha, residual):
    """act(conv2d(x, w, bias) + residual), NCHW x OIHW."""
    bias, res = split_operands(rest, residual)
    y = conv2d_ref(x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return _finish(y, res, activation, alpha)


ANCHOR = {"fused_matmul": "matmul", "fused_linear": "linear", "fused_conv2d": "conv2d"}


def unfused(node):
    """The chain a fused node stands for, built from its inputs with Node.make."""
    from ..node import Node

    attrs = dict(node.attrs)
    bias, res = split_operands(tuple(node.inputs[2:]), attrs["residual"])
    anchor = ANCHOR[node.op]
    if anchor == "matmul":
        y = Node.make("matmul", node.inputs[:2])
        if bias is not None:
            y = Node.make("add", (y, bias))
    else:
        extra = {k: attrs[k] for k in _CONV_ATTRS} if anchor == "conv2d" else {}
        y = Node.make(anchor, tuple(node.inputs[:2]) + ((bias,) if bias is not None else ()),
                      **extra)
    if res is not None:
        y = Node.make("add", (y, res))
    if attrs["activation"] != "none":
        op, act_attrs = ACTIVATION_OPS[attrs["activation"]]
        y = Node.make(op, (y,), **act_attrs(attrs))
    return y
