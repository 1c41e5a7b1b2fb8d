"""Canonicalization: algebraic identities and no-op removal, plus constant folding
(constant_folding.py). Each rule turns a node into a simpler equal one:

    x * 1 -> x     x / 1 -> x     x + 0 -> x     x - 0 -> x     x ** 1 -> x     -(-x) -> x
    x * -1 -> -x   x + (-y) -> x - y                              max(x, x) -> x (also min)
    relu(relu(x)) -> relu(x)      clamp(x, min=0) -> relu(x)
    transpose(transpose(x, p), q) -> transpose(x, p o q)    transpose(x, identity) -> x
    reshape(reshape(x)) -> reshape(x)      reshape/expand to x's own shape -> x
    flatten / squeeze / unsqueeze -> reshape (one spelling, so reshape rules see them all)
    cast(x, dtype(x)) -> x        cast(cast(x, t), u) -> cast(x, u) when t holds every x
    concat(x) -> x    full slice -> x    zero padding -> x    where(true, a, b) -> a (false: b)

Preconditions: an identity whose constant would broadcast `x` to a larger shape is not
applied (the rewrite would change the type); `cast` chains only drop a cast that is exact
(int8 -> int32, float16 -> float32, ...; the table is `LOSSLESS_CASTS`).

Contract: exact. Each identity holds in real arithmetic, and in IEEE arithmetic too except
for the sign of a zero (x + 0 with x = -0.0 gives +0.0, which compares equal).

Source: the textbook algebraic simplifications (MLIR's canonicalize patterns, TVM's
Relax canonicalization, tinygrad's symbolic rules).
"""

from __future__ import annotations

from smelt.ir.node import Node
from smelt.ir.ops.fused import broadcast_shapes
from smelt.rewrite.casts import LOSSLESS_CASTS
from smelt.rewrite.contract import exact
from smelt.rewrite.dsl import const, op, var
from smelt.rewrite.rule import NoMatch, RuleSet, reject, rule

x, y, a, b = var("x"), var("y"), var("a"), var("b")


def _keeps(x: Node, c: Node) -> bool:
    """x op c has x's shape: c broadcasts into x without growing it."""
    return broadcast_shapes(x.shape, c.shape) == x.shape


def _identity(x: Node, c: Node, what: str) -> Node | NoMatch:
    if _keeps(x, c):
        return x
    return reject(f"the {what} {list(c.shape)} broadcasts x {list(x.shape)} to a larger shape")


# -- arithmetic identities ------------------------------------------------------------------
@rule(x * const("one", 1), contract=exact, family="canonicalize")
def mul_one(x: Node, one: Node) -> Node | NoMatch:
    """x * 1 -> x   (multiplicative identity; also 1 * x)"""
    return _identity(x, one, "one")


@rule(x / const("one", 1), contract=exact, family="canonicalize")
def div_one(x: Node, one: Node) -> Node | NoMatch:
    """x / 1 -> x   (division by one)"""
    return _identity(x, one, "one")


@rule(x + const("zero", 0), contract=exact, family="canonicalize")
def add_zero(x: Node, zero: Node) -> Node | NoMatch:
    """x + 0 -> x   (additive identity; also 0 + x)"""
    return _identity(x, zero, "zero")


@rule(x - const("zero", 0), contract=exact, family="canonicalize")
def sub_zero(x: Node, zero: Node) -> Node | NoMatch:
    """x - 0 -> x   (additive identity)"""
    return _identity(x, zero, "zero")


@rule(op.pow(x, const("one", 1)), contract=exact, family="canonicalize")
def pow_one(x: Node, one: Node) -> Node | NoMatch:
    """x ** 1 -> x   (first power)"""
    return _identity(x, one, "exponent")


@rule(x * const("minus_one", -1), contract=exact, family="canonicalize")
def mul_minus_one(x: Node, minus_one: Node) -> Node | NoMatch:
    """x * -1 -> -x   (negation; also -1 * x)"""
    if not _keeps(x, minus_one) or x.dtype == "bool" or x.dtype.startswith("uint"):
        return reject("the constant would grow x, or x is unsigned")
    return Node.make("neg", (x,))


@rule(op.neg(op.neg(x)), contract=exact, family="canonicalize")
def neg_neg(x: Node) -> Node:
    """-(-x) -> x   (double negation)"""
    return x


@rule(x + (-y), contract=exact, family="canonicalize")
def add_neg(x: Node, y: Node) -> Node:
    """x + (-y) -> x - y   (IEEE: x + (-y) is x - y exactly; also (-y) + x)"""
    return Node.make("sub", (x, y))


@rule(op("maximum|minimum", x, x), contract=exact, family="canonicalize")
def minmax_self(x: Node) -> Node:
    """max(x, x) -> x, min(x, x) -> x   (idempotence)"""
    return x


# -- activations ----------------------------------------------------------------------------
@rule(op.relu(op.relu(x).named("inner")), contract=exact, family="canonicalize")
def relu_relu(x: Node, inner: Node) -> Node:
    """relu(relu(x)) -> relu(x)   (idempotence)"""
    return inner


