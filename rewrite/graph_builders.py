"""One builder per op for `graphs()`: each draws attributes valid for its operands' shapes,
builds the node with `Node.make`, and records its value bounds; None when no operand fits.
The table `_BUILDERS` and the vocabularies derived from it live here."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st
from scipy import special

from smelt.ir import Node
from smelt.ir.ops.common import prod

from .graph_scope import (
    _hull,
    _nonzero,
    _positive,
    _Scope,
    _sym,
)
from .tensor_strategies import (
    MAX_MAGNITUDE,
    SAFE_MARGIN,
    Bounds,
    broadcastable_shapes,
)


# -- unary elementwise ops -----------------------------------------------------------------
def _increasing(fn: Callable[[float], float]) -> Callable[[Bounds, dict], Bounds]:
    def rule(b: Bounds, attrs: dict) -> Bounds:
        return fn(b[0]), fn(b[1])

    return rule


def _domain(ok: Callable[[Bounds], bool], rule: Callable[[Bounds, dict], Bounds]):
    def checked(b: Bounds, attrs: dict) -> Bounds | None:
        return rule(b, attrs) if ok(b) else None

    return checked


def _abs_bounds(b: Bounds, attrs: dict) -> Bounds:
    lo = 0.0 if b[0] <= 0 <= b[1] else min(abs(b[0]), abs(b[1]))
    return lo, max(abs(b[0]), abs(b[1]))


def _smooth_relu_bounds(b: Bounds, attrs: dict) -> Bounds:
    """gelu, silu, hardswish: below max(x, 0), above max(x, -0.5)."""
    return max(min(b[0], 0.0), -0.5), max(b[1], 0.0)


def _leaky_bounds(b: Bounds, attrs: dict) -> Bounds:
    a = attrs["alpha"]
    return tuple(x if x >= 0 else a * x for x in b)  # type: ignore[return-value]


def _clamp_bounds(b: Bounds, attrs: dict) -> Bounds:
    lo = -math.inf if attrs.get("min") is None else attrs["min"]
    hi = math.inf if attrs.get("max") is None else attrs["max"]
    return tuple(min(max(x, lo), hi) for x in b)  # type: ignore[return-value]


def _exp_bounds(b: Bounds, attrs: dict) -> Bounds | None:
    return (math.exp(b[0]), math.exp(b[1])) if b[1] <= math.log(MAX_MAGNITUDE) else None


def _decreasing_positive(fn: Callable[[float], float]):
    return _domain(_positive, lambda b, attrs: (fn(b[1]), fn(b[0])))


def _reciprocal_bounds(b: Bounds, attrs: dict) -> Bounds | None:
    return (1 / b[1], 1 / b[0]) if _nonzero(b) else None


POSITIVE_DOMAIN_OPS = frozenset({"log", "sqrt", "rsqrt", "reciprocal", "pow"})
UnaryRule = Callable[[Bounds, dict], Bounds | None]
_UNARY: dict[str, UnaryRule] = {
    "neg": lambda b, attrs: (-b[1], -b[0]),
    "abs": _abs_bounds,
    "relu": _increasing(lambda x: max(x, 0.0)),
    "relu6": _increasing(lambda x: min(max(x, 0.0), 6.0)),
    "leaky_relu": _leaky_bounds,
    "gelu": _smooth_relu_bounds,
    "silu": _smooth_relu_bounds,
    "hardswish": _smooth_relu_bounds,
    "sigmoid": _increasing(lambda x: float(special.expit(x))),
    "tanh": _increasing(math.tanh),
    "hardsigmoid": _increasing(lambda x: min(max(x / 6 + 0.5, 0.0), 1.0)),
    "erf": _increasing(math.erf),
    "exp": _exp_bounds,
    "log": _domain(_positive, _increasing(math.log)),
    "sqrt": _domain(_positive, _increasing(math.sqrt)),
    "rsqrt": _decreasing_positive(lambda x: 1 / math.sqrt(x)),
    "reciprocal": _reciprocal_bounds,
    "sin": lambda b, attrs: (-1.0, 1.0),
    "cos": lambda b, attrs: (-1.0, 1.0),
    "clamp": _clamp_bounds,
    "floor": _increasing(math.floor),
    "round": _increasing(round),
}

_UNARY_ATTRS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "leaky_relu": st.fixed_dictionaries({"alpha": st.sampled_from([0.01, 0.1, 0.25])}),
    "gelu": st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])}),
    "clamp": st.sampled_from([{"min": -1.0, "max": 1.0}, {"min": 0.0}, {"max": 0.5},
                              {"min": -2.5, "max": 0.25}]),
}


def _shifted_positive(scope: _Scope) -> Node | None:
    """Glue for ops that need a positive operand when the scope has none: add(x, c) with the
    scalar c that lifts x's lower bound to SAFE_MARGIN."""
    x = scope.pick()
    if x is None:
        return None
    lo, hi = scope.bound(x)
    c = scope.scalar(SAFE_MARGIN - lo + 0.125)
    shift = scope.bound(c)[0]
    return scope.add(Node.make("add", [x, c]), (lo + shift, hi + shift))


