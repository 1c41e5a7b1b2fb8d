"""Differential fuzzing of the compiler: random graphs compiled for a target and compared with
the reference interpreter under their contract (NNSmith's method, on smelt's own generator).

    from hypothesis import given
    from smelt.fuzz import cases, check_batch

    @given(cases("float", count=16))
    def test_cpu(batch):
        assert check_batch(batch, "cpu") == []

A case is a graph and one input tuple for it, of one kind:
- "float": `smelt.testing.graphs()` over its default vocabulary (every continuous float op
  family: elementwise, activations, conv, linear, matmul, norms, pools, reductions, shape
  ops), compiled as drawn; compared with the float64 interpreter under `exact` (float32
  rounding, scaled by reduction length and magnitude: rewrite/contract.py);
- "fused": graphs of layers, biases and activations (`FUSED_VOCABULARY`, where conv + bias +
  activation chains are common) through `canonicalize,fuse`: fused conv/linear/matmul
  epilogues, compared as float graphs;
- "int8": graphs of layers and activations through `quantize(scheme=w8a8),fold-qdq`,
  calibrated on their own inputs: integer kernels, compared bit for bit with the interpreter
  (the graph's float outputs come from integers through one dequantize, so they are exact too).

A batch puts its cases side by side in one graph (inputs renamed `c<i>_<name>`), so one build
covers them all; `check_batch` builds it once, and when it fails (a build error or an output
out of contract) rebuilds its cases one by one to name the culprits, each a `Failure` with the
case's graph text. The `c` target runs the host build with AddressSanitizer and UBSan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from smelt.ir import Graph, Node
from smelt.rewrite.contract import Evaluation, compare, exact, run64
from smelt.rewrite.pipeline import Pipeline
from smelt.rewrite.random_graphs import graphs
from smelt.rewrite.tensor_strategies import graph_inputs

KINDS = ("float", "fused", "int8")
FUSED_VOCABULARY = ("conv2d", "linear", "matmul", "add", "constant", "relu", "relu6", "gelu",
                    "silu", "sigmoid", "clamp", "hardswish", "leaky_relu", "tanh")
INT8_VOCABULARY = ("conv2d", "linear", "matmul", "relu", "relu6", "add", "max_pool2d",
                   "avg_pool2d", "adaptive_avg_pool2d", "concat", "reshape", "flatten",
                   "transpose", "sigmoid", "hardswish", "gelu", "silu", "mul", "reduce_mean")
INT8_PIPELINE = "quantize(scheme=w8a8),fold-qdq"


@dataclass(frozen=True)
class Case:
    """One graph to compile, one input tuple for it, and how its outputs are compared."""

    kind: str
    graph: Graph
    inputs: tuple[np.ndarray, ...]

    @property
    def bit_exact(self) -> bool:
        return self.kind == "int8"


@dataclass(frozen=True)
class Failure:
    """A case the target got wrong: `stage` 'build' (the compiler raised) or 'output'."""

    kind: str
    stage: str
    error: str
    graph: str

    def __str__(self) -> str:
        return f"{self.kind} case, {self.stage}: {self.error}\n{self.graph}"


@st.composite
def case(draw: st.DrawFn, kind: str, max_nodes: int = 8) -> Case:
    """One case of `kind` (see KINDS)."""
    if kind not in KINDS:
        raise ValueError(f"case kind {kind!r}: choose one of {', '.join(KINDS)}")
    vocab = {"fused": FUSED_VOCABULARY, "int8": INT8_VOCABULARY}.get(kind)
    graph = draw(graphs(vocab, max_nodes=max_nodes) if vocab else graphs(max_nodes=max_nodes))
    inputs = tuple(np.asarray(a) for a in draw(graph_inputs(graph)))
    if kind == "fused":
        graph = Pipeline.parse("canonicalize,fuse")(graph)
    elif kind == "int8":
        graph = Pipeline.parse(INT8_PIPELINE)(graph, calibration=[inputs])
    return Case(kind, graph, inputs)


def cases(kind: str | Sequence[str], count: int, max_nodes: int = 8
          ) -> st.SearchStrategy[list[Case]]:
    """A batch of `count` cases, each of `kind` (or of one drawn from the kinds given)."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    one = st.sampled_from(kinds).flatmap(lambda k: case(k, max_nodes))
    return st.lists(one, min_size=count, max_size=count)


