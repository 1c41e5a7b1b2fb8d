"""Calibration: run the reference interpreter over calibration batches and show chosen nodes'
values to their observers (passes/observers.py), the statistics post-training quantization
needs (the calibration step of TensorRT's INT8 calibrators and of PyTorch's prepare/convert).

    observers = {node: make_observer("minmax") for node in activations}
    calibrate(graph, batches, observers)          # -> the same observers, updated
    ranges = {node: obs.range() for node, obs in observers.items()}

What runs. Only the part of the graph the observed nodes depend on: the graph is cut to the
observed nodes that no other observed node reads (its outputs), so nodes feeding only the
real outputs are not computed, and a value is freed as soon as its last reader has run (the
interpreter's rule) instead of being kept until the end. Each observed node's float32 value
(the interpreter's default precision) is passed to `update` as it is computed, without a copy.
Inputs are observed once per batch; constants (weights) once in all, on the first batch.

Batches: any iterable (a generator is consumed once, lazily); each batch is a tuple (or list)
of arrays, one per graph input in order, or a single array for a one-input graph; torch
tensors are accepted. A batch whose count or shapes do not match the graph's inputs, or no
batch at all, raises CalibrationError; an observer's own error (NaN, wrong channel count) is
re-raised naming the node and batch.

Progress: `progress=None` shows a tqdm bar on stderr when there are more than 8 batches or
the first batch took more than 0.5 s; True always shows it, False never. Off a terminal (a CI
log) the bar is written at most every LOG_INTERVAL_S seconds, and once at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from typing import Any

from tqdm import tqdm

from smelt.ir.dims import bind, format_shape
from smelt.ir.errors import SmeltError
from smelt.ir.graph import Graph
from smelt.ir.inputs import to_numpy
from smelt.ir.interpreter import interpret
from smelt.ir.node import Node
from smelt.ir.types import TensorType, is_float

from .observers import NonFiniteError, Observer, ObserverError

AUTO_BATCHES = 8  # progress=None shows a bar past this many batches
AUTO_SECONDS = 0.5  # ... or when the first batch took longer than this
LOG_INTERVAL_S = 30.0  # off a terminal, the bar is rewritten at most this often


class CalibrationError(SmeltError, ValueError):
    """Calibration cannot run as asked: no batches, a batch that does not fit the graph, or an
    observer on a node that is not in the graph or not a float tensor."""


def calibrate(graph: Graph, batches: Iterable[Any], observers: Mapping[Node, Observer], *,
              progress: bool | None = None, nonfinite: set[Node] | None = None
              ) -> dict[Node, Observer]:
    """Feed every observed node's value on every batch to its observer; returns
    {node: observer} (the same, updated, observer objects). A node whose value holds NaN or
    an infinity raises NonFiniteError, unless a `nonfinite` set is given: then the node goes
    into it, is observed no more, and is left out of the result."""
    _check_observers(graph, observers)
    if not observers:
        return {}
    needed = _cut(graph, list(observers))
    total = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
    if total == 0:
        raise CalibrationError("no calibration batches were given; pass at least one batch "
                               "of inputs")
    count = 0
    with ExitStack() as stack:
        bar = stack.enter_context(_bar(total)) if progress else None
        for i, batch in enumerate(batches):
            arrays = _bind(graph, batch, i)
            start = time.perf_counter()
            interpret(needed, *arrays, observe=_feeder(graph, observers, i, nonfinite))
            count += 1
            if i == 0 and progress is None and _slow(total, time.perf_counter() - start):
                bar = stack.enter_context(_bar(total, done=count - 1))
            if bar is not None:
                bar.update()
    if count == 0:
        raise CalibrationError("the calibration batches were empty; pass at least one batch "
                               "of inputs")
    return {n: o for n, o in observers.items() if not nonfinite or n not in nonfinite}


def _bar(total: int | None, done: int = 0) -> tqdm:
    return tqdm(total=total, initial=done, desc="calibrate", unit="batch", file=sys.stderr,
                mininterval=0.1 if sys.stderr.isatty() else LOG_INTERVAL_S,
                maxinterval=LOG_INTERVAL_S)


def _slow(total: int | None, first_s: float) -> bool:
    return (total is not None and total > AUTO_BATCHES) or first_s > AUTO_SECONDS


def describe(graph: Graph, n: Node) -> str:
    """A node as messages name it: its op and its source name, if any."""
    if n.op == "input":
        return f"input {n.attrs['name']!r}"
    name = graph.names.get(n)
    return f"{n.op} node {name!r}" if name else f"an unnamed {n.op} node"


def _check_observers(graph: Graph, observers: Mapping[Node, Observer]) -> None:
    in_graph = {id(n) for n in graph.nodes()}
    for n, obs in observers.items():
        if not isinstance(n, Node) or id(n) not in in_graph:
            raise CalibrationError(f"{n!r} is not a node of graph {graph.name!r}; observe the "
                                   "graph's own nodes (graph.nodes())")
        if not isinstance(obs, Observer):
            raise CalibrationError(f"the observer of {describe(graph, n)} is {obs!r}, not an "
                                   "Observer; build one with make_observer(kind)")
        if not (isinstance(n.type, TensorType) and is_float(n.type.dtype)):
            raise CalibrationError(f"{describe(graph, n)} has type {n.type}; observers take "
                                   "float tensors")


def _cut(graph: Graph, observed: list[Node]) -> Graph:
    """The graph whose outputs are the observed nodes no observed node depends on: running it
    computes exactly what the observers need."""
    seen: set[int] = set()
    read: set[int] = set()
    stack = list(observed)
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        for x in n.inputs:
            read.add(id(x))
            stack.append(x)
    sinks = [n for n in dict.fromkeys(observed) if id(n) not in read]
    return Graph(graph.inputs, sinks, graph.name, graph.names, graph.sources)


def _feeder(graph: Graph, observers: Mapping[Node, Observer], batch: int,
            nonfinite: set[Node] | None):
    wanted = {id(n): (n, obs) for n, obs in observers.items()}

    def observe(n: Node, value: Any) -> None:
        hit = wanted.get(id(n))
        if hit is None or (n.op == "constant" and batch > 0):
            return
        if nonfinite is not None and n in nonfinite:
            return
        try:
            hit[1].update(value)
        except NonFiniteError as e:
            if nonfinite is None:
                raise NonFiniteError(f"{describe(graph, n)}, batch {batch}: {e}") from e
            nonfinite.add(n)
        except ObserverError as e:
            raise ObserverError(f"{describe(graph, n)}, batch {batch}: {e}") from e

    return observe


def _bind(graph: Graph, batch: Any, i: int) -> tuple[Any, ...]:
    """The batch as one array per graph input, shapes checked."""
    names = ", ".join(graph.input_names())
    k = len(graph.inputs)
    if isinstance(batch, tuple | list):
        arrays = tuple(batch)
    elif k == 1:
        arrays = (batch,)
    else:
        raise CalibrationError(f"batch {i} is a single array but the graph has {k} inputs "
                               f"({names}); give each batch as a tuple of {k} arrays")
    if len(arrays) != k:
        raise CalibrationError(f"batch {i} holds {len(arrays)} arrays but the graph has {k} "
                               f"inputs ({names}); give one array per input, in that order")
    out = []
    sizes: dict[str, int] = {}
    for x, a in zip(graph.inputs, arrays, strict=True):
        a = to_numpy(a)  # torch tensors, JAX arrays, lists
        want = x.tensor_type.shape
        why = bind(want, a.shape, sizes)
        if why is not None:
            raise CalibrationError(
                f"batch {i}: input {x.attrs['name']!r} has shape {list(a.shape)}, the graph "
                f"expects {format_shape(want)} ({why}); give batches of the traced shape, or "
                "trace with a symbolic batch (smelt.trace(..., dynamic_shapes=...)) to "
                "calibrate on batches of any size in its range")
        out.append(a)
    return tuple(out)
