"""ONNX forms of smelt's layers: contractions, normalizations, pooling, resampling, quantize and
dequantize. Each entry `fn(g, node)` writes into an onnx_export.OnnxGraph `g` and returns the
value holding the node's result; onnx_ops.py gathers them into `ONNX_OPS`.

- conv2d / conv3d -> Conv, conv_transpose -> ConvTranspose: NCHW / NCDHW and the weight
  layouts (O, I/groups, k...) and (I, O/groups, k...) are ONNX's own; smelt's padding (one
  value, one per axis, or all befores then all afters) becomes ONNX's [befores..., afters...].
- linear (weight (out, in)) -> Gemm(transB=1) on a matrix x, else MatMul with the weight
  transposed (a transposed initializer when the weight is a constant), then Add(bias).
  linear24 and linear_w4 decompress their constant weight with the op's reference (unpack_24;
  unpack_int4 times the group scales, rounded once to x's dtype) and store it dense.
- fused_conv2d / fused_linear / fused_matmul -> the chain `unfused` rebuilds (contraction,
  + bias, + residual, activation), each node written by its own entry.
- batch_norm -> BatchNormalization (inference; absent weight / bias as ones / zeros),
  layer_norm -> LayerNormalization (opset 17+), softmax / log_softmax -> Softmax / LogSoftmax.
- pools -> MaxPool / AveragePool without ceil_mode: the ceil-mode overhang becomes explicit
  end padding, because ONNX's ceil_mode output size is not torch's (ONNX keeps a last window
  that starts in the right padding; torch and ONNX Runtime drop it). Padding counted by
  count_include_pad is an explicit Pad of zeros when an overhang must not be counted;
  avg_pool3d's divisor multiplies the window mean back by its count. Adaptive pools whose
  output size divides the input's are plain pools (kernel = stride = input / output); other
  sizes have overlapping bins of varying size and raise.
- resize: nearest with integer upsampling factors and linear (sizes > 1) -> Resize
  (asymmetric / floor; half_pixel or align_corners); every other case (cubic, nearest_exact,
  non-integer nearest) -> the reference's own taps as Gather, Mul and Add, exactly.
- grid_sample -> GridSample (opset 20's mode names; 16's before).
- quantize -> QuantizeLinear (+ Clip when qmin/qmax or a width under 8 bits narrow the
  storage range), dequantize -> DequantizeLinear; an int32 input with a nonzero zero point,
  which DequantizeLinear does not take, is computed in float64 as the reference does.
  Rounding and saturation agree (ties to even, saturate); QuantizeLinear divides in float32
  where smelt divides in float64 (docs/onnx.md: at most one step apart, only within a float32
  rounding of a tie), and maps NaN to its saturation value where smelt gives the zero point.
"""

from __future__ import annotations

import numpy as np

from smelt.backends.interop.onnx_export import NoOnnxForm, OnnxGraph
from smelt.ir.node import Node
from smelt.ir.ops.common import norm_axis
from smelt.ir.ops.fused import unfused
from smelt.ir.ops.int4 import unpack_int4
from smelt.ir.ops.quant import INT_RANGES, clamp_bounds
from smelt.ir.ops.resample import resize_plan
from smelt.ir.ops.sparse import unpack_24
from smelt.ir.ops.spatial import axes_of, conv_pads, pool_counts, pool_params
from smelt.ir.types import is_float, numpy_dtype


# -- contractions --------------------------------------------------------------------------
def conv(g: OnnxGraph, n: Node) -> str:
    nd, a = n.inputs[0].tensor_type.rank - 2, n.attrs
    before, after = conv_pads(a["padding"], nd)
    return g.op("Conv", g.operands(n), kernel_shape=list(n.inputs[1].shape[2:]),
                strides=list(axes_of("stride", a["stride"], nd)), pads=[*before, *after],
                dilations=list(axes_of("dilation", a["dilation"], nd)), group=a["groups"])


