"""A smelt Graph as a JAX function: `fn = smelt.to_jax(graph); jax.jit(fn)(*inputs)`.

The function takes the graph's inputs in order (numpy or JAX arrays) and returns a tuple of
its outputs, computing each node with the entry `JAX_OPS` holds for its op: jax.numpy and
lax calls on the operands, the node's attributes as static keyword arguments. Constants are
closed over, so they are embedded in the jitted computation. Every entry computes what the
op's numpy reference (ir/ops/) computes, in the node's dtype: integer division truncates,
integer clamp bounds saturate, a fused op is its unfused chain in the same order, pooling
windows and divisors follow torch's rules as the reference does. bfloat16 is jnp.bfloat16;
int4/uint4 live in int8/uint8 and wrap modulo 16.

64-bit values. With `jax_enable_x64` off (JAX's default) JAX computes float64 and int64 in
32 bits (its own dtype rule, applied to inputs, constants and casts alike). The quantized ops
need exact 64-bit arithmetic (int64 requantization, float64 quantization quotients), so a
graph that has one raises `JaxConversionError` when traced without x64: enable it with
`jax.config.update("jax_enable_x64", True)` or trace inside `with jax.enable_x64(True):`.
`take` clips indices (JAX cannot raise inside a traced function), and an integer contraction
whose result leaves int32 wraps where the reference raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy import special

from smelt.backends import int4_interop, qarith_interop, sparse_interop
from smelt.ir.errors import InterpretError, SmeltError
from smelt.ir.graph import Graph
from smelt.ir.op_table import OPS
from smelt.ir.ops.common import norm_axis, prod
from smelt.ir.ops.fused import split_operands
from smelt.ir.ops.nn import _pads, windows
from smelt.ir.ops.pool import pool_out_size
from smelt.ir.ops.quant import channel, clamp_bounds

JAX_DTYPES: dict[str, Any] = {
    "float64": jnp.float64, "float32": jnp.float32, "float16": jnp.float16,
    "bfloat16": jnp.bfloat16, "int64": jnp.int64, "int32": jnp.int32, "int16": jnp.int16,
    "int8": jnp.int8, "uint8": jnp.uint8, "int4": jnp.int8, "uint4": jnp.uint8,
    "bool": jnp.bool_,
}
#: ops the builder handles itself (graph inputs, closed-over constants)
STRUCTURAL = frozenset({"input", "constant"})
#: ops whose reference arithmetic needs 64-bit types
NEEDS_X64 = frozenset({"quantize", "dequantize", "qconv2d", "qlinear", "qmatmul",
                       "requantize", "qadd", "qmean", "linear_w4"})
HIGHEST = lax.Precision.HIGHEST


class JaxConversionError(SmeltError):
    """A graph JAX cannot compute as the reference does; the message says what to do."""


def jax_dtype(name: str) -> np.dtype:
    """The JAX dtype of a smelt dtype, after JAX's 64-bit rule."""
    return jax.dtypes.canonicalize_dtype(JAX_DTYPES[name])


def _s(x: jax.Array, v: float) -> jax.Array:
    """A python number as a 0-d array of x's dtype, so float16 math stays float16."""
    return jnp.asarray(v, dtype=x.dtype)


def _is_float(x: jax.Array) -> bool:
    return jnp.issubdtype(x.dtype, jnp.floating)


# -- elementwise ---------------------------------------------------------------------------
def div(a: jax.Array, b: jax.Array) -> jax.Array:
    """a / b; lax.div truncates integers toward zero, as the reference does."""
    a, b = jnp.broadcast_arrays(a, b)
    return lax.div(a, b)


def relu(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, _s(x, 0))


def relu6(x: jax.Array) -> jax.Array:
    return jnp.minimum(jnp.maximum(x, _s(x, 0)), _s(x, 6))


def leaky_relu(x: jax.Array, *, alpha: float) -> jax.Array:
    return jnp.where(x >= 0, x, x * _s(x, alpha))


def gelu(x: jax.Array, *, approximate: str) -> jax.Array:
    if approximate == "tanh":
        inner = _s(x, math.sqrt(2.0 / math.pi)) * (x + _s(x, 0.044715) * x * x * x)
        return _s(x, 0.5) * x * (_s(x, 1) + jnp.tanh(inner))
    return _s(x, 0.5) * x * (_s(x, 1) + special.erf(x * _s(x, 1 / math.sqrt(2.0))))


def silu(x: jax.Array) -> jax.Array:
    return x * jax.nn.sigmoid(x)


def hardsigmoid(x: jax.Array) -> jax.Array:
    return relu6(x + _s(x, 3)) / _s(x, 6)


