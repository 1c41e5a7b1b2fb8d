"""A graph: named, ordered inputs and a tuple of outputs over hash-consed nodes.

Nodes do not know their users; a graph computes its node order (and users, when asked) by an
iterative walk from the outputs, so any number of nodes works without recursion limits.
Original names and source locations live in side tables (`names`, `sources`) keyed by node,
outside node identity: they serve messages and printing, never semantics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .errors import VerificationError
from .node import Node
from .op_table import Cost, get_op


def topo_order(outputs: Iterable[Node], first: Sequence[Node] = ()) -> list[Node]:
    """Every node reachable from `outputs`, inputs before users, deterministic.
    Nodes in `first` (the graph inputs) come first, in their order."""
    order: list[Node] = list(first)
    seen: set[int] = {id(n) for n in first}
    for root in outputs:
        if id(root) in seen:
            continue
        stack: list[tuple[Node, int]] = [(root, 0)]
        while stack:
            node, i = stack[-1]
            if i < len(node.inputs):
                stack[-1] = (node, i + 1)
                child = node.inputs[i]
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, 0))
            else:
                stack.pop()
                seen.add(id(node))
                order.append(node)
    return order


@dataclass(frozen=True)
class Summary:
    nodes: int
    ops: dict[str, int]
    macs: int
    params: int
    param_bytes: int
    activation_bytes: int


class Graph:
    """An immutable computation: `inputs` (op 'input' nodes, distinct names) -> `outputs`."""

    __slots__ = ("inputs", "outputs", "name", "names", "sources", "_order")

    def __init__(
        self,
        inputs: Sequence[Node],
        outputs: Sequence[Node],
        name: str = "main",
        names: Mapping[Node, str] | None = None,
        sources: Mapping[Node, str] | None = None,
    ) -> None:
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.name = name
        self.names = dict(names or {})
        self.sources = dict(sources or {})
        self._order: list[Node] | None = None
        for x in self.inputs:
            if not isinstance(x, Node) or x.op != "input":
                raise VerificationError(f"graph inputs must be input nodes, got {x!r}")
        seen: set[str] = set()
        for x in self.inputs:
            if x.attrs["name"] in seen:
                raise VerificationError(f"two graph inputs are named {x.attrs['name']!r}")
            seen.add(x.attrs["name"])
        if not self.outputs:
            raise VerificationError("a graph needs at least one output")

    # -- structure -----------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        """All nodes, inputs first, each after its operands. Cached."""
        if self._order is None:
            self._order = topo_order(self.outputs, self.inputs)
        return self._order

    def users(self) -> dict[Node, list[Node]]:
        out: dict[Node, list[Node]] = {n: [] for n in self.nodes()}
        for n in self.nodes():
            for x in n.inputs:
                if n not in out[x]:
                    out[x].append(n)
        return out

    def constants(self) -> list[Node]:
        return [n for n in self.nodes() if n.op == "constant"]

    def input_names(self) -> list[str]:
        return [x.attrs["name"] for x in self.inputs]

    def replace(
        self,
        outputs: Sequence[Node] | None = None,
        inputs: Sequence[Node] | None = None,
        names: Mapping[Node, str] | None = None,
    ) -> Graph:
        """A new graph with new outputs (and inputs); side tables carried over."""
        merged = dict(self.names)
        merged.update(names or {})
        return Graph(inputs if inputs is not None else self.inputs,
                     outputs if outputs is not None else self.outputs,
                     self.name, merged, self.sources)

    def __len__(self) -> int:
        return len(self.nodes())

    def __iter__(self):
        return iter(self.nodes())

    # -- analysis ------------------------------------------------------------------------
    def cost(self) -> Cost:
        total = Cost(0, 0)
        for n in self.nodes():
            if n.op not in ("input", "constant"):
                total = total + get_op(n.op).cost([x.type for x in n.inputs], n.type,
                                                  dict(n.attrs))
        return total

    def summary(self) -> Summary:
        ops: dict[str, int] = {}
        params = pbytes = abytes = 0
        for n in self.nodes():
            ops[n.op] = ops.get(n.op, 0) + 1
            if n.op == "constant":
                params += n.tensor_type.size
                pbytes += n.tensor_type.nbytes
            elif n.op != "input" and hasattr(n.type, "nbytes"):
                abytes += n.type.nbytes
        return Summary(len(self.nodes()), dict(sorted(ops.items())), self.cost().macs,
                       params, pbytes, abytes)

    def to_networkx(self):
        """A networkx.DiGraph with one vertex per node (integer ids in topological order)
        and an edge per operand use (attribute `index` = operand position)."""
        import networkx as nx

        g = nx.MultiDiGraph(name=self.name)
        ids = {n: i for i, n in enumerate(self.nodes())}
        for n, i in ids.items():
            g.add_node(i, op=n.op, type=str(n.type), node=n, label=self.names.get(n, n.op),
                       is_output=any(n is o for o in self.outputs))
        for n, i in ids.items():
            for pos, x in enumerate(n.inputs):
                g.add_edge(ids[x], i, index=pos)
        return g

    # -- text ------------------------------------------------------------------------------
    def to_text(self) -> str:
        from .text_format import print_graph

        return print_graph(self)[0]

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return (f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.outputs)} outputs, "
                f"{len(self.nodes())} nodes>")

    def verify(self) -> Graph:
        from .verifier import verify

        verify(self)
        return self

    def __reduce__(self):
        raise TypeError("smelt graphs are not picklable; use smelt.save / smelt.load")
