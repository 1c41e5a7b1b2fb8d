"""Every op's numpy reference semantics, checked against PyTorch over random shapes and attrs.

`CASES` maps each op name to a hypothesis strategy of examples (operand arrays, attributes,
reduction length) and an independent PyTorch implementation of what the op should compute.
`test_op_matches_torch` runs each op as a one-node graph through `smelt.interpret` and compares;
`test_every_op_has_a_case` fails for an op in `smelt.ir.OPS` that has no case, so a new op
cannot land untested. `input`, `constant` and `project` are exercised through graphs (project by
the split case). Each example also runs in the interpreter's float64 mode, where the same bound
with float64's eps applies. `test_type_inference_is_total_and_sound` builds every op from random
(mostly ill-typed) operands and attributes: a build either raises TypeInferenceError or the
reference runs and gives the inferred shape. A few hand-written ill-typed builds check that the
messages say what is wrong.

Tolerance. PyTorch computes in float64 (exact ops compare bit for bit). A float32 result that
sums K products rounds each product and partial sum with relative error at most eps/2; for
random-signed terms the accumulated error grows like sqrt(K) * max|term| * eps (pairwise and
blocked summation in numpy and BLAS do no worse), and the result's own rounding adds up to an
ulp of |result|. We allow 8x both:

    |smelt - torch64| <= 8 * eps(dtype) * (sqrt(K) * max|term| + |torch64|)

elementwise. Elementwise ops have K = 1, and max|term| is the element's largest operand for
formulas whose intermediate roundings scale with |x| (gelu, hardswish), or 0 for one correctly
rounded operation or accurate library function (add, exp, sigmoid): 8 ulps of the result.
An absolute 16 * smallest-normal covers underflow. Where the float64 result overflows the
float type, smelt must give the same infinity; NaN must match NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from quant_cases import QUANT_CASES

import smelt
from smelt.ir import OPS, Graph, InterpretError, Node, TupleType, TypeInferenceError
from smelt.ir.op_table import REQUIRED, AttrSpec
from smelt.ir.types import dtype_of_array
from smelt.rewrite import strategies as sst

FLOATS = ("float32", "float64", "float16")
INTS = ("int8", "uint8", "int32", "int64")
SIGNED = ("int8", "int32", "int64")
NUMERIC = FLOATS + INTS
SPECIALS = (math.nan, math.inf, -math.inf, 0.0, -0.0)
TESTED_ELSEWHERE = {
    "input": "bound by interpret(); every graph test uses inputs",
    "constant": "graph and text-format tests build and print constants",
    "project": "the split case reads every part through project",
}


# -- examples, cases, and running one op ---------------------------------------------------
@dataclass(frozen=True)
class Example:
    """Operands and attributes for one op, and the reduction each output element does."""

    args: tuple[np.ndarray, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    k: int = 1  # terms summed per output element
    term: float | None = None  # max |term|; None: as the case's `term` says


@dataclass(frozen=True)
class Case:
    """`term` says what an elementwise op's error scales with when its example gives none:
    "result" for one correctly rounded operation or an accurate library function (8 ulps of
    the result), "operands" for a formula whose intermediate roundings scale with |x|."""

    examples: st.SearchStrategy[Example]
    torch_fn: Callable[..., Any]
    exact: bool = False
    term: str = "operands"


def run_op(op: str, args: tuple[np.ndarray, ...], attrs: dict[str, Any],
           precision: str = "float32") -> list[np.ndarray]:
    """The op applied to `args` as a one-node graph (every part, for tuple-typed ops)."""
    xs = [Node.input(f"a{i}", a.shape, dtype_of_array(a)) for i, a in enumerate(args)]
    node = Node.make(op, xs, **attrs)
    outs = [node]
    if isinstance(node.type, TupleType):
        outs = [Node.make("project", [node], index=i) for i in range(len(node.type.elements))]
    return list(smelt.interpret(Graph(xs, outs), *args, precision=precision))


def to_torch(a: np.ndarray) -> torch.Tensor:
    if np.issubdtype(a.dtype, np.floating):
        return torch.from_numpy(a.astype(np.float64))
    return torch.from_numpy(a.copy())


def to_numpy(t: Any) -> list[np.ndarray]:
    parts = t if isinstance(t, tuple | list) else [t]
    return [p.detach().to(torch.float64 if p.is_floating_point() else p.dtype).numpy()
            for p in parts]


def assert_matches(got: np.ndarray, want: np.ndarray, ex: Example, case: Case) -> None:
    assert got.shape == want.shape, f"shape {got.shape} != torch's {want.shape}"
    if case.exact or not np.issubdtype(got.dtype, np.floating):
        np.testing.assert_array_equal(got, want.astype(got.dtype))
        return
    with np.errstate(over="ignore"):  # float64 results past the type's range become inf
        rounded = want.astype(got.dtype)
    odd = ~np.isfinite(rounded)
    np.testing.assert_array_equal(got[odd], rounded[odd], err_msg="inf/nan differ")
    eps = float(np.finfo(got.dtype).eps)
    term = np.broadcast_to(_term(ex, case, want.shape), want.shape)[~odd]
    tiny = float(np.finfo(got.dtype).tiny)  # underflow in intermediates: a small absolute slack
    bound = 8 * eps * (math.sqrt(ex.k) * term + np.abs(want[~odd])) + 16 * tiny
    err = np.abs(got[~odd].astype(np.float64) - want[~odd])
    worst = int(np.argmax(err - bound)) if err.size else 0
    assert (err <= bound).all(), (
        f"error {err.flat[worst]:.3g} > bound {bound.flat[worst]:.3g} (K={ex.k}, "
        f"term={term.flat[worst]:.3g}); got {got[~odd].flat[worst]!r}, "
        f"torch {want[~odd].flat[worst]!r}"
    )


def _term(ex: Example, case: Case, shape: tuple[int, ...]) -> float | np.ndarray:
    """max |term|: the example's own, else 0 for "result" cases, else each output element's
    largest operand magnitude for elementwise ops (K = 1), the largest overall for others."""
    if ex.term is not None:
        return ex.term
    floats = [np.abs(np.nan_to_num(a.astype(np.float64), posinf=0, neginf=0))
              for a in ex.args if np.issubdtype(a.dtype, np.floating)]
    if case.term == "result" or not floats:
        return 0.0
    if ex.k == 1:
        try:
            return np.maximum.reduce([np.broadcast_to(a, shape) for a in floats])
        except ValueError:  # a 1-element reduction or window: the shapes differ
            pass
    return max(float(a.max(initial=0.0)) for a in floats)


# -- drawing operands ----------------------------------------------------------------------
@st.composite
def values(draw: st.DrawFn, shape: tuple[int, ...], dtype: str, *, positive: bool = False,
           integral: bool = False, specials: bool = False, scale: float | None = None,
           f32_exact: bool = False) -> np.ndarray:
    """An operand: normals, outliers, uniforms or rounding ties of a random scale, stored as
    `dtype`. `integral` rounds (so comparisons and argmax meet ties); `specials` plants a few
    NaN, infinities and signed zeros; `f32_exact` keeps float64 values float32-representable."""
    kind = draw(st.sampled_from(sst.TENSOR_KINDS))
    scale = scale if scale is not None else draw(st.sampled_from([0.25, 1.0, 3.0, 20.0]))
    x = draw(sst.tensors(shape, "float64", kind=kind, scale=scale))
    if positive:
        x = np.abs(x) + 1e-3 * scale
    if integral:
        x = np.round(x)
    if f32_exact:
        x = x.astype(np.float32)
    x = sst.to_dtype(x, dtype)
    if specials and np.issubdtype(x.dtype, np.floating) and x.size and draw(st.booleans()):
        count = draw(st.integers(1, min(3, x.size)))
        flat = x.reshape(-1).copy()
        for _ in range(count):
            flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from(SPECIALS))
        x = flat.reshape(x.shape)
    return x


def broadcast_pair(draw: st.DrawFn, max_rank: int = 4) -> tuple[tuple, tuple]:
    """Two shapes that broadcast together (each may have 1s and fewer axes)."""
    full = draw(sst.shapes(0, max_rank, 1, 5))
    return draw(sst.broadcastable_shapes(full)), draw(sst.broadcastable_shapes(full))


def signed_axis(draw: st.DrawFn, axis: int, rank: int) -> int:
    return axis - rank if draw(st.booleans()) else axis


def axis_list(draw: st.DrawFn, rank: int, min_size: int = 0) -> list[int]:
    if rank == 0:
        return []
    axes = draw(st.lists(st.integers(0, rank - 1), min_size=min_size, max_size=rank,
                         unique=True))
    return [signed_axis(draw, a, rank) for a in axes]


# -- elementwise ops -----------------------------------------------------------------------
@st.composite
def unary_examples(draw: st.DrawFn, dtypes: tuple[str, ...], attrs: st.SearchStrategy,
                   positive: bool, specials: bool) -> Example:
    dtype = draw(st.sampled_from(dtypes))
    shape = draw(sst.shapes(0, 4, 1, 5))
    x = draw(values(shape, dtype, positive=positive and not draw(st.booleans()),
                    specials=specials))
    return Example((x,), draw(attrs))


NO_ATTRS: st.SearchStrategy[dict[str, Any]] = st.just({})


def unary(torch_fn: Callable, dtypes: tuple[str, ...] = FLOATS,
          attrs: st.SearchStrategy = NO_ATTRS, positive: bool = False,
          specials: bool = True, exact: bool = False, term: str = "result") -> Case:
    """A unary op; `positive` makes half the examples positive (the rest probe the domain's
    edge: negatives give NaN, zero gives the limit)."""
    return Case(unary_examples(dtypes, attrs, positive, specials), torch_fn, exact, term)


@st.composite
def round_examples(draw: st.DrawFn) -> Example:
    """Half the examples are all rounding ties (k + 0.5) * scale with scale 0.5, 1 or 3, where
    half-to-even differs from half-away-from-zero."""
    if draw(st.booleans()):
        return draw(unary_examples(FLOATS, NO_ATTRS, False, True))
    shape = draw(sst.shapes(0, 4, 1, 5))
    scale = draw(st.sampled_from([0.5, 1.0, 3.0]))
    x = draw(sst.tensors(shape, draw(st.sampled_from(FLOATS)), kind="ties", scale=scale))
    return Example((x,))


@st.composite
def clamp_attrs(draw: st.DrawFn) -> dict[str, Any]:
    bound = st.floats(-5, 5, allow_nan=False).map(float)
    which = draw(st.sampled_from(["min", "max", "both"]))
    attrs = {"min": draw(bound), "max": draw(bound)}
    return attrs if which == "both" else {which: attrs[which]}


@st.composite
def clamp_examples(draw: st.DrawFn) -> Example:
    ex = draw(unary_examples(NUMERIC, clamp_attrs(), False, True))
    if not np.issubdtype(ex.args[0].dtype, np.floating):  # int tensors take integral bounds
        big = draw(st.sampled_from([3, 1000]))
        ex = Example(ex.args, {k: float(round(v * big)) for k, v in ex.attrs.items()})
    return ex


def torch_clamp(x: torch.Tensor, *, min: float | None = None, max: float | None = None):
    if not x.is_floating_point():
        info = torch.iinfo(x.dtype)
        min = None if min is None else int(np.clip(min, info.min, info.max))
        max = None if max is None else int(np.clip(max, info.min, info.max))
    return torch.clamp(x, min=min, max=max)


@st.composite
def binary_examples(draw: st.DrawFn, dtypes: tuple[str, ...], integral: bool = False,
                    specials: bool = False) -> Example:
    dtype = draw(st.sampled_from(dtypes))
    sa, sb = broadcast_pair(draw)
    a = draw(values(sa, dtype, integral=integral, specials=specials))
    b = draw(values(sb, dtype, integral=integral, specials=specials))
    return Example((a, b))


@st.composite
def div_examples(draw: st.DrawFn) -> Example:
    dtype = draw(st.sampled_from(FLOATS + ("int32", "int64")))
    sa, sb = broadcast_pair(draw)
    a = draw(values(sa, dtype, specials=True))
    b = draw(values(sb, dtype, specials=True))
    if not np.issubdtype(b.dtype, np.floating):
        b = np.where(b == 0, 1, b).astype(b.dtype)  # integer division by zero is undefined
    return Example((a, b))


def torch_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


@st.composite
def pow_examples(draw: st.DrawFn) -> Example:
    """Float: a positive base with any exponent, or any base with an integral exponent.
    Integer: small bases and exponents 0..4."""
    dtype = draw(st.sampled_from(FLOATS + ("int32", "int64")))
    sa, sb = broadcast_pair(draw)
    if dtype in FLOATS:
        integral = draw(st.booleans())
        a = draw(values(sa, dtype, positive=not integral, scale=2.0))
        b = draw(values(sb, dtype, integral=integral, scale=2.0))
    else:
        a = draw(values(sa, dtype, scale=4.0))
        b = np.asarray(np.abs(draw(values(sb, dtype, scale=2.0))) % 5)
    return Example((a, b))


@st.composite
def logical_examples(draw: st.DrawFn, arity: int) -> Example:
    sa, sb = broadcast_pair(draw)
    shapes = (sa, sb)[:arity]
    return Example(tuple(draw(values(s, "bool")) for s in shapes))


@st.composite
def where_examples(draw: st.DrawFn) -> Example:
    dtype = draw(st.sampled_from(NUMERIC))
    full = draw(sst.shapes(0, 4, 1, 5))
    sc, sa, sb = (draw(sst.broadcastable_shapes(full)) for _ in range(3))
    return Example((draw(values(sc, "bool")), draw(values(sa, dtype, specials=True)),
                    draw(values(sb, dtype))))


CAST_SOURCES = FLOATS + INTS + ("bool",)
CAST_TARGETS = ("float32", "float64", "float16", "bfloat16", "int8", "uint8", "int16",
                "int32", "int64", "bool", "int4", "uint4")
NARROW_STORAGE = {"int4": "int8", "uint4": "uint8"}  # what numpy holds them in
CAST_ROUTES = tuple((a, b) for a in ("float", "int", "bool") for b in ("float", "int", "bool"))


def _kind(dtype: str) -> str:
    return "bool" if dtype == "bool" else "float" if "float" in dtype else "int"


TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
                "bfloat16": torch.bfloat16, "int8": torch.int8, "uint8": torch.uint8,
                "int16": torch.int16, "int32": torch.int32, "int64": torch.int64,
                "bool": torch.bool}


@st.composite
def cast_examples(draw: st.DrawFn, routes: tuple[tuple[str, str], ...] = CAST_ROUTES) -> Example:
    """Float to int keeps values inside the target's range (outside it C and torch leave the
    result undefined; int4 and uint4 inside their storage type's); int to float16 stays where
    float16 is exact or rounds once."""
    src_kind, dst_kind = draw(st.sampled_from(routes))
    src = draw(st.sampled_from([d for d in CAST_SOURCES if _kind(d) == src_kind]))
    dst = draw(st.sampled_from([d for d in CAST_TARGETS if _kind(d) == dst_kind]))
    x = draw(values(draw(sst.shapes(0, 3, 1, 5)), src, f32_exact=True, scale=50.0))
    if np.issubdtype(x.dtype, np.floating) and dst not in FLOATS + ("bfloat16", "bool"):
        info = np.iinfo(NARROW_STORAGE.get(dst, dst))
        lo, hi = max(info.min, -(2**24)), min(info.max, 2**24)  # exact in every float type
        x = np.asarray(np.clip(np.nan_to_num(x.astype(np.float64)), lo, hi)).astype(x.dtype)
    return Example((x,), {"dtype": dst})


def torch_cast(x: torch.Tensor, *, dtype: str) -> torch.Tensor:
    """torch's conversion; torch has no 4-bit types, so int4/uint4 keep the low 4 bits of the
    int64 value (two's complement, sign-extended for int4), the way integer casts wrap."""
    if x.is_floating_point():  # to_torch widened it; its values are float32-exact
        x = x.to(torch.float32)
    if dtype in NARROW_STORAGE:
        low = x.to(torch.int64) & 15
        return low - 16 * (low >= 8).to(torch.int64) if dtype == "int4" else low
    out = x.to(TORCH_DTYPES[dtype])
    return out.to(torch.float32) if dtype == "bfloat16" else out


# -- contractions --------------------------------------------------------------------------
@st.composite
def conv2d_examples(draw: st.DrawFn) -> Example:
    groups = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    cin_g = 1 if depthwise else draw(st.integers(1, 3))
    out_g = draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dil = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    pad = draw(st.sampled_from([1, 2, 4]))
    padding = draw(st.lists(st.integers(0, 3), min_size=pad, max_size=pad))
    t, left, bot, right = {1: padding * 4, 2: padding * 2, 4: padding}[pad]
    h = draw(st.integers(max(1, dil[0] * (kh - 1) + 1 - t - bot), 9))
    w = draw(st.integers(max(1, dil[1] * (kw - 1) + 1 - left - right), 9))
    n = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from(["float32", "float32", "float64"]))
    x = draw(values((n, groups * cin_g, h, w), dtype))
    wt = draw(values((groups * out_g, cin_g, kh, kw), dtype))
    args = (x, wt) + ((draw(values((groups * out_g,), dtype)),) if draw(st.booleans()) else ())
    attrs = {"stride": [draw(st.integers(1, 3)), draw(st.integers(1, 3))], "padding": padding,
             "dilation": dil, "groups": groups}
    return Example(args, attrs, k=cin_g * kh * kw, term=dot_term(x, wt, *args[2:]))


