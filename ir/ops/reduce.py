"""Reductions over a set of axes, with or without kept dimensions."""

from __future__ import annotations

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType
from .common import norm_axes, norm_axis, prod


def _reduce_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x = types[0]
    if x.dtype == "bool":
        raise TypeInferenceError("reductions take numeric inputs; cast bool first")
    axes = norm_axes(attrs["axes"], x.rank) if attrs["axes"] else tuple(range(x.rank))
    return _reduced(x, axes, attrs["keepdims"])


def _extremum_infer(types: list[TensorType], attrs: dict) -> TensorType:
    """reduce_max/min: as other reductions, but an empty reduction has no value."""
    out = _reduce_infer(types, attrs)
    x = types[0]
    axes = norm_axes(attrs["axes"], x.rank) if attrs["axes"] else tuple(range(x.rank))
    if any(x.shape[a] == 0 for a in axes):
        raise TypeInferenceError(f"cannot take the extremum over an empty axis of {x}")
    return out


def _reduced(x: TensorType, axes: tuple[int, ...], keepdims: bool) -> TensorType:
    if keepdims:
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return TensorType(shape, x.dtype)


def _reduce_macs(types, out, attrs) -> int:
    return prod(types[0].shape)


_REDUCE_ATTRS = {"axes": AttrSpec("ints", ()), "keepdims": AttrSpec("bool", False)}


def _reduction(name: str, fn, doc: str, infer=_reduce_infer) -> None:
    def ref(x, *, axes, keepdims):
        ax = tuple(axes) if axes else None
        return np.asarray(fn(x, axis=ax, keepdims=keepdims)).astype(x.dtype, copy=False)

    ref.__doc__ = doc + " over `axes` (all axes when empty)."
    defop(name, ("x",), infer, attrs=_REDUCE_ATTRS, category="reduce",
          macs=_reduce_macs)(ref)


_reduction("reduce_sum", np.sum, "Sum")
_reduction("reduce_mean", np.mean, "Arithmetic mean")
_reduction("reduce_max", np.max, "Maximum", _extremum_infer)
_reduction("reduce_min", np.min, "Minimum", _extremum_infer)


def _argmax_infer(types, attrs):
    x = types[0]
    axis = norm_axis(attrs["axis"], x.rank)
    if x.shape[axis] == 0:
        raise TypeInferenceError(f"argmax over axis {axis} of {x}, which is empty")
    shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape)) if attrs["keepdims"] \
        else tuple(d for i, d in enumerate(x.shape) if i != axis)
    return TensorType(shape, "int64")


@defop("argmax", ("x",), _argmax_infer, category="reduce",
       attrs={"axis": AttrSpec("int"), "keepdims": AttrSpec("bool", False)})
def argmax(x, *, axis, keepdims):
    """Index of the first maximum along axis, as int64."""
    return np.argmax(x, axis=axis, keepdims=keepdims).astype(np.int64)