def side_by_side(batch: Sequence[Case]) -> tuple[Graph, tuple[np.ndarray, ...]]:
    """The cases' graphs as one graph (inputs renamed `c<i>_<name>`) and its inputs."""
    inputs: list[Node] = []
    outputs: list[Node] = []
    feed: list[np.ndarray] = []
    for i, c in enumerate(batch):
        renamed = {x: Node.input(f"c{i}_{x.attrs['name']}", x.shape, x.dtype)
                   for x in c.graph.inputs}
        new: dict[Node, Node] = dict(renamed)
        for n in c.graph.nodes():
            if n not in new:
                new[n] = Node.rebuild(n, [new[x] for x in n.inputs]) if n.inputs else n
        inputs += renamed.values()
        outputs += [new[o] for o in c.graph.outputs]
        feed += c.inputs
    return Graph(inputs, outputs), tuple(feed)


def _build(graph: Graph, target: str) -> Any:
    import smelt

    if target == "c":
        return smelt.compile(graph, "c", board="host-asan")
    return smelt.compile(graph, target)


def _run(module: Any, target: str, feed: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """`module` run on `feed` (the C target's host-asan build runs under the sanitizers)."""
    return tuple(np.asarray(o) for o in module(*feed))


def _wrong(c: Case, got: Sequence[np.ndarray]) -> str | None:
    """Why `got` breaks the case's contract, or None."""
    if c.bit_exact:
        import smelt

        want = smelt.interpret(c.graph, *c.inputs)
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            if w.shape != g.shape or not np.array_equal(w, g, equal_nan=True):
                bad = int(np.sum(w != g)) if w.shape == g.shape else w.size
                return f"output {i}: {bad} of {w.size} values differ from the interpreter"
        return None
    with np.errstate(all="ignore"):
        ref = run64(c.graph, c.inputs)
    mine = Evaluation(tuple(np.asarray(g, np.float64) for g in got), ref.magnitude,
                      ref.growth, ref.eps)
    bad = compare(exact, ref, mine)
    return None if bad is None else str(bad)


def check_one(c: Case, target: str) -> Failure | None:
    """Build and run one case; its Failure, or None."""
    text = c.graph.to_text()
    try:
        module = _build(c.graph, target)
    except Exception as e:  # the compiler must take every valid graph: any error is a finding
        return Failure(c.kind, "build", f"{type(e).__name__}: {str(e)[:400]}", text)
    try:
        got = _run(module, target, c.inputs)
    except Exception as e:
        return Failure(c.kind, "run", f"{type(e).__name__}: {str(e)[:400]}", text)
    why = _wrong(c, got)
    return None if why is None else Failure(c.kind, "output", why, text)


def check_batch(batch: Sequence[Case], target: str) -> list[Failure]:
    """Every case of `batch` built once, side by side; on any failure, case by case."""
    graph, feed = side_by_side(batch)
    try:
        got = _run(_build(graph, target), target, feed)
    except Exception:
        got = None
    if got is not None:
        start, fine = 0, True
        for c in batch:
            n = len(c.graph.outputs)
            if _wrong(c, got[start:start + n]) is not None:
                fine = False
                break
            start += n
        if fine:
            return []
    return [f for f in (check_one(c, target) for c in batch) if f is not None]


def ops_covered(batch: Sequence[Case]) -> set[str]:
    """The ops the batch's graphs hold (inputs and constants aside)."""
    return {n.op for c in batch for n in c.graph.nodes() if n.op not in ("input", "constant")}


__all__ = ["FUSED_VOCABULARY", "INT8_PIPELINE", "INT8_VOCABULARY", "KINDS", "Case", "Failure",
           "case", "cases", "check_batch", "check_one", "ops_covered", "side_by_side"]