def dot_term(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> float:
    bias = float(np.abs(b).max()) if b is not None and b.size else 0.0
    return float(np.abs(x).max(initial=0) * np.abs(w).max(initial=0)) + bias


def torch_conv2d(x, w, b=None, *, stride, padding, dilation, groups):
    t, left, bot, right = {1: padding * 4, 2: padding * 2, 4: padding}[len(padding)]
    x = F.pad(x, (left, right, t, bot))
    return F.conv2d(x, w, b, stride=stride, dilation=dilation, groups=groups)


@st.composite
def linear_examples(draw: st.DrawFn) -> Example:
    lead = draw(sst.shapes(0, 3, 1, 4))
    k, o = draw(st.integers(1, 40)), draw(st.integers(1, 6))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    x, w = draw(values(lead + (k,), dtype)), draw(values((o, k), dtype))
    b = (draw(values((o,), dtype)),) if draw(st.booleans()) else ()
    return Example((x, w) + b, k=k, term=dot_term(x, w, *b))


@st.composite
def linear24_examples(draw: st.DrawFn) -> Example:
    """2:4-compressed weights: values (N, K/2) and any meta bytes (slots naming one
    position add), so canonical packings and arbitrary ones are both met."""
    lead = draw(sst.shapes(0, 2, 1, 4))
    k, o = 4 * draw(st.integers(1, 10)), draw(st.integers(1, 6))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    x, v = draw(values(lead + (k,), dtype)), draw(values((o, k // 2), dtype))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    meta = rng.integers(0, 256, (o, (k // 2 + 3) // 4)).astype(np.uint8)
    b = (draw(values((o,), dtype)),) if draw(st.booleans()) else ()
    return Example((x, v, meta) + b, k=k // 2, term=dot_term(x, v, *b))


def torch_linear24(x, v, meta, b=None):
    """Slot r of row n at column 4 (r // 2) + ((meta[n, r // 4] >> 2 (r % 4)) & 3)."""
    w = torch.zeros(v.shape[0], x.shape[-1], dtype=v.dtype)
    for r in range(v.shape[1]):
        col = 4 * (r // 2) + ((meta[:, r // 4].long() >> (2 * (r % 4))) & 3)
        w[torch.arange(v.shape[0]), col] += v[:, r]
    return F.linear(x, w, b)


@st.composite
def matmul_examples(draw: st.DrawFn) -> Example:
    """Rank-1 operands (vector dot, matrix-vector) and batched operands whose batch axes
    broadcast against each other."""
    batch = draw(sst.shapes(0, 3, 1, 3))
    m, k, n = (draw(st.integers(1, 7)) for _ in range(3))
    a_shape = (k,) if draw(st.integers(0, 4)) == 0 else (
        draw(sst.broadcastable_shapes(batch)) + (m, k))
    b_shape = (k,) if draw(st.integers(0, 4)) == 0 else (
        draw(sst.broadcastable_shapes(batch)) + (k, n))
    dtype = draw(st.sampled_from(["float32", "float64", "int32"]))
    a, b = draw(values(a_shape, dtype)), draw(values(b_shape, dtype))
    return Example((a, b), k=k, term=dot_term(a, b))


FLOAT_ACTIVATIONS = ["none", "relu", "relu6", "leaky_relu", "gelu", "gelu_tanh", "silu",
                     "hardswish"]


def fused_examples(base: st.SearchStrategy, product, bias_in_base: bool):
    """A contraction example with an optional bias (matmul only), an optional residual and
    an activation, for the fused op of that contraction."""

    @st.composite
    def build(draw: st.DrawFn) -> Example:
        ex = draw(base)
        a, b = ex.args[:2]
        out_shape = product(ex).shape
        dtype = str(a.dtype)
        args, addends = list(ex.args), list(ex.args[2:])
        if not bias_in_base:
            args = args[:2]
            if draw(st.booleans()):
                bias = draw(values(draw(sst.broadcastable_shapes(out_shape)), dtype))
                args.append(bias)
                addends.append(bias)
        residual = draw(st.booleans())
        if residual:
            res = draw(values(draw(sst.broadcastable_shapes(out_shape)), dtype))
            args.append(res)
            addends.append(res)
        acts = FLOAT_ACTIVATIONS if dtype.startswith("float") else ["none", "relu", "relu6"]
        attrs = {**ex.attrs, "activation": draw(st.sampled_from(acts)), "residual": residual}
        if attrs["activation"] == "leaky_relu":
            attrs["alpha"] = draw(st.sampled_from([0.01, 0.1, 0.2]))
        term = float(np.abs(a).max(initial=0) * np.abs(b).max(initial=0))
        term += sum(float(np.abs(t).max(initial=0)) for t in addends)
        return Example(tuple(args), attrs, k=ex.k + len(addends), term=term)

    return build()


def torch_fused(anchor):
    acts = {"none": lambda y: y, "relu": torch.relu, "relu6": lambda y: torch.clamp(y, 0, 6),
            "gelu": F.gelu, "gelu_tanh": lambda y: F.gelu(y, approximate="tanh"),
            "silu": F.silu, "hardswish": F.hardswish}

    def run(x, w, *rest, activation, residual, alpha=0.01, **attrs):
        extra = list(rest)
        res = extra.pop() if residual else None
        y = anchor(x, w, *extra, **attrs)
        if res is not None:
            y = y + res
        if activation == "leaky_relu":
            return F.leaky_relu(y, alpha)
        return acts[activation](y)

    return run


def _torch_matmul_bias(a, b, bias=None):
    out = torch.matmul(a, b)
    return out if bias is None else out + bias


def _conv_product(ex: Example) -> np.ndarray:
    from smelt.ir.ops.nn import conv2d

    return conv2d(*ex.args[:2], **ex.attrs)


# -- normalizations ------------------------------------------------------------------------
@st.composite
def batch_norm_examples(draw: st.DrawFn) -> Example:
    shape = draw(sst.shapes(2, 4, 1, 5))
    c = shape[1]
    dtype = draw(st.sampled_from(["float32", "float64"]))
    x, mean = draw(values(shape, dtype)), draw(values((c,), dtype))
    var = draw(values((c,), dtype, positive=True))
    affine = tuple(draw(values((c,), dtype)) for _ in range(draw(st.integers(0, 2))))
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    gain = 1 / np.sqrt(var.astype(np.float64) + eps) * (np.abs(affine[0]) if affine else 1)
    term = (np.abs(x).max() + np.abs(mean).max()) * gain.max()
    term += np.abs(affine[1]).max() if len(affine) == 2 else 0.0
    return Example((x, mean, var) + affine, {"eps": eps}, term=float(term))


def torch_batch_norm(x, mean, var, weight=None, bias=None, *, eps):
    return F.batch_norm(x, mean, var, weight, bias, training=False, eps=eps)


@st.composite
def layer_norm_examples(draw: st.DrawFn) -> Example:
    shape = draw(sst.shapes(1, 4, 1, 6))
    axis = draw(st.integers(0, len(shape) - 1))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    x = draw(values(shape, dtype))
    tail = shape[axis:]
    affine = tuple(draw(values(tail, dtype)) for _ in range(draw(st.integers(0, 2))))
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    axes = tuple(range(axis, len(shape)))
    x64 = x.astype(np.float64)
    spread = np.abs(x64).max(axis=axes) / np.sqrt(x64.var(axis=axes) + eps)
    term = spread.max() * (np.abs(affine[0]).max() if affine else 1.0)
    term += np.abs(affine[1]).max() if len(affine) == 2 else 0.0
    attrs = {"axis": signed_axis(draw, axis, len(shape)), "eps": eps}
    return Example((x,) + affine, attrs, k=math.prod(tail), term=float(term))


def torch_layer_norm(x, weight=None, bias=None, *, axis, eps):
    return F.layer_norm(x, x.shape[axis:], weight, bias, eps)


@st.composite
def softmax_examples(draw: st.DrawFn) -> Example:
    shape = draw(sst.shapes(1, 4, 1, 8))
    axis = draw(st.integers(0, len(shape) - 1))
    shift = draw(st.sampled_from([0.0, 0.0, 100.0, -1000.0]))  # exp(x) alone would overflow
    dtype = draw(st.sampled_from(["float32", "float64"]))
    x = (draw(values(shape, dtype)) + shift).astype(dtype)
    spread = np.ptp(x.astype(np.float64), axis=axis).max()
    return Example((x,), {"axis": signed_axis(draw, axis, len(shape))}, k=shape[axis],
                   term=max(1.0, float(spread)))


# -- pooling -------------------------------------------------------------------------------
@st.composite
def pool_examples(draw: st.DrawFn, op: str) -> Example:
    """Padding at most half the kernel (torch's rule); an input at least one window tall."""
    dilated = op == "max_pool2d"
    kernel = [draw(st.integers(1, 4)), draw(st.integers(1, 4))]
    pad = [draw(st.integers(0, k // 2)) for k in kernel]
    dil = [draw(st.integers(1, 3)) if dilated else 1 for _ in kernel]
    hw = [draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 10))
          for k, p, d in zip(kernel, pad, dil, strict=True)]
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *hw)
    x = draw(values(shape, draw(st.sampled_from(["float32", "float64"])), specials=dilated))
    attrs = {"kernel": kernel, "padding": pad, "ceil_mode": draw(st.booleans()),
             "stride": draw(st.sampled_from([[], [1, 1], [2, 2], [3, 1], [2, 3]]))}
    if dilated:
        attrs["dilation"] = dil
    else:
        attrs["count_include_pad"] = draw(st.booleans())
    return Example((x,), attrs, k=kernel[0] * kernel[1])


def torch_max_pool2d(x, *, kernel, stride, padding, dilation, ceil_mode):
    return F.max_pool2d(x, kernel, stride or None, padding, dilation, ceil_mode=ceil_mode)


def torch_avg_pool2d(x, *, kernel, stride, padding, ceil_mode, count_include_pad):
    return F.avg_pool2d(x, kernel, stride or None, padding, ceil_mode=ceil_mode,
                        count_include_pad=count_include_pad)


@st.composite
def adaptive_pool_examples(draw: st.DrawFn) -> Example:
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 11)),
             draw(st.integers(1, 11)))
    size = [draw(st.integers(1, shape[2] + 2)), draw(st.integers(1, shape[3] + 2))]
    x = draw(values(shape, draw(st.sampled_from(["float32", "float64"]))))
    k = math.ceil(shape[2] / size[0] + 1) * math.ceil(shape[3] / size[1] + 1)
    return Example((x,), {"output_size": size}, k=k)


# -- reductions ----------------------------------------------------------------------------
@st.composite
def reduce_examples(draw: st.DrawFn, dtypes: tuple[str, ...], specials: bool) -> Example:
    shape = draw(sst.shapes(0, 4, 1, 6))
    x = draw(values(shape, draw(st.sampled_from(dtypes)), specials=specials))
    axes = axis_list(draw, len(shape))
    k = math.prod(shape[a] for a in axes) if axes else math.prod(shape)
    return Example((x,), {"axes": axes, "keepdims": draw(st.booleans())}, k=k)


def torch_reduction(fn: Callable) -> Callable:
    def reduce(x, *, axes, keepdims):
        if x.dim() == 0:
            return fn(x.reshape(1), dim=0)
        dims = tuple(axes) if axes else tuple(range(x.dim()))
        return fn(x, dim=dims, keepdim=keepdims)

    return reduce


@st.composite
def argmax_examples(draw: st.DrawFn) -> Example:
    shape = draw(sst.shapes(1, 4, 1, 6))
    dtype = draw(st.sampled_from(("float32", "float64", "int32", "int8")))
    x = draw(values(shape, dtype, integral=True, specials=True))
    axis = signed_axis(draw, draw(st.integers(0, len(shape) - 1)), len(shape))
    return Example((x,), {"axis": axis, "keepdims": draw(st.booleans())})


# -- data movement -------------------------------------------------------------------------
ANY_DTYPE = ("float32", "float64", "int32", "int8", "bool")


@st.composite
def tensor_of(draw: st.DrawFn, min_rank: int = 0, max_rank: int = 4,
              max_side: int = 5) -> np.ndarray:
    shape = draw(sst.shapes(min_rank, max_rank, 1, max_side))
    return draw(values(shape, draw(st.sampled_from(ANY_DTYPE))))


def factor_shape(draw: st.DrawFn, size: int) -> list[int]:
    dims = [1] * draw(st.integers(0 if size == 1 else 1, 4))
    n, p = size, 2
    while n > 1:
        while n % p == 0:
            dims[draw(st.integers(0, len(dims) - 1))] *= p
            n //= p
        p += 1
    return dims


@st.composite
def reshape_examples(draw: st.DrawFn) -> Example:
    x = draw(tensor_of())
    return Example((x,), {"shape": factor_shape(draw, x.size)})


@st.composite
def flatten_examples(draw: st.DrawFn) -> Example:
    x = draw(tensor_of())
    rank = max(x.ndim, 1)
    start = draw(st.integers(0, rank - 1))
    end = draw(st.integers(start, rank - 1))
    return Example((x,), {"start_axis": signed_axis(draw, start, rank),
                          "end_axis": signed_axis(draw, end, rank)})


@st.composite
def transpose_examples(draw: st.DrawFn) -> Example:
    x = draw(tensor_of())
    return Example((x,), {"perm": draw(st.permutations(range(x.ndim)))})


@st.composite
def expand_examples(draw: st.DrawFn) -> Example:
    target = draw(sst.shapes(0, 4, 1, 4))
    x = draw(values(draw(sst.broadcastable_shapes(target)), draw(st.sampled_from(ANY_DTYPE))))
    return Example((x,), {"shape": list(target)})


@st.composite
def concat_examples(draw: st.DrawFn) -> Example:
    base = draw(sst.shapes(1, 4, 1, 4))
    axis = draw(st.integers(0, len(base) - 1))
    dtype = draw(st.sampled_from(ANY_DTYPE))
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        shape = list(base)
        shape[axis] = draw(st.integers(0, 3))
        parts.append(draw(values(tuple(shape), dtype)))
    return Example(tuple(parts), {"axis": signed_axis(draw, axis, len(base))})


@st.composite
def split_examples(draw: st.DrawFn) -> Example:
    x = draw(tensor_of(1))
    axis = draw(st.integers(0, x.ndim - 1))
    n = x.shape[axis]
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    return Example((x,), {"axis": signed_axis(draw, axis, x.ndim), "sizes": sizes})


@st.composite
def slice_examples(draw: st.DrawFn) -> Example:
    """Python slice rules: negative bounds count from the end, bounds past either end clamp,
    and an empty result is allowed."""
    x = draw(tensor_of(1, max_side=7))
    axis = draw(st.integers(0, x.ndim - 1))
    n = x.shape[axis]
    attrs: dict[str, Any] = {"axis": signed_axis(draw, axis, x.ndim),
                             "start": draw(st.integers(-n - 2, n + 2)),
                             "step": draw(st.integers(1, 3))}
    if draw(st.booleans()):
        attrs["stop"] = draw(st.integers(-n - 2, n + 2))
    return Example((x,), attrs)


def torch_slice(x, *, axis, start, stop=None, step):
    index = [slice(None)] * x.dim()
    index[axis] = slice(start, stop, step)
    return x[tuple(index)]


@st.composite
def squeeze_examples(draw: st.DrawFn) -> Example:
    x = draw(tensor_of(0, 5, 3))
    ones = [i for i, d in enumerate(x.shape) if d == 1]
    axes = draw(st.lists(st.sampled_from(ones), unique=True)) if ones else []
    return Example((x,), {"axes": [signed_axis(draw, a, x.ndim) for a in axes]})


def torch_squeeze(x, *, axes):
    return torch.squeeze(x, tuple(axes)) if axes else torch.squeeze(x)


@st.composite
def unsqueeze_examples(draw: st.DrawFn) -> Example:
    x = draw(tensor_of(0, 3))
    rank = x.ndim + draw(st.integers(1, 3))
    axes = draw(st.lists(st.integers(0, rank - 1), min_size=rank - x.ndim,
                         max_size=rank - x.ndim, unique=True))
    return Example((x,), {"axes": [signed_axis(draw, a, rank) for a in axes]})


def torch_unsqueeze(x, *, axes):
    rank = x.dim() + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return x


@st.composite
def take_examples(draw: st.DrawFn) -> Example:
    x = draw(tensor_of(1, 3))
    axis = draw(st.integers(0, x.ndim - 1))
    n = x.shape[axis]
    idx_shape = draw(sst.shapes(0, 2, 1, 4))
    idx_dtype = draw(st.sampled_from([np.int32, np.int64]))
    idx = draw(st.lists(st.integers(-n, n - 1), min_size=math.prod(idx_shape),
                        max_size=math.prod(idx_shape)))
    indices = np.array(idx, dtype=idx_dtype).reshape(idx_shape)
    return Example((x, indices), {"axis": signed_axis(draw, axis, x.ndim)})


def torch_take(x, indices, *, axis):
    index = (slice(None),) * (axis % x.dim()) + (indices.to(torch.int64),)
    return x[index]


@st.composite
def pad_examples(draw: st.DrawFn) -> Example:
    mode = draw(st.sampled_from(["constant", "reflect", "edge"]))
    dtype = draw(st.sampled_from(["float32", "float64", "int32"]))
    x = draw(values(draw(sst.shapes(1, 4, 1, 5)), dtype))
    pads = []
    for d in x.shape:
        most = min(3, d - 1) if mode == "reflect" else 3
        pads += [draw(st.integers(0, most)), draw(st.integers(0, most))]
    value = draw(st.sampled_from([0.0, -2.0, 7.0] + ([0.5] if dtype != "int32" else [])))
    return Example((x,), {"pads": pads, "mode": mode, "value": value})


def torch_pad(x, *, pads, mode, value):
    if mode == "constant":
        flat = [p for i in reversed(range(x.dim())) for p in (pads[2 * i], pads[2 * i + 1])]
        return F.pad(x, flat, value=value)
    for axis in range(x.dim()):
        before, after = pads[2 * axis], pads[2 * axis + 1]
        if before or after:
            x = _pad_axis(x, axis, before, after, {"reflect": "reflect", "edge": "replicate"}[mode])
    return x


def _pad_axis(x, axis, before, after, mode):
    """torch pads reflect/replicate only on the last axes of a 2-3-D input: move the axis
    last, view as (1, rest, length), pad, and move it back."""
    moved = x.movedim(axis, -1)
    lead = moved.shape[:-1]
    padded = F.pad(moved.reshape(1, -1, moved.shape[-1]), (before, after), mode=mode)
    return padded.reshape(*lead, padded.shape[-1]).movedim(-1, axis)


# -- the table -----------------------------------------------------------------------------
def _alpha() -> st.SearchStrategy:
    return st.fixed_dictionaries({"alpha": st.floats(0, 1).map(float)})


def _approximate() -> st.SearchStrategy:
    return st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])})


