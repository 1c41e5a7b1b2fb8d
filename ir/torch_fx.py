"""The torch.fx frontend: symbolic tracing, then one table each for modules, functions and
tensor methods.

The module is traced with `torch.fx` (stack traces recorded, so errors can name the user's
line) and run once on the example inputs to learn every value: tensors give static shapes,
and non-tensor values (sizes, shapes, python numbers) become plain python values. Converters
reuse the ATen conversions where the signatures agree. A value computed from constants only is
taken from that run as a constant.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn
from torch.nn import functional as F

from .errors import SmeltError, UnsupportedOpError
from .graph import Graph
from .node import Node
from .torch_aten import ATEN, _Unsupported, check_against
from .torch_common import (
    Builder,
    TraceError,
    binary,
    norm_dim,
    smelt_dtype,
    source_line,
    tensor_constant,
)

Conv = Callable[..., Any]


def _a(name: str) -> Conv:
    """Delegate to the ATen converter `name` (same argument order)."""
    return lambda b, out, *args, **kw: ATEN[name](b, out, *args, **kw)


# -- modules -----------------------------------------------------------------------------
def _conv_module(b: Builder, out, m: nn.Conv2d, x: Node) -> Node:
    if m.padding_mode != "zeros":
        raise _Unsupported(f"Conv2d padding_mode={m.padding_mode!r}")
    padding = m.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        else:  # 'same': total d*(k-1), the extra one at the end (torch's rule)
            tot = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size, strict=True)]
            padding = (tot[0] // 2, tot[1] // 2, tot[0] - tot[0] // 2, tot[1] - tot[1] // 2)
    w = b.note(tensor_constant(m.weight), None)
    bias = None if m.bias is None else tensor_constant(m.bias)
    inputs = (x, w) if bias is None else (x, w, bias)
    return b.make("conv2d", *inputs, stride=m.stride, padding=padding, dilation=m.dilation,
                  groups=m.groups)


def _bn_module(b: Builder, out, m: nn.BatchNorm2d, x: Node) -> Node:
    if m.running_mean is None:
        raise _Unsupported("batch norm without running statistics")
    args = [x, tensor_constant(m.running_mean), tensor_constant(m.running_var)]
    if m.affine:
        args += [tensor_constant(m.weight), tensor_constant(m.bias)]
    return b.make("batch_norm", *args, eps=m.eps)


def _ln_module(b: Builder, out, m: nn.LayerNorm, x: Node) -> Node:
    args = [x]
    if m.weight is not None:
        args.append(tensor_constant(m.weight))
        if m.bias is not None:
            args.append(tensor_constant(m.bias))
    y = b.make("layer_norm", *args, axis=-len(m.normalized_shape), eps=m.eps)
    if m.weight is None and m.bias is not None:
        y = binary(b, "add", y, tensor_constant(m.bias))
    return y


def _linear_module(b: Builder, out, m: nn.Linear, x: Node) -> Node:
    w = tensor_constant(m.weight)
    return b.make("linear", x, w) if m.bias is None else b.make("linear", x, w,
                                                                 tensor_constant(m.bias))


MODULES: dict[type, Conv] = {
    nn.Conv2d: _conv_module,
    nn.Linear: _linear_module,
    nn.BatchNorm2d: _bn_module,
    nn.BatchNorm1d: _bn_module,
    nn.LayerNorm: _ln_module,
    nn.ReLU: lambda b, out, m, x: b.make("relu", x),
    nn.ReLU6: lambda b, out, m, x: b.make("relu6", x),
    nn.Hardtanh: lambda b, out, m, x: ATEN["hardtanh"](b, out, x, m.min_val, m.max_val),
    nn.LeakyReLU: lambda b, out, m, x: b.make("leaky_relu", x, alpha=m.negative_slope),
    nn.GELU: lambda b, out, m, x: b.make("gelu", x, approximate=m.approximate),
    nn.SiLU: lambda b, out, m, x: b.make("silu", x),
    nn.Sigmoid: lambda b, out, m, x: b.make("sigmoid", x),
    nn.Tanh: lambda b, out, m, x: b.make("tanh", x),
    nn.Hardswish: lambda b, out, m, x: b.make("hardswish", x),
    nn.Hardsigmoid: lambda b, out, m, x: b.make("hardsigmoid", x),
    nn.Softmax: lambda b, out, m, x: b.make("softmax", x, axis=m.dim),
    nn.Dropout: lambda b, out, m, x: x,
    nn.Identity: lambda b, out, m, x: x,
    nn.Flatten: lambda b, out, m, x: b.make("flatten", x, start_axis=m.start_dim,
                                            end_axis=m.end_dim),
    nn.MaxPool2d: lambda b, out, m, x: ATEN["max_pool2d"](
        b, out, x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode),
    nn.AvgPool2d: lambda b, out, m, x: ATEN["avg_pool2d"](
        b, out, x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
        m.divisor_override),
    nn.AdaptiveAvgPool2d: lambda b, out, m, x: ATEN["adaptive_avg_pool2d"](
        b, out, x, tuple(out.shape[2:])),
    nn.Embedding: lambda b, out, m, ids: b.make("take", tensor_constant(m.weight), ids, axis=0),
}


# -- functions and methods ---------------------------------------------------------------
def _getitem(b: Builder, out, x: Any, index: Any) -> Any:
    if not isinstance(x, Node):
        return x[index]
    return basic_index(b, x, index)


def basic_index(b: Builder, x: Node, index: Any) -> Node:
    """x[index] for ints, slices, None and Ellipsis (numpy basic indexing)."""
    idx = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, Node) for i in idx):
        raise _Unsupported("indexing with a tensor (use torch.index_select or gather)")
    n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    rank = x.tensor_type.rank
    expanded: list[Any] = []
    for i in idx:
        if i is Ellipsis:
            expanded += [slice(None)] * (rank - n_real)
        else:
            expanded.append(i)
    axis = 0
    drop: list[int] = []
    for i in expanded:
        if i is None:
            x = b.make("unsqueeze", x, axes=(axis,))
            axis += 1
        elif isinstance(i, int):
            size = x.shape[axis]
            k = i % size
            x = b.make("slice", x, axis=axis, start=k, stop=k + 1, step=1)
            drop.append(axis)
            axis += 1
        elif isinstance(i, slice):
            x = ATEN["slice"](b, None, x, axis, i.start, i.stop, i.step or 1)
            axis += 1
        else:
            raise _Unsupported(f"index {i!r}")
    return b.make("squeeze", x, axes=tuple(drop)) if drop else x


def _stack(b: Builder, out, xs, dim=0):
    r = xs[0].tensor_type.rank + 1
    d = norm_dim(dim, r)
    return ATEN["cat"](b, out, [b.make("unsqueeze", x, axes=(d,)) for x in xs], d)


def _repeat_interleave(b: Builder, out, x, repeats, dim=None):
    if not isinstance(repeats, int) or dim is None:
        raise _Unsupported("repeat_interleave with tensor repeats or without dim")
    r = x.tensor_type.rank
    d = norm_dim(dim, r)
    y = b.make("unsqueeze", x, axes=(d + 1,))
    shape = list(y.shape)
    shape[d + 1] = repeats
    y = b.make("expand", y, shape=tuple(shape))
    return b.make("reshape", y, shape=tuple(int(s) for s in out.shape))


def _softmax(b: Builder, out, x, dim=None, **kw):
    return b.make("softmax", x, axis=-1 if dim is None else dim)


def _size(b, out, x, dim=None):
    return x.shape if dim is None else x.shape[dim]


def _to(b, out, x, *args, **kw):
    return ATEN["_to_copy"](b, out, x)


def _mean(b, out, x, dim=None, keepdim=False, **kw):
    return ATEN["mean"](b, out, x, dim, keepdim)


def _sum(b, out, x, dim=None, keepdim=False, **kw):
    return ATEN["sum"](b, out, x, dim, keepdim)


def _layer_norm_fn(b, out, x, shape, weight=None, bias=None, eps=1e-5):
    return ATEN["native_layer_norm"](b, out, x, shape, weight, bias, eps)[0]


def pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_fn(b, out, x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if isinstance(padding, str):
        raise _Unsupported("string padding in F.conv2d; use nn.Conv2d or explicit padding")
    return ATEN["convolution"](b, out, x, w, bias, pair(stride), pair(padding), pair(dilation),
                               False, (0, 0), groups)


def _pad_fn(b, out, x, pad, mode="constant", value=None):
    return ATEN["constant_pad_nd"](b, out, x, pad, value or 0.0, mode)


def _view(b, out, x, *shape, **kw):
    return ATEN["view"](b, out, x)


FUNCTIONS: dict[Any, Conv] = {
    operator.getitem: _getitem,
    operator.add: _a("add"), operator.sub: _a("sub"), operator.mul: _a("mul"),
    operator.truediv: _a("div"), operator.matmul: _a("matmul"), operator.pow: _a("pow"),
    operator.neg: lambda b, out, x: b.make("neg", x),
    operator.gt: _a("gt"), operator.lt: _a("lt"), operator.ge: _a("ge"), operator.le: _a("le"),
    operator.eq: _a("eq"),
    torch.add: _a("add"), torch.sub: _a("sub"), torch.mul: _a("mul"), torch.div: _a("div"),
    torch.matmul: _a("matmul"), torch.bmm: _a("matmul"), torch.mm: _a("matmul"),
    torch.pow: _a("pow"), torch.maximum: _a("maximum"), torch.minimum: _a("minimum"),
    torch.where: _a("where"), torch.clamp: _a("clamp"), torch.clip: _a("clamp"),
    torch.cat: _a("cat"), torch.concat: _a("cat"), torch.stack: _stack,
    torch.flatten: _a("flatten"), torch.reshape: _view, torch.transpose: _a("transpose"),
    torch.permute: _a("permute"), torch.split: _a("split"), torch.chunk: _a("chunk"),
    torch.unsqueeze: _a("unsqueeze"), torch.squeeze: _a("squeeze"),
    torch.mean: _mean, torch.sum: _sum, torch.softmax: _softmax, torch.argmax: _a("argmax"),
    torch.relu: _a("relu"), torch.sigmoid: _a("sigmoid"), torch.tanh: _a("tanh"),
    torch.exp: _a("exp"), torch.log: _a("log"), torch.sqrt: _a("sqrt"), torch.rsqrt: _a("rsqrt"),
    torch.abs: _a("abs"), torch.neg: _a("neg"), torch.sin: _a("sin"), torch.cos: _a("cos"),
    torch.erf: _a("erf"), torch.repeat_interleave: _repeat_interleave,
    F.relu: _a("relu"), F.relu6: lambda b, out, x, inplace=False: b.make("relu6", x),
    F.gelu: _a("gelu"), F.silu: _a("silu"), F.hardswish: _a("hardswish"),
    F.hardsigmoid: _a("hardsigmoid"),
    F.leaky_relu: lambda b, out, x, negative_slope=0.01, inplace=False: b.make(
        "leaky_relu", x, alpha=negative_slope),
    F.hardtanh: lambda b, out, x, min_val=-1.0, max_val=1.0, inplace=False: ATEN["hardtanh"](
        b, out, x, min_val, max_val), F.sigmoid: _a("sigmoid"), F.tanh: _a("tanh"),
    F.softmax: _softmax, F.log_softmax: _a("log_softmax"), F.linear: _a("linear"),
    F.conv2d: _conv_fn, F.layer_norm: _layer_norm_fn, F.pad: _pad_fn,
    F.max_pool2d: _a("max_pool2d"), F.avg_pool2d: _a("avg_pool2d"),
    F.adaptive_avg_pool2d: lambda b, out, x, size: ATEN["adaptive_avg_pool2d"](
        b, out, x, tuple(out.shape[2:])),
    F.dropout: lambda b, out, x, *a, **k: x, F.embedding: _a("embedding"),
}

METHODS: dict[str, Conv] = {
    "view": _view, "reshape": _view, "flatten": _a("flatten"), "transpose": _a("transpose"),
    "permute": lambda b, out, x, *dims: ATEN["permute"](
        b, out, x, dims[0] if len(dims) == 1 and isinstance(dims[0], tuple | list) else dims),
    "contiguous": lambda b, out, x, *a: x, "clone": lambda b, out, x, *a, **k: x,
    "detach": lambda b, out, x: x, "float": lambda b, out, x: ATEN["_to_copy"](b, out, x),
    "to": _to, "type_as": _to,
    "size": _size, "dim": lambda b, out, x: x.tensor_type.rank,
    "mean": _mean, "sum": _sum, "pow": _a("pow"), "softmax": _softmax,
    "split": _a("split"), "chunk": _a("chunk"), "unsqueeze": _a("unsqueeze"),
    "squeeze": _a("squeeze"), "expand": lambda b, out, x, *a: ATEN["expand"](b, out, x),
    "expand_as": lambda b, out, x, y: ATEN["expand"](b, out, x),
    "repeat_interleave": _repeat_interleave, "relu": _a("relu"), "sigmoid": _a("sigmoid"),
    "tanh": _a("tanh"), "exp": _a("exp"), "abs": _a("abs"), "sqrt": _a("sqrt"),
    "rsqrt": _a("rsqrt"), "neg": _a("neg"), "clamp": _a("clamp"), "add": _a("add"),
    "sub": _a("sub"), "mul": _a("mul"), "div": _a("div"), "matmul": _a("matmul"),
    "t": _a("t"), "argmax": _a("argmax"), "masked_fill": None,
}
METHODS = {k: v for k, v in METHODS.items() if v is not None}


# -- driver ------------------------------------------------------------------------------
class _Recorder(fx.Interpreter):
    """Runs the traced module once and keeps every node's value."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        self.values[n] = value
        return value


