"""How rewriting scales: chains of relu(add(matmul(x, w), b)) blocks fused into one op each.

The same chain is built in three systems and rewritten by each system's own rewriter, in the
same run:

- smelt:      the driver with one rule, relu(add(matmul(x, w), b)) -> fused_matmul{relu}
              (`smelt-fuse`: the shipped `fuse` rules run by the driver, five rules, two steps
              per block; `smelt-pipeline`: `Pipeline("fuse")`, the same rules as a pass with
              its report, timed against `smelt-fuse` in the same process);
- torch.fx:   `torch.fx.subgraph_rewriter.replace_pattern` with the same pattern and a
              replacement calling one wrapped fused function;
- TVM Relax:  `tvm.relax.dpl.rewrite_call` with is_op("relax.nn.relu")(is_op("relax.add")(
              is_op("relax.matmul")(x, w), b)), replaced by one call_dps_packed.

Sizes count graph nodes as smelt and torch.fx do: one input plus five per block (weight, bias,
matmul, add, relu). Each (system, size) runs in a fresh subprocess; only the rewrite call is
timed (building the graph is not), best of up to `--repeats` runs while a run is short. A
system stops at the first size whose rewrite takes longer than `--limit` seconds (the run is
killed there).

`smelt-pipeline` runs pairs on fresh graphs, the raw driver and `Pipeline("fuse")` in
alternating order, and reports the median over the pairs of the pipeline's CPU time over the
driver's (CPU time of the process: on a shared machine it is what the rewriter itself
spent), and the time to read the pipeline's report afterwards (its sizes are measured when
read). The goal: at most 1.2x the driver, and 100k nodes through `Pipeline("fuse")` in
under 1 s.

Results: benchmarks/results/rewrite_scale.json, a Markdown table beside it (.md) and a plot
(.png): seconds per size and system, and the pipeline's ratio to the driver.

    .venv/bin/python -m benchmarks.rewrite_scale                       # everything (~15 min)
    .venv/bin/python -m benchmarks.rewrite_scale --sizes 10000,100000,1000000 \
        --peers smelt-fuse,smelt-pipeline                              # Pipeline vs the driver
    .venv/bin/python -m benchmarks.rewrite_scale --sizes 1000,10000 --limit 20 --peers smelt,fx
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    figure,
    line_chart,
    machine_facts,
    machine_line,
    markdown_table,
    results_path,
    set_threads,
    write_report,
)

DEFAULT_SIZES = (1_000, 3_000, 10_000, 15_000, 30_000, 100_000, 300_000, 1_000_000)
PEERS = ("smelt", "smelt-fuse", "smelt-pipeline", "torch.fx", "tvm-dpl")
ALIASES = {"fx": "torch.fx", "tvm": "tvm-dpl", "pipeline": "smelt-pipeline"}
WIDTH = 8
RESULTS = results_path("rewrite_scale")
ROOT = Path(__file__).resolve().parent.parent
BUILD_LIMIT_S = 900.0
REPEAT_UNDER_S = 2.0
PAIR_UNDER_S = 30.0  # smelt-pipeline: another pair while a pair's two rewrites take less
PIPELINE_BUDGET = 1.2  # Pipeline("fuse") over the raw driver
GOAL_NODES, GOAL_S = 100_000, 1.0  # 100k nodes through Pipeline("fuse") in under 1 s


def blocks_for(nodes: int) -> int:
    return max(1, round((nodes - 1) / 5))


def _weights(blocks: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(blocks):
        yield (rng.standard_normal((WIDTH, WIDTH)).astype(np.float32),
               rng.standard_normal(WIDTH).astype(np.float32))


# -- smelt --------------------------------------------------------------------------------------
def _smelt_rules(name: str):
    from smelt.ir import Node
    from smelt.passes import FUSE
    from smelt.rewrite import RuleSet, exact, op, rule, var

    if name == "smelt-fuse":
        return FUSE
    x, w, b = var("x"), var("w"), var("b")

    @rule(op.relu(op.add(op.matmul(x, w).single_use(), b).single_use()), contract=exact)
    def fuse_linear_relu(x, w, b):
        """relu(add(matmul(x, w), b)) -> fused_matmul(x, w, b){activation=relu}"""
        return Node.make("fused_matmul", (x, w, b), activation="relu")

    return RuleSet([fuse_linear_relu])


def build_smelt(blocks: int) -> Any:
    from smelt.ir import Graph, Node

    x = Node.input("x", (1, WIDTH))
    h = x
    for w, b in _weights(blocks):
        mm = Node.make("matmul", (h, Node.constant(w)))
        h = Node.make("relu", (Node.make("add", (mm, Node.constant(b))),))
    return Graph([x], [h])  # a fresh graph: its node order is not computed yet


def rewrite_smelt(graph: Any, peer: str) -> Any:
    from smelt.rewrite import rewrite

    return rewrite(graph, _smelt_rules(peer)).graph


def check_smelt(graph: Any, blocks: int) -> bool:
    ops = graph.summary().ops
    return ops.get("fused_matmul") == blocks and "matmul" not in ops and "add" not in ops


# -- torch.fx -----------------------------------------------------------------------------------
def build_fx(blocks: int) -> Any:
    import operator

    import torch
    from torch import fx

    root = torch.nn.Module()
    g = fx.Graph()
    h = g.placeholder("x")
    for i, (w, b) in enumerate(_weights(blocks)):
        root.register_buffer(f"w{i}", torch.from_numpy(w))
        root.register_buffer(f"b{i}", torch.from_numpy(b))
        mm = g.call_function(torch.matmul, (h, g.get_attr(f"w{i}")))
        add = g.call_function(operator.add, (mm, g.get_attr(f"b{i}")))
        h = g.call_function(torch.relu, (add,))
    g.output(h)
    return fx.GraphModule(root, g)


def _fx_fused():
    """One custom op, so the replacement is a single call_function node."""
    import torch

    @torch.library.custom_op("smeltbench::fused_matmul_relu", mutates_args=(),
                             schema="(Tensor x, Tensor w, Tensor b) -> Tensor")
    def fused_matmul_relu(x, w, b):
        return torch.relu(torch.matmul(x, w) + b)

    return torch.ops.smeltbench.fused_matmul_relu


def rewrite_fx(gm: Any, peer: str) -> Any:
    import torch
    from torch.fx import subgraph_rewriter

    fused = FX_FUSED

    def pattern(x, w, b):
        return torch.relu(torch.matmul(x, w) + b)

    def replacement(x, w, b):
        return fused(x, w, b)

    return gm, subgraph_rewriter.replace_pattern(gm, pattern, replacement)


def check_fx(result: Any, blocks: int) -> bool:
    gm, matches = result
    fused = sum(1 for n in gm.graph.nodes if n.target is FX_FUSED.default
                or n.target is FX_FUSED)
    ops = sum(1 for n in gm.graph.nodes if n.op == "call_function")
    return len(matches) == blocks == fused == ops


# -- TVM Relax ----------------------------------------------------------------------------------
def build_tvm(blocks: int) -> Any:
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, WIDTH), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            h = x
            for w, b in _weights(blocks):
                mm = bb.emit(relax.op.matmul(h, relax.const(w)))
                add = bb.emit(relax.op.add(mm, relax.const(b)))
                h = bb.emit(relax.op.nn.relu(add))
            out = bb.emit_output(h)
        bb.emit_func_output(out)
    return bb.get()["main"]


def rewrite_tvm(func: Any, peer: str) -> Any:
    from tvm import relax
    from tvm.relax.dpl import is_op, rewrite_call, wildcard

    x, w, b = wildcard(), wildcard(), wildcard()
    pattern = is_op("relax.nn.relu")(is_op("relax.add")(is_op("relax.matmul")(x, w), b))

    def fused(expr, m):
        ty = getattr(expr, "ty", None) or expr.struct_info
        return relax.call_dps_packed("fused_matmul_relu", [m[x], m[w], m[b]], out_ty=ty)

    return rewrite_call(pattern, fused, func)


def check_tvm(func: Any, blocks: int) -> bool:
    bindings = [b for block in func.body.blocks for b in block.bindings]
    calls = sum(1 for b in bindings if getattr(getattr(b.value, "op", None), "name", "")
                == "relax.call_dps_packed")
    return calls == blocks and len(bindings) == blocks


def rewrite_pipeline(graph: Any, peer: str) -> Any:
    from smelt.rewrite import Pipeline

    pipe = Pipeline("fuse")
    return pipe(graph), pipe


PEER_FNS = {
    "smelt": (build_smelt, rewrite_smelt, check_smelt),
    "smelt-fuse": (build_smelt, rewrite_smelt, check_smelt),
    "torch.fx": (build_fx, rewrite_fx, check_fx),
    "tvm-dpl": (build_tvm, rewrite_tvm, check_tvm),
}
FX_FUSED: Any = None


# -- one measurement, in a subprocess -----------------------------------------------------------
def _emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def _built(build: Any, blocks: int) -> Any:
    gc.disable()
    t0 = time.perf_counter()
    obj = build(blocks)
    built = time.perf_counter() - t0
    gc.enable()
    gc.collect()
    _emit(event="built", build_seconds=built)
    return obj


def _timed(run: Any, obj: Any, peer: str) -> tuple[Any, float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    out = run(obj, peer)
    return out, time.perf_counter() - t0, time.process_time() - c0


def worker(peer: str, nodes: int, repeats: int) -> None:
    global FX_FUSED
    if peer == "smelt-pipeline":
        pipeline_worker(nodes, repeats)
        return
    if peer in ("torch.fx", "tvm-dpl"):
        set_threads(1)
    if peer == "torch.fx":
        FX_FUSED = _fx_fused()
    build, run, check = PEER_FNS[peer]
    blocks = blocks_for(nodes)
    for _ in range(repeats):
        obj = _built(build, blocks)
        out, seconds, cpu = _timed(run, obj, peer)
        _emit(event="done", seconds=seconds, cpu_seconds=cpu, ok=check(out, blocks))
        del obj, out
        gc.collect()
        if seconds > REPEAT_UNDER_S:
            break


def pipeline_worker(nodes: int, repeats: int) -> None:
    """Pairs on fresh graphs: the driver with the fuse rules, and Pipeline("fuse"), in
    alternating order; then the time to read the pipeline's report."""
    blocks = blocks_for(nodes)
    warm = build_smelt(1)  # untimed: imports and compiled matchers ready for both
    check_smelt(rewrite_smelt(warm, "smelt-fuse"), 1) and rewrite_pipeline(warm, "")
    for i in range(repeats):
        pair = 0.0
        for variant in (("driver", "pipeline") if i % 2 == 0 else ("pipeline", "driver")):
            obj = _built(build_smelt, blocks)
            if variant == "driver":
                out, seconds, cpu = _timed(rewrite_smelt, obj, "smelt-fuse")
                extra = {}
            else:
                (out, pipe), seconds, cpu = _timed(rewrite_pipeline, obj, variant)
                t0 = time.perf_counter()
                str(pipe.report)
                extra = {"report_seconds": time.perf_counter() - t0}
                del pipe
            _emit(event="done", variant=variant, seconds=seconds, cpu_seconds=cpu,
                  ok=check_smelt(out, blocks), **extra)
            pair += seconds
            del obj, out
            gc.collect()
        if pair > PAIR_UNDER_S:
            break