def _axis(fn: Callable) -> Callable:
    def apply(x, *, axis):
        return fn(x, dim=axis)

    return apply


def _argmax(x, *, axis, keepdims):
    if x.is_floating_point():  # torch ranks NaN above every number; so does numpy
        return torch.argmax(x, dim=axis, keepdim=keepdims)
    return torch.argmax(x.to(torch.int64), dim=axis, keepdim=keepdims)


def _binary(fn: Callable, dtypes: tuple[str, ...] = NUMERIC, integral: bool = False,
            specials: bool = True, exact: bool = False) -> Case:
    return Case(binary_examples(dtypes, integral, specials), fn, exact, term="result")


def _compare(fn: Callable) -> Case:
    return _binary(fn, integral=True, exact=True)


from cases_indexing import CASES_INDEXING, DATA_CHECKED  # noqa: E402  (needs Case, Example)
from cases_math import CASES_MATH  # noqa: E402  (needs Case, Example)
from cases_spatial import CASES_SPATIAL  # noqa: E402  (needs Case, Example)

CASES: dict[str, Case] = {
    "add": _binary(torch.add),
    "sub": _binary(torch.sub),
    "mul": _binary(torch.mul),
    "div": Case(div_examples(), torch_div, term="result"),
    "pow": Case(pow_examples(), torch.pow, term="result"),
    "maximum": _binary(torch.maximum, exact=True),
    "minimum": _binary(torch.minimum, exact=True),
    "equal": _compare(torch.eq),
    "not_equal": _compare(torch.ne),
    "less": _compare(torch.lt),
    "less_equal": _compare(torch.le),
    "greater": _compare(torch.gt),
    "greater_equal": _compare(torch.ge),
    "logical_and": Case(logical_examples(2), torch.logical_and, exact=True),
    "logical_or": Case(logical_examples(2), torch.logical_or, exact=True),
    "logical_not": Case(logical_examples(1), torch.logical_not, exact=True),
    "neg": unary(torch.neg, NUMERIC, exact=True),
    "abs": unary(torch.abs, NUMERIC, exact=True),
    "relu": unary(torch.relu, NUMERIC, exact=True),
    "relu6": unary(F.relu6, FLOATS + SIGNED, exact=True),
    "leaky_relu": unary(lambda x, alpha: F.leaky_relu(x, alpha), attrs=_alpha()),
    "gelu": unary(lambda x, approximate: F.gelu(x, approximate=approximate),
                  attrs=_approximate(), term="operands"),
    "silu": unary(F.silu),
    "sigmoid": unary(torch.sigmoid),
    "tanh": unary(torch.tanh),
    "hardswish": unary(F.hardswish, term="operands"),
    "hardsigmoid": unary(F.hardsigmoid, term="operands"),
    "exp": unary(torch.exp),
    "log": unary(torch.log, positive=True),
    "sqrt": unary(torch.sqrt, positive=True),
    "rsqrt": unary(torch.rsqrt, positive=True),
    "reciprocal": unary(torch.reciprocal, positive=True),
    "sin": unary(torch.sin),
    "cos": unary(torch.cos),
    "erf": unary(torch.erf),
    "floor": unary(torch.floor, exact=True),
    "round": Case(round_examples(), torch.round, exact=True),
    "clamp": Case(clamp_examples(), torch_clamp, exact=True),
    "where": Case(where_examples(), torch.where, exact=True),
    "cast": Case(cast_examples(), torch_cast, exact=True),
    "conv2d": Case(conv2d_examples(), torch_conv2d),
    "linear": Case(linear_examples(), F.linear),
    "linear24": Case(linear24_examples(), torch_linear24),
    "matmul": Case(matmul_examples(), torch.matmul),
    "fused_matmul": Case(fused_examples(matmul_examples(),
                                        lambda ex: np.matmul(*ex.args), False),
                         torch_fused(_torch_matmul_bias)),
    "fused_linear": Case(fused_examples(linear_examples(),
                                        lambda ex: np.empty(ex.args[0].shape[:-1]
                                                            + ex.args[1].shape[:1]), True),
                         torch_fused(F.linear)),
    "fused_conv2d": Case(fused_examples(conv2d_examples(), _conv_product, True),
                         torch_fused(torch_conv2d)),
    "batch_norm": Case(batch_norm_examples(), torch_batch_norm),
    "layer_norm": Case(layer_norm_examples(), torch_layer_norm),
    "softmax": Case(softmax_examples(), _axis(torch.softmax)),
    "log_softmax": Case(softmax_examples(), _axis(torch.log_softmax)),
    "max_pool2d": Case(pool_examples("max_pool2d"), torch_max_pool2d, exact=True),
    "avg_pool2d": Case(pool_examples("avg_pool2d"), torch_avg_pool2d),
    "adaptive_avg_pool2d": Case(adaptive_pool_examples(),
                                lambda x, output_size: F.adaptive_avg_pool2d(x, output_size)),
    "reduce_sum": Case(reduce_examples(FLOATS + ("int32", "int64"), False),
                       torch_reduction(torch.sum)),
    "reduce_mean": Case(reduce_examples(FLOATS, False), torch_reduction(torch.mean)),
    "reduce_max": Case(reduce_examples(NUMERIC, True), torch_reduction(torch.amax),
                       exact=True),
    "reduce_min": Case(reduce_examples(NUMERIC, True), torch_reduction(torch.amin),
                       exact=True),
    "argmax": Case(argmax_examples(), _argmax, exact=True),
    "reshape": Case(reshape_examples(), lambda x, shape: x.reshape(shape), exact=True),
    "flatten": Case(flatten_examples(),
                    lambda x, start_axis, end_axis: torch.flatten(x, start_axis, end_axis),
                    exact=True),
    "transpose": Case(transpose_examples(), lambda x, perm: x.permute(tuple(perm)), exact=True),
    "expand": Case(expand_examples(), lambda x, shape: x.expand(tuple(shape)), exact=True),
    "concat": Case(concat_examples(), lambda *xs, axis: torch.cat(xs, dim=axis), exact=True),
    "split": Case(split_examples(),
                  lambda x, axis, sizes: torch.split(x, sizes, dim=axis), exact=True),
    "slice": Case(slice_examples(), torch_slice, exact=True),
    "squeeze": Case(squeeze_examples(), torch_squeeze, exact=True),
    "unsqueeze": Case(unsqueeze_examples(), torch_unsqueeze, exact=True),
    "take": Case(take_examples(), torch_take, exact=True),
    "pad": Case(pad_examples(), torch_pad, exact=True),
    **{op: Case(examples.map(lambda ex: Example(*ex)), fn, exact, term)  # tests/quant_cases.py
       for op, (examples, fn, exact, term) in QUANT_CASES.items()},
    **CASES_INDEXING,
    **CASES_MATH,
    **CASES_SPATIAL,
}


