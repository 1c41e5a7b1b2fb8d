"""The `fold-qdq` pass and its legality report: which float ops remain between quantized
tensors after folding, and why no rule folded them.

A float op is left in a Q/DQ island when it computes on a dequantized value (some operand
descends from a dequantize) and its result is quantized again later (a quantize descends
from it): the integer pipeline breaks there, a float round trip is paid at run time. Each is
listed with its source line and the reason: the refusal of the fold-qdq rule that came
closest at the quantize it feeds (`explain`), or that no rule folds its op.

    graph = Pipeline.parse("fold-bn,quantize(w8a8),fold-qdq")(graph, calibration=batches)
    for island in legality(graph):
        print(island)
"""

from __future__ import annotations

from dataclasses import dataclass

from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.types import TensorType, is_float
from smelt.rewrite.contract import exact
from smelt.rewrite.driver import rewrite
from smelt.rewrite.explain import explain
from smelt.rewrite.pass_api import Pass, PassContext, PassResult
from smelt.rewrite.registry import register_pass, register_rules

from .fold_qdq import FOLD_QDQ
from .quantize import describe

QUANT_OPS = ("quantize", "dequantize", "input", "constant")


RULES = FOLD_QDQ

register_rules(RULES)


@dataclass(frozen=True)
class Island:
    """A float op between quantized tensors, and why it stayed float."""

    node: Node
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def _closure(start, step) -> set[Node]:
    seen: set[Node] = set()
    todo = list(start)
    while todo:
        n = todo.pop()
        for m in step(n):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


FOLDABLE = ("conv2d", "linear", "matmul", "add", "reduce_mean")


def _reason(graph: Graph, n: Node, users: dict[Node, list[Node]]) -> str:
    here = explain(n, RULES, graph).nearest  # a rule rooted at n itself (sinking a dq)
    if here is not None and here.status == "rejected":
        return f"not folded: {here.reason}"
    fed = [u if u.op == "quantize" else next((v for v in users.get(u, [])
                                              if v.op == "quantize"), None)
           for u in users.get(n, [])]
    for q in filter(None, fed):
        best = explain(q, RULES, graph).nearest
        if best is not None and best.status == "rejected":
            return f"not folded: {best.reason}"
    if n.op in FOLDABLE:
        feeds = sorted({u.op for u in users.get(n, [])}) or ["the graph output"]
        return (f"its result is not quantized (it feeds {', '.join(feeds)}), so there is no "
                "quantize to fold it into; quantize its consumers too")
    return f"no integer kernel computes {n.op}; it runs in float between a dequantize and " \
           "a quantize"


def legality(graph: Graph) -> list[Island]:
    """The float ops left between quantized tensors, in graph order, with reasons."""
    users = graph.users()
    after_dq = _closure([n for n in graph.nodes() if n.op == "dequantize"],
                        lambda n: users.get(n, []))
    before_q = _closure([n for n in graph.nodes() if n.op == "quantize"], lambda n: n.inputs)
    out = []
    for n in graph.nodes():
        if n.op in QUANT_OPS or not isinstance(n.type, TensorType) or not is_float(n.dtype):
            continue
        if n in after_dq and n in before_q:
            out.append(Island(n, describe(graph, n), _reason(graph, n, users)))
    return out


class FoldQDQ(Pass):
    """fold-qdq: Q/DQ pairs into integer kernels (exact); the report lists what is left."""

    name = "fold-qdq"
    contract = exact

    def __init__(self) -> None:
        self.options = {}

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        res = rewrite(graph, RULES)
        islands = legality(res.graph)
        notes = [f"float between quantized tensors: {i}" for i in islands]
        if not islands:
            notes.append("no float op left between quantized tensors")
        return PassResult(res.graph, res.changed, {"rewrites": res.rewrites,
                                                   "fired": res.stats.fired(), "notes": notes})


def fold_qdq() -> FoldQDQ:
    """Fold quantize/dequantize pairs into integer kernels (exact); legality report."""
    return FoldQDQ()


register_pass("fold-qdq", fold_qdq, "Fold Q/DQ pairs into integer kernels; exact")