@rule(op.clamp(x, min=0.0, max=None), contract=exact, family="canonicalize")
def clamp_to_relu(x: Node) -> Node:
    """clamp(x, min=0) -> relu(x)   (same function, one canonical spelling)"""
    return Node.make("relu", (x,))


# -- data movement --------------------------------------------------------------------------
def is_identity_perm(perm: tuple[int, ...]) -> bool:
    return tuple(perm) == tuple(range(len(perm)))


@rule(op.transpose(x, perm=is_identity_perm), contract=exact, family="canonicalize")
def transpose_identity(x: Node) -> Node:
    """transpose(x, [0, 1, ...]) -> x   (identity permutation)"""
    return x


@rule(op.transpose(op.transpose(x).named("inner")).named("outer"), contract=exact,
      family="canonicalize")
def transpose_transpose(x: Node, inner: Node, outer: Node) -> Node:
    """transpose(transpose(x, p), q) -> transpose(x, p[q])   (composition; x when identity)"""
    p, q = inner.attrs["perm"], outer.attrs["perm"]
    perm = tuple(p[i] for i in q)
    return x if is_identity_perm(perm) else Node.make("transpose", (x,), perm=perm)


@rule(op.reshape(op.reshape(x)).named("outer"), contract=exact, family="canonicalize")
def reshape_reshape(x: Node, outer: Node) -> Node:
    """reshape(reshape(x, s), t) -> reshape(x, t)   (row-major order is kept by both)"""
    return Node.make("reshape", (x,), shape=outer.shape)


def _to_own_shape(node: Node) -> str | None:
    if node.type.shape == node.inputs[0].type.shape:
        return None
    return "the shape changes"


@rule(op("reshape|expand", x).where(_to_own_shape), contract=exact, family="canonicalize")
def reshape_noop(x: Node) -> Node:
    """reshape(x, shape(x)) -> x, expand(x, shape(x)) -> x   (no-op)"""
    return x


@rule(op("flatten|squeeze|unsqueeze", x).named("s"), contract=exact, family="canonicalize")
def shape_op_to_reshape(x: Node, s: Node) -> Node:
    """flatten(x) / squeeze(x) / unsqueeze(x) -> reshape(x, shape)   (one spelling)"""
    return Node.make("reshape", (x,), shape=s.shape)


@rule(op.concat(x), contract=exact, family="canonicalize")
def concat_single(x: Node) -> Node:
    """concat(x) -> x   (one operand)"""
    return x


def _full_slice(node: Node) -> str | None:
    if node.attrs["step"] == 1 and node.type.shape == node.inputs[0].type.shape:
        return None
    return "the slice drops elements"


@rule(op.slice(x).where(_full_slice), contract=exact, family="canonicalize")
def slice_full(x: Node) -> Node:
    """slice(x, 0:n:1) -> x   (the whole axis)"""
    return x


def all_zero(pads: tuple[int, ...]) -> bool:
    return not any(pads)


@rule(op.pad(x, pads=all_zero), contract=exact, family="canonicalize")
def pad_zero(x: Node) -> Node:
    """pad(x, 0, 0, ...) -> x   (no padding)"""
    return x


@rule(op.where(const("cond", True), a, b).named("w"), contract=exact, family="canonicalize")
def where_true(cond: Node, a: Node, b: Node, w: Node) -> Node | NoMatch:
    """where(true, a, b) -> a   (constant condition)"""
    return a if a.type == w.type else reject("a would be broadcast")


@rule(op.where(const("cond", False), a, b).named("w"), contract=exact, family="canonicalize")
def where_false(cond: Node, a: Node, b: Node, w: Node) -> Node | NoMatch:
    """where(false, a, b) -> b   (constant condition)"""
    return b if b.type == w.type else reject("b would be broadcast")


# -- casts ----------------------------------------------------------------------------------
def _to_own_dtype(node: Node) -> str | None:
    return None if node.attrs["dtype"] == node.inputs[0].type.dtype else "the dtype changes"


@rule(op.cast(x).where(_to_own_dtype), contract=exact, family="canonicalize")
def cast_noop(x: Node) -> Node:
    """cast(x, dtype(x)) -> x   (no-op)"""
    return x


@rule(op.cast(op.cast(x).named("inner")).named("outer"), contract=exact, family="canonicalize")
def cast_lossless_chain(x: Node, inner: Node, outer: Node) -> Node | NoMatch:
    """cast(cast(x, t), u) -> cast(x, u) when t holds every value of x's dtype exactly
    (int8 -> int32 -> f32 is int8 -> f32)"""
    if inner.dtype not in LOSSLESS_CASTS.get(x.dtype, ()):
        return reject(f"{x.dtype} -> {inner.dtype} may round")
    if outer.dtype == x.dtype:
        return x
    return Node.make("cast", (x,), dtype=outer.dtype)


IDENTITIES = RuleSet([
    mul_one, div_one, add_zero, sub_zero, pow_one, mul_minus_one, neg_neg, add_neg,
    minmax_self, relu_relu, clamp_to_relu, transpose_identity, transpose_transpose,
    reshape_reshape, reshape_noop, shape_op_to_reshape, concat_single, slice_full, pad_zero,
    where_true, where_false, cast_noop, cast_lossless_chain,
], name="identities")
