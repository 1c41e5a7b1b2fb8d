"""The pass interface: a pass is `Graph -> PassResult(graph, changed, report)` (the passes
that ship with smelt, built on this, are the `smelt.passes` package).

Two kinds:
- `RewritePass`: a rule set run by the driver to a fixpoint (canonicalize, fuse, ...);
- `FunctionPass`: any function of a graph (pruning, calibration), written as

      @function_pass("drop-dropout", contract=exact)
      def drop_dropout(graph: Graph, ctx: PassContext, *, keep: bool = False) -> PassResult:
          ...

Calling a pass times it and fills its report: rewrites fired (per rule), node and MAC counts
and constant bytes before and after (measured when first read), its contract, and notes on
anything it skipped. A pass states its contract;
verify-each pipelines and `verify_pass` hold it to that.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smelt.ir.graph import Graph

from .contract import Contract, compose
from .driver import as_ruleset, rewrite
from .errors import PipelineParseError
from .graph_size import GraphSize, GraphSizes
from .registry import register_pass
from .rule import Rule, RuleSet


@dataclass(frozen=True)
class PassContext:
    """What a pass may use besides the graph: calibration batches (tuples of input arrays).
    `sizes` measures graphs for the reports of one run (see graph_size.py)."""

    calibration: tuple[tuple[np.ndarray, ...], ...] | None = None
    sizes: GraphSizes = field(default_factory=GraphSizes, compare=False, repr=False)


@dataclass(frozen=True)
class PassReport:
    """One pass's run: its time, rewrites (per rule in `fired`), notes, contract, and the
    graph's size before and after (`nodes`, `macs`, `weight_bytes`, each a (before, after)
    pair). The sizes are measured when first read, and the report holds the two graphs
    until then (graph_size.py): a run that nobody reports on does not pay for them."""

    name: str
    contract: Contract
    seconds: float = 0.0
    rewrites: int = 0
    before: GraphSize = field(default_factory=lambda: GraphSize.known(0, 0, 0))
    after: GraphSize = field(default_factory=lambda: GraphSize.known(0, 0, 0))
    fired: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    measured: float | None = None  # the largest output error verify-each saw, when it ran

    @property
    def nodes(self) -> tuple[int, int]:
        return self.before.nodes, self.after.nodes

    @property
    def macs(self) -> tuple[int, int]:
        return self.before.macs, self.after.macs

    @property
    def weight_bytes(self) -> tuple[int, int]:
        """Bytes of constants before and after."""
        return self.before.weight_bytes, self.after.weight_bytes

    def __str__(self) -> str:
        s = (f"{self.name}: {self.seconds * 1e3:.1f} ms, {self.rewrites} rewrites, nodes "
             f"{self.nodes[0]} -> {self.nodes[1]}, MACs {self.macs[0]} -> {self.macs[1]}, "
             f"{self.contract}")
        if self.measured is not None:
            s += f", measured error {self.measured:.3g}"
        return s + "".join(f"\n  note: {n}" for n in self.notes)


@dataclass(frozen=True)
class PassResult:
    """What a pass returns. `report` is a PassReport once the pass has been called; a
    pass's own `run` may return a plain dict (rewrites, fired, notes) instead."""

    graph: Graph
    changed: bool
    report: PassReport | Mapping[str, Any] = field(default_factory=dict)


