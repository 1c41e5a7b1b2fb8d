"""Numeric contracts: what a rule or pass promises about the graph it returns.

- `exact`: the new graph equals the old one in real arithmetic. Both graphs are run by the
  float64 reference interpreter; they may differ only by the rounding a float graph cannot
  avoid (constants folded or stored in the graph's own dtype, reassociation). The tolerance is

      tol = 8 * eps * growth * M

  where eps is the machine epsilon of the widest-rounding float dtype either graph holds,
  growth sums, over the computing nodes, each node's reduction length (the terms summed per
  output element: K of a matmul, C*kh*kw of a conv, the reduced size of a reduction; 1 for
  elementwise ops), and M is the largest finite magnitude any value in either evaluation
  reaches. Integer and bool outputs must be bit-exact; NaNs must appear in the same places.
- `bounded(atol, rtol=0)`: lossy by design; every output element may move by at most
  `atol + rtol * |expected|` (on top of the exact tolerance).

A bounded contract has a `basis`, what the bound rests on:
- "a-priori" (the default): derived from what the pass knows (scales, masks, weight
  changes, calibrated ranges) and promised for every input in the domain the pass states
  (for the lossy passes of smelt.passes: inputs whose activations stay within the ranges
  seen on calibration, which the calibration batches themselves satisfy);
- "measured": the largest change seen on the calibration batches, when no useful a-priori
  bound exists. It is no promise for other inputs, so verify-each checks it only on those
  batches (rewrite/pipeline.py).

Contracts compose: `exact + exact` is exact, bounds add, and a sum with a measured part is
measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from smelt.ir.dims import bind, format_shape
from smelt.ir.graph import Graph
from smelt.ir.inputs import to_numpy
from smelt.ir.interpreter import interpret
from smelt.ir.node import Node
from smelt.ir.op_table import get_op
from smelt.ir.specialize import specialize_node
from smelt.ir.types import TensorType, is_float, numpy_dtype

_EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}


BASES = ("a-priori", "measured")


@dataclass(frozen=True)
class Contract:
    """`kind` is "exact" or "bounded"; bounded contracts carry `atol` and `rtol`, and
    `basis`: "a-priori" (promised) or "measured" (seen on the calibration batches only; see
    the module docstring)."""

    kind: str
    atol: float = 0.0
    rtol: float = 0.0
    basis: str = "a-priori"

    def __post_init__(self) -> None:
        if self.kind not in ("exact", "bounded"):
            raise ValueError(f"contract kind must be 'exact' or 'bounded', not {self.kind!r}")
        if self.atol < 0 or self.rtol < 0:
            raise ValueError("contract bounds must be non-negative")
        if self.basis not in BASES:
            raise ValueError(f"contract basis must be one of {', '.join(BASES)}, not "
                             f"{self.basis!r}")

    @property
    def is_exact(self) -> bool:
        return self.kind == "exact"

    @property
    def is_measured(self) -> bool:
        """Is the bound measured on the calibration batches rather than promised?"""
        return not self.is_exact and self.basis == "measured"

    def __add__(self, other: Contract) -> Contract:
        if self.is_exact and other.is_exact:
            return self
        basis = "measured" if self.is_measured or other.is_measured else "a-priori"
        return Contract("bounded", self.atol + other.atol, self.rtol + other.rtol, basis)

    def __str__(self) -> str:
        if self.is_exact:
            return "exact"
        parts = [f"{self.atol:g}"] + ([f"rtol={self.rtol:g}"] if self.rtol else [])
        parts += ["measured"] if self.is_measured else []
        return f"bounded({', '.join(parts)})"


exact = Contract("exact")


def bounded(atol: float, *, rtol: float = 0.0, basis: str = "a-priori") -> Contract:
    """A lossy contract: outputs move by at most `atol + rtol * |expected|`; `basis`
    "measured" for a bound seen on the calibration batches, not promised."""
    return Contract("bounded", float(atol), float(rtol), basis)


def compose(contracts: Sequence[Contract]) -> Contract:
    out = exact
    for c in contracts:
        out = out + c
    return out


# -- evaluation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """A float64 run of a graph: its outputs, and what the exact tolerance needs."""

    outputs: tuple[np.ndarray, ...]
    magnitude: float
    growth: float
    eps: float


def reduction_length(node: Any, sizes: Mapping[str, int] | None = None) -> float:
    """Terms summed per output element of one node (1 for elementwise and data movement);
    `sizes` gives symbolic dimensions their sizes of this run."""
    out = node.type
    if not isinstance(out, TensorType):
        return 1.0
    if not out.is_static:
        node = specialize_node(node, sizes or {})
        out = node.type
    if out.size == 0:
        return 1.0
    opdef = get_op(node.op)
    if opdef.macs is not None:
        macs = opdef.macs([x.type for x in node.inputs], out, dict(node.attrs))
        return max(1.0, macs / out.size)
    shape = out.shape
    if node.op == "layer_norm" and shape:
        return float(max(1, int(np.prod(shape[node.attrs["axis"] % len(shape):]))))
    if node.op in ("softmax", "log_softmax") and shape:
        return float(max(1, shape[node.attrs["axis"]]))
    return 1.0


def _as_input(value: Any, t: TensorType) -> np.ndarray:
    a = to_numpy(value)
    if bind(t.shape, a.shape, {}) is not None:  # a symbolic size takes any size in range
        raise ValueError(f"sample input has shape {list(a.shape)}, the graph expects "
                         f"{format_shape(t.shape)}")
    a = a.astype(numpy_dtype(t.dtype), copy=False)
    return a.astype(np.float64) if is_float(t.dtype) else a


def run64(graph: Graph, inputs: Sequence[Any]) -> Evaluation:
    """Run `graph` in float64 on `inputs`, tracking the largest magnitude reached."""
    if len(inputs) != len(graph.inputs):
        raise ValueError(f"graph takes {len(graph.inputs)} inputs, got {len(inputs)}")
    values = [_as_input(v, x.tensor_type) for v, x in zip(inputs, graph.inputs, strict=True)]
    seen = {"magnitude": 0.0, "growth": 0.0, "eps": 0.0}
    sizes: dict[str, int] = {}
    for x, v in zip(graph.inputs, values, strict=True):
        bind(x.shape, v.shape, sizes)

    def observe(n: Node, value: Any) -> None:
        if isinstance(n.type, TensorType) and is_float(n.type.dtype):
            seen["eps"] = max(seen["eps"], _EPS[n.type.dtype])
        if n.op not in ("input", "constant"):
            seen["growth"] += reduction_length(n, sizes)
        seen["magnitude"] = max(seen["magnitude"], _magnitude(value))

    outputs = interpret(graph, *values, precision="float64", observe=observe)
    return Evaluation(outputs, seen["magnitude"], max(seen["growth"], 1.0), seen["eps"])


def _magnitude(value: Any) -> float:
    if isinstance(value, tuple):
        return max((_magnitude(v) for v in value), default=0.0)
    a = np.asarray(value)
    if a.size == 0 or not np.issubdtype(a.dtype, np.floating):
        return 0.0
    finite = np.abs(a[np.isfinite(a)])
    return float(finite.max()) if finite.size else 0.0


# -- comparison --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mismatch:
    """The worst element that breaks a contract."""

    output: int
    index: tuple[int, ...]
    expected: Any
    got: Any
    error: float
    allowed: float
    contract: Contract
    why: str = ""

    def __str__(self) -> str:
        if self.why:
            return f"output {self.output}: {self.why}"
        where = f"output {self.output}" + (f"[{', '.join(map(str, self.index))}]"
                                           if self.index else "")
        return (f"{where}: expected {self.expected!r}, got {self.got!r} (error {self.error:.3g}"
                f" > allowed {self.allowed:.3g} under contract {self.contract})")


def exact_tolerance(ref: Evaluation, got: Evaluation) -> float:
    eps = max(ref.eps, got.eps)
    return 8.0 * eps * max(ref.growth, got.growth) * max(ref.magnitude, got.magnitude)


def compare(contract: Contract, ref: Evaluation, got: Evaluation) -> Mismatch | None:
    """The first output that breaks `contract` (at its worst element), or None."""
    if len(ref.outputs) != len(got.outputs):
        return Mismatch(0, (), None, None, np.inf, 0.0, contract,
                        f"{len(ref.outputs)} outputs became {len(got.outputs)}")
    tol = exact_tolerance(ref, got)
    for i, (a, b) in enumerate(zip(ref.outputs, got.outputs, strict=True)):
        bad = _compare_one(i, a, b, contract, tol)
        if bad is not None:
            return bad
    return None


def _compare_one(i: int, a: np.ndarray, b: np.ndarray, contract: Contract,
                 tol: float) -> Mismatch | None:
    if a.shape != b.shape:
        return Mismatch(i, (), None, None, np.inf, 0.0, contract,
                        f"shape {list(a.shape)} became {list(b.shape)}")
    if a.size == 0:
        return None
    floaty = np.issubdtype(a.dtype, np.floating) or np.issubdtype(b.dtype, np.floating)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if not floaty:
        tol = 0.0
    nan_a, nan_b = np.isnan(a64), np.isnan(b64)
    if np.any(nan_a != nan_b):
        idx = tuple(int(k) for k in np.argwhere(nan_a != nan_b)[0])
        return Mismatch(i, idx, a[idx].item(), b[idx].item(), np.inf, 0.0, contract, "")
    same = (a64 == b64) | (nan_a & nan_b)
    with np.errstate(invalid="ignore"):
        err = np.where(same, 0.0, np.abs(a64 - b64))
    err = np.where(np.isnan(err), np.inf, err)
    allowed = tol + contract.atol
    if contract.rtol:  # (0 * inf would be NaN where the expected value is infinite)
        allowed = allowed + contract.rtol * np.abs(np.where(nan_a, 0.0, a64))
    with np.errstate(invalid="ignore"):
        excess = np.where(same, -np.inf, err - allowed)  # equal values are never a mismatch
    k = int(np.argmax(excess))
    if excess.reshape(-1)[k] <= 0:
        return None
    idx = tuple(int(j) for j in np.unravel_index(k, a.shape))
    return Mismatch(i, idx, a[idx].item(), b[idx].item(), float(err[idx]),
                    float(np.asarray(allowed)[idx] if np.ndim(allowed) else allowed), contract)


__all__ = [
    "BASES", "Contract", "Evaluation", "Mismatch", "bounded", "compare", "compose", "exact",
    "exact_tolerance", "reduction_length", "run64",
]
