"""ATen op -> smelt conversions, one table keyed by the op's name (its overload packet).

Each converter gets the builder, the op's positional and keyword arguments (graph values
already replaced by smelt nodes) and the output's fake tensor (`out`, for static shapes), and
returns a node or, for multi-result ATen ops, a tuple whose unused parts may be None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .dims import Dim, smallest
from .errors import TypeInferenceError
from .node import Node
from .torch_common import Builder, binary, cast, norm_dim, pad_pairs, smelt_dtype

Converter = Callable[..., Any]
ATEN: dict[str, Converter] = {}


def aten(*names: str) -> Callable[[Converter], Converter]:
    def wrap(fn: Converter) -> Converter:
        for n in names:
            ATEN[n] = fn
        return fn

    return wrap


def shape_of(out: Any, b: Builder | None = None) -> tuple[Dim, ...]:
    """torch's shape of `out`, its dynamic sizes as smelt Dims (through the builder)."""
    if b is None:
        return tuple(int(d) for d in out.shape)
    return b.shape(out)


def _unary(name: str, op: str) -> None:
    ATEN[name] = lambda b, out, x, *rest, **kw: b.make(op, x)


for _name, _op in [("relu", "relu"), ("sigmoid", "sigmoid"), ("tanh", "tanh"), ("exp", "exp"),
                   ("log", "log"), ("sqrt", "sqrt"), ("rsqrt", "rsqrt"), ("abs", "abs"),
                   ("neg", "neg"), ("sin", "sin"), ("cos", "cos"), ("erf", "erf"),
                   ("reciprocal", "reciprocal"), ("silu", "silu"), ("hardswish", "hardswish"),
                   ("hardsigmoid", "hardsigmoid"), ("floor", "floor"), ("round", "round"),
                   ("logical_not", "logical_not")]:
    _unary(_name, _op)


@aten("clone", "alias", "contiguous", "detach", "lift_fresh_copy", "dropout",
      "_assert_tensor_metadata")
def _identity(b: Builder, out, x, *rest, **kw):
    return x


@aten("_to_copy", "to")
def _to_copy(b: Builder, out, x, *rest, **kw):
    return cast(b, x, smelt_dtype(out.dtype))


@aten("leaky_relu")
def _leaky(b: Builder, out, x, slope=0.01):
    return b.make("leaky_relu", x, alpha=slope)


@aten("gelu")
def _gelu(b: Builder, out, x, approximate="none"):
    return b.make("gelu", x, approximate=approximate)


@aten("hardtanh")
def _hardtanh(b: Builder, out, x, lo=-1.0, hi=1.0):
    if (lo, hi) == (0.0, 6.0):
        return b.make("relu6", x)
    return b.make("clamp", x, min=lo, max=hi)


@aten("clamp", "clip")
def _clamp(b: Builder, out, x, lo=None, hi=None):
    if isinstance(lo, Node) or isinstance(hi, Node):
        y = x if lo is None else binary(b, "maximum", x, lo)
        return y if hi is None else binary(b, "minimum", y, hi)
    return b.make("clamp", x, min=lo, max=hi)


def _arith(op: str) -> Converter:
    def convert(b: Builder, out, x, y, alpha=1, rounding_mode=None):
        if alpha != 1:
            y = binary(b, "mul", y, alpha) if isinstance(y, Node) else y * alpha
        dtype = smelt_dtype(out.dtype)
        if op == "div" and rounding_mode is not None:
            q = binary(b, "div", x, y, dtype if dtype.startswith("float") else "float32")
            q = b.make("floor", q) if rounding_mode == "floor" else q
            if rounding_mode == "trunc":  # trunc(q) = where(q < 0, -floor(-q), floor(q))
                neg_floor = b.make("neg", b.make("floor", b.make("neg", q)))
                q = b.make("where", binary(b, "less", q, 0.0), neg_floor, b.make("floor", q))
            return cast(b, q, dtype)
        return binary(b, op, x, y, dtype)

    return convert


for _name, _op in [("add", "add"), ("sub", "sub"), ("mul", "mul"), ("div", "div"),
                   ("pow", "pow"), ("maximum", "maximum"), ("minimum", "minimum")]:
    ATEN[_name] = _arith(_op)


