"""What a graph accepts for an input: the one rule the reference interpreter and every
compiled module (CPU, CUDA, C) apply to the arrays they are called with.

An input is a numpy array, a torch tensor (detached and copied to the host; bfloat16 read as
float32), a JAX array, or anything `np.asarray` takes (lists, scalars). It must have the
input's shape exactly (no broadcasting, no squeezing: a 0-d array is not a [1] one). Its
dtype must be of the input's kind, and is then converted:

- a float input takes any float array (float16, float32, float64, bfloat16), rounded to the
  input's precision, as `x.float()` does in torch: values are numbers of the same meaning;
- an integer input takes any integer array whose values all fit the input's type (int4 and
  uint4 included): int64 token ids fit an int32 input, 300 does not fit an int8 one and is
  refused instead of wrapping;
- a bool input takes bool arrays only.

Anything else (int or bool data for a float input, floats for an integer one, strings,
objects, ragged lists) raises InterpretError naming the input, what it got and what it
expects: a silent cast would hide a wrong argument (token ids passed where embeddings go).
Layout is free: a non-contiguous or Fortran-ordered array is copied where a backend needs C
order. NaN and infinity are values like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .dims import Dim, bind, format_shape, is_static
from .errors import InterpretError
from .types import is_float, is_int, numpy_dtype

#: the integer types numpy stores wider, and the values they hold
NARROW_INT_RANGES = {"int4": (-8, 7), "uint4": (0, 15)}


def to_numpy(x: Any) -> np.ndarray:
    """`x` as a numpy array on the host: torch tensors without importing torch."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):
        t = x.detach().cpu()
        if str(getattr(t, "dtype", "")) == "torch.bfloat16":  # numpy has no bfloat16
            t = t.float()
        return t.numpy()
    a = np.asarray(x)
    if a.dtype.name == "bfloat16":  # JAX's (ml_dtypes) bfloat16
        a = a.astype(np.float32)
    return a


def input_array(value: Any, name: str, shape: Sequence[Dim], dtype: str,
                who: str = "the graph", sizes: dict[str, int] | None = None) -> np.ndarray:
    """`value` as the array input `name` of type `dtype[shape]` takes (in numpy storage:
    float32 for bfloat16, int8/uint8 for int4/uint4), or InterpretError saying what is wrong
    and what to pass. `who` names the callee in messages ("the graph", "the module"). A
    symbolic dimension takes any size in its range, the same size wherever the symbol
    appears: `sizes` (shared by a call's inputs) records each symbol's size."""
    want = f"{dtype}{format_shape(shape)}"
    try:
        a = to_numpy(value)
    except (ValueError, TypeError, RuntimeError) as e:  # ragged lists, odd tensors
        raise InterpretError(f"input {name!r} is not an array ({type(value).__name__}: {e}); "
                             f"{who} expects {want}") from None
    if is_static(shape):
        if tuple(a.shape) != tuple(shape):
            raise InterpretError(f"input {name!r} has shape {list(a.shape)}, {who} expects "
                                 f"{list(shape)} ({want}): pass an array of that shape")
    else:
        why = bind(shape, a.shape, {} if sizes is None else sizes)
        if why is not None:
            raise InterpretError(f"input {name!r} has shape {list(a.shape)}, {who} expects "
                                 f"{want}: {why}")
    store = numpy_dtype(dtype)
    if not _same_kind(a.dtype, dtype):
        raise InterpretError(f"input {name!r} is {a.dtype}, {who} expects {want}: convert it "
                             f"first (e.g. np.asarray(x, dtype=np.{store.name}))")
    if is_int(dtype) and a.size and (a.dtype != store or dtype in NARROW_INT_RANGES):
        lo, hi = NARROW_INT_RANGES.get(dtype) or (np.iinfo(store).min, np.iinfo(store).max)
        amin, amax = a.min(), a.max()
        if amin < lo or amax > hi:
            raise InterpretError(f"input {name!r} is {dtype}, whose values lie in [{lo}, {hi}]"
                                 f"; it holds {amin}..{amax}, which would wrap: pass values "
                                 "in range")
    with np.errstate(over="ignore"):  # float64 beyond float32's range is inf, as in torch
        return a.astype(store, copy=False)


def _same_kind(have: np.dtype, dtype: str) -> bool:
    if is_float(dtype):
        return have.kind == "f"
    if is_int(dtype):
        return have.kind in "iu"
    return have.kind == "b" and dtype == "bool"


__all__ = ["NARROW_INT_RANGES", "input_array", "to_numpy"]