class Pass:
    """Base class. Subclasses set `name`, `contract`, `options` and implement `run`."""

    name: str = "pass"
    contract: Contract
    options: dict[str, Any]
    args: tuple[Any, ...] = ()

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        raise NotImplementedError

    def __call__(self, graph: Graph, *, calibration: Iterable[Any] | None = None,
                 ctx: PassContext | None = None) -> PassResult:
        if ctx is None:
            ctx = PassContext(normalize_batches(graph, calibration))
        before = ctx.sizes(graph)
        t0 = time.perf_counter()
        result = self.run(graph, ctx)
        seconds = time.perf_counter() - t0
        if not isinstance(result, PassResult):
            raise TypeError(f"pass {self.name} returned {type(result).__name__}, not PassResult")
        src = result.report
        if isinstance(src, PassReport):
            extra: dict[str, Any] = {"rewrites": src.rewrites, "fired": src.fired,
                                     "notes": src.notes}
        else:
            extra = dict(src)
        g = result.graph
        report = PassReport(
            name=self.spec(), contract=extra.get("contract", self.contract), seconds=seconds,
            rewrites=int(extra.get("rewrites", 0)), before=before, after=ctx.sizes(g),
            fired=dict(extra.get("fired", {})), notes=tuple(extra.get("notes", ())),
        )
        return PassResult(g, result.changed, report)

    def spec(self) -> str:
        """The pass as a pipeline spec item: `name`, or `name(arg, key=value)`."""
        parts = [format_option(a) for a in self.args]
        parts += [f"{k}={format_option(v)}" for k, v in self.options.items()]
        return f"{self.name}({', '.join(parts)})" if parts else self.name

    def __repr__(self) -> str:
        return f"<Pass {self.spec()} ({self.contract})>"


def format_option(v: Any) -> str:
    if isinstance(v, str) and v.isidentifier():
        return v
    return repr(v)


class RewritePass(Pass):
    """A rule set run by the driver to a fixpoint. Its contract, unless given, composes its
    rules' contracts (exact when every rule is exact)."""

    def __init__(self, name: str, rules: Rule | RuleSet | Iterable[Rule | RuleSet], *,
                 contract: Contract | None = None, budget: int | None = None,
                 doc: str = "") -> None:
        self.name = name
        self.rules = as_ruleset(rules)
        self.contract = contract or compose([r.contract for r in self.rules])
        self.budget = budget
        self.options = {"budget": budget} if budget is not None else {}
        self.__doc__ = doc

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        res = rewrite(graph, self.rules, budget=self.budget)
        return PassResult(res.graph, res.changed,
                          {"rewrites": res.rewrites, "fired": res.stats.fired()})


class FunctionPass(Pass):
    """A function `fn(graph, ctx, *args, **options) -> PassResult | Graph` as a pass."""

    def __init__(self, name: str, fn: Callable[..., Any], contract: Contract,
                 args: Sequence[Any] = (), options: Mapping[str, Any] | None = None) -> None:
        self.name, self.fn, self.contract = name, fn, contract
        self.args = tuple(args)
        self.options = dict(options or {})
        try:
            inspect.signature(fn).bind(None, None, *self.args, **self.options)
        except TypeError as e:
            params = list(inspect.signature(fn).parameters)[2:]
            raise PipelineParseError(
                f"pass {name}: bad options ({e}); it takes {', '.join(params) or 'none'}"
            ) from None

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        out = self.fn(graph, ctx, *self.args, **self.options)
        if isinstance(out, Graph):
            return PassResult(out, out is not graph, {})
        return out


def function_pass(name: str, *, contract: Contract,
                  register: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Pass]]:
    """Decorator: the function becomes a pass factory (`factory(*args, **options)`),
    registered under `name` for pipeline specs unless `register=False`."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Pass]:
        def factory(*args: Any, **options: Any) -> Pass:
            return FunctionPass(name, fn, contract, args, options)

        factory.__name__ = fn.__name__
        factory.__doc__ = fn.__doc__
        if register:
            register_pass(name, factory, (fn.__doc__ or "").strip().split("\n")[0])
        return factory

    return wrap


def normalize_batches(graph: Graph, batches: Iterable[Any] | None
                      ) -> tuple[tuple[np.ndarray, ...], ...] | None:
    """Calibration/sample batches as tuples of arrays: an iterable of tuples, or of single
    arrays when the graph has one input."""
    if batches is None:
        return None
    out = []
    for b in batches:
        if isinstance(b, tuple | list):
            out.append(tuple(np.asarray(_numpy(a)) for a in b))
        elif len(graph.inputs) == 1:
            out.append((np.asarray(_numpy(b)),))
        else:
            raise TypeError(
                f"the graph has {len(graph.inputs)} inputs; give each batch as a tuple of "
                f"{len(graph.inputs)} arrays"
            )
    return tuple(out)


def _numpy(x: Any) -> Any:
    if hasattr(x, "detach") and hasattr(x, "numpy"):
        return x.detach().cpu().numpy()
    return x