def trace_fx(module: nn.Module, args: Any, *, name: str = "main") -> Graph:
    """Trace `module(*args)` into a smelt Graph through torch.fx symbolic tracing."""
    if not isinstance(args, tuple | list):
        args = (args,)
    module = module.eval()
    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    try:
        graph = tracer.trace(module)
    except Exception as e:
        raise TraceError(
            f"torch.fx could not trace {type(module).__name__}: {type(e).__name__}: {e}\n"
            "  to do: remove data-dependent control flow, or use smelt.trace (torch.export)"
        ) from e
    gm = fx.GraphModule(tracer.root, graph)
    rec = _Recorder(gm)
    with torch.no_grad():
        rec.run(*args)
    return _convert(gm, rec.values, name)


def _convert(gm: fx.GraphModule, values: dict[fx.Node, Any], name: str) -> Graph:
    b = Builder("torch.fx")
    env: dict[fx.Node, Any] = {}
    inputs: list[Node] = []
    outputs: list[Node] = []
    for n in gm.graph.nodes:
        b.source = source_line(n.stack_trace)
        if n.op == "placeholder":
            v = values[n]
            if isinstance(v, torch.Tensor):
                x = Node.input(n.name, tuple(v.shape), smelt_dtype(v.dtype))
                inputs.append(x)
                env[n] = x
            else:
                env[n] = v
        elif n.op == "get_attr":
            v = values[n]
            env[n] = b.note(tensor_constant(v), n.target) if isinstance(v, torch.Tensor) else v
        elif n.op == "output":
            outputs = _flatten_outputs(env, n.args[0])
        else:
            env[n] = _convert_node(b, gm, n, env, values[n])
    return Graph(inputs, outputs, name, b.names, b.sources)


