"""Microcontroller deployment: flash, SRAM and the static memory plan, per model and board.

For each model of benchmarks/mcu_models.py (an MCUNet-class int8 CNN, the zoo's residual_cnn
and mobilenet_v2 in int8, residual_cnn in fp32) and each board (Cortex-M4 `mps2-an386`,
Cortex-M7 `mps2-an500`, both under qemu):
- `smelt.compile(graph, "c", board=...)`: flash (text + data), SRAM = arena + workspace +
  stack, the memory planner's arena against its lower bound (the most bytes live at one call
  step) and a naive plan (every tensor its own buffer), instructions where qemu counts them;
- the C program's output against the reference interpreter (`smelt.interpret`): int8 graphs
  must be bit-exact, fp32 ones are reported as a relative error;
- independently of the C backend, the planner run on the smelt graph's own schedule
  (`graph_buffers`: one step per node in topological order, a quantized conv or linear fused
  with the requantize that is its only user, graph inputs and outputs in the caller's buffers
  as the C backend keeps them), a cross-check of the arena figures.

The goal (issue 9): arena <= 1.05x the lower bound; the MCUNet-class model within 256 KB of
SRAM and 1 MB of flash. For scale: TinyEngine's peak SRAM on mcunet-vww0 is 59 KB, TFLite
Micro's 163 KB (Lin et al., MCUNet, 2020).

    .venv/bin/python -m benchmarks.mcu            # results/mcu.{json,md,png}
    .venv/bin/python -m benchmarks.mcu --quick    # MCUNet-class model at 32x32, one board

The plot (.png) shows, per model and board, flash and SRAM against their budgets, and the
arena of each plan against its lower bound.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import smelt
from benchmarks.harness import (
    bar_chart,
    failure,
    figure,
    markdown_table,
    relative_error,
    results_path,
    write_report,
)
from benchmarks.mcu_models import McuModel, mcu_models
from smelt.backends.mcu.memory_plan import Buffer, plan_memory

RESULTS = results_path("mcu")
BOARDS = ("mps2-an386", "mps2-an500")
SRAM_BUDGET = 256 * 1024
FLASH_BUDGET = 1024 * 1024
ARENA_GOAL = 1.05  # arena / lower bound

# int32 accumulators that a kernel requantizes in its epilogue: no tensor of their own
ACCUMULATORS = frozenset({"qconv2d", "qlinear", "qmatmul"})
# ops whose output element i depends only on input element i (same order): may run in place
ELEMENTWISE = frozenset({
    "relu", "relu6", "clamp", "leaky_relu", "hardswish", "hardsigmoid", "sigmoid", "tanh",
    "silu", "gelu", "abs", "neg", "exp", "add", "sub", "mul", "div", "maximum", "minimum",
    "qadd", "requantize", "quantize", "dequantize", "cast", "reshape", "flatten", "squeeze",
    "unsqueeze"})


# -- the planner on the smelt graph -------------------------------------------------------------
def graph_buffers(graph: smelt.Graph) -> list[Buffer]:
    """The arena buffers of `graph` run node by node: each tensor from the step that computes
    it to its last reader; an elementwise op may reuse its first operand in place."""
    users = graph.users()
    outputs = set(graph.outputs)
    fused = {n for n in graph.nodes() if n.op in ACCUMULATORS and n not in outputs
             and len(users[n]) == 1 and users[n][0].op == "requantize"}
    steps = [n for n in graph.nodes() if n.op not in ("constant", "input") and n not in fused]
    at = {n: i for i, n in enumerate(steps)}

    def operands(n: smelt.Node) -> list[smelt.Node]:
        out = []
        for x in n.inputs:
            out += operands(x) if x in fused else [x]
        return [x for x in out if x in at]

    ops = {n: operands(n) for n in steps}
    last = {n: i for n, i in at.items()}
    for n in steps:
        for x in ops[n]:
            last[x] = max(last[x], at[n])
    buffers = []
    for n in steps:
        if n in outputs:
            continue  # written straight into the caller's buffer
        first = ops[n][0] if ops[n] else None
        elementwise = n.op in ELEMENTWISE and not any(x in fused for x in n.inputs)
        hint = (first if elementwise and first is not None and first not in outputs
                and last[first] == at[n] else None)
        buffers.append(Buffer(f"{at[n]}:{n.op}", n.tensor_type.nbytes, at[n], last[n],
                              None if hint is None else f"{at[hint]}:{hint.op}"))
    return buffers


def graph_plan(graph: smelt.Graph) -> dict[str, Any]:
    bufs = graph_buffers(graph)
    t0 = time.perf_counter()
    plan = plan_memory(bufs)
    return {"arena": plan.arena, "lower_bound": plan.lower_bound, "naive": plan.naive,
            "arena_vs_bound": plan.arena / plan.lower_bound if plan.lower_bound else 1.0,
            "buffers": len(bufs), "in_place": len(plan.inplace), "strategy": plan.strategy,
            "plan_ms": 1e3 * (time.perf_counter() - t0), "describe": plan.describe(limit=6)}


def tvm_static_plan(graph: smelt.Graph) -> dict[str, Any] | str:
    """TVM's own planner as a yardstick: Relax StaticPlanBlockMemory on the graph lowered
    the way the C backend lowers it (backends/mcu/kernels_c.py); the sum of its storage
    blocks (it shares whole blocks between tensors, it does not pack offsets)."""
    try:
        import tvm
        from tvm import relax

        from smelt.backends.mcu.kernels_c import fused_kernels

        mod = fused_kernels(graph)
        with tvm.transform.PassContext(opt_level=3):
            mod = tvm.transform.Sequential([
                relax.transform.ToNonDataflow(), relax.transform.RemovePurityChecking(),
                relax.transform.CallTIRRewrite(), relax.transform.StaticPlanBlockMemory()])(mod)
    except Exception as e:  # noqa: BLE001
        return failure(e)
    sizes: list[int] = []

    def visit(e: Any) -> None:
        if isinstance(e, relax.Call) and getattr(e.op, "name", "") == \
                "relax.memory.alloc_storage":
            sizes.append(int(e.args[0].values[0]))

    relax.analysis.post_order_visit(mod["main"], visit)
    return {"storage_bytes": sum(sizes), "blocks": len(sizes)}


# -- the C backend ------------------------------------------------------------------------------
REPORT_FIELDS = ("flash_bytes", "sram_bytes", "arena_bytes", "arena_lower_bound", "arena_naive",
                 "workspace_bytes", "stack_bytes", "text", "data", "bss", "instructions")


def bench_board(graph: smelt.Graph, x: np.ndarray, expect: list[np.ndarray], int8: bool,
                board: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        module = smelt.compile(graph, "c", board=board)
        compile_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        got = module(x)
        run_s = time.perf_counter() - t1
    except Exception as e:  # noqa: BLE001
        return {"status": "error", "reason": failure(e)}
    rep = dict(module.report)
    out = {"status": "ok", "compile_s": compile_s, "run_s": run_s,
           **{k: rep.get(k) for k in REPORT_FIELDS}}
    out["sram_total"] = sum(rep.get(k) or 0 for k in ("arena_bytes", "workspace_bytes",
                                                      "stack_bytes"))
    lb = rep.get("arena_lower_bound") or 0
    out["arena_vs_bound"] = rep["arena_bytes"] / lb if lb else 1.0
    out["fits"] = (out["sram_total"] <= SRAM_BUDGET and (rep.get("flash_bytes") or 0)
                   <= FLASH_BUDGET)
    err = relative_error(got, expect)
    out["max_abs_error"], out["rel_error"] = err["max_abs"], err["relative"]
    out["bit_exact"] = all(np.array_equal(np.asarray(g), e) for g, e in
                           zip(got, expect, strict=True))
    if int8 and not out["bit_exact"]:
        out["status"] = "wrong"
    return out


def bench_model(model: McuModel, boards: tuple[str, ...], calibration: int,
                tvm_plan: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    graph = model.graph(calibration)
    x = model.inputs()[0]
    expect = [np.asarray(y) for y in smelt.interpret(graph, x)]
    weights = sum(n.value.nbytes for n in graph.constants() if n.value is not None)
    rec: dict[str, Any] = {
        "model": model.name, "description": model.description, "pipeline": model.pipeline,
        "int8": model.int8, "input_shape": list(x.shape), "params": model.params(),
        "macs": graph.cost().macs, "weight_bytes": weights, "prepare_s": 0.0,
        "graph_plan": graph_plan(graph)}
    rec["prepare_s"] = time.perf_counter() - t0
    if tvm_plan:
        rec["tvm_static_plan"] = tvm_static_plan(graph)
    rec["boards"] = {b: bench_board(graph, x, expect, model.int8, b) for b in boards}
    return rec


# -- report -------------------------------------------------------------------------------------
def _kb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1024:.1f}"


def _plan_row(r: dict[str, Any]) -> list[str]:
    p = r["graph_plan"]
    return [r["model"], f"{r['params']:,}", f"{r['macs'] / 1e6:.1f}M", _kb(r["weight_bytes"]),
            _kb(p["arena"]), _kb(p["lower_bound"]), _kb(p["naive"]),
            f"{p['arena_vs_bound']:.3f}", f"{p['buffers']} ({p['in_place']})"]


def _board_row(model: str, board: str, b: dict[str, Any]) -> list[str]:
    if b["status"] == "error":
        return [model, board, *["n/a"] * 11]
    ins = b["instructions"]
    return [model, board, _kb(b["flash_bytes"]), _kb(b["sram_total"]), _kb(b["arena_bytes"]),
            _kb(b["arena_lower_bound"]), _kb(b["arena_naive"]), f"{b['arena_vs_bound']:.3f}",
            _kb(b["workspace_bytes"]), _kb(b["stack_bytes"]),
            "n/a" if ins is None else f"{ins:,}",
            "bit-exact" if b["bit_exact"] else f"rel. {b['rel_error']:.2g}",
            "yes" if b["fits"] else "no"]


def _board_notes(model: str, board: str, b: dict[str, Any]) -> list[str]:
    if b["status"] == "error":
        return [f"- {model} on {board}: {b['reason']}"]
    if b["status"] == "wrong":
        return [f"- {model} on {board}: WRONG, an int8 graph must be bit-exact (max abs error "
                f"{b['max_abs_error']:.3g})"]
    return []


def table(report: dict[str, Any]) -> str:
    cfg = report["config"]
    boards = [(r["model"], board, b) for r in report["results"] for board, b in
              r["boards"].items()]
    lines = [f"# Microcontroller deployment ({cfg['preset']})", "",
             "Sizes in KiB (1024 bytes). SRAM = arena + workspace + stack. Goal: arena <= "
             f"{ARENA_GOAL}x lower bound; MCUNet-class model within {SRAM_BUDGET // 1024} KiB "
             f"SRAM and {FLASH_BUDGET // 1024} KiB flash.", "",
             "## Memory plan on the smelt graph (independent of the C backend)", "",
             *markdown_table(["model", "params", "MACs", "weights", "arena", "lower bound",
                              "naive", "arena / bound", "buffers (in place)"],
                             map(_plan_row, report["results"])),
             "", "## C backend on qemu", "",
             *markdown_table(["model", "board", "flash", "SRAM", "arena", "lower bound", "naive",
                              "arena / bound", "workspace", "stack", "instructions",
                              "vs interpreter", "fits"], (_board_row(*b) for b in boards))]
    notes = [n for b in boards for n in _board_notes(*b)]
    tvm_rows = [(r["model"], r["tvm_static_plan"]) for r in report["results"]
                if "tvm_static_plan" in r]
    if tvm_rows:
        lines += ["", "## TVM Relax StaticPlanBlockMemory (storage blocks, summed)", ""]
        for name, t in tvm_rows:
            lines.append(f"- {name}: " + (f"{_kb(t['storage_bytes'])} KiB in {t['blocks']} "
                                          "blocks" if isinstance(t, dict) else t))
    return "\n".join(lines + ([""] + notes if notes else []))


def plot(report: dict[str, Any]) -> Any:
    """Flash and SRAM per model and board against the budgets; the arena of the graph's own
    plan and of each board's C program against the lower bound (1.0) and the goal."""
    sizes, arena = {}, {}
    for r in report["results"]:
        arena[r["model"]] = {"graph plan": r["graph_plan"]["arena_vs_bound"]}
        for board, b in r["boards"].items():
            ok = b["status"] != "error"
            sizes[f"{r['model']} {board}"] = {
                "flash": b["flash_bytes"] / 1024 if ok else None,
                "SRAM": b["sram_total"] / 1024 if ok else None}
            arena[r["model"]][f"C on {board}"] = b["arena_vs_bound"] if ok else None
    fig, (ax_size, ax_arena) = figure(
        f"Microcontroller deployment ({report['config']['preset']})", 2)
    bar_chart(ax_size, sizes, "KiB (log)", log=True, fmt="{:.0f}",
              reference={f"SRAM budget {SRAM_BUDGET // 1024} KiB": SRAM_BUDGET / 1024,
                         f"flash budget {FLASH_BUDGET // 1024} KiB": FLASH_BUDGET / 1024})
    bar_chart(ax_arena, arena, "arena / lower bound", fmt="{:.3f}",
              reference={"lower bound": 1.0, f"goal {ARENA_GOAL}": ARENA_GOAL})
    ax_arena.set_ylim(0.9, max(ARENA_GOAL, *(v for a in arena.values() for v in a.values()
                                             if v is not None)) + 0.05)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="MCUNet-class model at 32x32 only, one board")
    ap.add_argument("--models", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--boards", default="", help=f"comma-separated (default: {','.join(BOARDS)})")
    ap.add_argument("--size", type=int, default=None,
                    help="input height and width of the MCUNet-class model (default 64)")
    ap.add_argument("--calibration", type=int, default=8, help="calibration images")
    ap.add_argument("--no-tvm-plan", action="store_true",
                    help="skip TVM's StaticPlanBlockMemory yardstick")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    preset = "quick" if args.quick else "full"
    models = mcu_models(preset, args.size)
    names = [m for m in args.models.split(",") if m] or (
        ["mcunet_vww_int8"] if args.quick else list(models))
    if not set(names) <= set(models):
        ap.error(f"unknown models {sorted(set(names) - set(models))}; choose from "
                 f"{sorted(models)}")
    boards = tuple(b for b in args.boards.split(",") if b) or (
        BOARDS[:1] if args.quick else BOARDS)
    results = []
    for name in names:
        t0 = time.perf_counter()
        results.append(bench_model(models[name], boards, 2 if args.quick else args.calibration,
                                   tvm_plan=not args.no_tvm_plan and not args.quick))
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    report = {"config": {"preset": preset, "size": models["mcunet_vww_int8"].size,
                         "boards": list(boards), "models": names,
                         "sram_budget": SRAM_BUDGET, "flash_budget": FLASH_BUDGET,
                         "arena_goal": ARENA_GOAL},
              "results": results}
    print(write_report(Path(args.out), report, table(report), plot(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
