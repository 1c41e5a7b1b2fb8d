"""Random instances of a rule's pattern: small graphs whose output is a node the pattern
matches, for property tests (`verify_rule`).

A rule may bring its own builder (`Rule.instance`, a function of a hypothesis `draw` that
returns a Graph, or its `"module:function"` name). Otherwise the builder reads the pattern:

- a base dtype and shape are drawn (square shapes half of the time, so matmuls and
  transposes fit); pattern leaves (`var`) become graph inputs and `const` leaves constants,
  of the base shape or a broadcastable suffix of it, honoring dtype/rank/shape checks;
- an op pattern becomes a node of (one of) its op(s) over its operands' instances, with the
  attributes the pattern fixes, and the rest drawn by a table keyed by op (`ATTRS`) that
  leans toward identities (same shape, identity permutation, same dtype, full slice);
- alternatives draw one option; a repeated capture name reuses its node.

A draw that builds an ill-typed node or fails a check is retried a few times, then rejected
(hypothesis `assume`), so every instance that reaches a test is well typed and matches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from smelt.ir.errors import SmeltError
from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.op_table import OPS, REQUIRED
from smelt.ir.types import TensorType, numpy_dtype

from .casts import LOSSLESS_CASTS
from .pattern import Alt, Const, Op, Pattern, Var
from .rule import Rule
from .strategies import TENSOR_KINDS, tensors

AttrMaker = Callable[[st.DrawFn, list[TensorType]], dict[str, Any]]
ATTRS: dict[str, AttrMaker] = {}
_ATTEMPTS = 6
_CAST_TARGETS = ("float32", "float64", "float16", "int8", "int32", "int64", "uint8", "bool")


class _Retry(Exception):
    pass


def instances(rule: Rule | Pattern) -> st.SearchStrategy[Graph]:
    """Graphs whose (first) output matches the rule's pattern: from the rule's own builder
    when it has one, else built from the pattern."""
    builder = rule.instance_builder() if isinstance(rule, Rule) else None
    if builder is not None:
        return _custom(builder)
    pattern = rule.pattern if isinstance(rule, Rule) else rule
    return pattern_instances(pattern)


@st.composite
def _custom(draw: st.DrawFn, builder: Callable[[st.DrawFn], Graph]) -> Graph:
    return builder(draw)


@st.composite
def pattern_instances(draw: st.DrawFn, pattern: Pattern) -> Graph:
    """A graph whose output is a random node that `pattern` matches."""
    for attempt in range(_ATTEMPTS):
        builder = _Builder(draw, plain=attempt >= _ATTEMPTS // 2)
        try:
            root = builder.build(pattern)
        except _Retry:
            continue
        if pattern.matches(root):
            return Graph(builder.inputs, [root])
    assume(False)
    raise AssertionError("unreachable")  # pragma: no cover


class _Builder:
    def __init__(self, draw: st.DrawFn, plain: bool) -> None:
        self.draw = draw
        # after a few failures, fall back to float32 and square shapes: what most ops accept
        self.dtype = "float32" if plain else draw(
            st.sampled_from(("float32", "float32", "float32", "float64", "float16", "int32")))
        rank = draw(st.integers(1, 3))
        if plain or draw(st.booleans()):
            self.base = (draw(st.integers(1, 4)),) * rank
        else:
            self.base = tuple(draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
        self.named: dict[str, Node] = {}
        self.inputs: list[Node] = []

    def build(self, p: Pattern) -> Node:
        if p.name is not None and p.name in self.named:
            return self.named[p.name]
        if isinstance(p, Alt):
            node = self.build(p.options[self.draw(st.integers(0, len(p.options) - 1))])
        elif isinstance(p, Op):
            node = self._op(p)
        elif isinstance(p, Const):
            node = self._const(p)
        elif isinstance(p, Var):
            node = self._var(p)
        else:
            raise _Retry
        for check in p.checks:
            if check(node, None) is not None:
                raise _Retry
        if p.name is not None:
            self.named[p.name] = node
        return node

    def _leaf_type(self, p: Pattern) -> TensorType:
        dtype, shape = self.dtype, None
        for c in p.checks:
            if c.dtypes:
                dtype = dtype if dtype in c.dtypes else self.draw(st.sampled_from(sorted(c.dtypes)))
            if c.shape is not None:
                shape = c.shape
            elif c.ranks:
                rank = self.draw(st.sampled_from(sorted(c.ranks)))
                shape = tuple((self.base * 4)[:rank])
        if shape is None:
            b = self.base
            shape = self.draw(st.sampled_from((b, b, b, b[1:], b[-1:], ())))
        return TensorType(tuple(shape), dtype)

    def _var(self, p: Pattern) -> Node:
        t = self._leaf_type(p)
        node = Node.input(f"x{len(self.inputs)}", t.shape, t.dtype)
        self.inputs.append(node)
        return node

    def _const(self, p: Const) -> Node:
        t = self._leaf_type(p)
        if p.value is not None:
            value = np.full(t.shape, p.value)
            dtype = t.dtype if not isinstance(p.value, bool | np.bool_) else "bool"
            return Node.constant(value.astype(numpy_dtype(dtype)), dtype)
        kind = self.draw(st.sampled_from(TENSOR_KINDS))
        return Node.constant(self.draw(tensors(t.shape, t.dtype, kind=kind)), t.dtype)

    def _op(self, p: Op) -> Node:
        name = self.draw(st.sampled_from(sorted(p.ops or _ANY_OPS)))
        opdef = OPS[name]
        if p.inputs is not None:
            operands = [self.build(q) for q in p.inputs]
        else:
            lo, hi = opdef.arity_range()
            count = self.draw(st.integers(lo, min(hi if hi is not None else lo + 2, lo + 2)))
            operands = [self._var(Var()) for _ in range(count)]
        attrs = self._attrs(name, p, [x.type for x in operands])
        try:
            return Node.make(name, operands, **attrs)
        except (SmeltError, IndexError, ValueError, TypeError):  # some inferences raise these
            raise _Retry from None

    def _attrs(self, name: str, p: Op, types: list[Any]) -> dict[str, Any]:
        given = dict(p.attrs)
        fixed = {k: v for k, v in given.items() if not callable(v)}
        wanted = {k for k, v in given.items() if callable(v)}
        maker = ATTRS.get(name)
        attrs: dict[str, Any] = {}
        for _ in range(_ATTEMPTS):
            try:
                attrs = maker(self.draw, types) if maker is not None else {}
            except (IndexError, ValueError, SmeltError):
                raise _Retry from None
            attrs.update(fixed)
            if all(given[k](attrs.get(k, _default(name, k))) for k in wanted):
                break
        else:
            raise _Retry
        missing = [k for k, s in OPS[name].attrs.items() if s.default is REQUIRED and k not in
                   attrs]
        if missing:
            raise _Retry
        return attrs


_ANY_OPS = ("add", "mul", "sub", "relu", "neg", "maximum", "matmul", "transpose", "reshape")


def _default(op: str, key: str) -> Any:
    spec = OPS[op].attrs.get(key)
    return None if spec is None or spec.default is REQUIRED else spec.default


# -- attribute makers, keyed by op ----------------------------------------------------------
def attr_maker(*ops: str) -> Callable[[AttrMaker], AttrMaker]:
    """Register a function `(draw, operand types) -> attrs` for ops."""

    def wrap(fn: AttrMaker) -> AttrMaker:
        for o in ops:
            ATTRS[o] = fn
        return fn

    return wrap


def _factor(draw: st.DrawFn, size: int) -> tuple[int, ...]:
    dims, left = [], size
    for _ in range(draw(st.integers(0, 3))):
        divisors = [d for d in range(1, left + 1) if left % d == 0]
        d = draw(st.sampled_from(divisors))
        dims.append(d)
        left //= d
    return tuple(dims + [left])


@attr_maker("reshape")
def _reshape_attrs(draw: st.DrawFn, types: list[TensorType]) -> dict[str, Any]:
    x = types[0]
    same = draw(st.integers(0, 2)) == 0
    return {"shape": x.shape if same else _factor(draw, x.size)}


@attr_maker("transpose")
def _transpose_attrs(draw: st.DrawFn, types: list[TensorType]) -> dict[str, Any]:
    rank = types[0].rank
    if draw(st.integers(0, 2)) == 0:
        return {"perm": tuple(range(rank))}
    return {"perm": tuple(draw(st.permutations(range(rank))))}


@attr_maker("cast")
def _cast_attrs(draw: st.DrawFn, types: list[TensorType]) -> dict[str, Any]:
    src = types[0].dtype
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return {"dtype": src}
    if choice == 1 and LOSSLESS_CASTS.get(src):
        return {"dtype": draw(st.sampled_from(LOSSLESS_CASTS[src]))}
    return {"dtype": draw(st.sampled_from(_CAST_TARGETS))}


@attr_maker("expand")
def _expand_attrs(draw: st.DrawFn, types: list[TensorType]) -> dict[str, Any]:
    x = types[0]
    if draw(st.booleans()):
        return {"shape": x.shape}
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=1)))
    return {"shape": lead + tuple(draw(st.integers(1, 3)) if d == 1 else d for d in x.shape)}


def _ranked(types: list[TensorType]) -> int:
    if types[0].rank == 0:
        raise _Retry
    return types[0].rank


@attr_maker("concat")
def _concat_attrs(draw: st.DrawFn, types: list[TensorType]) -> dict[str, Any]:
    _ranked(types)
    return {"axis": draw(st.integers(0, max(0, types[0].rank - 1)))}


@attr_maker("slice")
def _slice_attrs(draw: st.DrawFn, types: list[TensorType]) -> dict[str, Any]:
    x = types[0]
    axis = draw(st.integers(0, _ranked(types) - 1))
    if draw(st.booleans()):
        return {"axis": axis}
    n = x.shape[axis]
    start = draw(st.integers(0, max(0, n - 1)))
    return {"axis": axis, "start": start, "stop": draw(st.integers(start + 1, n + 1)),
            "step": draw(st.integers(1, 2))}


@attr_maker("unsqueeze")
def _unsqueeze_attrs(draw: st.DrawFn, types: list[TensorType]) -> dict[str, Any]:
    return {"axes": (draw(st.integers(0, types[0].rank)),)}


@attr_maker("pad")
def _pad_attrs(draw: st.DrawFn, types: list[TensorType]) -> dict[str, Any]:
    rank = _ranked(types)
    if draw(st.booleans()):
        return {"pads": (0,) * (2 * rank)}
    return {"pads": tuple(draw(st.lists(st.integers(0, 2), min_size=2 * rank,
                                        max_size=2 * rank))),
            "value": draw(st.sampled_from((0.0, 1.0, -2.5)))}


@attr_maker("clamp")
def _clamp_attrs(draw: st.DrawFn, types: list[TensorType]) -> dict[str, Any]:
    lo = draw(st.sampled_from((None, 0.0, -1.0)))
    hi = draw(st.sampled_from((None, 6.0, 1.0))) if lo is not None else 6.0
    return {"min": lo, "max": hi}


@attr_maker("reduce_sum", "reduce_mean", "reduce_max", "reduce_min")
def _reduce_attrs(draw: st.DrawFn, types: list[TensorType]) -> dict[str, Any]:
    rank = types[0].rank
    axes = draw(st.lists(st.integers(0, max(0, rank - 1)), max_size=rank, unique=True))
    return {"axes": tuple(axes), "keepdims": draw(st.booleans())}


@attr_maker("fused_matmul")
def _fused_attrs(draw: st.DrawFn, types: list[TensorType]) -> dict[str, Any]:
    return {"activation": draw(st.sampled_from(("none", "relu", "relu6")))}
