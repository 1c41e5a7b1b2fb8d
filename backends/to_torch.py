"""A smelt Graph as a torch.fx.GraphModule, so a rewritten graph goes back into the PyTorch
stack (eager, torch.export, `torch.compile` with Inductor).

One fx node per smelt node: graph inputs become placeholders (same names, same order),
constants become buffers of the module (named after the graph's side table where it has a
name, read with get_attr), and every other node one `call_function` of the entry `TORCH_OPS`
holds for its op, with the node's operands as arguments and its attributes as keyword
arguments. The module returns a tuple of the graph's outputs, as `smelt.interpret` does.
With `trainable=True` float weights are parameters instead, to fine-tune; `with_weights`
writes them back into the graph.

Each entry computes what the op's numpy reference (ir/ops/) computes, in the node's dtype:
integer division truncates, integer clamp bounds saturate to the dtype, integer sums wrap
to the input's dtype, a fused op is its unfused chain in the same order. bfloat16 values are
torch.bfloat16 tensors; int4/uint4 live in int8/uint8 and wrap modulo 16 (torch has no 4-bit
arithmetic). `missing_ops()` lists ops without an entry; a test keeps it empty.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx

from smelt.backends import int4_interop, qarith_interop, sparse_interop
from smelt.ir.errors import SmeltError
from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.op_table import OPS
from smelt.ir.ops.common import norm_axis
from smelt.ir.ops.fused import split_operands
from smelt.ir.ops.nn import _pads
from smelt.ir.ops.quant import channel, clamp_bounds

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32,
    "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "int4": torch.int8,
    "uint4": torch.uint8, "bool": torch.bool,
}
#: ops the converter builds structurally (placeholder, get_attr), not by a table call
STRUCTURAL = frozenset({"input", "constant"})


class TorchConversionError(SmeltError):
    """A graph could not be rebuilt as torch.fx (an op without an entry in TORCH_OPS)."""


# -- elementwise ---------------------------------------------------------------------------
def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b; integers truncate toward zero, as the reference does."""
    if a.is_floating_point():
        return torch.div(a, b)
    return torch.div(a, b, rounding_mode="trunc")


def relu6(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, 0, 6)


def leaky_relu(x: torch.Tensor, *, alpha: float) -> torch.Tensor:
    return F.leaky_relu(x, alpha)


def gelu(x: torch.Tensor, *, approximate: str) -> torch.Tensor:
    """The erf form written out as the reference writes it (torch's float32 kernel gives
    NaN at +inf, where x * Phi(x) is inf)."""
    if approximate == "tanh":
        return F.gelu(x, approximate="tanh")
    return 0.5 * x * (1 + torch.erf(x * (1 / math.sqrt(2.0))))


def _bound(x: torch.Tensor, v: float | None) -> float | int | None:
    """A clamp bound as x's kind; an integer bound saturates to x's dtype."""
    if v is None or x.is_floating_point():
        return v
    info = torch.iinfo(x.dtype)
    return int(min(max(v, info.min), info.max))


def clamp(x: torch.Tensor, *, min: float | None, max: float | None) -> torch.Tensor:
    return torch.clamp(x, min=_bound(x, min), max=_bound(x, max))


def cast(x: torch.Tensor, *, dtype: str) -> torch.Tensor:
    """x converted to `dtype` (float to int truncates); int4/uint4 wrap modulo 16."""
    if dtype not in ("int4", "uint4"):
        return x.to(TORCH_DTYPES[dtype])
    low = x.to(torch.int64) & 15 if not x.is_floating_point() else torch.trunc(x).to(
        torch.int64) & 15
    if dtype == "int4":
        low = low - 16 * (low >= 8).to(torch.int64)
    return low.to(TORCH_DTYPES[dtype])