def conv_transpose(g: OnnxGraph, n: Node) -> str:
    """output_padding op extends the high end: there the crop is p - op, and where op > p
    the rows past every tap's reach are zeros (plus the bias). ONNX's own output_padding
    would do the same, but ONNX Runtime takes it only below the stride (torch: below the
    stride or the dilation)."""
    nd, a = n.inputs[0].tensor_type.rank - 2, n.attrs
    s, p, op, d = (list(axes_of(k, a[k], nd))
                   for k in ("stride", "padding", "output_padding", "dilation"))
    grow = [max(0, o - q) for q, o in zip(p, op, strict=True)]
    xs = g.operands(n)
    y = g.op("ConvTranspose", xs if not any(grow) else xs[:2],
             kernel_shape=list(n.inputs[1].shape[2:]), strides=s, dilations=d,
             pads=p + [max(0, q - o) for q, o in zip(p, op, strict=True)], group=a["groups"])
    if not any(grow):
        return y
    y = g.op("Pad", [y, g.ints([0] * (nd + 2) + [0, 0, *grow])])
    if len(xs) < 3:
        return y
    return g.op("Add", [y, g.op("Reshape", [xs[2], g.ints([1, -1] + [1] * nd)])])


def dense(g: OnnxGraph, x: Node, w: Node | np.ndarray, bias: Node | None) -> str:
    """x @ w.T + bias for a weight (out, in): a graph node, or an array to store."""
    hint = "weight" if isinstance(w, np.ndarray) else g.graph.names.get(w, "weight")
    b = [g[bias]] if bias is not None else []
    if x.tensor_type.rank == 2:
        wn = g.const(w, x.dtype, hint) if isinstance(w, np.ndarray) else g[w]
        return g.op("Gemm", [g[x], wn, *b], transB=1)
    if isinstance(w, np.ndarray) or w.op == "constant":
        array = w if isinstance(w, np.ndarray) else w.value
        wt = g.const(np.ascontiguousarray(array.T), x.dtype, f"{hint}_t")
    else:
        wt = g.op("Transpose", [g[w]], perm=[1, 0])
    y = g.op("MatMul", [g[x], wt])
    return g.op("Add", [y, *b]) if b else y


def linear(g: OnnxGraph, n: Node) -> str:
    return dense(g, n.inputs[0], n.inputs[1], n.inputs[2] if len(n.inputs) > 2 else None)


def matmul(g: OnnxGraph, n: Node) -> str:
    return g.op("MatMul", g.operands(n))


def _constant_weight(n: Node, *operands: Node) -> None:
    computed = [w.op for w in operands if w.op != "constant"]
    if computed:
        raise NoOnnxForm(f"its compressed weight comes from {' and '.join(computed)} nodes, "
                         "and only a constant one is decompressed into a dense initializer",
                         "export the graph before the pass that compressed the weight")


def linear24(g: OnnxGraph, n: Node) -> str:
    x, values, meta, *bias = n.inputs
    _constant_weight(n, values, meta)
    w = unpack_24(values.value, meta.value, x.shape[-1]).astype(numpy_dtype(x.dtype))
    return dense(g, x, w, bias[0] if bias else None)


def linear_w4(g: OnnxGraph, n: Node) -> str:
    x, packed, scales, *bias = n.inputs
    _constant_weight(n, packed, scales)
    w = unpack_int4(packed.value).astype(np.float64) * np.repeat(
        np.asarray(scales.value, np.float64), n.attrs["group"], axis=1)
    return dense(g, x, w.astype(numpy_dtype(x.dtype)), bias[0] if bias else None)


def fused(g: OnnxGraph, n: Node) -> str:
    return g[unfused(n)]


