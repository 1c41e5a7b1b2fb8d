"""smelt: a declarative graph-rewriting compiler for efficient deep learning.

    import smelt
    graph = smelt.trace(model, (x,))          # torch.export -> smelt IR
    print(graph.to_text())
    (y,) = smelt.interpret(graph, x)          # the reference semantics
    smelt.save(graph, "model.smelt")          # text + model.npz, never pickle
"""

import smelt.passes as _passes  # noqa: F401,E402  (registers the shipped rules and passes)
from smelt.backends.targets import TargetError  # noqa: E402
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
from smelt.ir.dims import SymDim  # noqa: E402
from smelt.ir.specialize import make_dynamic, specialize  # noqa: E402
from smelt.rewrite import (  # noqa: E402
    Contract,
    ContractViolation,
    NonTerminationError,
    Pass,
    PassContractError,
    PassResult,
    Pipeline,
    PipelineParseError,
    Rule,
    RuleSet,
    UnknownPassError,
    bounded,
    exact,
    explain,
    function_pass,
    layer_errors,
    passes,
    register_pass,
    register_rules,
    rewrite,
    rule,
    rules,
)

__version__ = "0.1.0"


#: names served from smelt.backends.interop on first use (onnx itself loads on export)
_INTEROP = ("export_onnx", "OnnxExportError")


def __getattr__(name: str):
    if name == "testing":  # imports hypothesis: load it only when asked for
        import importlib

        return importlib.import_module("smelt.testing")
    if name in _INTEROP:  # export_onnx(graph, path=None, *, opset=21) -> onnx.ModelProto
        import importlib

        return getattr(importlib.import_module("smelt.backends.interop"), name)
    raise AttributeError(f"module 'smelt' has no attribute {name!r}")


def trace(module, args, kwargs=None, **options):
    """Trace a torch.nn.Module through torch.export into a smelt Graph; `dynamic_shapes=`
    (torch.export's, with `torch.export.Dim`) makes input axes symbolic sizes."""
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
    "Contract", "ContractViolation", "NonTerminationError", "Pass", "PassContractError",
    "PassResult", "Pipeline", "PipelineParseError", "Rule", "RuleSet", "UnknownPassError",
    "bounded", "exact", "explain", "function_pass", "layer_errors", "passes", "register_pass",
    "register_rules", "rewrite", "rule", "rules",
    "FileFormatError", "Graph", "InterpretError", "Node", "OPS", "ParseError", "SmeltError",
    "SymDim", "TargetError", "TensorType", "TypeInferenceError", "UnsupportedOpError",
    "VerificationError", "interpret", "load", "make_dynamic", "ops", "parse_graph", "save",
    "specialize", "trace", "trace_fx", "trace_jax", "verify",
]


def compile(graph, target="cpu", **options):  # noqa: A001 - the public name users expect
    """Compile a Graph with TVM for `target` ("cpu", "cuda", "c": `smelt.targets()`); returns
    a module callable on numpy arrays / torch tensors. Each target's options are in its
    folder's target.py (backends/cpu/, backends/cuda/, backends/mcu/)."""
    from smelt.backends.compile import compile_graph

    return compile_graph(graph, target, **options)


def load_compiled(path):
    """Load a library written by `compiled_module.export(path)`."""
    from smelt.backends.compiled import load_compiled as _load

    return _load(path)


def to_relax(graph, target=None):
    """The graph as a TVM Relax IRModule (function `main`): the generic, reference-exact
    lowering any TVM pipeline builds, or with `target` that target's own entries."""
    from smelt.backends.lowering import to_relax as _to_relax

    return _to_relax(graph, target)


def targets():
    """The names of the targets `smelt.compile` can build for."""
    from smelt.backends.targets import target_names

    return target_names()


__all__ += ["compile", "load_compiled", "targets", "to_relax"]


def backend(pipeline="canonicalize,fuse", target="cpu", **compile_options):
    """A TorchDynamo backend: `torch.compile(model, backend=smelt.backend())`."""
    from smelt.backends.interop import backend as _backend

    return _backend(pipeline, target, **compile_options)


def to_torch(graph):
    """The graph as a torch.fx.GraphModule (one call per node, weights as buffers)."""
    from smelt.backends.interop import to_torch as _to_torch

    return _to_torch(graph)


def to_jax(graph):
    """The graph as a jittable JAX function of its inputs."""
    from smelt.backends.interop import to_jax as _to_jax

    return _to_jax(graph)


__all__ += ["backend", "to_jax", "to_torch", *_INTEROP]
