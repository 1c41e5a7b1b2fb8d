"""A smelt Graph as a JAX function: `fn = smelt.to_jax(graph); jax.jit(fn)(*inputs)`.

The function takes the graph's inputs in order (numpy or JAX arrays) and returns a tuple of
its outputs, computing each node with the entry `JAX_OPS` holds for its op, the node's
attributes as static keyword arguments. Constants are closed over, so they are embedded in
the jitted computation. `JAX_OPS` is the one interop table (array_ops.py) bound to JAX's
namespace (jax_namespace.py); what each entry computes is written there. bfloat16 is
jnp.bfloat16; int4/uint4 live in int8/uint8 and wrap modulo 16.

64-bit values. With `jax_enable_x64` off (JAX's default) JAX computes float64 and int64 in
32 bits (its own dtype rule, applied to inputs, constants and casts alike). The quantized ops
need exact 64-bit arithmetic (int64 requantization, float64 quantization quotients), so a
graph that has one raises `JaxConversionError` when traced without x64: enable it with
`jax.config.update("jax_enable_x64", True)` or trace inside `with jax.enable_x64(True):`.
`take` clips indices (JAX cannot raise inside a traced function), and an integer contraction
whose result leaves int32 wraps where the reference raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from smelt.backends.interop import jax_namespace
from smelt.backends.interop.array_ops import STRUCTURAL, bind
from smelt.ir.errors import InterpretError, SmeltError
from smelt.ir.graph import Graph

#: op -> the function that computes it on JAX arrays
JAX_OPS: dict[str, Callable[..., Any]] = bind(jax_namespace)
#: ops whose reference arithmetic needs 64-bit types
NEEDS_X64 = frozenset({"quantize", "dequantize", "qconv2d", "qlinear", "qmatmul",
                       "requantize", "qadd", "qmul", "qmean", "linear_w4"})


class JaxConversionError(SmeltError):
    """A graph JAX cannot compute as the reference does; the message says what to do."""


def to_jax(graph: Graph) -> Callable[..., tuple[jax.Array, ...]]:
    """`graph` as a function of its inputs (in order) returning a tuple of its outputs;
    jittable (`jax.jit(smelt.to_jax(graph))`)."""
    ops = {n.op for n in graph.nodes()}
    missing = sorted(ops - set(JAX_OPS) - STRUCTURAL)
    if missing:
        raise JaxConversionError(f"no JAX entry for op(s) {missing}; add them to the interop "
                                 "table in backends/interop/array_ops.py")
    x64_ops = sorted(ops & NEEDS_X64)
    names = graph.input_names()
    order = graph.nodes()
    dtype = jax_namespace.dtype

    def run(*inputs: Any) -> tuple[jax.Array, ...]:
        if len(inputs) != len(names):
            raise InterpretError(f"the function takes {len(names)} inputs "
                                 f"({', '.join(names)}), got {len(inputs)}")
        if x64_ops and not jax.config.jax_enable_x64:
            raise JaxConversionError(
                f"op(s) {x64_ops} need 64-bit arithmetic, which JAX has off: call "
                "jax.config.update('jax_enable_x64', True), or trace inside "
                "`with jax.enable_x64(True):`")
        env: dict[int, Any] = {}
        for x, v in zip(graph.inputs, inputs, strict=True):
            env[id(x)] = jax.numpy.asarray(v, dtype=dtype(x.dtype))
        for n in order:
            if n.op == "input":
                continue
            if n.op == "constant":
                env[id(n)] = jax.numpy.asarray(n.value, dtype=dtype(n.dtype))
                continue
            env[id(n)] = JAX_OPS[n.op](*(env[id(x)] for x in n.inputs), **n.attrs)
        return tuple(env[id(o)] for o in graph.outputs)

    run.__name__ = run.__qualname__ = graph.name if graph.name.isidentifier() else "graph"
    run.__doc__ = f"smelt graph {graph.name!r}: ({', '.join(names)}) -> tuple of " \
                  f"{len(graph.outputs)} output(s)"
    return run


__all__ = ["JAX_OPS", "JaxConversionError", "NEEDS_X64", "to_jax"]