def _build_unary(scope: _Scope, op: str) -> Node | None:
    attrs = scope.draw(_UNARY_ATTRS.get(op, st.just({})))
    rule = _UNARY[op]
    x = scope.pick(lambda n: rule(scope.bound(n), attrs) is not None)
    if x is None and op in POSITIVE_DOMAIN_OPS:
        x = _shifted_positive(scope)
    if x is None or rule(scope.bound(x), attrs) is None:
        return None
    return scope.add(Node.make(op, [x], **attrs), rule(scope.bound(x), attrs))


# -- binary elementwise ops ----------------------------------------------------------------
def _mul_bounds(a: Bounds, b: Bounds) -> Bounds:
    corners = [x * y for x in a for y in b]
    return min(corners), max(corners)


def _div_bounds(a: Bounds, b: Bounds) -> Bounds | None:
    return _mul_bounds(a, (1 / b[1], 1 / b[0])) if _nonzero(b) else None


def _pow_bounds(a: Bounds, b: Bounds) -> Bounds | None:
    if not _positive(a) or max(abs(b[0]), abs(b[1])) > 3:
        return None
    corners = [x**y for x in a for y in b]
    return min(corners), max(corners)


BinaryRule = Callable[[Bounds, Bounds], Bounds | None]
_BINARY: dict[str, BinaryRule] = {
    "add": lambda a, b: (a[0] + b[0], a[1] + b[1]),
    "sub": lambda a, b: (a[0] - b[1], a[1] - b[0]),
    "mul": _mul_bounds,
    "div": _div_bounds,
    "pow": _pow_bounds,
    "maximum": lambda a, b: (max(a[0], b[0]), max(a[1], b[1])),
    "minimum": lambda a, b: (min(a[0], b[0]), min(a[1], b[1])),
}


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(x == y or 1 in (x, y) for x, y in zip(a[::-1], b[::-1], strict=False))


def _second_operand(scope: _Scope, op: str, a: Node) -> Node:
    """A scope node broadcasting with `a`, or a constant of a shape that broadcasts into it."""
    if scope.draw(st.booleans()):
        b = scope.pick(lambda n: _broadcasts(n.shape, a.shape) and n is not a)
        if b is not None:
            return b
    shape = scope.draw(broadcastable_shapes(a.shape))
    if op == "pow":
        return scope.scalar(scope.draw(st.sampled_from([-1.0, 0.5, 2.0, 3.0])))
    return scope.constant(shape, positive=op == "div")


def _build_binary(scope: _Scope, op: str) -> Node | None:
    rule = _BINARY[op]
    a = scope.pick(lambda n: op != "pow" or _positive(scope.bound(n)))
    if a is None and op == "pow":
        a = _shifted_positive(scope)
    if a is None:
        return None
    b = _second_operand(scope, op, a)
    if op not in ("div", "pow") and scope.draw(st.booleans()):
        a, b = b, a
    bounds = rule(scope.bound(a), scope.bound(b))
    return scope.add(Node.make(op, [a, b]), bounds) if bounds is not None else None


