"""`pack-int4`: a linear layer over 4-bit weights stored one per int8 byte becomes `linear_w4`
over the same weights packed two per byte (ir/ops/int4.py), halving the weight's bytes.

    linear(x, reshape?(dequantize(q){s, zero point 0, per row}), b?)
        -> linear_w4(x, pack(q as [N, K]), s as [N, K / g], b?){group = g}

q is the int8 constant `quantize(scheme=w4a16)` builds: (N K / g, g) with one scale per row
of g consecutive input features of one output channel (or (N, K) per output channel), values
in [-8, 7]. Preconditions: K even (two values per byte), g divides K, every zero point 0,
x float32 and every scale a float32 (smelt's 10-bit-mantissa weight scales are), so the
scales tensor holds them exactly.

Contract: exact, bit for bit: linear_w4 rounds q * s once to float32, as dequantize does, and
then computes the linear op's reference on the same weight.
Source: the W4A16 storage of AWQ (Lin et al., MLSys 2024, section 4) and GPTQ's packed
int4 kernels: two nibbles per byte, one scale per group.
"""

from __future__ import annotations

import numpy as np

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.ops.int4 import INT4_MAX, INT4_MIN, pack_int4
from smelt.rewrite.contract import exact
from smelt.rewrite.driver import rewrite
from smelt.rewrite.dsl import op
from smelt.rewrite.pass_api import RewritePass
from smelt.rewrite.registry import register_pass, register_rules
from smelt.rewrite.rule import NoMatch, RuleSet, reject, rule

from .qscales import is_float32
from .weights import memoized


def _grouped_weight(w: Node) -> tuple[np.ndarray, np.ndarray, int] | str:
    """(q as int8 [rows, g], one scale per row, g) of a dequantized int8 constant weight,
    or the reason it is not one."""
    d = w.inputs[0] if w.op == "reshape" else w
    if d.op != "dequantize" or d.inputs[0].op != "constant":
        return "the weight is not a dequantized constant"
    q = np.asarray(d.inputs[0].value)
    if d.inputs[0].dtype != "int8" or q.ndim != 2:
        return f"the stored weight is {d.inputs[0].dtype}{list(q.shape)}, not int8 [rows, g]"
    if q.size and (q.min() < INT4_MIN or q.max() > INT4_MAX):
        return "the stored values leave the 4-bit range [-8, 7]"
    a = d.attrs
    if any(z != 0 for z in a["zero_point"]):
        return "the weight has a zero point; linear_w4 is symmetric"
    if a["axis"] not in (None, 0):
        return f"the weight is quantized along axis {a['axis']}, not per row"
    scales = np.broadcast_to(np.asarray(a["scale"], np.float64), (q.shape[0],))
    if not all(is_float32(float(s)) for s in scales):
        return "a scale is not a float32: the packed scales tensor could not hold it exactly"
    return q, scales, q.shape[1]


def _pack(lin: Node) -> Node | NoMatch:
    x, w = lin.inputs[:2]
    if x.dtype != "float32":
        return reject(f"x is {x.dtype}; the packed scales are float32")
    found = _grouped_weight(w)
    if isinstance(found, str):
        return reject(found)
    q, scales, g = found
    n, k = w.shape
    if k % 2:
        return reject(f"{k} input features: two 4-bit values per byte need an even count")
    if k % g or q.shape[0] * g != n * k:
        return reject(f"the stored rows of {g} do not tile the [{n}, {k}] weight by groups")
    packed = Node.constant(pack_int4(q.reshape(n, k)))
    s = Node.constant(scales.reshape(n, k // g).astype(np.float32))
    return Node.make("linear_w4", (x, packed, s, *lin.inputs[2:]), group=g)


@rule(op.linear(...).named("lin"), contract=exact, family="pack-int4",
      instance=".pack_int4_instances:linear_of_int4")
def pack_int4_linear(lin: Node) -> Node | NoMatch:
    """linear(x, reshape?(dequantize(q){s}), b?) -> linear_w4(x, pack(q), s, b?){group}
    (4-bit values two per byte, low nibble first; AWQ/GPTQ W4A16 storage)"""
    return memoized(("pack-int4", lin), lambda: _pack(lin))


PACK_INT4 = RuleSet([pack_int4_linear], name="pack-int4")
register_rules(PACK_INT4)


def pack_int4_weights(budget: int | None = None) -> RewritePass:
    """Pack the 4-bit weights of `quantize(w4a16)` two per byte into linear_w4 (exact)."""
    return RewritePass("pack-int4", PACK_INT4, budget=budget, doc=__doc__ or "")


register_pass("pack-int4", pack_int4_weights, "4-bit weights packed two per byte into "
              "linear_w4 (after quantize(w4a16)); exact")


def packed(graph: Graph) -> tuple[Graph, str]:
    """The w4a16 graph with its linear layers' weights packed, and a note saying how many
    were packed and why any was not."""
    out = rewrite(graph, PACK_INT4).graph
    left = [n for n in out.nodes() if n.op == "linear" and n.inputs[1].op in
            ("dequantize", "reshape")]
    done = sum(n.op == "linear_w4" for n in out.nodes())
    why = (f"; {len(left)} left one value per byte (an odd input-feature count, or an input "
           "that is not float32)" if left else "")
    return out, f"{done} linear weights packed two 4-bit values per byte (linear_w4){why}"