@aten("rsub")
def _rsub(b: Builder, out, x, y, alpha=1):
    return _arith("sub")(b, out, y, x if alpha == 1 else binary(b, "mul", x, alpha))


for _name, _op in [("eq", "equal"), ("ne", "not_equal"), ("lt", "less"), ("le", "less_equal"),
                   ("gt", "greater"), ("ge", "greater_equal"), ("logical_and", "logical_and"),
                   ("logical_or", "logical_or")]:
    ATEN[_name] = lambda b, out, x, y, _op=_op: binary(b, _op, x, y, "bool")


@aten("where")
def _where(b: Builder, out, cond, x, y):
    dtype = smelt_dtype(out.dtype)
    from .torch_common import scalar

    x = cast(b, x if isinstance(x, Node) else scalar(x, y if isinstance(y, Node) else cond), dtype)
    y = cast(b, y if isinstance(y, Node) else scalar(y, x), dtype)
    return b.make("where", cond, x, y)


@aten("convolution")
def _convolution(b: Builder, out, x, w, bias, stride, padding, dilation, transposed,
                 output_padding, groups):
    if transposed or w.tensor_type.rank != 4:  # 1-d, 3-d, transposed: aten_spatial.py
        from .aten_spatial import convolution_nd

        return convolution_nd(b, x, w, bias, stride, padding, dilation, transposed,
                              output_padding, groups)
    inputs = (x, w) if bias is None else (x, w, bias)
    return b.make("conv2d", *inputs, stride=stride, padding=padding, dilation=dilation,
                  groups=groups)


class _Unsupported(Exception):
    """Raised by a converter for an unsupported variant; the frontend adds the source line."""


def _unsupported(what: str) -> _Unsupported:
    return _Unsupported(what)


@aten("linear")
def _linear(b: Builder, out, x, w, bias=None):
    return b.make("linear", x, w, bias) if bias is not None else b.make("linear", x, w)


@aten("mm", "bmm", "matmul")
def _matmul(b: Builder, out, x, y):
    return b.make("matmul", x, y)


@aten("addmm")
def _addmm(b: Builder, out, bias, x, y, beta=1, alpha=1):
    prod = b.make("matmul", x, y)
    if alpha != 1:
        prod = binary(b, "mul", prod, alpha)
    if beta != 1:
        bias = binary(b, "mul", bias, beta)
    return binary(b, "add", prod, bias)


@aten("_native_batch_norm_legit_no_training")
def _bn(b: Builder, out, x, weight, bias, mean, var, momentum, eps):
    if x.op == "squeeze" and x.inputs[0].op == "conv2d":  # a 1-d conv (aten_spatial.py):
        y = _bn(b, out, x.inputs[0], weight, bias, mean, var, momentum, eps)[0]  # normalize
        return (b.make("squeeze", y, **x.attrs), None, None)  # its 2-d form, so fold-bn folds
    args = [x, mean, var] + ([weight, bias] if weight is not None else [])
    if weight is None and bias is not None:
        raise _unsupported("batch norm with a bias but no weight")
    return (b.make("batch_norm", *args, eps=eps), None, None)


@aten("native_layer_norm")
def _layer_norm(b: Builder, out, x, shape, weight, bias, eps):
    args = [x] + [t for t in (weight, bias) if t is not None]
    if weight is None and bias is not None:
        x_ = b.make("layer_norm", x, axis=-len(shape), eps=eps)
        return (binary(b, "add", x_, bias), None, None)
    return (b.make("layer_norm", *args, axis=-len(shape), eps=eps), None, None)


@aten("_softmax", "softmax")
def _softmax(b: Builder, out, x, dim, *rest):
    return b.make("softmax", x, axis=dim)


@aten("_log_softmax", "log_softmax")
def _log_softmax(b: Builder, out, x, dim, *rest):
    return b.make("log_softmax", x, axis=dim)


def _reduce(op: str) -> Converter:
    def convert(b: Builder, out, x, dims=None, keepdim=False, dtype=None):
        dims = () if dims is None else ((dims,) if isinstance(dims, int) else tuple(dims))
        if x.dtype != smelt_dtype(out.dtype):
            x = cast(b, x, smelt_dtype(out.dtype))
        return b.make(op, x, axes=dims, keepdims=keepdim)

    return convert


