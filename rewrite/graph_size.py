"""What a pass report says about a graph's size (nodes, MACs, bytes of constants), measured
when someone reads it.

Measuring walks the whole graph and asks the op table for every node's MACs: on a graph of
100k nodes that costs about as much as rewriting it. A pass report therefore keeps a
`GraphSize` of the graph before and after the pass and measures it on first read (the
numbers are the same as `graph.summary()`'s `nodes`, `macs` and `param_bytes`); until then
it holds the graph. Within one run, `GraphSizes` hands out one GraphSize per graph (a pass's
output is the next pass's input) and remembers each node's MACs and bytes, so graphs that
share most of their nodes are not measured twice.
"""

from __future__ import annotations

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.op_table import get_op


def node_size(n: Node) -> int:
    """A constant's bytes, or an op node's MACs (as Graph.summary and Graph.cost count them)."""
    if n.op == "constant":
        return n.tensor_type.nbytes
    opdef = get_op(n.op)
    if opdef.macs is None:
        return 0
    return int(opdef.macs([x.type for x in n.inputs], n.type, dict(n.attrs)))


class GraphSize:
    """A graph's `nodes`, `macs` and `weight_bytes` (bytes of its constants), measured on
    first read; `GraphSize.known(...)` holds numbers already known."""

    __slots__ = ("_graph", "_memo", "_value")

    def __init__(self, graph: Graph | None, memo: dict[Node, int] | None = None) -> None:
        self._graph = graph
        self._memo = memo if memo is not None else {}
        self._value: tuple[int, int, int] | None = None if graph is not None else (0, 0, 0)

    @classmethod
    def known(cls, nodes: int, macs: int, weight_bytes: int) -> GraphSize:
        size = cls(None)
        size._value = (nodes, macs, weight_bytes)
        return size

    @property
    def value(self) -> tuple[int, int, int]:
        """(nodes, MACs, weight bytes); measures the graph (and lets it go) the first time."""
        if self._value is None:
            self._value = self._measure()
            self._graph = self._memo = None
        return self._value

    def _measure(self) -> tuple[int, int, int]:
        order, memo = self._graph.nodes(), self._memo
        macs = weight_bytes = 0
        for n in order:
            op = n.op
            if op == "input":
                continue
            size = memo.get(n)
            if size is None:
                size = memo[n] = node_size(n)
            if op == "constant":
                weight_bytes += size
            else:
                macs += size
        return len(order), macs, weight_bytes

    @property
    def nodes(self) -> int:
        return self.value[0]

    @property
    def macs(self) -> int:
        return self.value[1]

    @property
    def weight_bytes(self) -> int:
        return self.value[2]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GraphSize) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        nodes, macs, weight_bytes = self.value
        return f"GraphSize(nodes={nodes}, macs={macs}, weight_bytes={weight_bytes})"


class GraphSizes:
    """One run's sizes: the same GraphSize for the graph asked about last (a pass's input is
    the previous pass's output), and one memo of node sizes for all of them."""

    __slots__ = ("_memo", "_last")

    def __init__(self) -> None:
        self._memo: dict[Node, int] = {}
        self._last: tuple[Graph, GraphSize] | None = None

    def __call__(self, graph: Graph) -> GraphSize:
        last = self._last
        if last is not None and last[0] is graph:
            return last[1]
        size = GraphSize(graph, self._memo)
        self._last = (graph, size)
        return size
