"""smelt: a declarative graph-rewriting compiler for efficient deep learning.

    import smelt
    graph = smelt.trace(model, (x,))          # torch.export -> smelt IR
    print(graph.to_text())
    (y,) = smelt.interpret(graph, x)          # the reference semantics
    smelt.save(graph, "model.smelt")          # text + model.npz, never pickle
"""

from smelt.ir import (
    OPS,
    FileFormatError,
    Graph,
    InterpretError,
    Node,
    ParseError,
    SmeltError,
    TensorType,
    TypeInferenceError,
    UnsupportedOpError,
    VerificationError,
    interpret,
    load,
    parse_graph,
    save,
    verify,
)

__version__ = "0.1.0"


def trace(module, args, kwargs=None, **options):
    """Trace a torch.nn.Module through torch.export into a smelt Graph."""
    from smelt.ir.torch_export import trace_export

    return trace_export(module, args, kwargs, **options)


def trace_fx(module, args, **options):
    """Trace a torch.nn.Module through torch.fx symbolic tracing into a smelt Graph."""
    from smelt.ir.torch_fx import trace_fx as _trace_fx

    return _trace_fx(module, args, **options)


def trace_jax(fn, *args, **options):
    """Trace a JAX function through jax.make_jaxpr into a smelt Graph."""
    from smelt.ir.jax_frontend import trace_jax as _trace_jax

    return _trace_jax(fn, *args, **options)


def ops() -> list[str]:
    """The names of every op in the op table."""
    return sorted(OPS)


__all__ = [
    "FileFormatError", "Graph", "InterpretError", "Node", "OPS", "ParseError", "SmeltError",
    "TensorType", "TypeInferenceError", "UnsupportedOpError", "VerificationError", "interpret",
    "load", "ops", "parse_graph", "save", "trace", "trace_fx", "trace_jax", "verify",
]