# -- contractions --------------------------------------------------------------------------
def _pair(v: tuple[int, ...]) -> tuple[int, int]:
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, *,
           stride: tuple[int, ...], padding: tuple[int, ...], dilation: tuple[int, ...],
           groups: int) -> torch.Tensor:
    """NCHW x OIHW; an asymmetric padding is applied by F.pad first."""
    top, left, bottom, right = _pads(padding)
    if (top, left) == (bottom, right):
        return F.conv2d(x, w, b, _pair(stride), (top, left), _pair(dilation), groups)
    x = F.pad(x, (left, right, top, bottom))
    return F.conv2d(x, w, b, _pair(stride), 0, _pair(dilation), groups)


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    return F.linear(x, w, b)


ACTIVATIONS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "none": lambda y, alpha: y,
    "relu": lambda y, alpha: torch.relu(y),
    "relu6": lambda y, alpha: relu6(y),
    "leaky_relu": lambda y, alpha: F.leaky_relu(y, alpha),
    "gelu": lambda y, alpha: gelu(y, approximate="none"),
    "gelu_tanh": lambda y, alpha: F.gelu(y, approximate="tanh"),
    "silu": lambda y, alpha: F.silu(y),
    "hardswish": lambda y, alpha: F.hardswish(y),
}


def _epilogue(y: torch.Tensor, res: torch.Tensor | None, activation: str,
              alpha: float) -> torch.Tensor:
    if res is not None:
        y = y + res
    return ACTIVATIONS[activation](y, alpha)


def fused_matmul(a: torch.Tensor, b: torch.Tensor, *rest: torch.Tensor, activation: str,
                 alpha: float, residual: bool) -> torch.Tensor:
    """act(a @ b + bias + residual)."""
    bias, res = split_operands(rest, residual)
    y = torch.matmul(a, b)
    if bias is not None:
        y = y + bias
    return _epilogue(y, res, activation, alpha)


def fused_linear(x: torch.Tensor, w: torch.Tensor, *rest: torch.Tensor, activation: str,
                 alpha: float, residual: bool) -> torch.Tensor:
    """act(linear(x, w, bias) + residual)."""
    bias, res = split_operands(rest, residual)
    return _epilogue(F.linear(x, w, bias), res, activation, alpha)


def fused_conv2d(x: torch.Tensor, w: torch.Tensor, *rest: torch.Tensor,
                 stride: tuple[int, ...], padding: tuple[int, ...],
                 dilation: tuple[int, ...], groups: int, activation: str, alpha: float,
                 residual: bool) -> torch.Tensor:
    """act(conv2d(x, w, bias) + residual)."""
    bias, res = split_operands(rest, residual)
    y = conv2d(x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return _epilogue(y, res, activation, alpha)


# -- normalization, pooling ----------------------------------------------------------------
def batch_norm(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
               weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, *,
               eps: float) -> torch.Tensor:
    return F.batch_norm(x, mean, var, weight, bias, training=False, eps=eps)


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, *, axis: int, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[axis % x.dim():], weight, bias, eps)


def softmax(x: torch.Tensor, *, axis: int) -> torch.Tensor:
    return torch.softmax(x, axis)


def log_softmax(x: torch.Tensor, *, axis: int) -> torch.Tensor:
    return torch.log_softmax(x, axis)


def max_pool2d(x: torch.Tensor, *, kernel: tuple[int, ...], stride: tuple[int, ...],
               padding: tuple[int, ...], dilation: tuple[int, ...],
               ceil_mode: bool) -> torch.Tensor:
    return F.max_pool2d(x, _pair(kernel), _pair(stride or kernel), _pair(padding),
                        _pair(dilation), ceil_mode=ceil_mode)


def avg_pool2d(x: torch.Tensor, *, kernel: tuple[int, ...], stride: tuple[int, ...],
               padding: tuple[int, ...], ceil_mode: bool,
               count_include_pad: bool) -> torch.Tensor:
    return F.avg_pool2d(x, _pair(kernel), _pair(stride or kernel), _pair(padding),
                        ceil_mode=ceil_mode, count_include_pad=count_include_pad)