# -- contractions --------------------------------------------------------------------------
def _dot_bounds(k: int, *mags: float, bias: float = 0.0) -> Bounds:
    return _sym(k * math.prod(mags) + bias)


def _maybe_bias(scope: _Scope, size: int) -> list[Node]:
    return [scope.constant((size,))] if scope.draw(st.booleans()) else []


def _build_linear(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(lambda n: len(n.shape) >= 1)
    if x is None:
        return None
    k, out = x.shape[-1], scope.draw(st.integers(1, 8))
    w = scope.constant((out, k))
    b = _maybe_bias(scope, out)
    node = Node.make("linear", [x, w, *b])
    bias = scope.magnitude(b[0]) if b else 0.0
    return scope.add(node, _dot_bounds(k, scope.magnitude(x), scope.magnitude(w), bias=bias))


def _build_matmul(scope: _Scope, op: str) -> Node | None:
    a = scope.pick(lambda n: len(n.shape) >= 2)
    if a is None:
        return None
    k = a.shape[-1]
    b = scope.pick(lambda n: len(n.shape) >= 2 and n.shape[-2] == k
                   and _broadcasts(n.shape[:-2], a.shape[:-2]))
    if b is None or scope.draw(st.booleans()):
        batch = scope.draw(broadcastable_shapes(a.shape[:-2]))
        b = scope.constant(batch + (k, scope.draw(st.integers(1, 6))))
    node = Node.make("matmul", [a, b])
    return scope.add(node, _dot_bounds(k, scope.magnitude(a), scope.magnitude(b)))


def _nchw(n: Node) -> bool:
    return len(n.shape) == 4


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _conv_padding(scope: _Scope) -> tuple[int, ...]:
    count = scope.draw(st.sampled_from([1, 2, 4]))
    return tuple(scope.draw(st.lists(st.integers(0, 2), min_size=count, max_size=count)))


def _build_conv2d(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(_nchw)
    if x is None:
        return None
    _, c, h, w = x.shape
    groups = scope.draw(st.sampled_from(_divisors(c)))
    out = groups * scope.draw(st.integers(1, 3))
    padding = _conv_padding(scope)
    top, left, bottom, right = {1: padding * 4, 2: padding * 2, 4: padding}[len(padding)]
    dilation = (scope.draw(st.integers(1, 2)), scope.draw(st.integers(1, 2)))
    room = (h + top + bottom, w + left + right)
    kernel = [scope.draw(st.integers(1, min(3, (r - 1) // d + 1)))  # d (k - 1) + 1 <= r
              for r, d in zip(room, dilation, strict=True)]
    wt = scope.constant((out, c // groups, *kernel))
    b = _maybe_bias(scope, out)
    stride = (scope.draw(st.integers(1, 2)), scope.draw(st.integers(1, 2)))
    node = Node.make("conv2d", [x, wt, *b], stride=stride, padding=padding,
                     dilation=dilation, groups=groups)
    k = (c // groups) * kernel[0] * kernel[1]
    bias = scope.magnitude(b[0]) if b else 0.0
    return scope.add(node, _dot_bounds(k, scope.magnitude(x), scope.magnitude(wt), bias=bias))


# -- pooling and reductions ----------------------------------------------------------------
def _pool_attrs(scope: _Scope, hw: tuple[int, int], dilated: bool) -> dict[str, Any] | None:
    kernel, padding, dilation = [], [], []
    for size in hw:
        k = scope.draw(st.integers(1, 3))
        p = scope.draw(st.integers(0, k // 2))
        d = scope.draw(st.integers(1, 2)) if dilated else 1
        if d * (k - 1) + 1 > size + 2 * p:
            return None
        kernel.append(k), padding.append(p), dilation.append(d)
    attrs = {"kernel": kernel, "padding": padding, "ceil_mode": scope.draw(st.booleans()),
             "stride": scope.draw(st.sampled_from([[], [1, 1], [2, 2], [1, 2]]))}
    if dilated:
        attrs["dilation"] = dilation
    return attrs


def _build_pool(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(_nchw)
    if x is None:
        return None
    attrs = _pool_attrs(scope, x.shape[2:], dilated=op == "max_pool2d")
    if attrs is None:
        return None
    bounds = scope.bound(x)
    if op == "avg_pool2d":
        attrs["count_include_pad"] = scope.draw(st.booleans())
        bounds = _hull(bounds, (0.0, 0.0))
    return scope.add(Node.make(op, [x], **attrs), bounds)


def _build_adaptive_pool(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(_nchw)
    if x is None:
        return None
    size = [scope.draw(st.integers(1, d + 1)) for d in x.shape[2:]]
    return scope.add(Node.make(op, [x], output_size=size), scope.bound(x))


def _axes(scope: _Scope, rank: int, min_size: int = 0) -> list[int]:
    """Distinct axes of a rank-`rank` tensor, each written positive or negative at random."""
    axes = scope.draw(st.lists(st.integers(0, rank - 1), min_size=min_size, max_size=rank,
                               unique=True)) if rank else []
    return [a - rank if scope.draw(st.booleans()) else a for a in axes]


def _build_reduce(scope: _Scope, op: str) -> Node | None:
    x = scope.pick()
    if x is None:
        return None
    axes = _axes(scope, len(x.shape))
    k = prod([x.shape[a] for a in axes]) if axes else x.tensor_type.size
    lo, hi = scope.bound(x)
    bounds = (min(k * lo, lo), max(k * hi, hi)) if op == "reduce_sum" else (lo, hi)
    node = Node.make(op, [x], axes=axes, keepdims=scope.draw(st.booleans()))
    return scope.add(node, bounds)


# -- data movement -------------------------------------------------------------------------
def _factor_shape(scope: _Scope, size: int) -> list[int]:
    """A random shape with `size` elements: its prime factors dealt into 1-4 axes."""
    factors, n, p = [], size, 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    rank = scope.draw(st.integers(1, 4))
    dims = [1] * rank
    for f in factors:
        dims[scope.draw(st.integers(0, rank - 1))] *= f
    return dims


def _same_bounds(scope: _Scope, x: Node, node: Node) -> Node | None:
    return scope.add(node, scope.bound(x))


def _build_reshape(scope: _Scope, op: str) -> Node | None:
    x = scope.pick()
    if x is None:
        return None
    shape = _factor_shape(scope, x.tensor_type.size)
    return _same_bounds(scope, x, Node.make("reshape", [x], shape=shape))


def _build_flatten(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(lambda n: len(n.shape) >= 1)
    if x is None:
        return None
    rank = len(x.shape)
    start = scope.draw(st.integers(0, rank - 1))
    end = scope.draw(st.integers(start, rank - 1))
    node = Node.make("flatten", [x], start_axis=start, end_axis=end - rank)
    return _same_bounds(scope, x, node)


def _build_transpose(scope: _Scope, op: str) -> Node | None:
    x = scope.pick()
    if x is None:
        return None
    perm = scope.draw(st.permutations(range(len(x.shape))))
    return _same_bounds(scope, x, Node.make("transpose", [x], perm=perm))


def _build_expand(scope: _Scope, op: str) -> Node | None:
    x = scope.pick()
    if x is None:
        return None
    lead = scope.draw(st.lists(st.integers(1, 3), max_size=max(0, 3 - len(x.shape))))
    shape = lead + [scope.draw(st.integers(1, 3)) if d == 1 else d for d in x.shape]
    return _same_bounds(scope, x, Node.make("expand", [x], shape=shape))


def _concat_partner(scope: _Scope, x: Node, axis: int) -> Node:
    def fits(n: Node) -> bool:
        return len(n.shape) == len(x.shape) and all(
            a == b for i, (a, b) in enumerate(zip(n.shape, x.shape, strict=True)) if i != axis)

    found = scope.pick(fits) if scope.draw(st.booleans()) else None
    if found is not None:
        return found
    shape = list(x.shape)
    shape[axis] = scope.draw(st.integers(1, 3))
    return scope.constant(shape)


def _build_concat(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(lambda n: len(n.shape) >= 1)
    if x is None:
        return None
    axis = scope.draw(st.integers(0, len(x.shape) - 1))
    parts = [x] + [_concat_partner(scope, x, axis) for _ in range(scope.draw(st.integers(1, 2)))]
    order = scope.draw(st.permutations(parts))
    node = Node.make("concat", order, axis=axis - len(x.shape) * scope.draw(st.integers(0, 1)))
    return scope.add(node, _hull(*(scope.bound(p) for p in parts)))


def _build_split(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(lambda n: len(n.shape) >= 1)
    if x is None:
        return None
    axis = scope.draw(st.integers(0, len(x.shape) - 1))
    size = x.shape[axis]
    cuts = sorted(scope.draw(st.sets(st.integers(1, size - 1), max_size=2))) if size > 1 else []
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
    parts = Node.make("split", [x], axis=axis, sizes=sizes)
    index = scope.draw(st.integers(0, len(sizes) - 1))
    return _same_bounds(scope, x, Node.make("project", [parts], index=index))


def _build_slice(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(lambda n: len(n.shape) >= 1)
    if x is None:
        return None
    axis = scope.draw(st.integers(0, len(x.shape) - 1))
    n = x.shape[axis]
    start = scope.draw(st.integers(0, n - 1))
    step = scope.draw(st.integers(1, 3))
    count = scope.draw(st.integers(1, (n - 1 - start) // step + 1))
    stop = start + (count - 1) * step + 1
    attrs: dict[str, Any] = {"axis": axis, "step": step,
                             "start": start - n if scope.draw(st.booleans()) else start}
    if stop < n or scope.draw(st.booleans()):
        attrs["stop"] = stop - n if stop < n and scope.draw(st.booleans()) else stop
    return _same_bounds(scope, x, Node.make("slice", [x], **attrs))


def _build_squeeze(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(lambda n: 1 in n.shape)
    if x is None:
        return None
    ones = [i for i, d in enumerate(x.shape) if d == 1]
    axes = scope.draw(st.lists(st.sampled_from(ones), unique=True, max_size=len(ones)))
    return _same_bounds(scope, x, Node.make("squeeze", [x], axes=axes))


def _build_unsqueeze(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(lambda n: len(n.shape) <= 4)
    if x is None:
        return None
    rank = len(x.shape) + scope.draw(st.integers(1, max(1, 5 - len(x.shape) - 1)))
    added = rank - len(x.shape)
    axes = scope.draw(st.lists(st.integers(-rank, rank - 1), min_size=added, max_size=added,
                               unique_by=lambda a: a % rank))
    return _same_bounds(scope, x, Node.make("unsqueeze", [x], axes=axes))


def _build_pad(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(lambda n: len(n.shape) >= 1)
    if x is None:
        return None
    mode = scope.draw(st.sampled_from(["constant", "reflect", "edge"]))
    pads = []
    for d in x.shape:
        most = min(2, d - 1) if mode == "reflect" else 2
        pads += [scope.draw(st.integers(0, most)), scope.draw(st.integers(0, most))]
    value = scope.draw(st.sampled_from([0.0, -1.5, 2.0])) if mode == "constant" else 0.0
    node = Node.make("pad", [x], pads=pads, mode=mode, value=value)
    return scope.add(node, _hull(scope.bound(x), (value, value)))


# -- normalizations ------------------------------------------------------------------------
def _build_softmax(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(lambda n: len(n.shape) >= 1)
    if x is None:
        return None
    axis = _axes(scope, len(x.shape), min_size=1)[0]
    if op == "softmax":
        bounds: Bounds = (0.0, 1.0)
    else:
        lo, hi = scope.bound(x)
        bounds = (lo - hi - math.log(x.shape[axis]), 0.0)
    return scope.add(Node.make(op, [x], axis=axis), bounds)


def _build_layer_norm(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(lambda n: len(n.shape) >= 1)
    if x is None:
        return None
    axis = _axes(scope, len(x.shape), min_size=1)[0]
    tail = x.shape[axis:]
    affine = [scope.constant(tail) for _ in range(scope.draw(st.integers(0, 2)))]
    eps = scope.draw(st.sampled_from([1e-5, 1e-3]))
    node = Node.make("layer_norm", [x, *affine], axis=axis, eps=eps)
    gain = scope.magnitude(affine[0]) if affine else 1.0
    shift = scope.magnitude(affine[1]) if len(affine) == 2 else 0.0
    return scope.add(node, _sym(math.sqrt(prod(tail)) * gain + shift))


def _build_batch_norm(scope: _Scope, op: str) -> Node | None:
    x = scope.pick(lambda n: len(n.shape) >= 2)
    if x is None:
        return None
    c = x.shape[1]
    mean, var = scope.constant((c,)), scope.constant((c,), positive=True)
    affine = [scope.constant((c,)) for _ in range(scope.draw(st.integers(0, 2)))]
    node = Node.make("batch_norm", [x, mean, var, *affine], eps=1e-5)
    gain = scope.magnitude(affine[0]) if affine else 1.0
    shift = scope.magnitude(affine[1]) if len(affine) == 2 else 0.0
    spread = (scope.magnitude(x) + scope.magnitude(mean)) / math.sqrt(scope.bound(var)[0])
    return scope.add(node, _sym(spread * gain + shift))


# -- sources and selection -----------------------------------------------------------------
def _build_constant(scope: _Scope, op: str) -> Node | None:
    x = scope.pick()
    shape = scope.draw(broadcastable_shapes(x.shape)) if x is not None else (2,)
    node = scope.constant(shape)
    return scope.add(node, scope.bound(node), built=False)


def _build_where(scope: _Scope, op: str) -> Node | None:
    a = scope.pick()
    if a is None:
        return None
    b = _second_operand(scope, "where", a)
    threshold = Node.constant(np.float32(scope.draw(st.sampled_from([0.0, 0.5, -1.0]))))
    cond = Node.make(scope.draw(st.sampled_from(["greater", "less_equal"])), [a, threshold])
    node = Node.make("where", [cond, a, b])
    return scope.add(node, _hull(scope.bound(a), scope.bound(b)))


Builder = Callable[[_Scope, str], Node | None]
_BUILDERS: dict[str, Builder] = {
    **{op: _build_unary for op in _UNARY},
    **{op: _build_binary for op in _BINARY},
    "linear": _build_linear, "matmul": _build_matmul, "conv2d": _build_conv2d,
    "max_pool2d": _build_pool, "avg_pool2d": _build_pool,
    "adaptive_avg_pool2d": _build_adaptive_pool,
    **{op: _build_reduce for op in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min")},
    "reshape": _build_reshape, "flatten": _build_flatten, "transpose": _build_transpose,
    "expand": _build_expand, "concat": _build_concat, "split": _build_split,
    "slice": _build_slice, "squeeze": _build_squeeze, "unsqueeze": _build_unsqueeze,
    "pad": _build_pad, "softmax": _build_softmax, "log_softmax": _build_softmax,
    "layer_norm": _build_layer_norm, "batch_norm": _build_batch_norm,
    "constant": _build_constant, "where": _build_where,
}

SUPPORTED_VOCABULARY: tuple[str, ...] = tuple(sorted(_BUILDERS))
DISCONTINUOUS_OPS = frozenset({"floor", "round", "where"})
DEFAULT_VOCABULARY: tuple[str, ...] = tuple(
    op for op in SUPPORTED_VOCABULARY if op not in DISCONTINUOUS_OPS
)
NCHW_OPS = frozenset({"conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"})