ATEN["mean"] = _reduce("reduce_mean")
ATEN["sum"] = _reduce("reduce_sum")
ATEN["amax"] = _reduce("reduce_max")
ATEN["amin"] = _reduce("reduce_min")


def _extreme(reduce_op: str) -> Converter:
    def convert(b: Builder, out, x, dim=None, keepdim=False):
        if dim is None or isinstance(dim, Node):
            if isinstance(dim, Node):  # max(a, b) elementwise
                return binary(b, "maximum" if reduce_op == "reduce_max" else "minimum", x, dim)
            return b.make(reduce_op, x)
        values = b.make(reduce_op, x, axes=(dim,), keepdims=keepdim)
        src = x if reduce_op == "reduce_max" else b.make("neg", x)
        return (values, b.make("argmax", src, axis=dim, keepdims=keepdim))

    return convert


ATEN["max"] = _extreme("reduce_max")
ATEN["min"] = _extreme("reduce_min")


@aten("argmax")
def _argmax(b: Builder, out, x, dim=None, keepdim=False):
    if dim is None:
        x = b.make("reshape", x, shape=(x.tensor_type.size,))
        dim = 0
    return b.make("argmax", x, axis=dim, keepdims=keepdim)


@aten("view", "_unsafe_view", "reshape", "view_copy")
def _reshape(b: Builder, out, x, *rest):
    target = shape_of(out, b)
    return x if x.shape == target else b.make("reshape", x, shape=target)


@aten("flatten")
def _flatten(b: Builder, out, x, start=0, end=-1):
    return b.make("flatten", x, start_axis=start, end_axis=end)


@aten("permute")
def _permute(b: Builder, out, x, dims):
    perm = tuple(norm_dim(d, x.tensor_type.rank) for d in dims)
    return x if perm == tuple(range(len(perm))) else b.make("transpose", x, perm=perm)


@aten("transpose")
def _transpose(b: Builder, out, x, d0, d1):
    r = x.tensor_type.rank
    perm = list(range(r))
    d0, d1 = norm_dim(d0, r), norm_dim(d1, r)
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return b.make("transpose", x, perm=tuple(perm))


@aten("t", "numpy_T")
def _t(b: Builder, out, x):
    return x if x.tensor_type.rank < 2 else b.make("transpose", x, perm=(1, 0))


@aten("expand", "expand_copy", "broadcast_to")
def _expand(b: Builder, out, x, *rest, **kw):
    target = shape_of(out, b)
    return x if x.shape == target else b.make("expand", x, shape=target)


@aten("cat", "concat", "concatenate")
def _cat(b: Builder, out, xs, dim=0):
    dtype = smelt_dtype(out.dtype)
    xs = [cast(b, x, dtype) for x in xs if x.tensor_type.size > 0 or len(xs) == 1]
    return xs[0] if len(xs) == 1 else b.make("concat", *xs, axis=dim)


@aten("split_with_sizes", "split")
def _split(b: Builder, out, x, sizes, dim=0):
    n = x.shape[norm_dim(dim, x.tensor_type.rank)]
    if isinstance(sizes, int):
        sizes = [min(sizes, n - i) for i in range(0, n, sizes)]
    tup = b.make("split", x, axis=dim, sizes=tuple(sizes))
    return tuple(b.make("project", tup, index=i) for i in range(len(sizes)))


