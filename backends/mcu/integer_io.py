"""An integer graph's integer core: the graph `fold-qdq` leaves, without the quantize of its
inputs and the dequantize of its outputs.

After `quantize(w8a8),fold-qdq` a CNN is integer from the input's quantize to the outputs'
dequantize. A microcontroller usually receives its input already quantized (a camera's
uint8 pixels) and hands integer scores on; cutting those two ends off leaves a graph with no
floating point at all, which builds for a core without an FPU and links no soft-float code.

    core = integer_io(graph)
    core.graph                # inputs: the quantized tensors; outputs: the integers
    core.input_quant[i]       # (scale, zero_point, axis) that quantized input i
    core.output_quant[i]      # (scale, zero_point, axis) that dequantizes output i
    core.quantize(x)          # the core's inputs for float inputs (the graph's own quantize)

Exact by construction: the core computes the same integers as the graph does between
those two ends (the interpreter runs both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smelt.ir.errors import SmeltError
from smelt.ir.graph import Graph
from smelt.ir.interpreter import interpret
from smelt.ir.node import Node

Quant = tuple[tuple[float, ...], tuple[int, ...], int | None]


class IntegerIOError(SmeltError):
    """The graph's inputs are not all quantized right away, or its outputs not dequantized."""


@dataclass(frozen=True)
class IntegerCore:
    graph: Graph
    input_quant: tuple[Quant, ...]
    output_quant: tuple[Quant, ...]
    quantizer: Graph  # the original inputs -> their quantize nodes

    def quantize(self, *inputs) -> tuple[np.ndarray, ...]:
        """The core's inputs for the original graph's float inputs (the reference's rule)."""
        return interpret(self.quantizer, *inputs)


def _quant(n: Node) -> Quant:
    a = n.attrs
    return tuple(a["scale"]), tuple(a["zero_point"]), a["axis"]


def integer_io(graph: Graph) -> IntegerCore:
    users = graph.users()
    new: dict[int, Node] = {}
    inputs, input_quant, quantizers = [], [], []
    for x in graph.inputs:
        us = users[x]
        if len(us) != 1 or us[0].op != "quantize":
            raise IntegerIOError(f"input {x.attrs['name']!r} is not read by exactly one "
                                 "quantize; run `quantize(w8a8),fold-qdq` first, or compile "
                                 "the float graph")
        q = us[0]
        quantizers.append(q)
        inputs.append(Node.input(x.attrs["name"], q.shape, q.dtype))
        new[id(q)] = inputs[-1]
        input_quant.append(_quant(q))
    outputs, output_quant = [], []
    for o in graph.outputs:
        if o.op != "dequantize":
            raise IntegerIOError(f"output {o.op}({o.type}) is not a dequantize: this graph "
                                 "has no integer output to stop at")
        outputs.append(o.inputs[0])
        output_quant.append(_quant(o))
    for n in graph.nodes():
        if id(n) in new or not n.inputs:
            continue
        ins = [new.get(id(x), x) for x in n.inputs]
        if any(a is not b for a, b in zip(ins, n.inputs, strict=True)):
            new[id(n)] = Node.rebuild(n, ins)
    core = Graph(inputs, [new.get(id(o), o) for o in outputs], graph.name)
    return IntegerCore(core, tuple(input_quant), tuple(output_quant),
                       Graph(graph.inputs, quantizers, f"{graph.name}_quantize"))
