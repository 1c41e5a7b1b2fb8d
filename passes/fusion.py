"""Epilogue fusion: a contraction (matmul, linear, conv2d), its bias, a residual add and its
activation become one fused node (ir/ops/fused.py), which a kernel runs in one pass with the
epilogue applied while the output tile is still in registers.

    add(matmul(a, b), c)                    -> fused_matmul(a, b, c)
    add(linear|conv2d(x, w, b?), r)         -> fused_linear|fused_conv2d(x, w, b?, r){residual}
    add(fused_*(...){act=none}, r)          -> fused_*(..., r){residual}     (no residual yet)
    act(matmul|linear|conv2d(...))          -> fused_*(...){activation=act}
    act(fused_*(...){act=none})             -> fused_*(...){activation=act}

with act one of relu, relu6, leaky_relu, gelu (erf or tanh form), silu, hardswish. The
driver's per-node fixpoint chains them: relu(add(conv2d(x, w, b), r)) becomes
relu(fused_conv2d(x, w, b, r){residual}) and then fused_conv2d(x, w, b, r){residual, relu}
(ResNet's block end); x + fc2(gelu(fc1(x))) becomes fused_linear(fused_linear(x){gelu}, x)
(a transformer MLP).

Preconditions: the node fused into its user has no other use (else the product would be
computed twice); an addend broadcasts to the product's shape without growing it (add is
commutative, so it may be either operand); an activation already fused closes the epilogue:
add(fused{relu}, r) is left alone, since relu(p) + r is not relu(p + r).

Contract: exact. Each fused op's reference is the unfused chain, op for op, in the same
order: the numbers are identical, not merely close.

Source: GEMM/convolution epilogue fusion as in cuBLASLt epilogues and oneDNN post-ops; TVM's
FuseOps for the same pattern.
"""

from __future__ import annotations

from smelt.ir.node import Node
from smelt.ir.ops.fused import broadcast_shapes, split_operands
from smelt.rewrite.contract import exact
from smelt.rewrite.dsl import op, var
from smelt.rewrite.pass_api import RewritePass
from smelt.rewrite.registry import register_pass, register_rules
from smelt.rewrite.rule import NoMatch, RuleSet, reject, rule

FUSED = {"matmul": "fused_matmul", "linear": "fused_linear", "conv2d": "fused_conv2d"}
CONV_ATTRS = ("stride", "padding", "dilation", "groups")
ACTIVATIONS = "relu|relu6|leaky_relu|gelu|silu|hardswish"

r = var("r")
product = op("matmul|linear|conv2d", ...).single_use().named("p")
fused = op("fused_matmul|fused_linear|fused_conv2d", ..., activation="none").single_use() \
    .named("f")


def activation_attrs(act: Node) -> dict:
    """The fused op's activation attributes for the activation node `act`."""
    if act.op == "gelu":
        return {"activation": "gelu_tanh" if act.attrs["approximate"] == "tanh" else "gelu"}
    if act.op == "leaky_relu":
        return {"activation": "leaky_relu", "alpha": act.attrs["alpha"]}
    return {"activation": act.op}


def anchor_attrs(p: Node) -> dict:
    return {k: p.attrs[k] for k in CONV_ATTRS} if p.op == "conv2d" else {}


def _grows(p: Node, addend: Node) -> str | None:
    if broadcast_shapes(p.shape, addend.shape) != p.shape:
        return f"addend {list(addend.shape)} would grow the product {list(p.shape)}"
    return None


@rule(product + r, contract=exact, family="fuse")
def fuse_addend(p: Node, r: Node) -> Node | NoMatch:
    """add(matmul(a, b), c) -> fused_matmul(a, b, c);
    add(linear|conv2d(x, w, b?), r) -> fused_linear|fused_conv2d(x, w, b?, r){residual}"""
    if why := _grows(p, r):
        return reject(why)
    if p.op == "matmul":  # the product has no bias slot filled: the addend is its bias
        return Node.make("fused_matmul", (*p.inputs, r))
    return Node.make(FUSED[p.op], (*p.inputs, r), residual=True, **anchor_attrs(p))


@rule(fused + r, contract=exact, family="fuse")
def fuse_residual(f: Node, r: Node) -> Node | NoMatch:
    """add(fused_*(...){activation=none}, r) -> fused_*(..., r){residual}"""
    if f.attrs["residual"]:
        return reject("the fused op already has a residual")
    if why := _grows(f, r):
        return reject(why)
    bias, _ = split_operands(tuple(f.inputs[2:]), False)
    if f.op == "fused_matmul" and bias is None:
        return Node.make("fused_matmul", (*f.inputs, r), **f.attrs)
    return Node.make(f.op, (*f.inputs, r), **{**f.attrs, "residual": True})


@rule(op(ACTIVATIONS, product).named("act"), contract=exact, family="fuse")
def fuse_activation(p: Node, act: Node) -> Node:
    """act(matmul|linear|conv2d(...)) -> fused_*(...){activation=act}"""
    return Node.make(FUSED[p.op], p.inputs, **anchor_attrs(p), **activation_attrs(act))


@rule(op(ACTIVATIONS, fused).named("act"), contract=exact, family="fuse")
def fuse_epilogue_activation(f: Node, act: Node) -> Node:
    """act(fused_*(...){activation=none}) -> fused_*(...){activation=act}"""
    return Node.make(f.op, f.inputs, **{**f.attrs, **activation_attrs(act)})


FUSE = RuleSet([fuse_addend, fuse_residual, fuse_activation, fuse_epilogue_activation],
               name="fuse")
register_rules(FUSE)


def fuse(budget: int | None = None) -> RewritePass:
    """Fuse matmul/linear/conv2d + bias + residual + activation into fused ops (exact)."""
    return RewritePass("fuse", FUSE, budget=budget, doc=__doc__ or "")


register_pass("fuse", fuse)
