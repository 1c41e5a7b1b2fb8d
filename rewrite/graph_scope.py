"""The graph under construction for `graphs()`: its nodes with value bounds (intervals in
real arithmetic), and the interval helpers the op builders share."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from hypothesis import strategies as st

from smelt.ir import Node

from .tensor_strategies import (
    CONSTANT_SCALES,
    MAX_ELEMENTS,
    MAX_MAGNITUDE,
    SAFE_MARGIN,
    Bounds,
)


# -- graphs: the scope under construction --------------------------------------------------
class _Scope:
    """The graph being built: its float32 nodes with their value bounds, and the op nodes
    (candidates for outputs)."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.nodes: list[Node] = []  # operands on offer
        self.bounds: dict[Node, Bounds] = {}  # every node made, offered or not
        self.built: list[Node] = []

    def add(self, node: Node, bounds: Bounds | None, built: bool = True) -> Node | None:
        """Offer `node` as an operand if its values stay finite and small and its size is
        bounded; `built` nodes may also become outputs."""
        if bounds is None or not _small(bounds) or node.tensor_type.size > MAX_ELEMENTS:
            return None
        self.bounds[node] = bounds
        if all(n is not node for n in self.nodes):
            self.nodes.append(node)
            if built:
                self.built.append(node)
        return node

    def pick(self, ok: Callable[[Node], bool] | None = None) -> Node | None:
        """A node of the scope satisfying `ok`, or None when there is none."""
        found = [n for n in self.nodes if ok is None or ok(n)]
        if not found:
            return None
        if self.draw(st.booleans()):  # half the time the newest: deeper chains, less dead code
            return found[-1]
        return self.draw(st.sampled_from(found))

    def constant(self, shape: Sequence[int], positive: bool = False) -> Node:
        """A float32 constant with random values of a random magnitude (`CONSTANT_SCALES`);
        `positive` keeps every value at least SAFE_MARGIN."""
        scale = self.draw(st.sampled_from(CONSTANT_SCALES))
        rng = np.random.default_rng(self.draw(st.integers(0, 2**32 - 1)))
        if positive:
            values = np.maximum(rng.uniform(0.5, 2.0, tuple(shape)) * scale, SAFE_MARGIN)
        else:
            values = rng.uniform(-scale, scale, tuple(shape))
        node = Node.constant(values.astype(np.float32))
        self.bounds.setdefault(node, _bounds_of(node.value))
        return node

    def scalar(self, value: float) -> Node:
        """A float32 scalar constant."""
        node = Node.constant(np.float32(value))
        self.bounds.setdefault(node, _bounds_of(node.value))
        return node

    def bound(self, node: Node) -> Bounds:
        return self.bounds[node]

    def magnitude(self, node: Node) -> float:
        lo, hi = self.bounds[node]
        return max(abs(lo), abs(hi))


def _small(b: Bounds) -> bool:
    return all(math.isfinite(v) and abs(v) <= MAX_MAGNITUDE for v in b) and b[0] <= b[1]


def _bounds_of(values: np.ndarray) -> Bounds:
    return (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)


def _hull(*bs: Bounds) -> Bounds:
    return min(b[0] for b in bs), max(b[1] for b in bs)


def _sym(m: float) -> Bounds:
    return -m, m


def _positive(b: Bounds) -> bool:
    return b[0] >= SAFE_MARGIN


def _nonzero(b: Bounds) -> bool:
    return b[0] >= SAFE_MARGIN or b[1] <= -SAFE_MARGIN