def adaptive_avg_pool2d(x: torch.Tensor, *, output_size: tuple[int, ...]) -> torch.Tensor:
    return F.adaptive_avg_pool2d(x, _pair(output_size))


# -- reductions ----------------------------------------------------------------------------
def _reduction(fn: Callable[..., torch.Tensor], exact_int: bool) -> Callable[..., torch.Tensor]:
    """A reduction over `axes` (all when empty) whose result keeps x's dtype. Integer means
    are taken in float64 and truncated, as the reference's astype does."""

    def reduce(x: torch.Tensor, *, axes: tuple[int, ...], keepdims: bool) -> torch.Tensor:
        dims = tuple(axes) if axes else tuple(range(x.dim()))
        if not dims:
            return x
        src = x if exact_int or x.is_floating_point() else x.to(torch.float64)
        return fn(src, dim=dims, keepdim=keepdims).to(x.dtype)

    reduce.__name__ = reduce.__qualname__ = f"reduce_{fn.__name__}"
    return reduce


def argmax(x: torch.Tensor, *, axis: int, keepdims: bool) -> torch.Tensor:
    src = x if x.is_floating_point() else x.to(torch.int64)
    return torch.argmax(src, dim=axis, keepdim=keepdims)


# -- data movement -------------------------------------------------------------------------
def reshape(x: torch.Tensor, *, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.reshape(x, shape)


def flatten(x: torch.Tensor, *, start_axis: int, end_axis: int) -> torch.Tensor:
    return torch.flatten(x, start_axis, end_axis)


def transpose(x: torch.Tensor, *, perm: tuple[int, ...]) -> torch.Tensor:
    return x.permute(perm)


def expand(x: torch.Tensor, *, shape: tuple[int, ...]) -> torch.Tensor:
    return x.expand(shape)


def concat(*xs: torch.Tensor, axis: int) -> torch.Tensor:
    return torch.cat(xs, dim=axis)


def split(x: torch.Tensor, *, axis: int, sizes: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    return torch.split(x, list(sizes), dim=axis)


def slice_(x: torch.Tensor, *, axis: int, start: int, stop: int, step: int) -> torch.Tensor:
    """Python slice rules along `axis` (bounds clamp, negatives count from the end)."""
    n = x.shape[axis]
    lo, hi, _ = slice(start, stop, step).indices(n)
    index = [slice(None)] * x.dim()
    index[axis] = slice(lo, max(lo, hi), step)
    return x[tuple(index)]


def squeeze(x: torch.Tensor, *, axes: tuple[int, ...]) -> torch.Tensor:
    return torch.squeeze(x, tuple(axes)) if axes else torch.squeeze(x)


def unsqueeze(x: torch.Tensor, *, axes: tuple[int, ...]) -> torch.Tensor:
    rank = x.dim() + len(axes)
    at = {norm_axis(a, rank) for a in axes}
    dims = iter(x.shape)
    return torch.reshape(x, tuple(1 if i in at else next(dims) for i in range(rank)))


def take(x: torch.Tensor, indices: torch.Tensor, *, axis: int) -> torch.Tensor:
    """Gather along axis; negative indices count from the end."""
    axis = axis % x.dim()
    n = x.shape[axis]
    flat = indices.reshape(-1).to(torch.int64)
    flat = torch.where(flat < 0, flat + n, flat)
    out = torch.index_select(x, axis, flat)
    return out.reshape(tuple(x.shape[:axis]) + tuple(indices.shape) + tuple(x.shape[axis + 1:]))


def pad(x: torch.Tensor, *, pads: tuple[int, ...], value: float, mode: str) -> torch.Tensor:
    """Constant padding in one F.pad; reflect and edge axis by axis (torch pads those only
    on the trailing axes of a 2-D or 3-D view)."""
    if x.dim() == 0:
        return x
    if mode == "constant":
        flat = [p for axis in reversed(range(x.dim())) for p in (pads[2 * axis],
                                                                 pads[2 * axis + 1])]
        fill = value if x.is_floating_point() else int(value)
        return F.pad(x, flat, value=fill)
    torch_mode = {"reflect": "reflect", "edge": "replicate"}[mode]
    for axis in range(x.dim()):
        before, after = pads[2 * axis], pads[2 * axis + 1]
        if before or after:
            moved = x.movedim(axis, -1)
            lead = moved.shape[:-1]
            out = F.pad(moved.reshape(1, -1, moved.shape[-1]), (before, after), mode=torch_mode)
            x = out.reshape(*lead, out.shape[-1]).movedim(-1, axis)
    return x


def where(cond: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(cond, a, b)


# -- quantized ops ------------------------------------------------------------------------
# Integer contractions run in float64, exact while |accumulator| < 2^53; a result outside
# int32 wraps (the reference raises AccumulatorOverflowError, which traced code cannot).
def _channel(values: tuple, axis: int | None, rank: int, dtype: type) -> torch.Tensor:
    return torch.from_numpy(channel(values, axis, rank, dtype))


def quantize(x: torch.Tensor, *, scale: tuple[float, ...], zero_point: tuple[int, ...],
             axis: int | None, bits: int, signed: bool, qmin: int | None,
             qmax: int | None) -> torch.Tensor:
    """clamp(rhe(x / scale) + zero_point, qmin, qmax), the quotient in float64."""
    dtype, lo, hi = clamp_bounds({"bits": bits, "signed": signed, "qmin": qmin, "qmax": qmax})
    v = torch.round(x.to(torch.float64) / _channel(scale, axis, x.dim(), np.float64))
    v = torch.where(torch.isnan(v), 0.0, v) + _channel(zero_point, axis, x.dim(), np.float64)
    return torch.clamp(v, lo, hi).to(TORCH_DTYPES[dtype])


def dequantize(q: torch.Tensor, *, scale: tuple[float, ...], zero_point: tuple[int, ...],
               axis: int | None) -> torch.Tensor:
    d = q.to(torch.int64) - _channel(zero_point, axis, q.dim(), np.int64)
    return (d.to(torch.float64) * _channel(scale, axis, q.dim(), np.float64)).to(torch.float32)


def _int32(acc: torch.Tensor) -> torch.Tensor:
    return acc.to(torch.int64).to(torch.int32)


def qconv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, *, x_zp: int,
            w_zp: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...],
            dilation: tuple[int, ...], groups: int) -> torch.Tensor:
    ws = w.to(torch.float64) - _channel(w_zp, 0, 4, np.float64)
    acc = conv2d(x.to(torch.float64) - x_zp, ws, None, stride=stride, padding=padding,
                 dilation=dilation, groups=groups)
    return _int32(acc if b is None else acc + b.to(torch.float64).reshape(1, -1, 1, 1))


def qlinear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, *, x_zp: int,
            w_zp: tuple[int, ...]) -> torch.Tensor:
    ws = w.to(torch.float64) - _channel(w_zp, 0, 2, np.float64)
    acc = torch.matmul(x.to(torch.float64) - x_zp, ws.T)
    return _int32(acc if b is None else acc + b.to(torch.float64))


