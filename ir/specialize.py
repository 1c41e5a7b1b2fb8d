"""Between static and symbolic graphs: `specialize` gives every symbol a size, `make_dynamic`
turns input axes into symbols. Both rebuild the graph node by node, so every type is
inferred again (the op table is the only place that knows shapes).

    g1 = specialize(g, {"n": 8})                      # f32[n,3,32,32] -> f32[8,3,32,32]
    gn = make_dynamic(g1, {"x": {0: SymDim("n", 1, 64)}})

`specialize` serves targets that need concrete sizes (the microcontroller's static arena)
and shows what a symbolic graph means at one size. `make_dynamic` lifts a graph traced at one
size; it fails, naming the node, where a size was baked into an attribute (a reshape to
[2, 12] traced at batch 2): trace with `dynamic_shapes` instead, which records the reshape
as [n, 12].
"""

from __future__ import annotations

from collections.abc import Mapping

from .dims import SymDim, bind, specialize_value, symbols
from .errors import TypeInferenceError
from .graph import Graph
from .node import Node


def specialize(graph: Graph, sizes: Mapping[str, int]) -> Graph:
    """`graph` with each symbol of its inputs set to `sizes[name]` (every symbol needs one,
    within its range)."""
    syms = {d.name: d for x in graph.inputs for d in symbols(x.shape)}
    missing = sorted(set(syms) - set(sizes))
    if missing:
        raise TypeInferenceError(f"specialize needs a size for {', '.join(missing)}")
    for name, size in sizes.items():
        d = syms.get(name)
        if d is None:
            raise TypeInferenceError(f"the graph has no dimension {name!r}; its symbols: "
                                     f"{', '.join(sorted(syms)) or 'none'}")
        if isinstance(size, bool) or not isinstance(size, int) or not d.lo <= size <= d.hi:
            raise TypeInferenceError(f"{name} = {size!r} is outside its range "
                                     f"[{d.lo}, {d.hi}]")
    inputs = {x: Node.input(x.attrs["name"], specialize_value(x.shape, sizes), x.dtype)
              for x in graph.inputs}
    return _rebuild(graph, inputs, lambda n: {k: specialize_value(v, sizes)
                                             for k, v in n.attrs.items()})


def specialize_node(node: Node, sizes: Mapping[str, int]) -> Node:
    """One node at `sizes`: its operands as inputs of their specialized types (the node's
    own type and attributes evaluated; for per-node questions such as a reduction length)."""
    operands = [Node.input(f"x{i}", specialize_value(x.shape, sizes), x.dtype)
                if hasattr(x.type, "shape") else x for i, x in enumerate(node.inputs)]
    return Node.make(node.op, operands, **{k: specialize_value(v, sizes)
                                           for k, v in node.attrs.items()})


def make_dynamic(graph: Graph, axes: Mapping[str, Mapping[int, SymDim]]) -> Graph:
    """`graph` with input `name`'s axis `a` made the symbol `axes[name][a]`. The graph's
    static size there must lie in the symbol's range."""
    by_name = {x.attrs["name"]: x for x in graph.inputs}
    unknown = sorted(set(axes) - set(by_name))
    if unknown:
        raise TypeInferenceError(f"make_dynamic: no input named {', '.join(unknown)}; "
                                 f"inputs: {', '.join(by_name)}")
    inputs = {}
    for x in graph.inputs:
        shape = list(x.shape)
        for axis, sym in axes.get(x.attrs["name"], {}).items():
            if not -len(shape) <= axis < len(shape):
                raise TypeInferenceError(f"input {x.attrs['name']} has no axis {axis}")
            if not isinstance(sym, SymDim):
                raise TypeInferenceError(f"axis {axis} of {x.attrs['name']} must become a "
                                         f"SymDim, got {sym!r}")
            why = bind([sym], [shape[axis]], {})
            if why is not None:
                raise TypeInferenceError(f"input {x.attrs['name']}: {why}")
            shape[axis] = sym
        inputs[x] = Node.input(x.attrs["name"], shape, x.dtype)
    return _rebuild(graph, inputs, lambda n: dict(n.attrs))


def _rebuild(graph: Graph, inputs: dict[Node, Node], attrs_of) -> Graph:
    new: dict[Node, Node] = dict(inputs)
    for n in graph.nodes():
        if n in new:
            continue
        if not n.inputs:
            new[n] = n
            continue
        try:
            new[n] = Node.make(n.op, [new[x] for x in n.inputs], **attrs_of(n))
        except TypeInferenceError as e:
            where = graph.names.get(n) or n.op
            src = graph.sources.get(n)
            raise TypeInferenceError(f"{where}{f' ({src})' if src else ''}: {e}") from None
    return Graph([new[x] for x in graph.inputs], [new[o] for o in graph.outputs],
                 graph.name, {new[k]: v for k, v in graph.names.items() if k in new},
                 {new[k]: v for k, v in graph.sources.items() if k in new})
