"""smelt as a TorchDynamo backend: `torch.compile(model, backend=smelt.backend(...))`.

Dynamo hands a backend each captured graph (torch-level fx, parameters and buffers lifted to
graph inputs) with example inputs. We pass it through AOTAutograd with the frontend's core
ATen decompositions (`torch_export.decomposition_table`), so the graph smelt converts is the
functional core-ATen graph the torch.export frontend already reads, with the same converter
table. The inputs AOTAutograd marks static (parameters, buffers) become constants, so weight
passes such as fold-bn see them; the others stay graph inputs. The graph then runs the
pipeline, is compiled with `smelt.compile`, and is called on torch tensors, returning torch
tensors on the inputs' device.

Conversion and compilation happen at the first call of a graph, when the real parameter
values are at hand. Weights are frozen at that point: a later in-place change to a parameter
or buffer (`load_state_dict`, an optimizer step) is seen through the tensor's version counter
and the graph is rebuilt with the new values; weights that keep changing (more than
`REFREEZE_LIMIT` rebuilds) become graph inputs instead. Buffers the model itself writes are
never frozen.

A graph smelt cannot take (an op it lacks, dynamic shapes, a failed build) runs with torch
instead, and one `FallbackWarning` of one line says why; smelt never raises into the user's
program. smelt compiles inference graphs: a graph that needs autograd (grad mode on and an
input that requires grad) falls back the same way. Run the model under `torch.no_grad()` or
`torch.inference_mode()`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from smelt.ir.errors import SmeltError, UnsupportedOpError
from smelt.ir.graph import Graph
from smelt.ir.node import Node

DEFAULT_PIPELINE = "canonicalize,fuse"
#: rebuilds with new frozen weights before weights that keep changing become graph inputs
REFREEZE_LIMIT = 2


class FallbackWarning(UserWarning):
    """smelt handed a graph back to torch; the one-line message says which op or why."""


class GraphConversionError(SmeltError):
    """A Dynamo graph smelt cannot represent (dynamic shapes, non-tensor values)."""


# -- the backend ---------------------------------------------------------------------------
class SmeltBackend:
    """The callable `torch.compile` receives as `backend=`; built by `smelt.backend()`."""

    def __init__(self, pipeline: Any = DEFAULT_PIPELINE, target: str = "cpu",
                 **compile_options: Any) -> None:
        from smelt.backends.targets import make_target
        from smelt.rewrite import Pipeline

        # a bad spec or target is the caller's mistake: raised here, before any model runs
        self.pipeline = pipeline if isinstance(pipeline, Pipeline) else Pipeline.parse(
            pipeline or "")
        make_target(target, **compile_options)
        self.target = target
        self.compile_options = compile_options
        #: every graph this backend was given, as a `CompiledGraph` (for inspection)
        self.graphs: list[CompiledGraph] = []

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.compile_options.items())
        return f"smelt.backend(pipeline={self.pipeline.spec()!r}, target={self.target!r}{opts})"

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable:
        if torch.is_grad_enabled() and any(
                isinstance(x, torch.Tensor) and x.requires_grad for x in example_inputs):
            _warn("this graph needs autograd (grad mode is on and an input requires grad); "
                  "smelt compiles inference graphs: call the model under torch.no_grad() or "
                  "torch.inference_mode()")
            return gm.forward
        try:
            from torch._dynamo.backends.common import aot_autograd

            from smelt.ir.torch_export import decomposition_table

            compiler = aot_autograd(fw_compiler=self._compile_forward,
                                    decompositions=decomposition_table())
            return compiler(gm, example_inputs)
        except Exception as e:  # AOTAutograd raises many kinds; never into the user's program
            _warn(f"AOTAutograd could not trace this graph ({_one_line(e)})")
            return gm.forward

    def _compile_forward(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any]):
        static = _static_input_indices()
        graph = CompiledGraph(gm, static, self)
        self.graphs.append(graph)
        return graph


def _static_input_indices() -> frozenset[int]:
    """The inputs AOTAutograd knows as parameters or buffers and the graph does not write
    (a buffer the model updates stays a graph input); empty if AOTAutograd does not say."""
    from torch._guards import TracingContext

    ctx = TracingContext.try_get()
    meta = getattr(ctx, "fw_metadata", None) if ctx is not None else None
    static = set(getattr(meta, "static_input_indices", None) or ())
    for i, info in enumerate(getattr(meta, "input_info", None) or ()):
        if getattr(info, "mutates_data", True) or getattr(info, "mutates_metadata", True):
            static.discard(i)
    return frozenset(static)


# -- one compiled graph --------------------------------------------------------------------
class CompiledGraph:
    """One ATen graph: built by smelt at its first call, or run by torch if smelt cannot.

    `graph` is the smelt graph after the pipeline and `module` the compiled module (both None
    until the first call, and on fallback); `fallback` is the reason torch runs it instead."""

    def __init__(self, gm: torch.fx.GraphModule, static: frozenset[int],
                 backend: SmeltBackend) -> None:
        self.gm = gm
        self.static = static
        self.backend = backend
        self.graph: Graph | None = None
        self.module: Any = None
        self.fallback: str | None = None
        self.rebuilds = 0
        self._weights: list[tuple[int, int, int | None]] = []  # (index, data_ptr, version)
        self._dynamic: list[int] = []

    def __call__(self, *args: Any) -> Any:
        if self.fallback is None and self.module is None:
            self._build(args)
        elif self.fallback is None and (changed := self._changed_weights(args)):
            self.rebuilds += 1
            if self.rebuilds > REFREEZE_LIMIT:  # weights that keep changing: inputs from now
                self.static = self.static - changed
            self._build(args)
        if self.fallback is not None:
            return self.gm(*args)
        try:
            outputs = self.module(*(_host(args[i]) for i in self._dynamic))
        except Exception as e:  # a runtime failure is smelt's, not the user's
            self._fall_back(f"the compiled graph failed at run time ({_one_line(e)})")
            return self.gm(*args)
        device = next((args[i].device for i in self._dynamic), torch.device("cpu"))
        return tuple(_tensor(a, device) for a in outputs)

    def _build(self, args: Sequence[Any]) -> None:
        try:
            graph = convert_aten_graph(self.gm, args, self.static)
            graph = self.backend.pipeline(graph)
        except UnsupportedOpError as e:
            where = f" at {e.source.strip()}" if e.source else ""
            return self._fall_back(f"smelt does not support {e.op!r}{where}")
        except SmeltError as e:
            return self._fall_back(f"smelt cannot take this graph: {_one_line(e)}")
        except Exception as e:  # a converter or pass bug: report it, keep the program running
            return self._fall_back(f"converting this graph failed: {_one_line(e)}")
        try:
            from smelt.backends.compile import compile_graph

            self.module = compile_graph(graph, self.backend.target,
                                        **self.backend.compile_options)
        except Exception as e:  # TVM raises many kinds
            return self._fall_back(f"smelt.compile for {self.backend.target!r} failed: "
                                   f"{_one_line(e)}")
        self.graph = graph
        self._dynamic = [i for i in range(len(args)) if i not in self.static]
        self._weights = [(i, args[i].data_ptr(), _version(args[i])) for i in sorted(self.static)
                         if i < len(args) and isinstance(args[i], torch.Tensor)]

    def _fall_back(self, why: str) -> None:
        self.fallback = why
        self.graph = self.module = None
        _warn(f"{why}; running this graph with torch")

    def _changed_weights(self, args: Sequence[Any]) -> frozenset[int]:
        """The frozen inputs written since the build (by in-place ops or a new storage)."""
        return frozenset(i for i, ptr, version in self._weights
                         if args[i].data_ptr() != ptr or _version(args[i]) != version)


def _version(t: torch.Tensor) -> int | None:
    try:
        return t._version
    except RuntimeError:  # inference tensors keep no version counter
        return None


def _warn(message: str) -> None:
    warnings.warn(f"smelt.backend: {message}", FallbackWarning, stacklevel=3)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _host(t: Any) -> Any:
    """A torch tensor as something CompiledModule takes (numpy has no bfloat16)."""
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
    return t


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    if a.dtype.name == "bfloat16":  # ml_dtypes' bfloat16, which torch cannot read
        return torch.from_numpy(a.astype(np.float32)).to(device=device, dtype=torch.bfloat16)
    return torch.from_numpy(a if a.flags.writeable else a.copy()).to(device)


# -- ATen graph -> smelt Graph -------------------------------------------------------------
def convert_aten_graph(gm: torch.fx.GraphModule, args: Sequence[Any],
                       static: frozenset[int] = frozenset(), name: str = "main") -> Graph:
    """The ATen graph `gm` as a smelt Graph, given the values of its inputs: the inputs in
    `static` (weights) become constants, the others graph inputs of the values' shapes."""
    from smelt.ir.torch_common import Builder, smelt_dtype, tensor_constant
    from smelt.ir.torch_export import _convert_call

    b = Builder("torch.compile")
    env: dict[str, Any] = {}
    inputs: list[Node] = []
    placeholders = {n: i for i, n in enumerate(n for n in gm.graph.nodes
                                               if n.op == "placeholder")}
    if len(placeholders) != len(args):
        raise GraphConversionError(f"the graph takes {len(placeholders)} inputs but was called "
                                   f"with {len(args)}")
    outputs: list[Node] = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            i = placeholders[node]
            value = args[i]
            if not isinstance(value, torch.Tensor):
                raise GraphConversionError(
                    f"input {node.name} is a {type(value).__name__}, not a tensor (dynamic "
                    "shapes?); smelt compiles static shapes: pass dynamic=False to "
                    "torch.compile")
            _check_static_shape(node)
            if i in static:
                env[node.name] = b.note(tensor_constant(value), node.name)
            else:
                x = Node.input(node.name, tuple(value.shape), smelt_dtype(value.dtype))
                env[node.name] = x
                inputs.append(x)
        elif node.op == "get_attr":
            env[node.name] = b.note(tensor_constant(_attr(gm, node.target)), node.name)
        elif node.op == "call_function":
            _check_static_shape(node)
            env[node.name] = _convert_call(b, node, env)
        elif node.op == "output":
            outputs = [_output(v, env) for v in _flat(node.args[0])]
        else:
            raise GraphConversionError(f"{node.op} node {node.name} in an ATen graph")
    return Graph(inputs, outputs, name, b.names, b.sources)