# -- the tests -----------------------------------------------------------------------------
@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_has_a_case(op: str) -> None:
    assert op in CASES or op in TESTED_ELSEWHERE, (
        f"op {op!r} has no reference test: add an entry to CASES in {__file__}"
    )


def test_cases_name_real_ops() -> None:
    assert set(CASES) <= set(OPS), sorted(set(CASES) - set(OPS))


@pytest.mark.parametrize("op", sorted(CASES))
@settings(max_examples=50)
@given(data=st.data())
def test_op_matches_torch(op: str, data: st.DataObject) -> None:
    case = CASES[op]
    ex = data.draw(case.examples, label="example")
    with np.errstate(all="ignore"):
        want = to_numpy(case.torch_fn(*(to_torch(a) for a in ex.args), **ex.attrs))
        got = run_op(op, ex.args, ex.attrs)
        # the float64 oracle mode too (not for cast, which it widens on purpose)
        wide = run_op(op, ex.args, ex.attrs, "float64") if op != "cast" else got
    assert len(got) == len(want) == len(wide)
    for g, g64, w in zip(got, wide, want, strict=True):
        assert_matches(g, w, ex, case)
        assert_matches(g64, w, ex, case)


NAN_CASES = {
    "maximum": ((np.array([np.nan, 1.0, -np.inf]), np.array([0.0, np.nan, np.nan])), {}),
    "minimum": ((np.array([np.nan, 1.0, -np.inf]), np.array([0.0, np.nan, np.nan])), {}),
    "clamp": ((np.array([np.nan, 5.0, -5.0]),), {"min": -1.0, "max": 1.0}),
    "relu": ((np.array([np.nan, -np.inf, np.inf]),), {}),
    "relu6": ((np.array([np.nan, -np.inf, np.inf]),), {}),
    "reduce_max": ((np.array([[1.0, np.nan], [2.0, 3.0]]),), {"axes": [1], "keepdims": False}),
    "reduce_min": ((np.array([[1.0, np.nan], [2.0, 3.0]]),), {"axes": [1], "keepdims": False}),
    "argmax": ((np.array([[1.0, np.nan, 7.0], [np.nan, np.nan, 0.0]]),),
               {"axis": 1, "keepdims": False}),
    "max_pool2d": ((np.array([1.0, np.nan, 3.0, 4.0]).reshape(1, 1, 2, 2),),
                   {"kernel": [2, 2], "stride": [], "padding": [0, 0], "dilation": [1, 1],
                    "ceil_mode": False}),
}


