"""How rewriting scales: chains of relu(add(matmul(x, w), b)) blocks fused into one op each.

The same chain is built in three systems and rewritten by each system's own rewriter, in the
same run:

- smelt:      the driver with one rule, relu(add(matmul(x, w), b)) -> fused_matmul{relu}
              (`smelt-fuse`: the shipped `fuse` pass, five rules, two steps per block);
- torch.fx:   `torch.fx.subgraph_rewriter.replace_pattern` with the same pattern and a
              replacement calling one wrapped fused function;
- TVM Relax:  `tvm.relax.dpl.rewrite_call` with is_op("relax.nn.relu")(is_op("relax.add")(
              is_op("relax.matmul")(x, w), b)), replaced by one call_dps_packed.

Sizes count graph nodes as smelt and torch.fx do: one input plus five per block (weight, bias,
matmul, add, relu). Each (system, size) runs in a fresh subprocess; only the rewrite call is
timed (building the graph is not), best of up to `--repeats` runs while a run is short. A
system stops at the first size whose rewrite takes longer than `--limit` seconds (the run is
killed there). Results go to benchmarks/results/rewrite_scale.json and a table.

    .venv/bin/python benchmarks/rewrite_scale.py                       # everything (~10 min)
    .venv/bin/python benchmarks/rewrite_scale.py --sizes 1000,10000 --limit 20 --peers smelt,fx
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SIZES = (1_000, 3_000, 10_000, 15_000, 30_000, 100_000, 300_000, 1_000_000)
PEERS = ("smelt", "smelt-fuse", "torch.fx", "tvm-dpl")
ALIASES = {"fx": "torch.fx", "tvm": "tvm-dpl"}
WIDTH = 8
RESULTS = Path(__file__).resolve().parent / "results" / "rewrite_scale.json"
BUILD_LIMIT_S = 900.0
REPEAT_UNDER_S = 2.0


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


PEER_FNS = {
    "smelt": (build_smelt, rewrite_smelt, check_smelt),
    "smelt-fuse": (build_smelt, rewrite_smelt, check_smelt),
    "torch.fx": (build_fx, rewrite_fx, check_fx),
    "tvm-dpl": (build_tvm, rewrite_tvm, check_tvm),
}
FX_FUSED: Any = None


# -- one measurement, in a subprocess -----------------------------------------------------------
def worker(peer: str, nodes: int, repeats: int) -> None:
    global FX_FUSED
    if peer == "torch.fx":
        FX_FUSED = _fx_fused()
    build, run, check = PEER_FNS[peer]
    blocks = blocks_for(nodes)
    for _ in range(repeats):
        gc.disable()
        t0 = time.perf_counter()
        obj = build(blocks)
        built = time.perf_counter() - t0
        gc.enable()
        gc.collect()
        print(json.dumps({"event": "built", "build_seconds": built}), flush=True)
        t0 = time.perf_counter()
        out = run(obj, peer)
        seconds = time.perf_counter() - t0
        ok = check(out, blocks)
        print(json.dumps({"event": "done", "seconds": seconds, "ok": ok}), flush=True)
        del obj, out
        gc.collect()
        if seconds > REPEAT_UNDER_S:
            break


def measure(peer: str, nodes: int, limit: float, repeats: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", peer, "--nodes", str(nodes),
           "--repeats", str(repeats)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    row: dict[str, Any] = {"peer": peer, "nodes": 5 * blocks_for(nodes) + 1,
                           "blocks": blocks_for(nodes), "runs": []}
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
            row["status"] = "ok" if proc.returncode == 0 and row["runs"] else "error"
            if row["status"] == "error":
                row["error"] = proc.stderr.read()[-2000:]
            break
        event = json.loads(line)
        if event["event"] == "built":
            row["build_seconds"] = event["build_seconds"]
            deadline = limit
        else:
            row["runs"].append(event["seconds"])
            row["correct"] = row.get("correct", True) and event["ok"]
            deadline = BUILD_LIMIT_S
    if row["runs"]:
        row["seconds"] = min(row["runs"])
        row["us_per_node"] = row["seconds"] / row["nodes"] * 1e6
    if row["status"] == "timeout":
        row["seconds"] = None
        row["limit"] = limit
    return row


# -- the whole benchmark ------------------------------------------------------------------------
def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def at(peer: str, nodes: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["peer"] == peer and r["nodes"] == 5 * blocks_for(
            nodes) + 1 and r.get("seconds")), None)

    out: dict[str, Any] = {"largest_within_limit": {}}
    for peer in sorted({r["peer"] for r in rows}):
        done = [r["nodes"] for r in rows if r["peer"] == peer and r.get("seconds")]
        out["largest_within_limit"][peer] = max(done) if done else None
    small, big = at("smelt", 10_000), max(
        (r for r in rows if r["peer"] == "smelt" and r.get("seconds")),
        key=lambda r: r["nodes"], default=None)
    if small and big:
        out["smelt_us_per_node_10k"] = small["us_per_node"]
        out["smelt_us_per_node_largest"] = big["us_per_node"]
        out["smelt_largest_nodes"] = big["nodes"]
        out["smelt_linearity_ratio"] = big["us_per_node"] / small["us_per_node"]
    for peer in ("torch.fx", "tvm-dpl"):
        for nodes in (15_000, 30_000):
            a, s = at(peer, nodes), at("smelt", nodes)
            if a and s:
                out[f"speedup_vs_{peer}_at_{nodes // 1000}k"] = a["seconds"] / s["seconds"]
    return out


def table(rows: list[dict[str, Any]], peers: list[str]) -> str:
    sizes = sorted({r["nodes"] for r in rows})
    head = ["nodes"] + peers
    lines = [head]
    for n in sizes:
        line = [f"{n:,}"]
        for p in peers:
            r = next((r for r in rows if r["peer"] == p and r["nodes"] == n), None)
            if r is None:
                line.append("-")
            elif r.get("seconds"):
                line.append(f"{r['seconds']:.3f} s ({r['us_per_node']:.1f} us/node)")
            else:
                line.append(f">{r.get('limit', '?')} s ({r['status']})")
        lines.append(line)
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True))
                     for row in lines)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "machine": platform.machine(),
           "cpus": str(os.cpu_count()), "numpy": np.__version__}
    for mod in ("torch", "tvm"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001 - report, do not fail
            out[mod] = f"unavailable ({type(e).__name__})"
    return out


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
    sizes = sorted(int(s) for s in args.sizes.split(","))
    peers = [ALIASES.get(p.strip(), p.strip()) for p in args.peers.split(",")]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        ap.error(f"unknown peers {unknown}; choose from {', '.join(PEERS)}")
    rows: list[dict[str, Any]] = []
    for peer in peers:
        for nodes in sizes:
            row = measure(peer, nodes, args.limit, args.repeats)
            rows.append(row)
            shown = f"{row['seconds']:.3f} s" if row.get("seconds") else row["status"]
            print(f"{peer:>10} {row['nodes']:>9,} nodes: {shown}", flush=True)
            if not row.get("seconds"):
                break
    report = {"config": {"sizes": sizes, "limit_s": args.limit, "repeats": args.repeats,
                         "width": WIDTH, "peers": peers},
              "versions": versions(), "results": rows, "summary": summarize(rows)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(rows, peers))
    print()
    for k, v in report["summary"].items():
        print(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