@aten("chunk")
def _chunk(b: Builder, out, x, chunks, dim=0):
    n = x.shape[norm_dim(dim, x.tensor_type.rank)]
    step = -(-n // chunks)
    return _split(b, out, x, step, dim)


@aten("unbind")
def _unbind(b: Builder, out, x, dim=0):
    r = x.tensor_type.rank
    parts = _split(b, out, x, 1, dim)
    return tuple(b.make("squeeze", p, axes=(norm_dim(dim, r),)) for p in parts)


@aten("slice", "slice_copy")
def _slice(b: Builder, out, x, dim=0, start=None, end=None, step=1):
    r = x.tensor_type.rank
    dim = norm_dim(dim, r)
    n = x.shape[dim]
    start = 0 if start is None else start
    end = n if end is None else smallest(end, n)
    if (start, end, step) == (0, n, 1):
        return x
    return b.make("slice", x, axis=dim, start=start, stop=end, step=step)


@aten("select")
def _select(b: Builder, out, x, dim, index):
    r = x.tensor_type.rank
    dim = norm_dim(dim, r)
    index = index % x.shape[dim]
    s = b.make("slice", x, axis=dim, start=index, stop=index + 1, step=1)
    return b.make("squeeze", s, axes=(dim,))


@aten("unsqueeze")
def _unsqueeze(b: Builder, out, x, dim):
    return b.make("unsqueeze", x, axes=(norm_dim(dim, x.tensor_type.rank + 1),))


@aten("squeeze")
def _squeeze(b: Builder, out, x, dims=None):
    r = x.tensor_type.rank
    if dims is None:
        dims = [i for i, d in enumerate(x.shape) if d == 1]
    elif isinstance(dims, int):
        dims = [dims]
    dims = [norm_dim(d, r) for d in dims if x.shape[norm_dim(d, r)] == 1]
    return x if not dims else b.make("squeeze", x, axes=tuple(dims))


@aten("embedding")
def _embedding(b: Builder, out, weight, ids, *rest):
    return b.make("take", weight, ids, axis=0)


@aten("index_select")
def _index_select(b: Builder, out, x, dim, index):
    return b.make("take", x, index, axis=dim)


@aten("constant_pad_nd", "pad")
def _pad(b: Builder, out, x, pad, value=0.0, mode="constant"):
    if mode == "replicate":
        mode = "edge"
    if any(p < 0 for p in pad):
        raise _unsupported("negative padding (cropping); slice the tensor instead")
    if mode not in ("constant", "reflect", "edge"):
        raise _unsupported(f"padding mode {mode!r}")
    pads = pad_pairs(pad, x.tensor_type.rank)
    return b.make("pad", x, pads=pads, value=float(value or 0.0), mode=mode)


@aten("reflection_pad2d", "reflection_pad1d")
def _reflect(b: Builder, out, x, pad):
    return b.make("pad", x, pads=pad_pairs(pad, x.tensor_type.rank), mode="reflect")


@aten("replication_pad2d", "replication_pad1d")
def _replicate(b: Builder, out, x, pad):
    return b.make("pad", x, pads=pad_pairs(pad, x.tensor_type.rank), mode="edge")


@aten("max_pool2d_with_indices", "max_pool2d")
def _max_pool(b: Builder, out, x, kernel, stride=(), padding=0, dilation=1, ceil_mode=False):
    y = b.make("max_pool2d", x, kernel=kernel, stride=stride or kernel, padding=padding,
               dilation=dilation, ceil_mode=ceil_mode)
    return (y, None) if isinstance(out, tuple | list) else y


@aten("avg_pool2d")
def _avg_pool(b: Builder, out, x, kernel, stride=(), padding=0, ceil_mode=False,
              count_include_pad=True, divisor_override=None):
    if divisor_override is not None:  # avg_pool3d on a unit axis (aten_spatial.py)
        from .aten_spatial import avg_pool2d_divisor

        return avg_pool2d_divisor(b, x, kernel, stride, padding, ceil_mode,
                                  count_include_pad, divisor_override)
    return b.make("avg_pool2d", x, kernel=kernel, stride=stride or kernel, padding=padding,
                  ceil_mode=ceil_mode, count_include_pad=count_include_pad)


@aten("_adaptive_avg_pool2d", "adaptive_avg_pool2d")
def _adaptive(b: Builder, out, x, output_size):
    size = tuple(output_size)
    if size == x.shape[2:]:
        return x
    return b.make("adaptive_avg_pool2d", x, output_size=size)


def check_against(node: Node, out: Any, b: Builder) -> Node:
    """Cast to torch's result dtype where promotion differs; a shape mismatch is a bug."""
    if not isinstance(out, torch.Tensor):
        return node
    if node.shape != shape_of(out, b):
        raise TypeInferenceError(
            f"smelt built shape {list(node.shape)} where torch has {list(out.shape)}; "
            "this is a bug in the frontend's converter"
        )
    return cast(b, node, smelt_dtype(out.dtype))


__all__ = ["ATEN", "check_against", "_Unsupported"]

# the op families' converters register into ATEN (they import it from here)
from . import aten_indexing, aten_math, aten_spatial  # noqa: E402,F401