def qmatmul(a: torch.Tensor, b: torch.Tensor, *, a_zp: int, b_zp: int) -> torch.Tensor:
    return _int32(torch.matmul(a.to(torch.float64) - a_zp, b.to(torch.float64) - b_zp))


def requantize(acc: torch.Tensor, *, multiplier: tuple[int, ...], shift: tuple[int, ...],
               out_zp: int, out_scale: float, axis: int | None, bits: int, signed: bool,
               qmin: int | None, qmax: int | None) -> torch.Tensor:
    """clamp(rhe(acc * multiplier / 2^(31 + shift)) + out_zp, qmin, qmax) in int64."""
    dtype, lo, hi = clamp_bounds({"bits": bits, "signed": signed, "qmin": qmin, "qmax": qmax})
    p = acc.to(torch.int64) * _channel(multiplier, axis, acc.dim(), np.int64)
    n = 31 + _channel(shift, axis, acc.dim(), np.int64)
    q = torch.bitwise_right_shift(p, n)  # arithmetic: floor
    r = p - torch.bitwise_left_shift(q, n)
    half = torch.bitwise_right_shift(torch.bitwise_left_shift(torch.ones_like(n), n), 1)
    up = (r > half) | ((r == half) & (n > 0) & (torch.bitwise_and(q, 1) == 1))
    return torch.clamp(q + up.to(torch.int64) + out_zp, lo, hi).to(TORCH_DTYPES[dtype])


