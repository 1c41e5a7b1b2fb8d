"""smelt ops -> TVM Relax, one table keyed by op name.

Each entry takes the BlockBuilder, the node, and its operands already lowered to Relax
expressions, and returns a Relax expression (emitted by the caller). Every op in the op table
must have an entry; `missing_lowerings()` lists any that do not (a test keeps it empty).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tvm import relax

from smelt.ir.node import Node
from smelt.ir.op_table import OPS
from smelt.ir.ops.nn import _pads
from smelt.ir.ops.shape import slice_bounds
from smelt.ir.types import numpy_dtype

R = relax.op
Lower = Callable[[relax.BlockBuilder, Node, list[Any]], Any]
LOWERING: dict[str, Lower] = {}


def lowers(*names: str) -> Callable[[Lower], Lower]:
    def wrap(fn: Lower) -> Lower:
        for n in names:
            LOWERING[n] = fn
        return fn

    return wrap


def missing_lowerings() -> list[str]:
    return sorted(set(OPS) - set(LOWERING) - {"input"})


def scalar(value: float, node: Node) -> relax.Constant:
    """A 0-d constant of the node's dtype; integer values saturate to the dtype's range."""
    dtype = numpy_dtype(node.dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        value = min(max(value, info.min), info.max)
    return relax.const(np.asarray(value, dtype=dtype), node.dtype)


def _simple(name: str, fn: Callable[..., Any]) -> None:
    LOWERING[name] = lambda bb, n, xs: fn(*xs)


for _name, _fn in {
    "add": R.add, "sub": R.subtract, "mul": R.multiply, "pow": R.power,
    "maximum": R.maximum, "minimum": R.minimum, "equal": R.equal, "not_equal": R.not_equal,
    "less": R.less, "less_equal": R.less_equal, "greater": R.greater,
    "greater_equal": R.greater_equal, "logical_and": R.logical_and,
    "logical_or": R.logical_or, "logical_not": R.logical_not, "neg": R.negative,
    "abs": R.abs, "relu": R.nn.relu, "silu": R.nn.silu, "sigmoid": R.sigmoid,
    "tanh": R.tanh, "exp": R.exp, "log": R.log, "sqrt": R.sqrt, "rsqrt": R.rsqrt,
    "sin": R.sin, "cos": R.cos, "erf": R.erf, "floor": R.floor, "round": R.round,
    "matmul": R.matmul, "where": R.where,
}.items():
    _simple(_name, _fn)


@lowers("constant")
def _constant(bb, n: Node, xs):
    return relax.const(np.array(n.value, order="C"), n.dtype)  # keeps 0-d arrays 0-d


@lowers("div")
def _div(bb, n: Node, xs):
    if n.dtype.startswith(("int", "uint")):  # truncating, like C and the reference
        e = bb.emit
        q = e(R.divide(e(R.astype(xs[0], "float64")), e(R.astype(xs[1], "float64"))))
        return R.astype(e(R.trunc(q)), n.dtype)
    return R.divide(*xs)


@lowers("reciprocal")
def _reciprocal(bb, n, xs):
    return R.divide(scalar(1.0, n), xs[0])


@lowers("relu6")
def _relu6(bb, n, xs):
    return R.clip(xs[0], 0, 6)


@lowers("leaky_relu")
def _leaky(bb, n, xs):
    return R.nn.leakyrelu(xs[0], n.attrs["alpha"])


@lowers("gelu")
def _gelu(bb, n, xs):
    x = xs[0]
    if n.dtype == "float16":  # x**3 overflows float16 inside TVM's formula; work in float32
        x = bb.emit(R.astype(x, "float32"))
    y = R.nn.gelu_tanh(x) if n.attrs["approximate"] == "tanh" else R.nn.gelu(x)
    return R.astype(bb.emit(y), "float16") if n.dtype == "float16" else y


@lowers("hardsigmoid")
def _hardsigmoid(bb, n, xs):
    clipped = bb.emit(R.clip(bb.emit(R.add(xs[0], scalar(3.0, n))), 0, 6))
    return R.divide(clipped, scalar(6.0, n))


@lowers("hardswish")
def _hardswish(bb, n, xs):
    return R.multiply(xs[0], bb.emit(_hardsigmoid(bb, n, xs)))


@lowers("clamp")
def _clamp(bb, n, xs):
    x = xs[0]
    if n.attrs["min"] is not None:
        x = R.maximum(x, scalar(n.attrs["min"], n))
    if n.attrs["max"] is not None:
        x = R.minimum(bb.emit(x) if x is not xs[0] else x, scalar(n.attrs["max"], n))
    return x


@lowers("cast")
def _cast(bb, n, xs):
    return R.astype(xs[0], n.attrs["dtype"])


@lowers("conv2d")
def _conv2d(bb, n: Node, xs):
    a = n.attrs
    y = R.nn.conv2d(xs[0], xs[1], strides=a["stride"], padding=_pads(a["padding"]),
                    dilation=a["dilation"], groups=a["groups"])
    if len(xs) == 3:
        y = R.add(bb.emit(y), bb.emit(R.reshape(xs[2], (1, -1, 1, 1))))
    return y


@lowers("linear")
def _linear(bb, n, xs):
    w = n.inputs[1]
    if w.op != "constant":
        return R.linear(*xs)
    # a constant weight is bound transposed, so the matmul reads it as (K, N) directly
    wt = relax.const(np.ascontiguousarray(np.asarray(w.value).T), w.dtype)
    y = R.matmul(xs[0], wt)
    return R.add(bb.emit(y), xs[2]) if len(xs) == 3 else y


@lowers("batch_norm")
def _batch_norm(bb, n: Node, xs):
    e = bb.emit
    x, mean, var = xs[:3]
    shape = (1, -1) + (1,) * (n.tensor_type.rank - 2)
    inv = e(R.rsqrt(e(R.add(var, scalar(n.attrs["eps"], n)))))
    if len(xs) > 3:
        inv = e(R.multiply(inv, xs[3]))
    y = e(R.multiply(e(R.subtract(x, e(R.reshape(mean, shape)))), e(R.reshape(inv, shape))))
    return R.add(y, e(R.reshape(xs[4], shape))) if len(xs) > 4 else y


@lowers("layer_norm")
def _layer_norm(bb, n: Node, xs):
    rank = n.tensor_type.rank
    axis = n.attrs["axis"] % rank
    norm_shape = n.shape[axis:]
    if n.dtype not in ("float32", "float16"):  # Relax's layer_norm takes only these
        return _layer_norm_by_parts(bb, n, xs, list(range(axis, rank)))
    gamma = xs[1] if len(xs) > 1 else relax.const(np.ones(norm_shape, numpy_dtype(n.dtype)),
                                                  n.dtype)
    beta = xs[2] if len(xs) > 2 else relax.const(np.zeros(norm_shape, numpy_dtype(n.dtype)),
                                                 n.dtype)
    return R.nn.layer_norm(xs[0], gamma, beta, axes=list(range(axis, rank)),
                           epsilon=n.attrs["eps"])


def _layer_norm_by_parts(bb, n: Node, xs, axes: list[int]):
    e = bb.emit
    centered = e(R.subtract(xs[0], e(R.mean(xs[0], axis=axes, keepdims=True))))
    var = e(R.mean(e(R.multiply(centered, centered)), axis=axes, keepdims=True))
    y = e(R.multiply(centered, e(R.rsqrt(e(R.add(var, scalar(n.attrs["eps"], n)))))))
    if len(xs) > 1:
        y = e(R.multiply(y, xs[1]))
    return R.add(y, xs[2]) if len(xs) > 2 else y


@lowers("softmax")
def _softmax(bb, n, xs):
    return R.nn.softmax(xs[0], axis=n.attrs["axis"])


@lowers("log_softmax")
def _log_softmax(bb, n, xs):
    return R.nn.log_softmax(xs[0], axis=n.attrs["axis"])


def _pool_args(n: Node) -> dict[str, Any]:
    a = n.attrs
    k = tuple(a["kernel"]) * (2 // len(a["kernel"]))
    s = tuple(a["stride"] or a["kernel"])
    s = s * (2 // len(s))
    p = tuple(a["padding"]) * (2 // len(a["padding"]))
    return dict(pool_size=k, strides=s, padding=(p[0], p[1], p[0], p[1]),
                ceil_mode=a["ceil_mode"])


@lowers("max_pool2d")
def _max_pool(bb, n, xs):
    d = tuple(n.attrs["dilation"]) * (2 // len(n.attrs["dilation"]))
    return R.nn.max_pool2d(xs[0], dilation=d, **_pool_args(n))


@lowers("avg_pool2d")
def _avg_pool(bb, n, xs):
    return R.nn.avg_pool2d(xs[0], count_include_pad=n.attrs["count_include_pad"],
                           **_pool_args(n))


@lowers("adaptive_avg_pool2d")
def _adaptive(bb, n, xs):
    return R.nn.adaptive_avg_pool2d(xs[0], output_size=n.shape[2:])


def _reduction(fn):
    def lower(bb, n: Node, xs):
        axes = list(n.attrs["axes"]) or None
        return fn(xs[0], axis=axes, keepdims=n.attrs["keepdims"])

    return lower


LOWERING["reduce_sum"] = _reduction(R.sum)
LOWERING["reduce_mean"] = _reduction(R.mean)
LOWERING["reduce_max"] = _reduction(R.max)
LOWERING["reduce_min"] = _reduction(R.min)


@lowers("argmax")
def _argmax(bb, n, xs):
    return R.astype(bb.emit(R.argmax(xs[0], axis=n.attrs["axis"],
                                      keepdims=n.attrs["keepdims"])), "int64")


@lowers("reshape", "flatten", "squeeze", "unsqueeze")
def _reshape(bb, n: Node, xs):
    return R.reshape(xs[0], n.shape)


@lowers("transpose")
def _transpose(bb, n, xs):
    return R.permute_dims(xs[0], n.attrs["perm"])


@lowers("expand")
def _expand(bb, n, xs):
    return R.broadcast_to(xs[0], n.shape)


@lowers("concat")
def _concat(bb, n, xs):
    return R.concat(xs, axis=n.attrs["axis"])


@lowers("split")
def _split(bb, n, xs):
    cuts = [int(c) for c in np.cumsum(n.attrs["sizes"])[:-1]]
    if not cuts:  # one part: Relax gives the tensor itself, smelt a 1-tuple
        return relax.Tuple([xs[0]])
    return R.split(xs[0], cuts, axis=n.attrs["axis"])


@lowers("project")
def _project(bb, n, xs):
    return relax.TupleGetItem(xs[0], n.attrs["index"])


@lowers("slice")
def _slice(bb, n: Node, xs):
    x_shape = n.inputs[0].shape
    axis = n.attrs["axis"] % len(x_shape)
    r = slice_bounds(x_shape[axis], n.attrs["start"], n.attrs["stop"], n.attrs["step"])
    if len(r) == 0:  # an empty result: no element depends on x
        return relax.const(np.zeros(n.shape, numpy_dtype(n.dtype)), n.dtype)
    return R.strided_slice(xs[0], axes=[axis], begin=[r.start], end=[r.start + len(r) * r.step],
                           strides=[r.step], assume_inbound=True)


@lowers("take")
def _take(bb, n, xs):
    return R.take(xs[0], xs[1], axis=n.attrs["axis"], mode="wrap")


@lowers("pad")
def _pad(bb, n, xs):
    return R.nn.pad(xs[0], list(n.attrs["pads"]), pad_mode=n.attrs["mode"],
                    pad_value=n.attrs["value"])


@lowers("fused_matmul")
def _fused_matmul(bb, n: Node, xs):
    y = bb.emit(R.matmul(xs[0], xs[1]))
    if len(xs) == 3:
        y = bb.emit(R.add(y, xs[2]))
    act = n.attrs["activation"]
    if act == "relu":
        return R.nn.relu(y)
    if act == "relu6":
        return R.clip(y, 0, 6)
    return R.add(y, scalar(0.0, n)) if y is xs[0] else y
