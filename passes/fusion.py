"""Epilogue fusion: a matmul, its bias add and its activation become one `fused_matmul` node.

    add(matmul(a, b), c)                     -> fused_matmul(a, b, c){activation="none"}
    act(matmul(a, b))                        -> fused_matmul(a, b){activation=act}
    act(fused_matmul(a, b, ...){"none"})     -> fused_matmul(a, b, ...){activation=act}

with act in {relu, relu6}. The driver's per-node fixpoint chains them: relu(add(matmul(x, w),
b)) first becomes relu(fused_matmul(x, w, b)), then fused_matmul(x, w, b){relu}.

Preconditions: the node fused into its user has no other use (else the product would be
computed twice); the bias broadcasts to the product's shape without growing it (add is
commutative, so the bias may be either operand).

Contract: exact. `fused_matmul`'s reference (ir/ops/fused.py) is the same chain, op for op,
in the same order: the numbers are identical, not merely close.

Source: GEMM epilogue fusion as in cuBLASLt epilogues and oneDNN post-ops; TVM's
FuseOps for the same pattern.
"""

from __future__ import annotations

from smelt.ir.node import Node
from smelt.ir.ops.fused import broadcast_shapes
from smelt.rewrite.contract import exact
from smelt.rewrite.dsl import op, var
from smelt.rewrite.passes import RewritePass
from smelt.rewrite.registry import register_pass, register_rules
from smelt.rewrite.rule import NoMatch, RuleSet, reject, rule

a, b, c = var("a"), var("b"), var("c")
product = op.matmul(a, b).single_use().named("p")
fused = op.fused_matmul(..., activation="none").single_use().named("f")


@rule(product + c, contract=exact, family="fuse")
def fuse_matmul_bias(a: Node, b: Node, c: Node, p: Node) -> Node | NoMatch:
    """add(matmul(a, b), c) -> fused_matmul(a, b, c)   (GEMM bias epilogue)"""
    if broadcast_shapes(p.shape, c.shape) != p.shape:
        return reject(f"bias {list(c.shape)} would grow the product {list(p.shape)}")
    return Node.make("fused_matmul", (a, b, c))


@rule(op.relu(product), contract=exact, family="fuse")
def fuse_matmul_relu(a: Node, b: Node, p: Node) -> Node:
    """relu(matmul(a, b)) -> fused_matmul(a, b){activation=relu}   (GEMM epilogue)"""
    return Node.make("fused_matmul", (a, b), activation="relu")


@rule(op.relu6(product), contract=exact, family="fuse")
def fuse_matmul_relu6(a: Node, b: Node, p: Node) -> Node:
    """relu6(matmul(a, b)) -> fused_matmul(a, b){activation=relu6}   (GEMM epilogue)"""
    return Node.make("fused_matmul", (a, b), activation="relu6")


@rule(op.relu(fused), contract=exact, family="fuse")
def fuse_relu(f: Node) -> Node:
    """relu(fused_matmul(a, b, c)) -> fused_matmul(a, b, c){activation=relu}   (epilogue)"""
    return Node.make("fused_matmul", f.inputs, activation="relu")


@rule(op.relu6(fused), contract=exact, family="fuse")
def fuse_relu6(f: Node) -> Node:
    """relu6(fused_matmul(a, b, c)) -> fused_matmul(a, b, c){activation=relu6}   (epilogue)"""
    return Node.make("fused_matmul", f.inputs, activation="relu6")


FUSE = RuleSet([fuse_matmul_bias, fuse_matmul_relu, fuse_matmul_relu6, fuse_relu, fuse_relu6],
               name="fuse")
register_rules(FUSE)


def fuse(budget: int | None = None) -> RewritePass:
    """Fuse matmul + bias + relu/relu6 into fused_matmul (exact)."""
    return RewritePass("fuse", FUSE, budget=budget, doc=__doc__ or "")


register_pass("fuse", fuse)
