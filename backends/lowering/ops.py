"""The generic lowering of smelt's float, integer and data-movement ops to TVM Relax.

Each entry (registry.py) takes the BlockBuilder, the node, and its operands already lowered
to Relax expressions, and returns a Relax expression. These entries serve every target and
are reference-exact: where TVM's own op disagrees with the reference interpreter, the entry
emits a hand-written kernel from te_kernels.py instead (that module lists what TVM gets
wrong). Relax itself also needs care: its split rejects an empty part, its pad calls edge
mode "replicate", negative takes no unsigned type, and a zero-size constant does not
serialize.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tvm import relax

from smelt.ir.node import Node
from smelt.ir.ops.nn import _pads
from smelt.ir.ops.pool import _pool_params
from smelt.ir.ops.shape import slice_bounds
from smelt.ir.types import is_float, numpy_dtype

from . import te_kernels as K
from .registry import Lower, lowering, lowers, register

R = relax.op


def scalar(value: float, node: Node) -> relax.Constant:
    """A 0-d constant of the node's dtype; integer values saturate to the dtype's range."""
    dtype = numpy_dtype(node.dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        value = min(max(value, info.min), info.max)
    return relax.const(np.asarray(value, dtype=dtype), node.dtype)


def _simple(name: str, fn: Callable[..., Any]) -> None:
    register(name, lambda bb, n, xs: fn(*xs))


for _name, _fn in {
    "add": R.add, "sub": R.subtract, "mul": R.multiply, "equal": R.equal, "less": R.less,
    "less_equal": R.less_equal, "greater": R.greater, "greater_equal": R.greater_equal,
    "logical_and": R.logical_and, "logical_or": R.logical_or, "logical_not": R.logical_not,
    "abs": R.abs, "silu": R.nn.silu, "sigmoid": R.sigmoid, "exp": R.exp, "log": R.log,
    "sqrt": R.sqrt, "rsqrt": R.rsqrt, "sin": R.sin, "cos": R.cos, "erf": R.erf,
    "floor": R.floor, "round": R.round, "matmul": R.matmul, "where": R.where,
}.items():
    _simple(_name, _fn)


# -- elementwise ---------------------------------------------------------------------------
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


@lowers("pow")
def _pow(bb, n: Node, xs):
    if is_float(n.dtype):
        return R.power(*xs)
    size = int(np.prod(n.shape))
    flat = [bb.emit(R.reshape(bb.emit(R.broadcast_to(x, n.shape)), (size,))) for x in xs]
    gv = bb.add_func(K.int_pow_func(size, n.dtype), "int_pow")
    y = bb.emit(relax.call_tir(gv, flat, relax.TensorType((size,), n.dtype)))
    return R.reshape(y, n.shape)


@lowers("neg")
def _neg(bb, n: Node, xs):
    if n.dtype.startswith("uint"):  # 0 - x wraps modulo 2^bits, as numpy's negative does
        return R.subtract(scalar(0, n), xs[0])
    return R.negative(xs[0])


def _pointwise(bb, n: Node, xs, fn):
    """The node as one hand-written elementwise kernel, out[i] = fn(x0[i], ...)."""
    return bb.call_te(K.pointwise(fn, n.shape, n.op), *xs, primfunc_name_hint=n.op)


@lowers("not_equal")
def _not_equal(bb, n: Node, xs):
    if not is_float(n.inputs[0].dtype):
        return R.not_equal(*xs)
    return _pointwise(bb, n, xs, K.not_equal)


for _name, _fn in {"maximum": K.maximum, "minimum": K.minimum, "relu": K.relu,
                   "relu6": K.relu6, "hardsigmoid": K.hardsigmoid, "hardswish": K.hardswish,
                   "tanh": K.tanh}.items():
    register(_name, lambda bb, n, xs, _fn=_fn: _pointwise(bb, n, xs, _fn))


@lowers("clamp")
def _clamp(bb, n, xs):
    lo, hi = (K.bound(n.attrs[k], n.dtype) for k in ("min", "max"))
    return _pointwise(bb, n, xs, lambda x: K.clip(x, lo, hi))


@lowers("leaky_relu")
def _leaky(bb, n, xs):
    return _pointwise(bb, n, xs, K.leaky_relu(float(n.attrs["alpha"])))


COMPARISONS = ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")
BOOL_OPERANDS = ("add", "mul", "maximum", "minimum", *COMPARISONS)


def _bools_as_uint8(inner: Lower) -> Lower:
    """TVM's arithmetic and comparisons take no bool operands: compute in uint8 and cast a
    bool result back (add is or, mul and minimum are and, maximum is or, as in numpy)."""
    def lower(bb, n: Node, xs):
        if n.inputs[0].dtype != "bool":
            return inner(bb, n, xs)
        out = inner(bb, n, [bb.emit(R.astype(x, "uint8")) for x in xs])
        return out if n.op in COMPARISONS else R.astype(bb.emit(out), "bool")

    return lower


@lowers("reciprocal")
def _reciprocal(bb, n, xs):
    return R.divide(scalar(1.0, n), xs[0])


@lowers("gelu")
def _gelu(bb, n, xs):
    x = xs[0]
    if n.dtype == "float16":  # x**3 overflows float16 inside TVM's formula; work in float32
        x = bb.emit(R.astype(x, "float32"))
    y = R.nn.gelu_tanh(x) if n.attrs["approximate"] == "tanh" else R.nn.gelu(x)
    return R.astype(bb.emit(y), "float16") if n.dtype == "float16" else y


NARROW_INTS = ("int4", "uint4")


@lowers("cast")
def _cast(bb, n, xs):
    if n.attrs["dtype"] in NARROW_INTS or n.inputs[0].dtype in NARROW_INTS:
        raise NotImplementedError(
            "TVM's runtime cannot allocate 4-bit tensors (it needs whole bytes); keep int4 "
            "and uint4 values in int8/uint8 for the compiled path")
    return R.astype(xs[0], n.attrs["dtype"])


# -- contractions and normalizations -------------------------------------------------------
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


# -- pooling and reductions ----------------------------------------------------------------
def _pool_args(n: Node) -> dict[str, Any]:
    a = n.attrs
    k = tuple(a["kernel"]) * (2 // len(a["kernel"]))
    s = tuple(a["stride"] or a["kernel"])
    s = s * (2 // len(s))
    p = tuple(a["padding"]) * (2 // len(a["padding"]))
    return dict(pool_size=k, strides=s, padding=(p[0], p[1], p[0], p[1]),
                ceil_mode=a["ceil_mode"])


@lowers("max_pool2d")
def _max_pool(bb, n: Node, xs):
    k, s, p, d = _pool_params(n.attrs)
    pads = []
    for axis in (0, 1):  # the reference's padding, plus the overhang ceil mode's windows need
        need = (n.shape[2 + axis] - 1) * s[axis] + d[axis] * (k[axis] - 1) + 1
        size = n.inputs[0].shape[2 + axis] + 2 * p[axis]
        pads.append((p[axis], p[axis] + max(0, need - size)))
    return bb.call_te(K.max_pool2d, xs[0], k, s, d, pads, n.shape[2:],
                      primfunc_name_hint="max_pool2d")


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


register("reduce_sum", _reduction(R.sum))
register("reduce_mean", _reduction(R.mean))


@lowers("reduce_max", "reduce_min")
def _extremum(bb, n: Node, xs):
    rank = n.inputs[0].tensor_type.rank
    if rank == 0:  # nothing to reduce
        return _pointwise(bb, n, xs, lambda x: x)
    axes = tuple(sorted(a % rank for a in n.attrs["axes"])) or tuple(range(rank))
    return bb.call_te(K.reduce_extremum, xs[0], axes, n.attrs["keepdims"], n.op == "reduce_max",
                      primfunc_name_hint=n.op)


@lowers("argmax")
def _argmax(bb, n, xs):
    axis = n.attrs["axis"] % n.inputs[0].tensor_type.rank
    return bb.call_te(K.argmax, xs[0], axis, n.attrs["keepdims"],
                      primfunc_name_hint="argmax")


# -- data movement -------------------------------------------------------------------------
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


def _slice_axis(x, axis: int, begin: int, end: int, step: int = 1):
    """A strided slice along one axis; an empty range gives an empty tensor (a zero-size
    constant would not serialize)."""
    return R.strided_slice(x, axes=[axis], begin=[begin], end=[end], strides=[step],
                           assume_inbound=True)


@lowers("split")
def _split(bb, n, xs):
    """One strided slice per part, not Relax's split: a part nobody reads is then dead code
    (a fused multi-output split kept it as a set-but-unused buffer, which `-Werror` refuses in
    the C target), and Relax's split rejects empty parts."""
    sizes = [int(s) for s in n.attrs["sizes"]]
    axis = n.attrs["axis"] % n.inputs[0].tensor_type.rank
    if len(sizes) == 1:  # one part: Relax gives the tensor itself, smelt a 1-tuple
        return relax.Tuple([xs[0]])
    starts = np.cumsum([0, *sizes])
    return relax.Tuple([bb.emit(_slice_axis(xs[0], axis, int(a), int(b)))
                        for a, b in zip(starts[:-1], starts[1:], strict=True)])


@lowers("project")
def _project(bb, n, xs):
    return relax.TupleGetItem(xs[0], n.attrs["index"])


@lowers("slice")
def _slice(bb, n: Node, xs):
    x_shape = n.inputs[0].shape
    axis = n.attrs["axis"] % len(x_shape)
    r = slice_bounds(x_shape[axis], n.attrs["start"], n.attrs["stop"], n.attrs["step"])
    return _slice_axis(xs[0], axis, r.start, r.start + len(r) * r.step, r.step)


@lowers("take")
def _take(bb, n, xs):
    return R.take(xs[0], xs[1], axis=n.attrs["axis"], mode="wrap")


@lowers("pad")
def _pad(bb, n, xs):
    mode = {"edge": "replicate"}.get(n.attrs["mode"], n.attrs["mode"])
    return R.nn.pad(xs[0], list(n.attrs["pads"]), pad_mode=mode, pad_value=n.attrs["value"])


for _name in BOOL_OPERANDS:
    register(_name, _bools_as_uint8(lowering(_name)))