# -- the table -----------------------------------------------------------------------------
TORCH_OPS: dict[str, Callable[..., Any]] = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": div, "pow": torch.pow,
    "maximum": torch.maximum, "minimum": torch.minimum,
    "equal": torch.eq, "not_equal": torch.ne, "less": torch.lt, "less_equal": torch.le,
    "greater": torch.gt, "greater_equal": torch.ge,
    "logical_and": torch.logical_and, "logical_or": torch.logical_or,
    "logical_not": torch.logical_not,
    "neg": torch.neg, "abs": torch.abs, "relu": torch.relu, "relu6": relu6,
    "leaky_relu": leaky_relu, "gelu": gelu, "silu": F.silu, "sigmoid": torch.sigmoid,
    "tanh": torch.tanh, "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid,
    "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "rsqrt": torch.rsqrt,
    "reciprocal": torch.reciprocal, "sin": torch.sin, "cos": torch.cos, "erf": torch.erf,
    "floor": torch.floor, "round": torch.round, "clamp": clamp, "where": where, "cast": cast,
    "conv2d": conv2d, "linear": linear, "matmul": torch.matmul,
    "fused_matmul": fused_matmul, "fused_linear": fused_linear, "fused_conv2d": fused_conv2d,
    "batch_norm": batch_norm, "layer_norm": layer_norm, "softmax": softmax,
    "log_softmax": log_softmax, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d,
    "adaptive_avg_pool2d": adaptive_avg_pool2d,
    "reduce_sum": _reduction(torch.sum, exact_int=True),
    "reduce_mean": _reduction(torch.mean, exact_int=False),
    "reduce_max": _reduction(torch.amax, exact_int=True),
    "reduce_min": _reduction(torch.amin, exact_int=True),
    "argmax": argmax, "reshape": reshape, "flatten": flatten, "transpose": transpose,
    "expand": expand, "concat": concat, "split": split, "slice": slice_, "squeeze": squeeze,
    "unsqueeze": unsqueeze, "take": take, "pad": pad, "project": operator.getitem,
    "quantize": quantize, "dequantize": dequantize, "qconv2d": qconv2d, "qlinear": qlinear,
    "qmatmul": qmatmul, "requantize": requantize,
    "qadd": lambda a, b, **k: qarith_interop.qadd(torch, TORCH_DTYPES, a, b, **k),
    "qmean": lambda x, **k: qarith_interop.qmean(torch, TORCH_DTYPES, x, **k),
    "linear_w4": lambda x, *w, **k: int4_interop.linear_w4(torch, linear, x, *w, **k),
    "linear24": lambda x, *w: sparse_interop.linear24(torch, linear, x, *w),
}


def missing_ops() -> list[str]:
    """Ops of the op table with no entry in TORCH_OPS (a test keeps this empty)."""
    return sorted(set(OPS) - set(TORCH_OPS) - STRUCTURAL)


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
        raise TorchConversionError(f"no torch entry for op(s) {missing}; add them to "
                                   "TORCH_OPS in backends/to_torch.py")
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


__all__ = ["STRUCTURAL", "TORCH_DTYPES", "TORCH_OPS", "TorchConversionError", "constant_names",
           "missing_ops", "to_torch", "trainable_weight", "with_weights"]