# -- normalization -------------------------------------------------------------------------
def batch_norm(g: OnnxGraph, n: Node) -> str:
    x, mean, var, *affine = n.inputs
    c = x.shape[1]
    weight = g[affine[0]] if affine else g.const(np.ones(c), x.dtype)
    bias = g[affine[1]] if len(affine) > 1 else g.const(np.zeros(c), x.dtype)
    return g.op("BatchNormalization", [g[x], weight, bias, g[mean], g[var]],
                epsilon=n.attrs["eps"])


def layer_norm(g: OnnxGraph, n: Node) -> str:
    x, *affine = n.inputs
    axis = norm_axis(n.attrs["axis"], x.tensor_type.rank)
    weight = g[affine[0]] if affine else g.const(np.ones(x.shape[axis:]), x.dtype)
    bias = [g[affine[1]]] if len(affine) > 1 else []
    return g.op("LayerNormalization", [g[x], weight, *bias], axis=axis,
                epsilon=n.attrs["eps"])


def softmax(op_type: str):
    def lower(g: OnnxGraph, n: Node) -> str:
        return g.op(op_type, [g[n.inputs[0]]], axis=n.attrs["axis"])

    lower.__name__ = f"as_{op_type}"
    return lower


# -- pooling -------------------------------------------------------------------------------
def _overhang(n: Node, k, s, p, d) -> list[int]:
    """Per spatial axis, how far the last (ceil-mode) window runs past the padded input."""
    x = n.inputs[0].shape
    return [max(0, (o - 1) * s[i] + d[i] * (k[i] - 1) + 1 - (x[2 + i] + 2 * p[i]))
            for i, o in enumerate(n.shape[2:])]


def max_pool(g: OnnxGraph, n: Node) -> str:
    """Padding reads as the lowest value; as an explicit Pad where it reaches the kernel's
    size (dilated windows), which ONNX Runtime's MaxPool refuses."""
    x = n.inputs[0]
    nd = x.tensor_type.rank - 2
    k, s, p, d = pool_params(dict(n.attrs), nd)
    pads = [*p, *(a + b for a, b in zip(p, _overhang(n, k, s, p, d), strict=True))]
    src = g[x]
    if any(q >= k[i % nd] for i, q in enumerate(pads)):
        low = -np.inf if is_float(x.dtype) else np.iinfo(numpy_dtype(x.dtype)).min
        src = g.op("Pad", [src, g.ints([0, 0, *pads[:nd], 0, 0, *pads[nd:]]),
                           g.scalar(low, x.dtype)])
        pads = [0] * (2 * nd)
    return g.op("MaxPool", [src], kernel_shape=list(k), strides=list(s), pads=pads,
                dilations=list(d))


def avg_pool(g: OnnxGraph, n: Node) -> str:
    x, a = n.inputs[0], n.attrs
    nd = x.tensor_type.rank - 2
    k, s, p, d = pool_params(dict(a), nd)
    extra = _overhang(n, k, s, p, d)
    include, divisor = a["count_include_pad"], a.get("divisor")
    src, pads = g[x], [*p, *(a + b for a, b in zip(p, extra, strict=True))]
    if divisor is not None or (include and any(extra)):
        # zeros padded explicitly are counted; the overhang, padded by the pool, is not
        if any(p):
            src = g.op("Pad", [src, g.ints([0, 0, *p, 0, 0, *p])])
        pads, include = [0] * nd + extra, False
    y = g.op("AveragePool", [src], kernel_shape=list(k), strides=list(s), pads=pads,
             count_include_pad=int(include))
    if divisor is None:
        return y
    counts = pool_counts(x.shape, k, s, p, n.shape[2:], True).reshape(1, 1, *n.shape[2:])
    return g.op("Div", [g.op("Mul", [y, g.const(counts, x.dtype, "window_counts")]),
                        g.scalar(divisor, x.dtype)])