def _check_static_shape(node: torch.fx.Node) -> None:
    val = node.meta.get("val")
    vals = val if isinstance(val, list | tuple) else [val]
    for v in vals:
        if isinstance(v, torch.SymInt | torch.SymFloat | torch.SymBool) or (
                isinstance(v, torch.Tensor) and any(
                    not isinstance(d, int) for d in v.shape)):
            raise GraphConversionError(f"{node.name} has a symbolic shape; smelt compiles "
                                       "static shapes: pass dynamic=False to torch.compile")


def _attr(gm: torch.nn.Module, target: str) -> torch.Tensor:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    if not isinstance(value, torch.Tensor):
        raise GraphConversionError(f"attribute {target} is a {type(value).__name__}, "
                                   "not a tensor")
    return value


def _flat(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _output(v: Any, env: dict[str, Any]) -> Node:
    value = env.get(v.name) if isinstance(v, torch.fx.Node) else v
    if not isinstance(value, Node):
        raise GraphConversionError(f"output {v} is a {type(value).__name__}, not a tensor")
    return value


def backend(pipeline: Any = DEFAULT_PIPELINE, target: str = "cpu",
            **compile_options: Any) -> SmeltBackend:
    """A TorchDynamo backend: `torch.compile(model, backend=smelt.backend())`. `pipeline` is
    a spec ("fold-bn,canonicalize,fuse") or a Pipeline; the rest go to `smelt.compile`."""
    return SmeltBackend(pipeline, target, **compile_options)


__all__ = ["CompiledGraph", "FallbackWarning", "GraphConversionError", "SmeltBackend",
           "backend", "convert_aten_graph"]