def hardswish(x: jax.Array) -> jax.Array:
    return x * relu6(x + _s(x, 3)) / _s(x, 6)


def _bound(x: jax.Array, v: float) -> jax.Array:
    if not _is_float(x):
        info = jnp.iinfo(x.dtype)
        v = min(max(v, info.min), info.max)
    return _s(x, v)


def clamp(x: jax.Array, *, min: float | None, max: float | None) -> jax.Array:
    if min is not None:
        x = jnp.maximum(x, _bound(x, min))
    if max is not None:
        x = jnp.minimum(x, _bound(x, max))
    return x


def cast(x: jax.Array, *, dtype: str) -> jax.Array:
    """x converted to `dtype` (float to int truncates); int4/uint4 wrap modulo 16."""
    if dtype not in ("int4", "uint4"):
        return x.astype(jax_dtype(dtype))
    if _is_float(x):
        x = jnp.trunc(x)
    low = x.astype(jnp.int32) & 15
    if dtype == "int4":
        low = low - 16 * (low >= 8).astype(jnp.int32)
    return low.astype(JAX_DTYPES[dtype])


# -- contractions --------------------------------------------------------------------------
def _pair(v: tuple[int, ...]) -> tuple[int, int]:
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def conv2d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *,
           stride: tuple[int, ...], padding: tuple[int, ...], dilation: tuple[int, ...],
           groups: int) -> jax.Array:
    top, left, bottom, right = _pads(padding)
    out = lax.conv_general_dilated(x, w, _pair(stride), ((top, bottom), (left, right)),
                                   rhs_dilation=_pair(dilation),
                                   dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                   feature_group_count=groups, precision=HIGHEST)
    return out if b is None else out + b.reshape(1, -1, 1, 1)


def linear(x: jax.Array, w: jax.Array, b: jax.Array | None = None) -> jax.Array:
    out = jnp.matmul(x, w.T, precision=HIGHEST)
    return out if b is None else out + b


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, precision=HIGHEST)


def _activate(y: jax.Array, activation: str, alpha: float) -> jax.Array:
    fns: dict[str, Callable[[jax.Array], jax.Array]] = {
        "relu": relu, "relu6": relu6, "silu": silu, "hardswish": hardswish,
        "leaky_relu": lambda v: leaky_relu(v, alpha=alpha),
        "gelu": lambda v: gelu(v, approximate="none"),
        "gelu_tanh": lambda v: gelu(v, approximate="tanh")}
    return y if activation == "none" else fns[activation](y)


def _epilogue(y: jax.Array, res: jax.Array | None, activation: str, alpha: float):
    return _activate(y if res is None else y + res, activation, alpha)


def fused_matmul(a, b, *rest, activation: str, alpha: float, residual: bool) -> jax.Array:
    bias, res = split_operands(rest, residual)
    y = matmul(a, b)
    return _epilogue(y if bias is None else y + bias, res, activation, alpha)


def fused_linear(x, w, *rest, activation: str, alpha: float, residual: bool) -> jax.Array:
    bias, res = split_operands(rest, residual)
    return _epilogue(linear(x, w, bias), res, activation, alpha)


