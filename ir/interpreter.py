"""The reference interpreter: what every graph means.

Each node is evaluated by its op's numpy reference in topological order. Float graphs run in
float32 by default; `precision="float64"` upcasts every floating input, constant and cast to
float64 (the mode verification uses to get an oracle whose own rounding error is negligible).
Integer ops are exact. bfloat16 is held in float32 storage: every bfloat16-typed value (inputs,
op results, casts) is rounded to the nearest bfloat16, ties to even, as torch does; float64
precision skips that rounding like every other narrowing. int4/uint4 live in int8/uint8:
results wrap modulo 16 as other integer types wrap, and inputs must already lie in range.
Values are freed once their last user has run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .dims import specialize_value
from .errors import InterpretError
from .graph import Graph
from .inputs import input_array
from .node import Node
from .op_table import get_op
from .ops.common import round_to_bfloat16
from .types import TensorType, is_float, numpy_dtype


def _bind(graph: Graph, args: Sequence[Any], kwargs: dict[str, Any],
          sizes: dict[str, int]) -> list[np.ndarray]:
    """The input arrays in graph order; `sizes` gets the size of each symbolic dimension."""
    names = graph.input_names()
    if len(args) > len(names):
        raise InterpretError(f"graph takes {len(names)} inputs ({', '.join(names)}), "
                             f"got {len(args)}")
    values: list[Any] = list(args) + [None] * (len(names) - len(args))
    for k, v in kwargs.items():
        if k not in names:
            raise InterpretError(f"graph has no input named {k!r}; inputs: {', '.join(names)}")
        i = names.index(k)
        if i < len(args):
            raise InterpretError(f"input {k!r} given twice")
        values[i] = v
    out = []
    for node, v in zip(graph.inputs, values, strict=True):
        if v is None:
            raise InterpretError(f"input {node.attrs['name']!r} is missing")
        t = node.tensor_type
        a = input_array(v, node.attrs["name"], t.shape, t.dtype,  # the rule of ir/inputs.py
                        sizes=sizes)
        if t.dtype == "bfloat16":
            a = round_to_bfloat16(a)
        out.append(a)
    return out


def interpret(
    graph: Graph,
    *inputs: Any,
    precision: str = "float32",
    observe: Callable[[Node, Any], None] | None = None,
    **named: Any,
) -> tuple[np.ndarray, ...]:
    """Run `graph` on numpy arrays (or torch tensors); returns a tuple of numpy arrays.
    `observe(node, value)`, when given, sees every node's value as it is computed (inputs
    and constants included), in topological order."""
    if precision not in ("float32", "float64"):
        raise InterpretError(f"precision must be 'float32' or 'float64', not {precision!r}")
    wide = precision == "float64"
    order = graph.nodes()
    remaining: dict[int, int] = {}
    for n in order:
        for x in n.inputs:
            remaining[id(x)] = remaining.get(id(x), 0) + 1
    for o in graph.outputs:
        remaining[id(o)] = remaining.get(id(o), 0) + 1
    env: dict[int, Any] = {}
    sizes: dict[str, int] = {}
    for node, value in zip(graph.inputs, _bind(graph, inputs, named, sizes), strict=True):
        env[id(node)] = _widen(value) if wide else value
    for n in order:
        if n.op == "input":
            if id(n) not in env:
                raise InterpretError(f"input {n.attrs['name']!r} is used but not bound")
            if observe is not None:
                observe(n, env[id(n)])
            continue
        if n.op == "constant":
            env[id(n)] = _widen(n.value) if wide else n.value
            if observe is not None:
                observe(n, env[id(n)])
            continue
        args = [env[id(x)] for x in n.inputs]
        env[id(n)] = evaluate(n, args, wide, sizes)
        if observe is not None:
            observe(n, env[id(n)])
        for x in n.inputs:
            remaining[id(x)] -= 1
            if remaining[id(x)] == 0:
                env.pop(id(x), None)
    return tuple(np.asarray(env[id(o)]) for o in graph.outputs)


def _widen(a: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.floating) and a.dtype != np.float64:
        return a.astype(np.float64)
    return a


def _narrow(out: np.ndarray, dtype: str, wide: bool) -> np.ndarray:
    """Values of the types numpy stores wider brought into their type: bfloat16 rounded (not
    in float64 mode), int4/uint4 wrapped modulo 16 like every other integer overflow."""
    if dtype == "bfloat16" and not wide:
        return round_to_bfloat16(out)
    if dtype == "int4":
        return ((out.astype(np.int16) + 8) % 16 - 8).astype(np.int8)
    if dtype == "uint4":
        return (out % 16).astype(np.uint8)
    return out


def evaluate(n: Node, args: list[Any], wide: bool = False,
             sizes: Mapping[str, int] | None = None) -> Any:
    """One node's value from its operands' values; `sizes` gives the symbolic dimensions
    their sizes for this run (attributes that hold them, such as a reshape's target, are
    evaluated at those sizes)."""
    opdef = get_op(n.op)
    attrs = dict(n.attrs)
    if sizes:
        attrs = {k: specialize_value(v, sizes) for k, v in attrs.items()}
    if wide and n.op == "cast" and is_float(attrs["dtype"]):
        attrs["dtype"] = "float64"
    try:
        out = opdef.ref(*args, **attrs)
    except InterpretError:
        raise
    except (ValueError, IndexError, FloatingPointError) as e:
        raise InterpretError(f"{n.op} failed in the reference interpreter: {e}") from e
    if isinstance(n.type, TensorType):
        out = np.asarray(out)
        want = numpy_dtype(n.type.dtype)
        if wide and is_float(n.type.dtype):
            want = np.dtype(np.float64)
        if out.dtype != want:
            out = out.astype(want)
        out = _narrow(out, n.type.dtype, wide)
        shape = n.type.shape if n.type.is_static else specialize_value(n.type.shape, sizes or {})
        if out.shape != shape:
            raise InterpretError(f"{n.op} produced shape {list(out.shape)} but its type says "
                                 f"{list(n.type.shape)}: a bug in the op table")
    return out
