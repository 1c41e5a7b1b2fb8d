"""The ONNX table: `ONNX_OPS[op](g, node)` writes a smelt node's ONNX form into an
onnx_export.OnnxGraph `g` and returns the value holding its result. Every op of the op table
but `input` and `constant` (the exporter's own) has an entry: a form (elementwise ops, math
and reductions here; data movement and indexing in onnx_shapes.py; layers in onnx_layers.py)
or a typed refusal (`NO_FORM`). Opset 18 and up.

- one ONNX op each where the meanings agree (Add, Exp, Erf, Where, Max and Min (NaN wins, as
  numpy's), Mod(fmod=1) for fmod, HardSwish, Gelu from opset 20, ...); on bool, add / maximum
  are Or and mul / minimum And, and ordering comparisons compare as uint8.
- formulas where ONNX has no op: relu6 = Clip(0, 6); silu = x Sigmoid(x); rsqrt =
  Reciprocal(Sqrt); trunc = Where(x < 0, Ceil, Floor); sign of a float = (x > 0) - (x < 0)
  (torch's: 0 at NaN and -0.0, where ONNX's Sign keeps NaN); not_equal = Not(Equal);
  remainder = Mod(fmod=1), + b where nonzero and signed unlike b (torch's kernel); integer
  fmod and remainder divide by 1 where the divisor is 0 or -1 (the reference's rule);
  log2 / log10 = Log / ln(base); expm1 and log1p by Kahan's formulas ((u - 1) (x / ln u),
  u = e^x; x (ln u / (u - 1)), u = 1 + x), accurate near 0 where Exp(x) - 1 and Log(1 + x)
  are not; elu as its reference writes it, with that expm1; gelu before opset 20 as its
  reference's erf or tanh formula; clamp with one bound is Max or Min (Clip's absent bound
  is the lowest / highest finite float in ONNX Runtime, which moves an infinite x).
- integer ops ONNX defines on 32 and 64 bits only (Pow, ReduceSum, ReduceProd, ReduceMean,
  CumSum) widen 8 and 16-bit operands to int32 and cast back: the same result modulo 2^bits.
  relu of an integer is Max(x, 0), neg of an unsigned one 0 - x.
- reductions take their axes as an input (all axes when smelt's are empty); reduce_any /
  reduce_all count (ReduceSum of the bool cast to int64, compared with 0).

Refused (`NO_FORM`, docs/onnx.md): fold-qdq's integer kernels (export the Q/DQ graph
instead), atan2, sort; cumprod before opset 26; casts to 4-bit types.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from smelt.backends.interop.onnx_export import NoOnnxForm, OnnxGraph
from smelt.backends.interop.onnx_layers import LAYER_OPS
from smelt.backends.interop.onnx_shapes import SHAPE_OPS
from smelt.ir.node import Node
from smelt.ir.ops.common import norm_axes
from smelt.ir.types import is_float, numpy_dtype

Entry = Callable[[OnnxGraph, Node], "str | tuple[str, ...]"]
NARROW_INTS = ("int8", "uint8", "int16")
UNSIGNED = ("uint8", "uint4")
BOOL_FORMS = {"add": "Or", "mul": "And", "maximum": "Or", "minimum": "And",
              "bitwise_and": "And", "bitwise_or": "Or", "bitwise_xor": "Xor",
              "bitwise_not": "Not"}
ORDERED = ("Less", "LessOrEqual", "Greater", "GreaterOrEqual")


def same(op_type: str, **attrs) -> Entry:
    """One ONNX op on the operands (bool: BOOL_FORMS' logical op; ordering: as uint8)."""

    def lower(g: OnnxGraph, n: Node) -> str:
        xs = g.operands(n)
        if n.inputs[0].dtype == "bool":
            if n.op in BOOL_FORMS:
                return g.op(BOOL_FORMS[n.op], xs)
            if op_type in ORDERED:
                xs = [g.cast(x, "uint8") for x in xs]
        return g.op(op_type, xs, **attrs)

    lower.__name__ = f"as_{op_type}"
    return lower


def widened(entry: Callable[[OnnxGraph, Node, list[str]], str]) -> Entry:
    """`entry` on int32 copies of 8 and 16-bit integer operands, cast back (wraps alike)."""

    def lower(g: OnnxGraph, n: Node) -> str:
        dtype = n.inputs[0].dtype
        if dtype not in NARROW_INTS:
            return entry(g, n, g.operands(n))
        xs = [g.cast(g[x], "int32") if x.dtype == dtype else g[x] for x in n.inputs]
        return g.cast(entry(g, n, xs), dtype)

    lower.__name__ = f"widened_{entry.__name__}"
    return lower


# -- activations and math ------------------------------------------------------------------
def _k(g: OnnxGraph, n: Node, v: float) -> str:
    return g.scalar(v, n.inputs[0].dtype)


def relu(g: OnnxGraph, n: Node) -> str:
    """Relu on floats (NaN stays NaN); max(x, 0) on integers, which ONNX Runtime's Relu
    lacks beyond int8 and int32."""
    x = g[n.inputs[0]]
    return g.op("Relu", [x]) if is_float(n.dtype) else g.op("Max", [x, _k(g, n, 0)])


def leaky_relu(g: OnnxGraph, n: Node) -> str:
    return g.op("LeakyRelu", [g[n.inputs[0]]], alpha=n.attrs["alpha"])


def neg(g: OnnxGraph, n: Node) -> str:
    if n.dtype in UNSIGNED:  # ONNX's Neg is for signed types; 0 - x wraps the same way
        return g.op("Sub", [_k(g, n, 0), g[n.inputs[0]]])
    return g.op("Neg", [g[n.inputs[0]]])


def relu6(g: OnnxGraph, n: Node) -> str:
    return g.op("Clip", [g[n.inputs[0]], _k(g, n, 0), _k(g, n, 6)])


def gelu(g: OnnxGraph, n: Node) -> str:
    x, approximate = g[n.inputs[0]], n.attrs["approximate"]
    if g.opset >= 20:
        return g.op("Gelu", [x], approximate=approximate)
    if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.op("Mul", [g.op("Mul", [g.op("Mul", [_k(g, n, 0.044715), x]), x]), x])
        inner = g.op("Mul", [_k(g, n, np.sqrt(2 / np.pi)), g.op("Add", [x, cube])])
        t = g.op("Tanh", [inner])
    else:  # 0.5 x (1 + erf(x / sqrt 2))
        t = g.op("Erf", [g.op("Mul", [x, _k(g, n, 1 / np.sqrt(2.0))])])
    return g.op("Mul", [g.op("Mul", [_k(g, n, 0.5), x]), g.op("Add", [_k(g, n, 1), t])])


def silu(g: OnnxGraph, n: Node) -> str:
    x = g[n.inputs[0]]
    return g.op("Mul", [x, g.op("Sigmoid", [x])])


def rsqrt(g: OnnxGraph, n: Node) -> str:
    return g.op("Reciprocal", [g.op("Sqrt", [g[n.inputs[0]]])])


def trunc(g: OnnxGraph, n: Node) -> str:
    x = g[n.inputs[0]]
    return g.op("Where", [g.op("Less", [x, _k(g, n, 0)]), g.op("Ceil", [x]), g.op("Floor", [x])])


def sign(g: OnnxGraph, n: Node) -> str:
    x = g[n.inputs[0]]
    if not is_float(n.dtype):
        return g.op("Sign", [x])
    zero = _k(g, n, 0)
    pos = g.cast(g.op("Greater", [x, zero]), n.dtype)
    return g.op("Sub", [pos, g.cast(g.op("Less", [x, zero]), n.dtype)])


def log_base(base: float) -> Entry:
    def lower(g: OnnxGraph, n: Node) -> str:
        return g.op("Div", [g.op("Log", [g[n.inputs[0]]]), _k(g, n, np.log(base))])

    lower.__name__ = f"log{base:g}"
    return lower


def expm1_of(g: OnnxGraph, n: Node, x: str) -> str:
    """e^x - 1 by Kahan's formula: u = e^x; x where u == 1; u - 1 where that is -1 or u is
    infinite; else (u - 1) (x / ln u)."""
    u = g.op("Exp", [x])
    d = g.op("Sub", [u, _k(g, n, 1)])
    q = g.op("Mul", [d, g.op("Div", [x, g.op("Log", [u])])])  # (u - 1) x overflows
    plain = g.op("Or", [g.op("IsInf", [u]), g.op("Equal", [d, _k(g, n, -1)])])
    return g.op("Where", [g.op("Equal", [u, _k(g, n, 1)]), x, g.op("Where", [plain, d, q])])


def expm1(g: OnnxGraph, n: Node) -> str:
    return expm1_of(g, n, g[n.inputs[0]])


def log1p(g: OnnxGraph, n: Node) -> str:
    """ln(1 + x) = x ln u / (u - 1), u = 1 + x (Goldberg); x where u == 1, ln u where u is
    infinite."""
    x = g[n.inputs[0]]
    u = g.op("Add", [x, _k(g, n, 1)])
    d, log_u = g.op("Sub", [u, _k(g, n, 1)]), g.op("Log", [u])
    q = g.op("Mul", [x, g.op("Div", [log_u, d])])
    inner = g.op("Where", [g.op("IsInf", [u]), log_u, q])
    return g.op("Where", [g.op("Equal", [d, _k(g, n, 0)]), x, inner])


def elu(g: OnnxGraph, n: Node) -> str:
    """where(x > 0, scale x, expm1(input_scale x) (alpha scale)), alpha scale in float64."""
    x, a = g[n.inputs[0]], n.attrs
    pos = x if a["scale"] == 1 else g.op("Mul", [x, _k(g, n, a["scale"])])
    arg = x if a["input_scale"] == 1 else g.op("Mul", [x, _k(g, n, a["input_scale"])])
    neg_ = g.op("Mul", [expm1_of(g, n, arg), _k(g, n, a["alpha"] * a["scale"])])
    return g.op("Where", [g.op("Greater", [x, _k(g, n, 0)]), pos, neg_])


def _safe_divisor(g: OnnxGraph, n: Node, b: str) -> str:
    """b with 0 and (signed) -1 replaced by 1, as the reference's integer fmod does."""
    if is_float(n.dtype):
        return b
    bad = g.op("Equal", [b, _k(g, n, 0)])
    if n.dtype not in UNSIGNED:
        bad = g.op("Or", [bad, g.op("Equal", [b, _k(g, n, -1)])])
    return g.op("Where", [bad, _k(g, n, 1), b])


def fmod(g: OnnxGraph, n: Node) -> str:
    a, b = g.operands(n)
    return g.op("Mod", [a, _safe_divisor(g, n, b)], fmod=1)


def remainder(g: OnnxGraph, n: Node) -> str:
    a, b = g.operands(n)
    b = _safe_divisor(g, n, b)
    r = g.op("Mod", [a, b], fmod=1)
    zero = _k(g, n, 0)
    unlike = g.op("Xor", [g.op("Less", [r, zero]), g.op("Less", [b, zero])])
    flip = g.op("And", [g.op("Not", [g.op("Equal", [r, zero])]), unlike])
    return g.op("Where", [flip, g.op("Add", [r, b]), r])


def not_equal(g: OnnxGraph, n: Node) -> str:
    return g.op("Not", [g.op("Equal", g.operands(n))])


def clamp(g: OnnxGraph, n: Node) -> str:
    """Clip with both bounds; Max or Min with one (Clip's absent bound is the lowest or
    highest finite value in ONNX Runtime, which moves an infinite x)."""
    lo, hi = (_bound(g, n, n.attrs[k]) for k in ("min", "max"))
    x = g[n.inputs[0]]
    if lo and hi:
        return g.op("Clip", [x, lo, hi])
    return g.op("Max", [x, lo]) if lo else g.op("Min", [x, hi])


def _bound(g: OnnxGraph, n: Node, v: float | None) -> str | None:
    """A clamp bound in x's dtype; an integer one saturates to the dtype (the reference)."""
    if v is None:
        return None
    if not is_float(n.dtype):
        info = np.iinfo(numpy_dtype(n.dtype))
        v = min(max(v, info.min), info.max)
    return _k(g, n, v)


def cast(g: OnnxGraph, n: Node) -> str:
    if n.dtype in ("int4", "uint4"):
        raise NoOnnxForm(f"a cast to {n.dtype} wraps modulo 16 in smelt (as torch), and "
                         "ONNX leaves out-of-range 4-bit casts undefined",
                         "cast to int8 / uint8 instead")
    return g.cast(g[n.inputs[0]], n.dtype)


# -- reductions and scans ------------------------------------------------------------------
def _axes(n: Node) -> list[int]:
    x = n.inputs[0].tensor_type
    return list(norm_axes(n.attrs["axes"], x.rank)) if n.attrs["axes"] else []


def reduce(op_type: str) -> Entry:
    def emit(g: OnnxGraph, n: Node, xs: list[str]) -> str:
        axes = _axes(n)
        return g.op(op_type, [xs[0], *([g.ints(axes)] if axes else [])],
                    keepdims=int(n.attrs["keepdims"]))

    emit.__name__ = op_type
    return widened(emit)


def reduce_bool(any_: bool) -> Entry:
    """any: count(x) > 0; all: count(not x) == 0 (over nothing: False, True)."""

    def lower(g: OnnxGraph, n: Node) -> str:
        x = g[n.inputs[0]]
        axes = _axes(n)
        counted = g.cast(x if any_ else g.op("Not", [x]), "int64")
        total = g.op("ReduceSum", [counted, *([g.ints(axes)] if axes else [])],
                     keepdims=int(n.attrs["keepdims"]))
        return g.op("Greater" if any_ else "Equal", [total, g.scalar(0, "int64")])

    lower.__name__ = "reduce_any" if any_ else "reduce_all"
    return lower


def argmax(g: OnnxGraph, n: Node) -> str:
    return g.op("ArgMax", [g[n.inputs[0]]], axis=n.attrs["axis"],
                keepdims=int(n.attrs["keepdims"]))


def _cumsum(g: OnnxGraph, n: Node, xs: list[str]) -> str:
    return g.op("CumSum", [xs[0], g.scalar(n.attrs["axis"], "int64")])


def _pow(g: OnnxGraph, n: Node, xs: list[str]) -> str:
    return g.op("Pow", xs)


def cumprod(g: OnnxGraph, n: Node) -> str:
    if g.opset < 26:
        raise NoOnnxForm(f"ONNX has no cumulative product before opset 26 (this is "
                         f"opset {g.opset})", "export with opset=26 if your runtime runs it")
    return g.op("CumProd", [g[n.inputs[0]], g.scalar(n.attrs["axis"], "int64")])


# -- refusals ------------------------------------------------------------------------------
def no_form(reason: str, hint: str) -> Entry:
    def lower(g: OnnxGraph, n: Node) -> str:
        raise NoOnnxForm(reason, hint)

    lower.__name__ = "no_onnx_form"
    return lower


FOLDED = ("export the graph before fold-qdq: its Q/DQ form maps to "
          "QuantizeLinear/DequantizeLinear")
NO_FORM = {
    **{op: (f"{op} is an integer kernel built by fold-qdq (exact int32 accumulation and "
            "integer-only rescaling), which no standard ONNX op computes bit for bit", FOLDED)
       for op in ("qconv2d", "qlinear", "qmatmul", "qadd", "qmul", "qmean", "requantize")},
    "qlookup": ("qlookup is fold-qdq's 256-entry table of a float function between a "
                "dequantize and a quantize", FOLDED),
    "atan2": ("ONNX has no atan2, and atan(a / b) with quadrant fixes differs from C's atan2 "
              "at signed zeros and infinities",
              "rewrite it with atan and where before exporting"),
    "sort": ("ONNX's TopK fixes no order for NaN, where sort is stable with NaN above +inf",
             "keep the sort out of the exported graph, or replace it with a topk of your own "
             "if NaN cannot occur"),
}

ONNX_OPS: dict[str, Entry] = {
    **{op: same(t) for op, t in {
        "abs": "Abs", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "reciprocal": "Reciprocal",
        "sin": "Sin", "cos": "Cos", "tan": "Tan", "erf": "Erf", "floor": "Floor",
        "ceil": "Ceil", "round": "Round", "sigmoid": "Sigmoid", "tanh": "Tanh",
        "acos": "Acos", "acosh": "Acosh", "asin": "Asin", "asinh": "Asinh", "atan": "Atan",
        "atanh": "Atanh", "cosh": "Cosh", "sinh": "Sinh", "isnan": "IsNaN", "isinf": "IsInf",
        "hardswish": "HardSwish", "logical_not": "Not", "bitwise_not": "BitwiseNot",
        "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "maximum": "Max",
        "minimum": "Min", "equal": "Equal", "less": "Less", "less_equal": "LessOrEqual",
        "greater": "Greater", "greater_equal": "GreaterOrEqual", "logical_and": "And",
        "logical_or": "Or", "logical_xor": "Xor", "bitwise_and": "BitwiseAnd",
        "bitwise_or": "BitwiseOr", "bitwise_xor": "BitwiseXor", "where": "Where",
    }.items()},
    "leaky_relu": leaky_relu,
    "hardsigmoid": same("HardSigmoid", alpha=1 / 6, beta=0.5),
    "relu": relu, "neg": neg, "relu6": relu6, "gelu": gelu, "silu": silu, "rsqrt": rsqrt,
    "trunc": trunc, "sign": sign, "log2": log_base(2), "log10": log_base(10),
    "expm1": expm1, "log1p": log1p, "elu": elu, "fmod": fmod, "remainder": remainder,
    "not_equal": not_equal, "clamp": clamp, "cast": cast, "pow": widened(_pow),
    "reduce_sum": reduce("ReduceSum"), "reduce_mean": reduce("ReduceMean"),
    "reduce_max": reduce("ReduceMax"), "reduce_min": reduce("ReduceMin"),
    "reduce_prod": reduce("ReduceProd"), "reduce_any": reduce_bool(True),
    "reduce_all": reduce_bool(False), "argmax": argmax, "cumsum": widened(_cumsum),
    "cumprod": cumprod,
    **SHAPE_OPS,
    **LAYER_OPS,
    **{op: no_form(*why) for op, why in NO_FORM.items()},
}
