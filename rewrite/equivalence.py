"""Equivalence of two graphs on sample inputs, without hypothesis (what verify-each
pipelines, bisection and the CLI use; `verify.py` builds its hypothesis properties on it).

- `sample_inputs(graph)`: seeded random input batches (floats normal in [-3, 3], integers in
  [-8, 8], stored in the inputs' dtypes by `to_dtype`);
- `assert_equivalent(g1, g2, contract, inputs)` runs both graphs in the float64 reference
  interpreter on the given (or seeded random) inputs and raises ContractViolation with a
  counterexample (both graphs printed, constants and inputs included) when they disagree
  beyond what the contract allows (see contract.py for the tolerances); it returns the
  largest output difference seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from smelt.ir.graph import Graph
from smelt.ir.ops.common import round_to_bfloat16
from smelt.ir.text_format import print_graph
from smelt.ir.types import is_float, numpy_dtype

from .contract import Contract, Mismatch, compare, exact, run64
from .errors import ContractViolation

_INT_RANGES = {"int4": (-8, 7), "uint4": (0, 15)}


def to_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """Real values stored as smelt `dtype`: integers rounded and clipped to the type's range,
    bool as `value > 0`, bfloat16 rounded to bfloat16 precision."""
    target = numpy_dtype(dtype)
    values = np.asarray(values)
    if dtype == "bool":
        return np.asarray(values > 0)
    if dtype == "bfloat16":
        return np.asarray(round_to_bfloat16(values.astype(np.float32)))
    if np.issubdtype(target, np.integer):
        lo, hi = _INT_RANGES.get(dtype, (np.iinfo(target).min, np.iinfo(target).max))
        return np.asarray(np.clip(np.rint(values), lo, hi)).astype(target)
    return values.astype(target)


def sample_inputs(graph: Graph, count: int = 2, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    """`count` seeded random batches for `graph`: floats normal in [-3, 3], integers in
    [-8, 8] (clipped to the dtype), bools either way."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        batch = []
        for x in graph.inputs:
            t = x.tensor_type
            if is_float(t.dtype):
                values = np.clip(rng.standard_normal(t.shape), -3.0, 3.0)
            else:
                values = rng.integers(-8, 9, size=t.shape).astype(np.float64)
            batch.append(to_dtype(values, t.dtype))
        batches.append(tuple(batch))
    return batches


def _batches(graph: Graph, inputs: Any, samples: int, seed: int) -> list[tuple[Any, ...]]:
    if inputs is None:
        return sample_inputs(graph, samples, seed)
    if isinstance(inputs, tuple) and len(inputs) == len(graph.inputs) and all(
        hasattr(a, "shape") for a in inputs
    ):
        return [inputs]
    out = []
    for batch in inputs:
        out.append(tuple(batch) if isinstance(batch, tuple | list) else (batch,))
    return out


def format_counterexample(before: Graph, after: Graph, batch: Sequence[Any]) -> str:
    """Both graphs (with their constants) and the inputs, as text."""
    parts = []
    for label, g in (("graph before", before), ("graph after", after)):
        text, weights = print_graph(g)
        parts.append(f"{label}:\n{text.rstrip()}")
        for key, w in weights.items():
            parts.append(f"  @{key} = {_show_array(w)}")
    for x, a in zip(before.inputs, batch, strict=True):
        parts.append(f"input {x.attrs['name']} = {_show_array(np.asarray(a))}")
    return "\n".join(parts)


def _show_array(a: np.ndarray) -> str:
    text = np.array2string(a, precision=17, separator=", ", threshold=64,
                           max_line_width=96, floatmode="maxprec")
    return f"{text} ({a.dtype}{list(a.shape)})".replace("\n", "\n    ")


def assert_equivalent(g1: Graph, g2: Graph, contract: Contract = exact, inputs: Any = None, *,
                      samples: int = 2, seed: int = 0, what: str = "the rewrite") -> float:
    """Raise ContractViolation when `g2` breaks `contract` with `g1` on `inputs` (one batch
    as a tuple of arrays, an iterable of batches, or None for `samples` seeded random
    batches). Returns the largest output difference seen."""
    worst = 0.0
    for batch in _batches(g1, inputs, samples, seed):
        ref, got = run64(g1, batch), run64(g2, batch)
        bad = compare(contract, ref, got)
        if bad is not None:
            raise ContractViolation(_message(what, contract, bad, g1, g2, batch))
        worst = max(worst, _max_error(ref.outputs, got.outputs))
    return worst


def _message(what: str, contract: Contract, bad: Mismatch, g1: Graph, g2: Graph,
             batch: Sequence[Any]) -> str:
    return (f"{what} broke its contract ({contract}):\n  {bad}\n"
            f"{format_counterexample(g1, g2, batch)}")


def _max_error(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x.size and x.shape == y.shape:
            with np.errstate(invalid="ignore"):
                d = np.abs(x.astype(np.float64) - y.astype(np.float64))
            d = d[np.isfinite(d)]
            if d.size:
                worst = max(worst, float(d.max()))
    return worst
