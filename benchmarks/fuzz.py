"""Differential fuzzing at scale: thousands of random graphs compiled for the CPU and for C
(host build under AddressSanitizer and UBSan), each compared with the reference interpreter
under its contract (smelt/fuzz.py: float graphs as drawn, through `canonicalize,fuse`, and
integer graphs from `quantize(w8a8),fold-qdq`, those bit for bit).

The graphs are split evenly over every (kind, target) pair and drawn by hypothesis (pair i
seeded by --seed + i) in batches of --batch side by side in one build; a batch that fails is
rebuilt case by case to name each failing graph. Reported: graphs and batches per pair, the
ops covered, failures by kind and stage (build, run, output) with the first few failing
graphs in full, and the time. A batch still building after HANG_S seconds is a finding too:
its graphs go to <out>.hang.txt and the run stops (TVM stuck in a pass cannot be
interrupted). The test suite runs the same checks on a few hundred graphs (tests/test_fuzz.py).

    .venv/bin/python -m benchmarks.fuzz                      # 10,000 graphs (hours)
    .venv/bin/python -m benchmarks.fuzz --graphs 600 --targets cpu
    .venv/bin/python -m benchmarks.fuzz --quick              # 192 graphs, a smoke test

Hypothesis draws the simplest example first (here a batch of one-op graphs), so a pair needs
a few batches before its graphs vary: --quick draws four per pair.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from tqdm import tqdm

from benchmarks.harness import (
    bar_chart,
    figure,
    library_versions,
    markdown_table,
    results_path,
    write_report,
)
from smelt.fuzz import KINDS, cases, check_batch, ops_covered

RESULTS = results_path("fuzz")
TARGETS = ("cpu", "c")
SHOWN = 5  # failing graphs kept in full per pair
HANG_S = 600  # a batch still building after this long is a finding: written out, run stopped


def watchdog(batch: list, kind: str, target: str, where: Path) -> threading.Timer:
    """A timer that, when a batch hangs (TVM stuck in a pass cannot be interrupted), writes
    its graphs to `where` and ends the process with status 3."""
    def hang() -> None:
        where.write_text(f"# {kind} on {target}: a batch still building after {HANG_S} s\n\n"
                         + "\n".join(c.graph.to_text() for c in batch))
        print(f"\nhang: {kind} on {target}; the batch's graphs are in {where}", file=sys.stderr,
              flush=True)
        os._exit(3)

    timer = threading.Timer(HANG_S, hang)
    timer.daemon = True
    timer.start()
    return timer


def fuzz_pair(kind: str, target: str, graphs: int, batch: int, seed_: int,
              bar: Any, hang_file: Path) -> dict[str, Any]:
    """Draw `graphs` cases of `kind` in batches of `batch` and check them on `target`."""
    failures: list[Any] = []
    ops: set[str] = set()
    count = [0, 0]  # graphs, batches

    @seed(seed_)
    @settings(max_examples=max(1, graphs // batch), database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(cases(kind, batch))
    def run(drawn: list) -> None:
        timer = watchdog(drawn, kind, target, hang_file)
        failures.extend(check_batch(drawn, target))
        timer.cancel()
        ops.update(ops_covered(drawn))
        count[0] += len(drawn)
        count[1] += 1
        bar.update(len(drawn))

    start = time.perf_counter()
    run()
    by_stage = Counter(f.stage for f in failures)
    return {"kind": kind, "target": target, "graphs": count[0], "batches": count[1],
            "seconds": round(time.perf_counter() - start, 1), "ops": sorted(ops),
            "failures": len(failures), "by_stage": dict(by_stage),
            "shown": [{"stage": f.stage, "error": f.error, "graph": f.graph}
                      for f in failures[:SHOWN]]}


def run_all(graphs: int, kinds: list[str], targets: list[str], batch: int, seed_: int,
            hang_file: Path) -> dict[str, Any]:
    pairs = [(k, t) for t in targets for k in kinds]
    each = max(batch, graphs // len(pairs))
    start = time.perf_counter()
    with tqdm(total=each * len(pairs), desc="fuzz", unit="graph", file=sys.stderr,
              mininterval=0.5 if sys.stderr.isatty() else 60.0) as bar:
        results = [fuzz_pair(k, t, each, batch, seed_ + i, bar, hang_file)
                   for i, (k, t) in enumerate(pairs)]
    ops = sorted({op for r in results for op in r["ops"]})
    return {"benchmark": "fuzz", "seed": seed_, "batch": batch,
            "graphs": sum(r["graphs"] for r in results),
            "failures": sum(r["failures"] for r in results), "ops_covered": ops,
            "seconds": round(time.perf_counter() - start, 1), "pairs": results,
            "versions": library_versions("numpy", "torch", "tvm", "hypothesis")}


def table(res: dict[str, Any]) -> str:
    lines = [f"# Differential fuzzing: {res['graphs']:,} random graphs, {res['failures']} "
             f"failures ({res['seconds']:.0f} s, seed {res['seed']}, batches of "
             f"{res['batch']})", "",
             *markdown_table(["kind", "target", "graphs", "batches", "ops", "failures",
                              "build / run / output", "seconds"],
                             [[r["kind"], r["target"], f"{r['graphs']:,}", str(r["batches"]),
                               str(len(r["ops"])), str(r["failures"]),
                               " / ".join(str(r["by_stage"].get(s, 0))
                                          for s in ("build", "run", "output")),
                               f"{r['seconds']:.0f}"] for r in res["pairs"]]),
             "", f"Ops covered ({len(res['ops_covered'])}): {', '.join(res['ops_covered'])}.",
             ""]
    for r in res["pairs"]:
        for f in r["shown"]:
            lines += [f"## {r['kind']} on {r['target']}: {f['stage']}", "", f["error"], "",
                      "```", f["graph"], "```", ""]
    return "\n".join(lines)


def plot(res: dict[str, Any]) -> Any:
    fig, (ax,) = figure(f"Differential fuzzing: {res['graphs']:,} graphs, "
                        f"{res['failures']} failures")
    values = {f"{r['kind']} / {r['target']}": {"graphs": r["graphs"],
                                                "failures": r["failures"]}
              for r in res["pairs"]}
    bar_chart(ax, values, "graphs (log scale)", log=True, fmt="{:.0f}")
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--graphs", type=int, default=10_000)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="192 graphs in batches of 8")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    graphs, batch = (192, 8) if args.quick else (args.graphs, args.batch)
    res = run_all(graphs, args.kinds.split(","), args.targets.split(","), batch, args.seed,
                  Path(args.out).with_suffix(".hang.txt"))
    print(write_report(Path(args.out), res, table(res), plot(res)))
    return 0 if res["failures"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
