"""Pipelines: passes run in order, with a report, optional per-pass verification, and
bisection to the first pass that breaks the composed contract.

    pipe = Pipeline.parse("canonicalize,fuse")        # or Pipeline([canonicalize(), fuse()])
    Pipeline("canonicalize,fuse")                     # the same: a string is one spec
    out = pipe(graph, calibration=batches)             # -> Graph
    print(pipe)                                        # canonicalize,fuse
    print(pipe.report)                                 # per pass: time, rewrites, nodes, MACs
    Pipeline.parse("canonicalize,fuse", verify_each=True)(graph)   # raises PassContractError
    pipe.bisect(graph)                                 # the first pass whose output breaks

Spec grammar: items separated by commas; an item is a registered pass name, optionally
followed by options in parentheses, written as Python literals (`smoothquant(alpha=0.5)`);
a bare word is a string (`quantize(w8a8)`).
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from smelt.ir.graph import Graph

from .contract import Contract, bounded, compose
from .equivalence import assert_equivalent, sample_inputs
from .errors import ContractViolation, PassContractError, PipelineParseError
from .pass_api import Pass, PassContext, PassReport, normalize_batches
from .registry import get_pass


@dataclass(frozen=True)
class PipelineReport:
    """Per-pass reports of one run; `contract` is what the passes promised together."""

    passes: tuple[PassReport, ...]
    contract: Contract

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.passes)

    @property
    def rewrites(self) -> int:
        return sum(p.rewrites for p in self.passes)

    def __str__(self) -> str:
        rows = [("pass", "time ms", "rewrites", "nodes", "MACs", "weights KiB", "contract",
                 "measured")]
        for p in self.passes:
            rows.append(_row(p.name, p.seconds, p.rewrites, p.nodes, p.macs, p.weight_bytes,
                             p.contract, p.measured))
        if self.passes:
            first, last = self.passes[0], self.passes[-1]
            measured = [p.measured for p in self.passes if p.measured is not None]
            rows.append(_row("total", self.seconds, self.rewrites,
                             (first.nodes[0], last.nodes[1]), (first.macs[0], last.macs[1]),
                             (first.weight_bytes[0], last.weight_bytes[1]), self.contract,
                             sum(measured) if measured else None))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) if i in (0, 6) else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                         .rstrip() for r in rows)


def _row(name: str, seconds: float, rewrites: int, nodes: tuple[int, int],
         macs: tuple[int, int], weights: tuple[int, int], contract: Contract,
         measured: float | None) -> tuple[str, ...]:
    return (name, f"{seconds * 1e3:.2f}", str(rewrites), f"{nodes[0]} -> {nodes[1]}",
            f"{macs[0]:,} -> {macs[1]:,}", f"{weights[0] / 1024:.1f} -> {weights[1] / 1024:.1f}",
            str(contract),
            "-" if measured is None else f"{measured:.3g}")


@dataclass(frozen=True)
class PipelineResult:
    graph: Graph
    report: PipelineReport
    graphs: tuple[Graph, ...]  # the input, then each pass's output


@dataclass(frozen=True)
class Bisection:
    """The first pass whose output breaks the contract its prefix promised (index None:
    none does). `checks` counts the equivalence checks bisection ran."""

    index: int | None
    pass_name: str | None
    message: str
    checks: int

    def __str__(self) -> str:
        if self.index is None:
            return f"no pass breaks the pipeline's contract ({self.checks} checks)"
        return (f"pass {self.index + 1} ({self.pass_name}) is the first whose output breaks "
                f"the contract of the passes up to it ({self.checks} checks):\n{self.message}")


class Pipeline:
    """Passes in order. Calling it on a graph returns the rewritten graph; `report` keeps
    the last run's per-pass report (its `contract` composes what each pass stated for that
    run). `verify_each=True` checks every pass's contract on sample inputs (the calibration
    batches, or seeded random ones; a measured bound only on calibration batches) and raises
    PassContractError naming the first pass that breaks it."""

    def __init__(self, passes: str | Sequence[Pass | str] = (), *, verify_each: bool = False,
                 samples: int = 2, seed: int = 0) -> None:
        if isinstance(passes, str):  # Pipeline("canonicalize,fuse"): one spec
            passes = [passes]
        items: list[Pass] = []
        for p in passes:
            items.extend(parse_spec(p) if isinstance(p, str) else [p])
        self.passes: tuple[Pass, ...] = tuple(items)
        self.verify_each, self.samples, self.seed = verify_each, samples, seed
        self.report: PipelineReport | None = None

    @classmethod
    def parse(cls, spec: str, **options: Any) -> Pipeline:
        """A pipeline from a spec such as "canonicalize,fuse,smoothquant(alpha=0.5)"."""
        return cls(parse_spec(spec), **options)

    @property
    def contract(self) -> Contract:
        return compose([p.contract for p in self.passes])

    def spec(self) -> str:
        return ",".join(p.spec() for p in self.passes)

    def __str__(self) -> str:
        return self.spec()

    def __repr__(self) -> str:
        return f"Pipeline.parse({self.spec()!r})"

    def __len__(self) -> int:
        return len(self.passes)

    def __iter__(self) -> Iterator[Pass]:
        return iter(self.passes)

    def __add__(self, other: Pipeline) -> Pipeline:
        return Pipeline(self.passes + other.passes, verify_each=self.verify_each,
                        samples=self.samples, seed=self.seed)

    def __call__(self, graph: Graph, *, calibration: Iterable[Any] | None = None,
                 verify_each: bool | None = None) -> Graph:
        return self.run(graph, calibration=calibration, verify_each=verify_each).graph

    def run(self, graph: Graph, *, calibration: Iterable[Any] | None = None,
            verify_each: bool | None = None) -> PipelineResult:
        """Run every pass; the result keeps the report and every intermediate graph."""
        check = self.verify_each if verify_each is None else verify_each
        ctx = PassContext(normalize_batches(graph, calibration))
        batches = self._batches(graph, ctx) if check else None
        graphs, reports = [graph], []
        for i, p in enumerate(self.passes):
            result = p(graphs[-1], ctx=ctx)
            report = result.report
            if check:
                report = self._verify(i, p, graphs[-1], result.graph, report, batches,
                                      bool(ctx.calibration))
            graphs.append(result.graph)
            reports.append(report)
        self.report = PipelineReport(tuple(reports), compose([r.contract for r in reports]))
        return PipelineResult(graphs[-1], self.report, tuple(graphs))

    def _batches(self, graph: Graph, ctx: PassContext) -> list[tuple[Any, ...]]:
        if ctx.calibration:
            return list(ctx.calibration[: max(self.samples, 1)])
        return sample_inputs(graph, self.samples, self.seed)

    def _verify(self, i: int, p: Pass, before: Graph, after: Graph, report: PassReport,
                batches: list[tuple[Any, ...]], on_calibration: bool) -> PassReport:
        """Check the pass's contract on `batches`. A measured bound (contract.py) was seen on
        the calibration batches and promises nothing for other inputs: it is checked when
        `batches` are calibration batches, and otherwise only for shapes and NaNs, with a
        note saying so."""
        what = f"pipeline step {i + 1} of {len(self.passes)}, pass {p.spec()},"
        contract, notes = report.contract, report.notes
        if contract.is_measured and not on_calibration:
            contract = bounded(float("inf"), basis="measured")
            notes += ("verify-each: the measured bound was not checked: it holds on the "
                      "calibration batches, and this pipeline ran without them",)
        try:
            measured = assert_equivalent(before, after, contract, batches, what=what)
        except ContractViolation as e:
            raise PassContractError(str(e), i, p.spec()) from None
        return dataclasses.replace(report, measured=measured, notes=notes)

    def bisect(self, graph: Graph, inputs: Any = None, *,
               calibration: Iterable[Any] | None = None) -> Bisection:
        """Find the first pass whose output breaks the contract promised by the passes up
        to it, by bisection over the prefixes (log2(n) + 1 equivalence checks)."""
        result = self.run(graph, calibration=calibration, verify_each=False)
        graphs = result.graphs
        if inputs is None:
            ctx = PassContext(normalize_batches(graph, calibration))
            inputs = self._batches(graph, ctx)
        checks = [0]
        messages: dict[int, str] = {}

        def holds(k: int) -> bool:
            checks[0] += 1
            contract = compose([p.contract for p in self.passes[:k]])
            try:
                assert_equivalent(graphs[0], graphs[k], contract, inputs,
                                  what=f"the first {k} passes")
            except ContractViolation as e:
                messages[k] = str(e)
                return False
            return True

        n = len(self.passes)
        if holds(n):
            return Bisection(None, None, "", checks[0])
        lo, hi = 0, n  # the prefix of length lo holds, of length hi breaks
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if holds(mid):
                lo = mid
            else:
                hi = mid
        return Bisection(hi - 1, self.passes[hi - 1].spec(), messages[hi], checks[0])


# -- spec parsing -------------------------------------------------------------------------------
def parse_spec(spec: str) -> list[Pass]:
    """Passes from "name, name(options), ..."; raises PipelineParseError on bad text."""
    return [_build(name, args, spec, pos) for name, args, pos in _items(spec)]


def _items(spec: str) -> list[tuple[str, str | None, int]]:
    items, depth, start = [], 0, 0
    for i, ch in enumerate(spec + ","):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                _fail(spec, i, "unbalanced ')'")
        elif ch == "," and depth == 0:
            text = spec[start:i]
            if text.strip():
                items.append(_split_item(spec, text, start))
            elif i < len(spec) or items:
                _fail(spec, start, "empty pass name")
            start = i + 1
    if depth:
        _fail(spec, len(spec), "missing ')'")
    return items


def _split_item(spec: str, text: str, start: int) -> tuple[str, str | None, int]:
    pos = start + len(text) - len(text.lstrip())
    body = text.strip()
    name, paren, rest = body.partition("(")
    name = name.strip()
    if not name or not all(c.isalnum() or c in "-_" for c in name) or not name[0].isalpha():
        _fail(spec, pos, f"bad pass name {name!r}")
    if not paren:
        return name, None, pos
    if not rest.endswith(")"):
        _fail(spec, pos + len(body), f"text after the options of {name}")
    return name, rest[:-1], pos


def _build(name: str, args: str | None, spec: str, pos: int) -> Pass:
    positional: list[Any] = []
    options: dict[str, Any] = {}
    if args is not None and args.strip():
        try:
            call = ast.parse(f"f({args})", mode="eval").body
        except SyntaxError:
            _fail(spec, pos, f"cannot read the options of {name}: ({args})")
        assert isinstance(call, ast.Call)
        positional = [_literal(a, spec, pos) for a in call.args]
        for kw in call.keywords:
            if kw.arg is None:
                _fail(spec, pos, f"{name}: options are key=value pairs")
            options[kw.arg] = _literal(kw.value, spec, pos)
    try:
        return get_pass(name, *positional, **options)
    except TypeError as e:
        _fail(spec, pos, f"{name} does not take these options: {e}")
    raise AssertionError("unreachable")  # pragma: no cover


def _bare_word(node: ast.expr) -> str | None:
    """`w8a8` or a hyphenated bare word such as `w8a8-tensor` (read as a subtraction)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub):
        left, right = _bare_word(node.left), _bare_word(node.right)
        if left is not None and right is not None:
            return f"{left}-{right}"
    return None


def _literal(node: ast.expr, spec: str, pos: int) -> Any:
    word = _bare_word(node)
    if word is not None:
        return word
    try:
        return ast.literal_eval(node)
    except ValueError:
        _fail(spec, pos, f"option {ast.unparse(node)!r} is not a literal")
    raise AssertionError("unreachable")  # pragma: no cover


def _fail(spec: str, pos: int, message: str) -> None:
    raise PipelineParseError(f"{message}\n  {spec}\n  {' ' * pos}^")