def _flatten_outputs(env: dict[fx.Node, Any], value: Any) -> list[Node]:
    if isinstance(value, fx.Node):
        value = env[value]
    if isinstance(value, Node):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [o for v in value for o in _flatten_outputs(env, v)]
    raise TraceError(f"an output is a {type(value).__name__}, not a tensor")


def _is_constant_valued(args: Any) -> bool:
    if isinstance(args, Node):
        return args.op == "constant"
    if isinstance(args, list | tuple):
        return all(_is_constant_valued(a) for a in args)
    if isinstance(args, dict):
        return all(_is_constant_valued(a) for a in args.values())
    return True


def _convert_node(b: Builder, gm: fx.GraphModule, n: fx.Node, env: dict, value: Any) -> Any:
    args = fx.node.map_arg(n.args, lambda a: env[a])
    kwargs = fx.node.map_arg(dict(n.kwargs), lambda a: env[a])
    if not isinstance(value, torch.Tensor) and not (
        isinstance(value, tuple | list) and any(isinstance(v, torch.Tensor) for v in value)
    ):
        return value  # sizes, shapes, python numbers: static here
    if _is_constant_valued((args, kwargs)) and n.op != "call_module":
        return _constant_of(b, value, n.name)
    if n.op == "call_module":
        mod = gm.get_submodule(n.target)
        conv, what, args = MODULES.get(type(mod)), type(mod).__name__, (mod, *args)
    elif n.op == "call_function":
        conv = FUNCTIONS.get(n.target)
        what = getattr(n.target, "__name__", str(n.target))
    else:
        conv, what = METHODS.get(n.target), f"Tensor.{n.target}"
    if conv is None:
        raise UnsupportedOpError(what, b.source, "torch.fx")
    try:
        result = conv(b, value, *args, **kwargs)
    except _Unsupported as e:
        raise UnsupportedOpError(f"{what} ({e})", b.source, "torch.fx") from None
    except TypeError as e:
        raise UnsupportedOpError(f"{what} with arguments its converter does not take ({e})",
                                 b.source, "torch.fx") from None
    if isinstance(result, Node):
        return b.note(check_against(result, value, b), n.name)
    if isinstance(result, tuple) and isinstance(value, tuple | list):
        return tuple(check_against(r, v, b) if isinstance(r, Node) else r
                     for r, v in zip(result, value, strict=True))
    return result


def _constant_of(b: Builder, value: Any, name: str) -> Any:
    if isinstance(value, torch.Tensor):
        return b.note(tensor_constant(value), name)
    return tuple(tensor_constant(v) if isinstance(v, torch.Tensor) else v for v in value)


__all__ = ["trace_fx", "MODULES", "FUNCTIONS", "METHODS", "SmeltError"]
