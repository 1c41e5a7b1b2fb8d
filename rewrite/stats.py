"""Instrumentation: per-rule hits, misses and time, and the optional trace of rewrites."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from smelt.ir.node import Node

from .describe import describe


@dataclass
class RuleStats:
    """How often a rule was tried at a node and fired (`hits`) or did not (`misses`), and
    the time spent matching and rewriting, in seconds."""

    hits: int = 0
    misses: int = 0
    seconds: float = 0.0

    @property
    def tries(self) -> int:
        return self.hits + self.misses


class Stats:
    """Per-rule statistics of one or more driver runs; `+` merges."""

    def __init__(self, rows: dict[str, RuleStats] | None = None) -> None:
        self.rows: dict[str, RuleStats] = dict(rows or {})

    @classmethod
    def from_counts(cls, counts: Iterable[tuple[str, list]]) -> Stats:
        return cls({name: RuleStats(int(h), int(m), float(t)) for name, (h, m, t) in counts})

    def __getitem__(self, name: str) -> RuleStats:
        return self.rows.get(name, RuleStats())

    @property
    def hits(self) -> int:
        return sum(r.hits for r in self.rows.values())

    def fired(self) -> dict[str, int]:
        """Rules that fired, and how often."""
        return {k: r.hits for k, r in self.rows.items() if r.hits}

    def __add__(self, other: Stats) -> Stats:
        rows = {k: RuleStats(v.hits, v.misses, v.seconds) for k, v in self.rows.items()}
        for k, v in other.rows.items():
            r = rows.setdefault(k, RuleStats())
            r.hits += v.hits
            r.misses += v.misses
            r.seconds += v.seconds
        return Stats(rows)

    def __str__(self) -> str:
        rows = sorted(self.rows.items(), key=lambda kv: (-kv[1].seconds, kv[0]))
        w = max([len(k) for k, _ in rows] + [4])
        lines = [f"{'rule':<{w}}  {'hits':>8}  {'misses':>8}  {'time ms':>9}"]
        for k, r in rows:
            lines.append(f"{k:<{w}}  {r.hits:>8}  {r.misses:>8}  {r.seconds * 1e3:>9.2f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Stats {len(self.rows)} rules, {self.hits} hits>"


@dataclass(frozen=True)
class TraceEntry:
    """One rewrite the driver made: `rule` turned `before` into `after`."""

    rule: str
    before: Node
    after: Node

    def __str__(self) -> str:
        return f"{self.rule}: {describe(self.before)}\n    -> {describe(self.after)}"