@pytest.mark.parametrize("route", CAST_ROUTES, ids=[f"{a}-{b}" for a, b in CAST_ROUTES])
@settings(max_examples=15)
@given(data=st.data())
def test_cast_matches_torch_on_every_route(route: tuple[str, str], data: st.DataObject) -> None:
    """float->int truncation, float->bfloat16 rounding, int->int4 wrapping...: each route
    gets its own examples (one random mix of routes can miss one)."""
    ex = data.draw(cast_examples((route,)), label="example")
    want = to_numpy(torch_cast(*(to_torch(a) for a in ex.args), **ex.attrs))
    for got, w in zip(run_op("cast", ex.args, ex.attrs), want, strict=True):
        assert_matches(got, w, ex, CASES["cast"])


@pytest.mark.parametrize("op", sorted(NAN_CASES))
def test_nan_propagates_as_in_torch(op: str) -> None:
    """The random cases plant NaN only sometimes; here it is certain."""
    args, attrs = NAN_CASES[op]
    args = tuple(a.astype(np.float32) for a in args)
    want = to_numpy(CASES[op].torch_fn(*(to_torch(a) for a in args), **attrs))
    got = run_op(op, args, attrs)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w.astype(g.dtype))


# -- type inference ------------------------------------------------------------------------
FUZZ_DTYPES = ("float32", "float64", "float16", "int8", "uint8", "int32", "int64", "bool")


