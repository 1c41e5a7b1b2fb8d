"""Normalizations and softmax.

batch_norm is inference-mode: y = (x - mean) / sqrt(var + eps) * weight + bias over axis 1.
layer_norm normalizes over the trailing axes from `axis` (biased variance, as torch).
"""

from __future__ import annotations

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType
from .common import float_unary, norm_axis, same_dtype


def _bn_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    same_dtype(types)
    if x.rank < 2:
        raise TypeInferenceError("batch_norm needs an input of rank >= 2 (N, C, ...)")
    for t in types[1:]:
        if t.shape != (x.shape[1],):
            raise TypeInferenceError(
                f"statistics and affine parameters must have shape [{x.shape[1]}], "
                f"got {list(t.shape)}"
            )
    return TensorType(x.shape, x.dtype)


@defop("batch_norm", ("x", "mean", "var", "weight?", "bias?"), _bn_infer, category="norm",
       attrs={"eps": AttrSpec("float", 1e-5)})
def batch_norm(x, mean, var, weight=None, bias=None, *, eps):
    """(x - mean) / sqrt(var + eps) * weight + bias, per channel (axis 1)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = 1 / np.sqrt(var + np.asarray(eps, x.dtype))
    if weight is not None:
        inv = inv * weight
    y = (x - mean.reshape(shape)) * inv.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y.astype(x.dtype, copy=False)


def _ln_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    same_dtype(types)
    axis = norm_axis(attrs["axis"], x.rank)
    for t in types[1:]:
        if t.shape != x.shape[axis:]:
            raise TypeInferenceError(
                f"weight and bias must have shape {list(x.shape[axis:])}, got {list(t.shape)}"
            )
    return float_unary([x], attrs)


@defop("layer_norm", ("x", "weight?", "bias?"), _ln_infer, category="norm",
       attrs={"axis": AttrSpec("int", -1), "eps": AttrSpec("float", 1e-5)})
def layer_norm(x, weight=None, bias=None, *, axis, eps):
    """(x - mean) / sqrt(var + eps) * weight + bias over axes axis..-1."""
    axes = tuple(range(axis % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + np.asarray(eps, x.dtype))
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype, copy=False)


def _softmax_infer(types, attrs):
    norm_axis(attrs["axis"], types[0].rank)
    return float_unary(types, attrs)


@defop("softmax", ("x",), _softmax_infer, category="norm", attrs={"axis": AttrSpec("int", -1)})
def softmax(x, *, axis):
    """exp(x - max) / sum(exp(x - max)) along axis."""
    if x.size == 0:
        return x.copy()
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@defop("log_softmax", ("x",), _softmax_infer, category="norm",
       attrs={"axis": AttrSpec("int", -1)})
def log_softmax(x, *, axis):
    """x - max - log(sum(exp(x - max))) along axis."""
    if x.size == 0:
        return x.copy()
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))