def measure(peer: str, nodes: int, limit: float, repeats: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.rewrite_scale", "--worker", peer, "--nodes",
           str(nodes), "--repeats", str(repeats)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    row: dict[str, Any] = {"peer": peer, "nodes": 5 * blocks_for(nodes) + 1,
                           "blocks": blocks_for(nodes), "runs": []}
    events: list[dict[str, Any]] = []
    deadline = BUILD_LIMIT_S
    while True:
        try:
            line = lines.get(timeout=deadline)
        except queue.Empty:
            proc.kill()
            row["status"] = "timeout" if deadline == limit else "build timeout"
            break
        if line is None:
            proc.wait()
            row["status"] = "ok" if proc.returncode == 0 and events else "error"
            if row["status"] == "error":
                row["error"] = proc.stderr.read()[-2000:]
            break
        event = json.loads(line)
        if event["event"] == "built":
            row["build_seconds"] = event["build_seconds"]
            deadline = limit
        else:
            events.append(event)
            row["correct"] = row.get("correct", True) and event["ok"]
            deadline = BUILD_LIMIT_S
    _fill(row, events)
    if row["status"] == "timeout":
        row["seconds"] = None
        row["limit"] = limit
    return row


def _fill(row: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """The row's times from the worker's events: best wall time per run of the peer itself;
    for smelt-pipeline also the driver's, and the pipeline's CPU-time ratio to it."""
    own = [e for e in events if e.get("variant") != "driver"]
    row["runs"] = [e["seconds"] for e in own]
    row["cpu_runs"] = [e["cpu_seconds"] for e in own]
    if row["runs"]:
        row["seconds"] = min(row["runs"])
        row["us_per_node"] = row["seconds"] / row["nodes"] * 1e6
    if row["peer"] != "smelt-pipeline":
        return
    driver = [e for e in events if e.get("variant") == "driver"]
    row["driver_runs"] = [e["seconds"] for e in driver]
    row["driver_cpu_runs"] = [e["cpu_seconds"] for e in driver]
    row["report_runs"] = [e["report_seconds"] for e in own]
    pairs = list(zip(row["cpu_runs"], row["driver_cpu_runs"], strict=False))
    if pairs:
        row["driver_seconds"] = min(row["driver_runs"])
        row["pipeline_over_driver"] = statistics.median(p / d for p, d in pairs)
        row["report_seconds"] = min(row["report_runs"])


# -- the whole benchmark ------------------------------------------------------------------------
def _at(rows: list[dict[str, Any]], peer: str, nodes: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["peer"] == peer and r["nodes"] == 5 * blocks_for(
        nodes) + 1 and r.get("seconds")), None)


def _size_label(nodes: int) -> str:
    return f"{nodes // 1_000_000}M" if nodes >= 1_000_000 else f"{nodes // 1000}k"


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"largest_within_limit": {}}
    for peer in sorted({r["peer"] for r in rows}):
        done = [r["nodes"] for r in rows if r["peer"] == peer and r.get("seconds")]
        out["largest_within_limit"][peer] = max(done) if done else None
    small, big = _at(rows, "smelt", 10_000), max(
        (r for r in rows if r["peer"] == "smelt" and r.get("seconds")),
        key=lambda r: r["nodes"], default=None)
    if small and big:
        out["smelt_us_per_node_10k"] = small["us_per_node"]
        out["smelt_us_per_node_largest"] = big["us_per_node"]
        out["smelt_largest_nodes"] = big["nodes"]
        out["smelt_linearity_ratio"] = big["us_per_node"] / small["us_per_node"]
    for peer in ("torch.fx", "tvm-dpl"):
        for nodes in (15_000, 30_000):
            a, s = _at(rows, peer, nodes), _at(rows, "smelt", nodes)
            if a and s:
                out[f"speedup_vs_{peer}_at_{nodes // 1000}k"] = a["seconds"] / s["seconds"]
    ratios = {_size_label(r["nodes"]): r["pipeline_over_driver"] for r in rows
              if r["peer"] == "smelt-pipeline" and "pipeline_over_driver" in r}
    if ratios:
        out["pipeline_over_driver"] = ratios
        out["pipeline_over_driver_max"] = max(ratios.values())
        out["pipeline_within_budget"] = out["pipeline_over_driver_max"] <= PIPELINE_BUDGET
    goal = _at(rows, "smelt-pipeline", GOAL_NODES)
    if goal:
        out["pipeline_fuse_100k_seconds"] = goal["seconds"]
        out["pipeline_fuse_100k_within_1s"] = goal["seconds"] < GOAL_S
    return out


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    if r.get("seconds"):
        return f"{r['seconds']:.3f} s ({r['us_per_node']:.1f} us/node)"
    return f">{r.get('limit', '?')} s ({r['status']})"