def fused_conv2d(x, w, *rest, stride, padding, dilation, groups, activation: str,
                 alpha: float, residual: bool) -> jax.Array:
    bias, res = split_operands(rest, residual)
    y = conv2d(x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return _epilogue(y, res, activation, alpha)


# -- normalization, pooling ----------------------------------------------------------------
def batch_norm(x, mean, var, weight=None, bias=None, *, eps: float) -> jax.Array:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = 1 / jnp.sqrt(var + _s(x, eps))
    if weight is not None:
        inv = inv * weight
    y = (x - mean.reshape(shape)) * inv.reshape(shape)
    return y if bias is None else y + bias.reshape(shape)


def layer_norm(x, weight=None, bias=None, *, axis: int, eps: float) -> jax.Array:
    axes = tuple(range(axis % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / jnp.sqrt(var + _s(x, eps))
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


def softmax(x: jax.Array, *, axis: int) -> jax.Array:
    return jax.nn.softmax(x, axis=axis)


def log_softmax(x: jax.Array, *, axis: int) -> jax.Array:
    return jax.nn.log_softmax(x, axis=axis)


def _pool_geometry(x, kernel, stride, padding, dilation, ceil_mode):
    """(kernel, stride, dilation, out_hw, pads of H and W) as the reference pads: p on both
    sides, plus what the last ceil-mode window needs on the bottom/right."""
    k, s = _pair(kernel), _pair(stride or kernel)
    p, d = _pair(padding), _pair(dilation)
    size = x.shape[2:]
    out = tuple(pool_out_size(size[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(2))
    pads = []
    for i in range(2):
        need = (out[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1
        pads.append((p[i], p[i] + max(0, need - (size[i] + 2 * p[i]))))
    return k, s, d, out, pads


def _window_reduce(x, init, op, k, s, d, out, pads):
    y = lax.reduce_window(x, init, op, (1, 1) + k, (1, 1) + s, ((0, 0), (0, 0)) + tuple(pads),
                          window_dilation=(1, 1) + d)
    return y[:, :, : out[0], : out[1]]


def max_pool2d(x, *, kernel, stride, padding, dilation, ceil_mode) -> jax.Array:
    k, s, d, out, pads = _pool_geometry(x, kernel, stride, padding, dilation, ceil_mode)
    init = -jnp.inf if _is_float(x) else jnp.iinfo(x.dtype).min
    return _window_reduce(x, jnp.asarray(init, x.dtype), lax.max, k, s, d, out, pads)


def avg_pool2d(x, *, kernel, stride, padding, ceil_mode, count_include_pad) -> jax.Array:
    """Window sums over the zero-padded input, divided by the reference's counts (padding
    counted with count_include_pad, the ceil-mode overhang never)."""
    k, s, d, out, pads = _pool_geometry(x, kernel, stride, padding, (1,), ceil_mode)
    total = _window_reduce(x, jnp.asarray(0, x.dtype), lax.add, k, s, d, out, pads)
    h, w = x.shape[2:]
    p = _pair(padding)
    if count_include_pad:
        mask = np.pad(np.ones((h + 2 * p[0], w + 2 * p[1])),
                      ((0, pads[0][1] - p[0]), (0, pads[1][1] - p[1])))
    else:
        mask = np.pad(np.ones((h, w)), pads)
    count = windows(mask, k, s, d)[: out[0], : out[1]].sum(axis=(-2, -1))
    return total / jnp.asarray(count, x.dtype)


def adaptive_avg_pool2d(x, *, output_size) -> jax.Array:
    """Bin i of n over size L spans [floor(i L / n), ceil((i + 1) L / n))."""
    oh, ow = _pair(output_size)
    h, w = x.shape[2:]
    rows = []
    for i in range(oh):
        h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        cols = [x[:, :, h0:h1, (j * w) // ow: -((-(j + 1) * w) // ow)].mean(axis=(-2, -1))
                for j in range(ow)]
        rows.append(jnp.stack(cols, axis=-1))
    return jnp.stack(rows, axis=-2).astype(x.dtype)


# -- reductions ----------------------------------------------------------------------------
def _reduction(fn: Callable[..., jax.Array], name: str) -> Callable[..., jax.Array]:
    def reduce(x: jax.Array, *, axes: tuple[int, ...], keepdims: bool) -> jax.Array:
        return fn(x, axis=tuple(axes) if axes else None, keepdims=keepdims).astype(x.dtype)

    reduce.__name__ = reduce.__qualname__ = name
    return reduce


def argmax(x: jax.Array, *, axis: int, keepdims: bool) -> jax.Array:
    return jnp.argmax(x, axis=axis, keepdims=keepdims).astype(jax_dtype("int64"))


# -- data movement -------------------------------------------------------------------------
def reshape(x, *, shape) -> jax.Array:
    return jnp.reshape(x, shape)


def flatten(x, *, start_axis: int, end_axis: int) -> jax.Array:
    if x.ndim == 0:
        return jnp.reshape(x, (1,))
    s, e = norm_axis(start_axis, x.ndim), norm_axis(end_axis, x.ndim)
    return jnp.reshape(x, x.shape[:s] + (prod(x.shape[s: e + 1]),) + x.shape[e + 1:])


def transpose(x, *, perm) -> jax.Array:
    return jnp.transpose(x, perm)


def expand(x, *, shape) -> jax.Array:
    return jnp.broadcast_to(x, shape)


def concat(*xs, axis: int) -> jax.Array:
    return jnp.concatenate(xs, axis=axis)


def split(x, *, axis: int, sizes) -> tuple[jax.Array, ...]:
    return tuple(jnp.split(x, np.cumsum(sizes)[:-1].tolist(), axis=axis))


def slice_(x, *, axis: int, start: int, stop: int, step: int) -> jax.Array:
    index = [slice(None)] * x.ndim
    index[axis] = slice(*slice(start, stop, step).indices(x.shape[axis]))
    return x[tuple(index)]


def squeeze(x, *, axes) -> jax.Array:
    drop = {norm_axis(a, x.ndim) for a in axes} if axes else {
        i for i, n in enumerate(x.shape) if n == 1}
    return jnp.reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in drop))


def unsqueeze(x, *, axes) -> jax.Array:
    rank = x.ndim + len(axes)
    at = {norm_axis(a, rank) for a in axes}
    dims = iter(x.shape)
    return jnp.reshape(x, tuple(1 if i in at else next(dims) for i in range(rank)))


def take(x, indices, *, axis: int) -> jax.Array:
    n = x.shape[axis]
    indices = jnp.where(indices < 0, indices + n, indices)
    return jnp.take(x, indices, axis=axis, mode="clip")


def pad(x, *, pads, value: float, mode: str) -> jax.Array:
    if x.ndim == 0:
        return x
    widths = [(pads[2 * i], pads[2 * i + 1]) for i in range(x.ndim)]
    if mode == "constant":
        return jnp.pad(x, widths, constant_values=_s(x, value))
    return jnp.pad(x, widths, mode=mode)


def project(parts: tuple[jax.Array, ...], *, index: int) -> jax.Array:
    return parts[index]


# -- quantized ops (x64 only, see the module docstring) --------------------------------------
def _channel(values, axis, rank, np_dtype) -> jax.Array:
    return jnp.asarray(channel(values, axis, rank, np_dtype))


def quantize(x, *, scale, zero_point, axis, bits, signed, qmin, qmax) -> jax.Array:
    out, lo, hi = clamp_bounds({"bits": bits, "signed": signed, "qmin": qmin, "qmax": qmax})
    v = jnp.round(x.astype(jnp.float64) / _channel(scale, axis, x.ndim, np.float64))
    v = jnp.where(jnp.isnan(v), 0.0, v) + _channel(zero_point, axis, x.ndim, np.float64)
    return jnp.clip(v, lo, hi).astype(JAX_DTYPES[out])


def dequantize(q, *, scale, zero_point, axis) -> jax.Array:
    d = q.astype(jnp.int64) - _channel(zero_point, axis, q.ndim, np.int64)
    return (d.astype(jnp.float64) * _channel(scale, axis, q.ndim, np.float64)).astype(
        jnp.float32)


def _int32(acc: jax.Array) -> jax.Array:
    return acc.astype(jnp.int64).astype(jnp.int32)


def qconv2d(x, w, b=None, *, x_zp, w_zp, stride, padding, dilation, groups) -> jax.Array:
    ws = w.astype(jnp.float64) - _channel(w_zp, 0, 4, np.float64)
    acc = conv2d(x.astype(jnp.float64) - x_zp, ws, stride=stride, padding=padding,
                 dilation=dilation, groups=groups)
    return _int32(acc if b is None else acc + b.astype(jnp.float64).reshape(1, -1, 1, 1))


def qlinear(x, w, b=None, *, x_zp, w_zp) -> jax.Array:
    ws = w.astype(jnp.float64) - _channel(w_zp, 0, 2, np.float64)
    acc = matmul(x.astype(jnp.float64) - x_zp, ws.T)
    return _int32(acc if b is None else acc + b.astype(jnp.float64))


def qmatmul(a, b, *, a_zp, b_zp) -> jax.Array:
    return _int32(matmul(a.astype(jnp.float64) - a_zp, b.astype(jnp.float64) - b_zp))


def requantize(acc, *, multiplier, shift, out_zp, out_scale, axis, bits, signed, qmin,
               qmax) -> jax.Array:
    """clamp(rhe(acc * multiplier / 2^(31 + shift)) + out_zp, qmin, qmax) in int64."""
    out, lo, hi = clamp_bounds({"bits": bits, "signed": signed, "qmin": qmin, "qmax": qmax})
    p = acc.astype(jnp.int64) * _channel(multiplier, axis, acc.ndim, np.int64)
    n = 31 + _channel(shift, axis, acc.ndim, np.int64)
    q = jnp.right_shift(p, n)  # arithmetic: floor
    r = p - jnp.left_shift(q, n)
    half = jnp.right_shift(jnp.left_shift(jnp.ones_like(n), n), 1)
    up = (r > half) | ((r == half) & (n > 0) & ((q & 1) == 1))
    return jnp.clip(q + up.astype(jnp.int64) + out_zp, lo, hi).astype(JAX_DTYPES[out])


# -- the table -----------------------------------------------------------------------------
JAX_OPS: dict[str, Callable[..., Any]] = {
    "add": jnp.add, "sub": jnp.subtract, "mul": jnp.multiply, "div": div, "pow": jnp.power,
    "maximum": jnp.maximum, "minimum": jnp.minimum,
    "equal": jnp.equal, "not_equal": jnp.not_equal, "less": jnp.less,
    "less_equal": jnp.less_equal, "greater": jnp.greater, "greater_equal": jnp.greater_equal,
    "logical_and": jnp.logical_and, "logical_or": jnp.logical_or,
    "logical_not": jnp.logical_not,
    "neg": jnp.negative, "abs": jnp.abs, "relu": relu, "relu6": relu6,
    "leaky_relu": leaky_relu, "gelu": gelu, "silu": silu, "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh, "hardswish": hardswish, "hardsigmoid": hardsigmoid, "exp": jnp.exp,
    "log": jnp.log, "sqrt": jnp.sqrt, "rsqrt": lax.rsqrt, "reciprocal": jnp.reciprocal,
    "sin": jnp.sin, "cos": jnp.cos, "erf": special.erf, "floor": jnp.floor,
    "round": jnp.round, "clamp": clamp, "where": jnp.where, "cast": cast,
    "conv2d": conv2d, "linear": linear, "matmul": matmul,
    "fused_matmul": fused_matmul, "fused_linear": fused_linear, "fused_conv2d": fused_conv2d,
    "batch_norm": batch_norm, "layer_norm": layer_norm, "softmax": softmax,
    "log_softmax": log_softmax, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d,
    "adaptive_avg_pool2d": adaptive_avg_pool2d,
    "reduce_sum": _reduction(jnp.sum, "reduce_sum"),
    "reduce_mean": _reduction(jnp.mean, "reduce_mean"),
    "reduce_max": _reduction(jnp.max, "reduce_max"),
    "reduce_min": _reduction(jnp.min, "reduce_min"),
    "argmax": argmax, "reshape": reshape, "flatten": flatten, "transpose": transpose,
    "expand": expand, "concat": concat, "split": split, "slice": slice_, "squeeze": squeeze,
    "unsqueeze": unsqueeze, "take": take, "pad": pad,
    "project": project,
    "quantize": quantize, "dequantize": dequantize, "qconv2d": qconv2d, "qlinear": qlinear,
    "qmatmul": qmatmul, "requantize": requantize,
    "qadd": lambda a, b, **k: qarith_interop.qadd(jnp, JAX_DTYPES, a, b, **k),
    "qmean": lambda x, **k: qarith_interop.qmean(jnp, JAX_DTYPES, x, **k),
    "linear_w4": lambda x, *w, **k: int4_interop.linear_w4(jnp, linear, x, *w, **k),
    "linear24": lambda x, *w: sparse_interop.linear24(jnp, linear, x, *w),
}


def missing_ops() -> list[str]:
    """Ops of the op table with no entry in JAX_OPS (a test keeps this empty)."""
    return sorted(set(OPS) - set(JAX_OPS) - STRUCTURAL)


def _constant(value: np.ndarray, smelt_dtype: str) -> jax.Array:
    return jnp.asarray(value, dtype=jax_dtype(smelt_dtype))


def to_jax(graph: Graph) -> Callable[..., tuple[jax.Array, ...]]:
    """`graph` as a function of its inputs (in order) returning a tuple of its outputs;
    jittable (`jax.jit(smelt.to_jax(graph))`)."""
    ops = {n.op for n in graph.nodes()}
    missing = sorted(ops - set(JAX_OPS) - STRUCTURAL)
    if missing:
        raise JaxConversionError(f"no JAX entry for op(s) {missing}; add them to JAX_OPS in "
                                 "backends/to_jax.py")
    x64_ops = sorted(ops & NEEDS_X64)
    names = graph.input_names()
    order = graph.nodes()

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
            env[id(x)] = jnp.asarray(v, dtype=jax_dtype(x.dtype))
        for n in order:
            if n.op == "input":
                continue
            if n.op == "constant":
                env[id(n)] = _constant(n.value, n.dtype)
                continue
            env[id(n)] = JAX_OPS[n.op](*(env[id(x)] for x in n.inputs), **n.attrs)
        return tuple(env[id(o)] for o in graph.outputs)

    run.__name__ = run.__qualname__ = graph.name if graph.name.isidentifier() else "graph"
    run.__doc__ = f"smelt graph {graph.name!r}: ({', '.join(names)}) -> tuple of " \
                  f"{len(graph.outputs)} output(s)"
    return run


__all__ = ["JAX_DTYPES", "JAX_OPS", "JaxConversionError", "NEEDS_X64", "STRUCTURAL",
           "jax_dtype", "missing_ops", "to_jax"]
