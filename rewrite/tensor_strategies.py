"""Hypothesis strategies for tensors: shapes, dtypes, arrays of several kinds, and the input
arrays of a graph. Part of `smelt.testing` (through `smelt.rewrite.strategies`).

Tensors come in kinds (`TENSOR_KINDS`): plain normals; outlier-heavy channels (a few channels
scaled by 10-100x, as in LLM activations, the case SmoothQuant exists for); rounding ties
(every value exactly (k + 0.5) * scale, the case where round-half-to-even and round-half-away
disagree); and uniforms. Array contents come from a numpy generator seeded by hypothesis, so
drawing stays fast on large tensors and is reproducible under the `ci` profile.
"""


from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from smelt.ir import Graph
from smelt.ir.types import FLOAT_DTYPES, numpy_dtype

from .equivalence import to_dtype

Bounds = tuple[float, float]

INPUT_RANGE: Bounds = (-3.0, 3.0)
MAX_MAGNITUDE = 1e4
MAX_ELEMENTS = 512
SAFE_MARGIN = 0.1
TENSOR_KINDS = ("normal", "outliers", "ties", "uniform")
CONSTANT_SCALES = (0.01, 0.5, 1.0, 4.0, 50.0)
NODE_NAMES = ("h", "y", "x0", "conv.out", "block1.mlp", "_t")


# -- shapes and dtypes ---------------------------------------------------------------------
def shapes(
    min_rank: int = 0, max_rank: int = 4, min_side: int = 1, max_side: int = 6
) -> st.SearchStrategy[tuple[int, ...]]:
    """Tensor shapes: `min_rank`..`max_rank` axes, each of `min_side`..`max_side` elements."""
    sides = st.integers(min_side, max_side)
    return st.lists(sides, min_size=min_rank, max_size=max_rank).map(tuple)


def broadcastable_shapes(shape: Sequence[int]) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes that broadcast against `shape` without growing it: a suffix of `shape` with some
    axes set to 1 (numpy/torch broadcasting rules)."""
    shape = tuple(shape)

    @st.composite
    def draw_shape(draw: st.DrawFn) -> tuple[int, ...]:
        keep = draw(st.integers(0, len(shape)))
        suffix = shape[len(shape) - keep:]
        ones = draw(st.lists(st.booleans(), min_size=keep, max_size=keep))
        return tuple(1 if one else d for d, one in zip(suffix, ones, strict=True))

    return draw_shape()


def dtypes(
    *, floats: bool = True, ints: bool = True, bools: bool = False, narrow: bool = False
) -> st.SearchStrategy[str]:
    """smelt dtype names. `narrow` adds the types numpy stores in a wider type (bfloat16 in
    float32, int4/uint4 in int8/uint8)."""
    names: list[str] = []
    if floats:
        names += ["float32", "float64", "float16"] + (["bfloat16"] if narrow else [])
    if ints:
        names += ["int8", "uint8", "int16", "int32", "int64"]
        names += ["int4", "uint4"] if narrow else []
    if bools:
        names.append("bool")
    if not names:
        raise ValueError("dtypes(): enable at least one of floats, ints, bools")
    return st.sampled_from(names)


# -- tensors -------------------------------------------------------------------------------
def _normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float, axis: int):
    return rng.standard_normal(shape) * scale


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], scale: float, axis: int):
    return rng.uniform(-scale, scale, shape)


def _outliers(rng: np.random.Generator, shape: tuple[int, ...], scale: float, axis: int):
    """Normals with a few channels (along `axis`) scaled by 10-100x."""
    x = rng.standard_normal(shape) * scale
    if not shape:
        return x
    axis %= len(shape)
    channels = shape[axis]
    count = int(rng.integers(1, max(1, channels // 8) + 1))
    picked = rng.choice(channels, size=min(count, channels), replace=False)
    factors = np.ones(channels)
    factors[picked] = rng.uniform(10.0, 100.0, size=len(picked))
    view = [1] * len(shape)
    view[axis] = channels
    return x * factors.reshape(view)


def _ties(rng: np.random.Generator, shape: tuple[int, ...], scale: float, axis: int):
    """Values exactly (k + 0.5) * scale; exact in binary when `scale` is a power of two."""
    return (rng.integers(-64, 64, size=shape) + 0.5) * scale


_KINDS: dict[str, Callable[..., np.ndarray]] = {
    "normal": _normal, "uniform": _uniform, "outliers": _outliers, "ties": _ties,
}


def tensors(
    shape: Sequence[int] | st.SearchStrategy[tuple[int, ...]],
    dtype: str = "float32",
    *,
    elements: st.SearchStrategy[Any] | None = None,
    kind: str = "normal",
    scale: float = 1.0,
    channel_axis: int = -1,
) -> st.SearchStrategy[np.ndarray]:
    """Arrays of `shape` (a shape or a strategy of shapes) holding smelt `dtype` values.

    With `elements`, every element is drawn from that strategy (hypothesis shrinks them).
    Otherwise `kind` picks the distribution, `scale` its size: "normal" (std `scale`),
    "uniform" (in [-scale, scale]), "outliers" (normals with a few channels along
    `channel_axis` scaled by 10-100x), "ties" (values (k + 0.5) * scale, k in [-64, 64)).
    Integer dtypes get the values rounded and clipped; bool gets `value > 0`.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown tensor kind {kind!r}; expected one of {TENSOR_KINDS}")
    shape_st = shape if isinstance(shape, st.SearchStrategy) else st.just(tuple(shape))

    @st.composite
    def draw_tensor(draw: st.DrawFn) -> np.ndarray:
        s = draw(shape_st)
        if elements is not None:
            return draw(hnp.arrays(numpy_dtype(dtype), s, elements=elements))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        return to_dtype(_KINDS[kind](rng, s, scale, channel_axis), dtype)

    return draw_tensor()


def graph_inputs(graph: Graph) -> st.SearchStrategy[tuple[np.ndarray, ...]]:
    """One array per graph input, in order. Floats are normals clipped to `INPUT_RANGE` (the
    range `graphs()` plans for), integers small, bools either way."""
    parts = []
    for x in graph.inputs:
        t = x.tensor_type
        if t.dtype in FLOAT_DTYPES:
            parts.append(tensors(t.shape, "float64").map(_ClipTo(t.dtype)))
        else:
            parts.append(tensors(t.shape, t.dtype, kind="uniform", scale=8.0))
    return st.tuples(*parts)


class _ClipTo:
    """Clip float64 values to INPUT_RANGE and store them as `dtype` (a named callable, so
    hypothesis prints it readably)."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return to_dtype(np.clip(values, *INPUT_RANGE), self.dtype)

    def __repr__(self) -> str:
        return f"clip_to_input_range({self.dtype})"

