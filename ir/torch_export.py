"""The torch.export frontend: a module and example inputs -> a smelt Graph.

The module is exported (torch.export.export), the core ATen decompositions are run (keeping
the ops smelt models directly: linear, silu, hardswish, hardsigmoid), and each ATen op is
converted through the table in `torch_aten`. Parameters, buffers and lifted constants become
constant nodes. A computation on constants only (masks, position ids, rotary tables) is
evaluated by torch at trace time and becomes a constant. An op with no converter raises
`UnsupportedOpError` naming it and the user's source line.
"""

from __future__ import annotations

import inspect
import operator
import warnings
from collections.abc import Sequence
from typing import Any

import sympy
import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from .aten_coverage import OUT_OF_SCOPE
from .aten_indexing import UNINITIALIZED
from .dims import MAX_SIZE, SymDim, as_dim, largest, smallest
from .errors import SmeltError, UnsupportedOpError
from .graph import Graph
from .node import Node
from .torch_aten import ATEN, _Unsupported, check_against
from .torch_common import Builder, TraceError, smelt_dtype, source_line, tensor_constant

KEEP = ("linear", "silu", "hardswish", "hardsigmoid",
        # resizing, reflect / edge padding, im2col / col2im: one op each (aten_spatial.py,
        # torch_aten.py), not the index arithmetic the decompositions write
        "upsample_nearest1d", "upsample_nearest3d", "upsample_linear1d", "upsample_trilinear3d",
        "upsample_bicubic2d", "_upsample_nearest_exact1d", "_upsample_nearest_exact2d",
        "_upsample_nearest_exact3d", "reflection_pad1d", "reflection_pad2d",
        "reflection_pad3d", "replication_pad1d", "replication_pad2d", "replication_pad3d",
        "im2col", "col2im")


#: Python arithmetic torch.export records on sizes (batch * heads, seq // 2)
SIZE_ARITHMETIC = {operator.add: operator.add, operator.sub: operator.sub,
                   operator.mul: operator.mul, operator.floordiv: operator.floordiv,
                   operator.neg: operator.neg, torch.sym_max: largest, torch.sym_min: smallest}


def decomposition_table(keep: Sequence[str] = KEEP) -> dict:
    table = torch.export.default_decompositions()
    for op in list(table):
        if getattr(op, "overloadpacket", None) is not None and op.overloadpacket.__name__ in keep:
            del table[op]
    return table


def export(module: torch.nn.Module, args: tuple, kwargs: dict | None = None,
           dynamic_shapes: Any = None) -> ExportedProgram:
    module = module.eval()
    try:
        with warnings.catch_warnings():  # torch's own deprecation noise, not the user's
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
            ep = torch.export.export(module, tuple(args), kwargs or {},
                                     dynamic_shapes=dynamic_shapes)
    except Exception as e:  # torch raises many types; give one with advice
        first = str(e).splitlines()[0] if str(e) else ""
        todo = ("remove data-dependent control flow from forward(), or try smelt.trace_fx"
                if dynamic_shapes is None or "onstraints violated" not in first else
                "torch.export fixed a dimension you marked dynamic: an example input of size "
                "0 or 1 there is specialized (give one of size 2 or more), or the model "
                "needs a size (widen or narrow the Dim's range, or keep that axis static)")
        raise TraceError(f"torch.export could not trace {type(module).__name__}: "
                         f"{type(e).__name__}: {first}\n  to do: {todo}") from e
    try:
        return ep.run_decompositions(decomposition_table())
    except ValueError as e:  # torch's decompositions left a view it cannot take: see below
        if "Cannot view a tensor" not in str(e):
            raise
        return views_as_reshapes(ep).run_decompositions(decomposition_table())


def views_as_reshapes(ep: ExportedProgram) -> ExportedProgram:
    """`ep` with each aten.view recorded as aten.reshape. torch 2.13's decompositions can give
    a tensor other strides than export saw (GPT-2's Conv1D: `x.view(-1, n)` after attention
    fails with "Cannot view a tensor with shape [2, 16, 64] and strides (64, 128, 1)");
    reshape takes any strides, and in a functional graph it has the same values."""
    for node in ep.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.view.default:
            node.target = torch.ops.aten.reshape.default
    ep.graph_module.recompile()
    return ep


