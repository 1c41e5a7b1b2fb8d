"""A smelt Graph as a torch.fx.GraphModule, so a rewritten graph goes back into the PyTorch
stack (eager, torch.export, `torch.compile` with Inductor).

One fx node per smelt node: graph inputs become placeholders (same names, same order),
constants become buffers of the module (named after the graph's side table where it has a
name, read with get_attr), and every other node one `call_function` of the entry `TORCH_OPS`
holds for its op, with the node's operands as arguments and its attributes as keyword
arguments (a projection is an `operator.getitem`). The module returns a tuple of the graph's
outputs, as `smelt.interpret` does. With `trainable=True` float weights are parameters
instead, to fine-tune; `with_weights` writes them back into the graph.

`TORCH_OPS` is the one interop table (array_ops.py) bound to torch's namespace
(torch_namespace.py); what each entry computes is written there. bfloat16 values are
torch.bfloat16 tensors; int4/uint4 live in int8/uint8 and wrap modulo 16.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import fx

from smelt.backends.interop import torch_namespace
from smelt.backends.interop.array_ops import STRUCTURAL, bind
from smelt.ir.errors import SmeltError
from smelt.ir.graph import Graph
from smelt.ir.node import Node

#: op -> the function an fx node of that op calls
TORCH_OPS: dict[str, Callable[..., Any]] = bind(torch_namespace)


class TorchConversionError(SmeltError):
    """A graph could not be rebuilt as torch.fx (an op without an entry in TORCH_OPS)."""


def tensor_of(node: Node) -> torch.Tensor:
    """A constant's value as a torch tensor of its dtype (bfloat16 as torch.bfloat16)."""
    value = np.ascontiguousarray(node.value)
    t = torch.from_numpy(value.copy())
    return t.to(torch.bfloat16) if node.dtype == "bfloat16" else t


_NOT_IDENT = re.compile(r"\W")


def _buffer_name(node: Node, graph: Graph, taken: set[str]) -> str:
    base = _NOT_IDENT.sub("_", graph.names.get(node, "")).strip("_") or "const"
    base = base if base[0].isalpha() else f"c_{base}"
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def constant_names(graph: Graph) -> dict[Node, str]:
    """The attribute name `to_torch` gives each constant of `graph` (its side-table name made
    an identifier, unique), in graph order."""
    taken = set(graph.input_names())
    return {n: _buffer_name(n, graph, taken) for n in graph.nodes() if n.op == "constant"}


def trainable_weight(node: Node) -> bool:
    """What `to_torch(graph, trainable=True)` makes a parameter: a finite float constant of
    rank >= 1 (scalars such as an epsilon or 1/sqrt(d) stay buffers)."""
    return (node.dtype in ("float64", "float32", "float16") and node.value.ndim >= 1
            and bool(np.all(np.isfinite(node.value))))


def to_torch(graph: Graph, *, trainable: bool | Callable[[Node], bool] = False
             ) -> fx.GraphModule:
    """`graph` as a GraphModule whose forward takes the graph's inputs (torch tensors, in
    order) and returns a tuple of its outputs.

    Constants are buffers. With `trainable=True` the float weight constants
    (`trainable_weight`) are `nn.Parameter`s instead, so the module can be fine-tuned; a
    callable picks the constants itself. `with_weights(graph, module)` writes the trained
    values back into the graph."""
    missing = sorted({n.op for n in graph.nodes()} - set(TORCH_OPS) - STRUCTURAL)
    if missing:
        raise TorchConversionError(f"no torch entry for op(s) {missing}; add them to the "
                                   "interop table in backends/interop/array_ops.py")
    pick = trainable_weight if trainable is True else trainable or None
    root = torch.nn.Module()
    fxg = fx.Graph()
    env: dict[int, fx.Node] = {}
    for x in graph.inputs:
        env[id(x)] = fxg.placeholder(x.attrs["name"])
    names = constant_names(graph)
    for n in graph.nodes():
        if n.op == "input":
            continue
        if n.op == "constant":
            name = names[n]
            if pick is not None and pick(n):
                root.register_parameter(name, torch.nn.Parameter(tensor_of(n)))
            else:
                root.register_buffer(name, tensor_of(n))
            env[id(n)] = fxg.get_attr(name)
            continue
        args = tuple(env[id(x)] for x in n.inputs)
        if n.op == "project":
            env[id(n)] = fxg.call_function(operator.getitem, (args[0], n.attrs["index"]))
        else:
            env[id(n)] = fxg.call_function(TORCH_OPS[n.op], args, dict(n.attrs))
        name = graph.names.get(n)
        if name:
            env[id(n)].meta["smelt_name"] = name
    fxg.output(tuple(env[id(o)] for o in graph.outputs))
    return fx.GraphModule(root, fxg, class_name=graph.name if graph.name.isidentifier()
                          else "SmeltGraph")


def with_weights(graph: Graph, module: torch.nn.Module) -> Graph:
    """`graph` with every constant replaced by the value of the same-named parameter or
    buffer of `module` (a `to_torch(graph)` module, e.g. after fine-tuning), in the
    constant's dtype; names and source lines carried over."""
    state = dict(module.named_parameters()) | dict(module.named_buffers())
    new: dict[Node, Node] = {}
    for n, name in constant_names(graph).items():
        if name not in state:
            raise TorchConversionError(f"the module has no parameter or buffer {name!r}; "
                                       "give the module to_torch(graph) built from this graph")
        t = state[name].detach().cpu()
        value = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        if value.shape != n.shape:
            raise TorchConversionError(f"{name}: the module holds shape {list(value.shape)}, "
                                       f"the graph {list(n.shape)}")
        if not np.array_equal(value, n.value):
            new[n] = Node.constant(value.astype(n.value.dtype), n.dtype)
    if not new:
        return graph
    for n in graph.nodes():
        if n.inputs:
            ins = [new.get(x, x) for x in n.inputs]
            if any(a is not b for a, b in zip(ins, n.inputs, strict=True)):
                new[n] = Node.rebuild(n, ins)
    return Graph(graph.inputs, [new.get(o, o) for o in graph.outputs], graph.name,
                 {new.get(n, n): v for n, v in graph.names.items()},
                 {new.get(n, n): v for n, v in graph.sources.items()})


__all__ = ["TORCH_OPS", "TorchConversionError", "constant_names", "tensor_of", "to_torch",
           "trainable_weight", "with_weights"]