def attr_values(spec: AttrSpec) -> st.SearchStrategy:
    """Any value of an attribute's kind, valid for the op or not."""
    kind = spec.kind.rstrip("?")
    found = st.sampled_from(list(spec.choices)) if spec.choices else {
        "int": st.integers(-5, 6), "ints": st.lists(st.integers(-3, 6), max_size=8),
        "dims": st.lists(st.integers(-3, 6), max_size=8), "dim": st.integers(-5, 6),
        "float": st.floats(-3, 3), "floats": st.lists(st.floats(-3, 3), max_size=3),
        "bool": st.booleans(), "str": st.text(max_size=3), "dtype": st.sampled_from(FUZZ_DTYPES),
    }[kind]
    return st.one_of(st.none(), found) if spec.kind.endswith("?") else found


@st.composite
def any_build(draw: st.DrawFn, op: str) -> tuple[list[Node], dict[str, Any]]:
    """Operands of random (often mismatched, sometimes empty) types and random attributes."""
    opdef = OPS[op]
    lo, hi = opdef.arity_range()
    base = draw(sst.shapes(0, 4, 0, 4))
    dtype = draw(st.sampled_from(FUZZ_DTYPES))
    inputs = []
    for i in range(draw(st.integers(lo, hi or 4))):
        shape = draw(st.one_of(st.just(base), sst.broadcastable_shapes(base),
                               sst.shapes(0, 4, 0, 4)))
        inputs.append(Node.input(f"a{i}", shape, draw(st.one_of(st.just(dtype),
                                                                 st.sampled_from(FUZZ_DTYPES)))))
    attrs = {name: draw(attr_values(spec)) for name, spec in opdef.attrs.items()
             if spec.default is REQUIRED or draw(st.booleans())}
    return inputs, attrs