def trace_export(module: torch.nn.Module, args: Any, kwargs: dict | None = None, *,
                 name: str = "main", dynamic_shapes: Any = None) -> Graph:
    """Trace `module(*args, **kwargs)` into a smelt Graph through torch.export.
    `dynamic_shapes` is torch.export's: `{"x": {0: Dim("batch", min=1, max=64)}}` makes
    axis 0 of input x the symbol `batch` in [1, 64] (ir/dims.py), a graph for every size in
    range; the Dim's name names the symbol."""
    if not isinstance(args, tuple | list):
        args = (args,)
    with torch.no_grad():
        ep = export(module, tuple(args), kwargs, dynamic_shapes)
    return convert_program(ep, name, _dim_names(module, args, kwargs, dynamic_shapes))


def _dim_names(module: torch.nn.Module, args: Any, kwargs: dict | None,
               dynamic_shapes: Any) -> dict[tuple[int, int], str]:
    """(user input index, axis) -> the name of the torch.export Dim the user gave it, for
    tensor arguments given positionally or by name (others keep torch's symbol names)."""
    if not dynamic_shapes:
        return {}
    try:
        bound = inspect.signature(module.forward).bind(*args, **(kwargs or {}))
    except (TypeError, ValueError):
        return {}
    names = list(bound.arguments)
    specs = dynamic_shapes if isinstance(dynamic_shapes, dict) else dict(
        zip(names, dynamic_shapes, strict=False))
    pairs: list[tuple[Any, Any]] = []  # (tensor argument, its spec), *args flattened
    for k in names:
        value, spec = bound.arguments[k], specs.get(k)
        if isinstance(value, torch.Tensor):
            pairs.append((value, spec))
        elif isinstance(value, tuple | list) and isinstance(spec, tuple | list):
            pairs += [(v, s) for v, s in zip(value, spec, strict=False)
                      if isinstance(v, torch.Tensor)]
    out: dict[tuple[int, int], str] = {}
    for i, (_, spec) in enumerate(pairs):
        axes = spec.items() if isinstance(spec, dict) else enumerate(spec or ())
        for axis, d in axes:
            name = getattr(d, "__name__", None)
            if isinstance(name, str) and name.isidentifier():
                out[(i, axis)] = name
    return out


def _declare_dims(b: Builder, ep: ExportedProgram, index: int, value: torch.Tensor,
                  names: dict[tuple[int, int], str]) -> None:
    """Each new size symbol of user input `index` -> a SymDim with torch's range."""
    for axis, d in enumerate(value.shape):
        if not isinstance(d, torch.SymInt) or not d.node.expr.is_Symbol:
            continue
        sym = d.node.expr
        if sym in b.dims:
            continue
        vr = ep.range_constraints.get(sym)
        lo = int(vr.lower) if vr is not None and vr.lower.is_finite else 0
        hi = int(vr.upper) if vr is not None and vr.upper.is_finite else MAX_SIZE
        b.dims[sym] = SymDim(names.get((index, axis), str(sym)), max(lo, 0), min(hi, MAX_SIZE))


def _lifted_values(ep: ExportedProgram) -> dict[str, torch.Tensor]:
    values: dict[str, torch.Tensor] = {}
    for spec in ep.graph_signature.input_specs:
        if spec.kind == InputKind.PARAMETER or spec.kind == InputKind.BUFFER:
            t = ep.state_dict.get(spec.target)
            if t is None:
                t = ep.constants[spec.target]
            values[spec.arg.name] = t
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            values[spec.arg.name] = ep.constants[spec.target]
    return values


def convert_program(ep: ExportedProgram, name: str = "main",
                    dim_names: dict[tuple[int, int], str] | None = None) -> Graph:
    b = Builder("torch.export")
    lifted = _lifted_values(ep)
    targets = {s.arg.name: s.target for s in ep.graph_signature.input_specs if s.target}
    env: dict[str, Any] = {}
    inputs: list[Node] = []
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            if node.name in lifted:
                const = tensor_constant(lifted[node.name])
                env[node.name] = b.note(const, targets.get(node.name, node.name))
            else:
                val = node.meta["val"]
                if not isinstance(val, torch.Tensor):
                    raise TraceError(f"input {node.name} is not a tensor ({type(val).__name__})")
                _declare_dims(b, ep, len(inputs), val, dim_names or {})
                x = Node.input(node.name, b.shape(val), smelt_dtype(val.dtype))
                env[node.name] = x
                inputs.append(x)
        elif node.op == "call_function":
            env[node.name] = _convert_call(b, node, env)
        elif node.op == "output":
            outputs = _outputs(ep, node, env)
    return Graph(inputs, outputs, name, b.names, b.sources)