def table(rows: list[dict[str, Any]], peers: list[str]) -> list[str]:
    """One row per size: each system's best time, and Pipeline("fuse") over the driver."""
    sizes = sorted({r["nodes"] for r in rows})
    ratio = "smelt-pipeline" in peers
    head = ["nodes"] + peers + (["Pipeline / driver (CPU), report read"] if ratio else [])
    lines = []
    for n in sizes:
        cells = [f"{n:,}"] + [_cell(next((r for r in rows if r["peer"] == p and r["nodes"] == n),
                                         None)) for p in peers]
        if ratio:
            r = next((r for r in rows if r["peer"] == "smelt-pipeline" and r["nodes"] == n
                      and "pipeline_over_driver" in r), None)
            cells.append("-" if r is None else f"{r['pipeline_over_driver']:.2f}x, "
                         f"{r['report_seconds']:.3f} s")
        lines.append(cells)
    return markdown_table(head, lines)


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Rewrite scale: relu(add(matmul(x, w), b)) chains fused", "",
             machine_line(report["machine"]), ""]
    lines += table(report["results"], report["config"]["peers"])
    lines.append("")
    for k, v in report["summary"].items():
        lines.append(f"- {k}: {v:.3g}" if isinstance(v, float) else f"- {k}: {v}")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], peers: list[str]) -> Any:
    ratio = [r for r in rows if r["peer"] == "smelt-pipeline" and "pipeline_over_driver" in r]
    fig, axes = figure("Rewriting relu(add(matmul(x, w), b)) chains",
                       panels=2 if ratio else 1)
    series = {}
    for p in peers:
        done = sorted((r["nodes"], r["seconds"]) for r in rows if r["peer"] == p
                      and r.get("seconds"))
        if done:
            series[p] = ([n for n, _ in done], [s for _, s in done])
    line_chart(axes[0], series, "graph nodes", "rewrite seconds (best run)", logx=True,
               logy=True)
    if ratio:
        ratio.sort(key=lambda r: r["nodes"])
        line_chart(axes[1], {"Pipeline(\"fuse\") / driver": (
            [r["nodes"] for r in ratio], [r["pipeline_over_driver"] for r in ratio])},
            "graph nodes", "CPU time ratio (median of pairs)", logx=True,
            reference={f"budget {PIPELINE_BUDGET}x": PIPELINE_BUDGET, "driver": 1.0})
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                    help="comma-separated graph sizes in nodes")
    ap.add_argument("--limit", type=float, default=60.0,
                    help="seconds a rewrite may take before that system stops (default 60)")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"any of {', '.join(PEERS)}")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many short runs")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--nodes", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.nodes, args.repeats)
        return 0
    load_at_start = os.getloadavg()[0]
    sizes = sorted(int(s) for s in args.sizes.split(","))
    peers = [ALIASES.get(p.strip(), p.strip()) for p in args.peers.split(",")]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        ap.error(f"unknown peers {unknown}; choose from {', '.join(PEERS)}")
    threads = set_threads(1)  # the rewriters are single-threaded Python (workers set it too)
    rows: list[dict[str, Any]] = []
    for peer in peers:
        for nodes in sizes:
            row = measure(peer, nodes, args.limit, args.repeats)
            rows.append(row)
            shown = f"{row['seconds']:.3f} s" if row.get("seconds") else row["status"]
            if "pipeline_over_driver" in row:
                shown += f" ({row['pipeline_over_driver']:.2f}x the driver)"
            print(f"{peer:>14} {row['nodes']:>9,} nodes: {shown}", flush=True)
            if not row.get("seconds"):
                break
    report = {"config": {"sizes": sizes, "limit_s": args.limit, "repeats": args.repeats,
                         "width": WIDTH, "peers": peers, "pipeline_budget": PIPELINE_BUDGET,
                         "goal": {"nodes": GOAL_NODES, "seconds": GOAL_S}},
              "machine": machine_facts(threads, load_at_start, ("smelt", "torch", "tvm",
                                                                "numpy")),
              "results": rows, "summary": summarize(rows)}
    print()
    print(write_report(Path(args.out), report, markdown(report), plot(rows, peers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