@pytest.mark.parametrize("op", sorted(set(OPS) - set(TESTED_ELSEWHERE)))
@settings(max_examples=30)
@given(data=st.data())
def test_type_inference_is_total_and_sound(op: str, data: st.DataObject) -> None:
    """Any build either raises TypeInferenceError or gives a node whose reference runs and
    produces the inferred shape (the interpreter checks it). Only data can still fail: an
    out-of-range index for take, a negative integer power."""
    inputs, attrs = data.draw(any_build(op), label="build")
    try:
        node = Node.make(op, inputs, **attrs)
    except TypeInferenceError:
        return
    rng = np.random.default_rng(0)
    args = [sst.to_dtype(rng.uniform(-3, 3, x.shape), x.dtype) for x in inputs]
    parts = [node]
    if isinstance(node.type, TupleType):
        parts = [Node.make("project", [node], index=i) for i in range(len(node.type.elements))]
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the mean of nothing is NaN
            smelt.interpret(Graph(inputs, parts), *args)
    except InterpretError as e:
        assert op in ("take", "pow", *DATA_CHECKED) and "op table" not in str(e), str(e)


ILL_TYPED: list[tuple[str, Callable[[], Node], str]] = [
    ("broadcast", lambda: Node.make("add", [_in((2, 3)), _in((4,))]), "do not broadcast"),
    ("dtypes", lambda: Node.make("mul", [_in((2,)), _in((2,), "int32")]), "insert a cast"),
    ("conv groups", lambda: Node.make("conv2d", [_in((1, 4, 5, 5)), _in((6, 2, 3, 3))],
                                      groups=3), "groups=3 must divide"),
    ("conv kernel", lambda: Node.make("conv2d", [_in((1, 1, 2, 2)), _in((1, 1, 3, 3))]),
     "kernel is too large"),
    ("linear", lambda: Node.make("linear", [_in((2, 5)), _in((3, 4))]), "5 features"),
    ("matmul", lambda: Node.make("matmul", [_in((2, 3)), _in((4, 5))]), "contracted sizes"),
    ("reshape", lambda: Node.make("reshape", [_in((2, 3))], shape=[4, 2]), "cannot reshape"),
    ("attr", lambda: Node.make("relu", [_in((2,))], alpha=0.1), "unknown attribute"),
    ("required", lambda: Node.make("transpose", [_in((2,))]), "'perm' is required"),
    ("arity", lambda: Node.make("add", [_in((2,))]), "add takes 2 input(s)"),
    ("logical", lambda: Node.make("logical_and", [_in((2,)), _in((2,))]), "bool inputs"),
    ("concat", lambda: Node.make("concat", [_in((2, 3)), _in((3, 3))], axis=1),
     "needs equal other axes"),
    ("scalar axis", lambda: Node.make("softmax", [_in(())], axis=0), "scalar"),
    ("pool padding", lambda: Node.make("max_pool2d", [_in((1, 1, 4, 4))], kernel=[2, 2],
                                       padding=[2, 2]), "at most half the kernel"),
    ("clamp int", lambda: Node.make("clamp", [_in((2,), "int32")], min=0.5), "integral"),
    ("bool sub", lambda: Node.make("sub", [_in((2,), "bool"), _in((2,), "bool")]),
     "numeric inputs"),
]


def _in(shape: tuple[int, ...], dtype: str = "float32") -> Node:
    return Node.input(f"x{len(shape)}_{dtype}_{abs(hash(shape)) % 97}", shape, dtype)


@pytest.mark.parametrize("name, build, fragment", ILL_TYPED, ids=[c[0] for c in ILL_TYPED])
def test_ill_typed_builds_raise_readable_errors(name: str, build: Callable[[], Node],
                                                fragment: str) -> None:
    with pytest.raises(TypeInferenceError) as info:
        build()
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message.split(":")[0], "the message should start with the op and types"