def _outputs(ep: ExportedProgram, node: torch.fx.Node, env: dict[str, Any]) -> list[Node]:
    specs = ep.graph_signature.output_specs
    values = node.args[0]
    outs = []
    for spec, v in zip(specs, values, strict=True):
        if spec.kind != OutputKind.USER_OUTPUT:
            raise TraceError(f"the model mutates state ({spec.kind.name}); smelt traces "
                             "inference graphs: call model.eval() and avoid in-place buffers")
        value = env[v.name] if isinstance(v, torch.fx.Node) else v
        if not isinstance(value, Node):
            raise TraceError(f"output {v} is not a tensor")
        outs.append(value)
    return outs


def _resolve(value: Any, env: dict[str, Any]) -> Any:
    if isinstance(value, torch.fx.Node):
        return env[value.name]
    if isinstance(value, list | tuple):
        return type(value)(_resolve(v, env) for v in value)
    return value


def _all_constant(values: Any) -> bool:
    """No operand computed from the inputs, and no symbolic size (torch cannot fold those)."""
    flat = values if isinstance(values, list | tuple) else [values]
    out = True
    for v in flat:
        if isinstance(v, list | tuple):
            out = out and _all_constant(v)
        elif isinstance(v, dict):
            out = out and _all_constant(list(v.values()))
        elif isinstance(v, Node):
            out = out and v.op == "constant"
        elif isinstance(v, sympy.Expr):
            out = False
    return out


def _to_torch(value: Any) -> Any:
    if isinstance(value, Node):
        arr = value.value
        t = torch.from_numpy(arr.copy())
        return t.to(torch.bfloat16) if value.dtype == "bfloat16" else t
    if isinstance(value, list | tuple):
        return type(value)(_to_torch(v) for v in value)
    return value


def _fold(node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
    """Evaluate an op on constants with torch itself."""
    result = node.target(*_to_torch(args), **_to_torch(kwargs))
    if isinstance(result, torch.Tensor):
        return tensor_constant(result)
    if isinstance(result, list | tuple):
        return tuple(tensor_constant(r) if isinstance(r, torch.Tensor) else r for r in result)
    return result


def _convert_call(b: Builder, node: torch.fx.Node, env: dict[str, Any]) -> Any:
    args = _resolve(node.args, env)
    kwargs = _resolve(dict(node.kwargs), env)
    if node.target is operator.getitem:
        value = args[0][args[1]]
        if value is None:
            raise SmeltError(f"{node.name}: a result smelt does not compute is used")
        return value
    if node.target in SIZE_ARITHMETIC:  # sizes of dynamic dimensions: exact, in smelt's Dims
        return as_dim(SIZE_ARITHMETIC[node.target](*args))
    b.source = source_line(node.meta.get("stack_trace"))
    b.operand_values = tuple(a.meta.get("val") if isinstance(a, torch.fx.Node) else None
                             for a in node.args)
    out = node.meta.get("val")
    packet = getattr(node.target, "overloadpacket", None)
    op_name = packet.__name__ if packet is not None else str(node.target)
    converter = ATEN.get(op_name)
    kwargs.pop("device", None), kwargs.pop("layout", None), kwargs.pop("pin_memory", None)
    if _all_constant((args, kwargs)) and op_name not in UNINITIALIZED:
        folded = _fold(node, args, kwargs)
        return b.note(folded, node.name) if isinstance(folded, Node) else folded
    if converter is None:
        raise UnsupportedOpError(str(node.target), b.source, "torch.export",
                                 OUT_OF_SCOPE.get(op_name, ""))
    try:
        result = converter(b, out, *args, **kwargs)
    except _Unsupported as e:
        raise UnsupportedOpError(f"{node.target} ({e})", b.source, "torch.export") from None
    except TypeError as e:
        raise UnsupportedOpError(f"{node.target} with arguments the converter does not take "
                                 f"({e})", b.source, "torch.export") from None
    if isinstance(result, Node):
        return b.note(check_against(result, out, b), node.name)
    return result