def adaptive_pool(op_type: str):
    def lower(g: OnnxGraph, n: Node) -> str:
        size, out = n.inputs[0].shape[2:], n.shape[2:]
        if any(i % o for i, o in zip(size, out, strict=True)):
            raise NoOnnxForm(
                f"output size {list(out)} does not divide the input's {list(size)}, so its "
                "bins overlap and vary in size (torch's rule) and no ONNX pool has them",
                "resize the input to a multiple of the output size, or pool with a fixed "
                "kernel and stride")
        k = [i // o for i, o in zip(size, out, strict=True)]
        return g.op(op_type, [g[n.inputs[0]]], kernel_shape=k, strides=k)

    lower.__name__ = f"adaptive_{op_type}"
    return lower


# -- resampling ----------------------------------------------------------------------------
def resize(g: OnnxGraph, n: Node) -> str:
    x, a = n.inputs[0], n.attrs
    size = a["size"]
    sizes = g.ints(n.shape)
    if a["mode"] == "nearest" and _integer_upsampling(n):
        return g.op("Resize", [g[x], "", "", sizes], mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    ins = x.shape[2:]
    scaled = bool(a["scales"]) and not a["align_corners"]
    if a["mode"] == "linear" and min(size) > 1 and (not scaled or all(
            int(np.floor(i * np.float32(f))) == o
            for i, f, o in zip(ins, a["scales"], size, strict=True))):
        if scaled:
            scales = g.const(np.asarray([1.0, 1.0, *a["scales"]]), "float32", "scales")
            ins_ = [g[x], "", scales]
        else:
            ins_ = [g[x], "", "", sizes]
        return g.op("Resize", ins_, mode="linear", coordinate_transformation_mode=(
            "align_corners" if a["align_corners"] else "half_pixel"))
    return resize_by_taps(g, n)


def _integer_upsampling(n: Node) -> bool:
    """Whether each axis grows by a whole factor k and the reference reads o // k, which
    Resize's asymmetric floor mode computes exactly (o / k)."""
    ins = n.inputs[0].shape[2:]
    for (_, idx, w), i, o in zip(resize_plan(n.inputs[0].shape, dict(n.attrs)), ins,
                                 n.shape[2:], strict=True):
        if w is not None or o % i or not np.array_equal(idx[0], np.arange(o) // (o // i)):
            return False
    return True


def resize_by_taps(g: OnnxGraph, n: Node) -> str:
    """The reference's computation: per axis, out = sum_t w[t] x[idx[t]] (Gather, Mul, Add in
    the same order), or a Gather alone for the nearest modes."""
    x = n.inputs[0]
    y, dtype = g[x], numpy_dtype(x.dtype)
    for axis, idx, w in resize_plan(x.shape, dict(n.attrs)):
        taps = [g.op("Gather", [y, g.const(i, "int64", "taps")], axis=axis) for i in idx]
        if w is None:
            y = taps[0]
            continue
        shape = [1] * x.tensor_type.rank
        shape[axis] = -1
        acc = None
        for t, tap in enumerate(taps):
            part = g.op("Mul", [tap, g.const(w[t].astype(dtype).reshape(shape), x.dtype,
                                             "weights")])
            acc = part if acc is None else g.op("Add", [acc, part])
        y = acc
    return y


_GRID_MODES = {"bilinear": "linear", "nearest": "nearest", "bicubic": "cubic"}


def grid_sample(g: OnnxGraph, n: Node) -> str:
    mode = n.attrs["mode"]
    return g.op("GridSample", g.operands(n), mode=_GRID_MODES[mode] if g.opset >= 20 else mode,
                padding_mode=n.attrs["padding_mode"],
                align_corners=int(n.attrs["align_corners"]))


# -- quantization --------------------------------------------------------------------------
def _params(n: Node, dtype: str) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(scale float32, zero point of `dtype`, axis): 0-d per tensor, 1-D per axis."""
    scale, zp, axis = n.attrs["scale"], n.attrs["zero_point"], n.attrs["axis"]
    if axis is None:
        return np.float32(scale[0]), np.asarray(zp[0]).astype(numpy_dtype(dtype)), None
    zp = zp * len(scale) if len(zp) == 1 else zp
    rank = n.inputs[0].tensor_type.rank
    return (np.asarray(scale, np.float32), np.asarray(zp).astype(numpy_dtype(dtype)),
            norm_axis(axis, rank))


def _needs_opset21(g: OnnxGraph, dtype: str, what: str) -> None:
    if dtype not in ("int8", "uint8") and g.opset < 21:
        raise NoOnnxForm(f"{what} of {dtype} needs opset 21 (8-bit only before)",
                         "export with opset=21 or later")


def quantize(g: OnnxGraph, n: Node) -> str:
    x = n.inputs[0]
    dtype, qmin, qmax = clamp_bounds(dict(n.attrs))
    if dtype == "int32" or x.dtype == "float64":
        raise NoOnnxForm(f"QuantizeLinear takes float32/16 inputs and writes 8 or 16-bit "
                         f"integers; this quantizes {x.dtype} to {dtype}",
                         "cast x to float32 and quantize to at most 16 bits")
    _needs_opset21(g, dtype, "QuantizeLinear")
    scale, zp, axis = _params(n, dtype)
    src = g[x] if x.dtype == "float32" else g.cast(g[x], "float32")  # exact widening
    q = g.op("QuantizeLinear", [src, g.const(scale, "float32", "scale"),
                                g.const(zp, dtype, "zero_point")], axis=axis)
    if (qmin, qmax) != INT_RANGES[dtype]:  # nested ranges: clamp twice = clamp once
        wide = "int32" if dtype == "int16" else dtype  # ONNX Runtime has no int16 Clip
        q = g.op("Clip", [q if wide == dtype else g.cast(q, wide), g.scalar(qmin, wide),
                          g.scalar(qmax, wide)])
        q = q if wide == dtype else g.cast(q, dtype)
    return q


def dequantize(g: OnnxGraph, n: Node) -> str:
    q = n.inputs[0]
    scale, zp, axis = _params(n, q.dtype)
    if q.dtype == "int32" and zp.any():  # the reference's arithmetic, in float64
        shape = [1] * q.tensor_type.rank
        if axis is not None:
            shape[axis] = -1
        d = g.op("Sub", [g.cast(g[q], "float64"), g.const(zp.reshape(shape), "float64")])
        y = g.op("Mul", [d, g.const(scale.astype(np.float64).reshape(shape), "float64")])
        return g.cast(y, "float32")
    _needs_opset21(g, q.dtype, "DequantizeLinear")
    zero = [] if q.dtype == "int32" else [g.const(zp, q.dtype, "zero_point")]
    return g.op("DequantizeLinear", [g[q], g.const(scale, "float32", "scale"), *zero],
                axis=axis)


LAYER_OPS = {
    "conv2d": conv, "conv3d": conv, "conv_transpose": conv_transpose,
    "linear": linear, "matmul": matmul,
    "linear24": linear24, "linear_w4": linear_w4,
    "fused_conv2d": fused, "fused_linear": fused, "fused_matmul": fused,
    "batch_norm": batch_norm, "layer_norm": layer_norm,
    "softmax": softmax("Softmax"), "log_softmax": softmax("LogSoftmax"),
    "max_pool2d": max_pool, "max_pool3d": max_pool,
    "avg_pool2d": avg_pool, "avg_pool3d": avg_pool,
    "adaptive_avg_pool2d": adaptive_pool("AveragePool"),
    "adaptive_avg_pool3d": adaptive_pool("AveragePool"),
    "adaptive_max_pool2d": adaptive_pool("MaxPool"),
    "adaptive_max_pool3d": adaptive_pool("MaxPool"),
    "resize": resize, "grid_sample": grid_sample,
    "quantize": quantize, "dequantize": dequantize,
}

__all__ = ["LAYER_OPS", "dense", "resize_by_taps"]
