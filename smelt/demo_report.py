"""The demo's report: one document written as Markdown and as HTML, three PNG plots, a JSON of
the figures, and the short summary the demo prints.

The document is a list of blocks (heading, paragraph, table, image) rendered twice, so the two
files say the same thing. Plots are matplotlib `Figure`s (no pyplot state):
- accuracy_size_latency.png: test accuracy against weight bytes for each step, and latency at
  batch 1 of every runtime (smelt's steps, torch eager, onnxruntime);
- layer_error.png: the W8A8 graph's relative error at each layer against the float graph it
  was quantized from (errors accumulate along the network);
- memory_plan.png: the microcontroller's activation arena over the call sequence, one
  rectangle per tensor (its bytes over the steps it lives), beside the planner's lower bound.
"""

from __future__ import annotations

import html
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Block = tuple  # ("h1" | "h2" | "p", text) | ("table", head, rows) | ("img", file, caption)


@dataclass(frozen=True)
class Report:
    """Where the report went, and the summary to print."""

    markdown: Path
    html: Path
    plots: tuple[Path, ...]
    summary: str


def _us(ms: float | None) -> str:
    return "-" if ms is None else f"{ms * 1e3:.0f}"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for pkg in ("torch", "apache-tvm", "onnxruntime"):
        try:
            found.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            found.append(f"{pkg} not installed")
    return ", ".join(found)


def _peer(step: Any, latency: dict[str, float]) -> float | None:
    """onnxruntime's time for the step's precision: its W8A8 for an integer step."""
    return latency.get("onnxruntime W8A8" if step.bit_exact is not None
                       else "onnxruntime float32")


def _ratio(peer: float | None, ms: float | None) -> str:
    return f"{peer / ms:.2f}x" if peer and ms else "-"


def _step_rows(steps: list, latency: dict[str, float]) -> list[list[str]]:
    eager = latency.get("torch eager float32")
    rows = []
    for s in steps:
        ms = latency.get(f"smelt {s.name}")
        check = ("bit-exact" if s.bit_exact else "DIFFERS") if s.bit_exact is not None \
            else f"{s.compiled_error:.1e}"
        rows.append([s.name, s.parent or "traced", f"`{s.pipeline}`", s.contract,
                     "-" if s.measured is None else f"{s.measured:.2g}", f"{s.accuracy:.2%}",
                     f"{s.weight_bytes / 1024:.1f}", f"{s.macs:,}", _us(ms), _ratio(eager, ms),
                     _ratio(_peer(s, latency), ms), check])
    return rows


def _mcu_rows(facts: dict[str, Any]) -> list[list[str]]:
    r = facts["mcu"]
    ins = r.get("instructions")
    return [
        ["board", f"{r['board']} ({r['core']}), under qemu"],
        ["flash", f"{r['flash_bytes']:,} B (weights {r['weight_bytes']:,} B)"],
        ["SRAM", f"{r['sram_bytes']:,} B: arena {r['arena_bytes']:,} B (lower bound "
                 f"{r['arena_lower_bound']:,} B, one buffer per tensor {r['arena_naive']:,} B),"
                 f" workspace {r['workspace_bytes']:,} B"],
        ["stack", f"{r['stack_bytes']} B ({r['stack_kind']})"],
        ["instructions / inference", f"{ins:,}" if ins else "not measured"],
        ["outputs", f"{'bit-exact' if facts['mcu_bit_exact'] else 'DIFFER'} against the "
                    f"interpreter on {facts['mcu_images']} test images; accuracy "
                    f"{facts['mcu_accuracy']:.0%} on them"],
    ]


def document(steps: list, layer_errors: Any, facts: dict[str, Any], ok: bool) -> list[Block]:
    latency = facts["latency_ms"]
    worst = sorted(layer_errors, key=lambda e: -e.relative)[:5]
    return [
        ("h1", "smelt demo: a digits CNN from torch to a Cortex-M4"),
        ("p", f"{'PASS' if ok else 'FAIL'}. A MobileNetV2-style CNN trained here for "
              f"{facts['epochs']} epochs ({facts['train_seconds']:.1f} s) on "
              f"{facts['train_images']} of scikit-learn's digits; torch accuracy "
              f"{facts['torch_accuracy']:.2%} on {facts['test_images']} test images. The whole "
              f"demo took {facts['seconds']:.0f} s on {platform.machine()} ({_versions()})."),
        ("h2", "Steps"),
        ("p", "Accuracy is the reference interpreter's on every test image. Each step's "
              "pipeline ran in verify-each mode: every pass is checked against its contract "
              "as it runs, on seeded random inputs ('verify-each error': the largest output "
              "difference seen there; an exact pass must stay within float rounding, a "
              "bounded one within its stated bound, inf where the pass states none; W8A8's "
              "bound is the worst case compounded layer after layer, so it is loose). Latency "
              "is the compiled CPU module at batch 1, one thread, median of interleaved "
              "repeats, and its speed against torch eager and against onnxruntime at the "
              "same precision (>1: smelt is faster); 'compiled check' is the compiled module "
              "against the interpreter on every test image (relative to the output scale; "
              "integer graphs bit for bit)."),
        ("table", ["step", "from", "pipeline", "contract", "verify-each error", "accuracy",
                   "weights KiB", "MACs", "smelt us", "vs torch eager", "vs onnxruntime",
                   "compiled check"], _step_rows(steps, latency)),
        ("img", "accuracy_size_latency.png",
         "Left: test accuracy against weight bytes per step. Right: latency at batch 1 "
         "(one thread) of every runtime."),
        ("h2", "Against torch and onnxruntime"),
        ("p", "onnxruntime runs smelt's own ONNX export (`smelt.export_onnx`) of the float "
              "graph and of the W8A8 Q/DQ graph (QuantizeLinear/DequantizeLinear), files "
              "float32.onnx and w8a8_qdq.onnx beside this report: open them in Netron."),
        ("table", ["runtime", "us per image"],
         [[k, _us(v)] for k, v in sorted(latency.items(), key=lambda kv: kv[1])]),
        ("h2", "W8A8 error per layer"),
        ("p", f"{len(layer_errors)} layers aligned with the float graph ({layer_errors.unmatched}"
              " unmatched); the largest relative errors: " +
              "; ".join(f"layer {e.index} ({e.op} {list(e.shape)}) {e.relative:.2%}"
                        for e in worst) + "."),
        ("img", "layer_error.png",
         "Relative error of each layer's output in the W8A8 graph against the float graph."),
        ("h2", "On a Cortex-M4"),
        ("table", ["", ""], _mcu_rows(facts)),
        ("img", "memory_plan.png",
         "The activation arena over the call sequence: each tensor is a rectangle over the "
         "steps it lives, at its offset."),
    ]


def markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b[0] in ("h1", "h2"):
            out += [f"{'#' if b[0] == 'h1' else '##'} {b[1]}", ""]
        elif b[0] == "p":
            out += [b[1], ""]
        elif b[0] == "table":
            out += ["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
            out += ["| " + " | ".join(r) + " |" for r in b[2]] + [""]
        else:
            out += [f"![{b[2]}]({b[1]})", "", f"*{b[2]}*", ""]
    return "\n".join(out)


def _inline(text: str) -> str:
    """Markdown's `code` spans as <code>, everything else escaped."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


STYLE = ("body{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}"
         "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;"
         "padding:.3rem .6rem;text-align:left}img{max-width:100%}figcaption{color:#555}")


def to_html(blocks: list[Block]) -> str:
    out = ["<!doctype html>", "<html><head><meta charset='utf-8'>",
           f"<title>{html.escape(blocks[0][1])}</title><style>{STYLE}</style></head><body>"]
    for b in blocks:
        if b[0] in ("h1", "h2", "p"):
            out.append(f"<{b[0]}>{_inline(b[1])}</{b[0]}>")
        elif b[0] == "table":
            out.append("<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in b[1]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                    for r in b[2]]
            out.append("</table>")
        else:
            out.append(f"<figure><img src='{html.escape(b[1])}' alt='{html.escape(b[2])}'>"
                       f"<figcaption>{_inline(b[2])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def summary(steps: list, facts: dict[str, Any], ok: bool, where: Path) -> str:
    latency = facts["latency_ms"]
    lines = [f"{'step':<10} {'accuracy':>9} {'weights':>11} {'smelt us':>9}  contract"]
    for s in steps:
        lines.append(f"{s.name:<10} {s.accuracy:>9.2%} {s.weight_bytes / 1024:>7.1f} KiB "
                     f"{_us(latency.get('smelt ' + s.name)):>9}  {s.contract}")
    peers = ", ".join(f"{k} {_us(v)} us" for k, v in latency.items() if not k.startswith("smelt"))
    r = facts["mcu"]
    lines += [f"peers (batch 1, one thread): {peers}",
              f"Cortex-M4: flash {r['flash_bytes'] / 1024:.1f} KiB, SRAM "
              f"{r['sram_bytes'] / 1024:.1f} KiB (arena {r['arena_bytes']:,} B, lower bound "
              f"{r['arena_lower_bound']:,} B), "
              f"{r['instructions'] or 0:,} instructions per inference, "
              f"{'bit-exact' if facts['mcu_bit_exact'] else 'NOT bit-exact'}",
              f"report: {where / 'report.html'} (and .md, 3 PNGs); {facts['seconds']:.0f} s",
              "PASS: every step verified, compiled and matched" if ok else
              "FAIL: a step did not match (see the report)"]
    return "\n".join(lines)


# -- plots --------------------------------------------------------------------------------------
def _figure(panels: int = 1, size: tuple[float, float] = (6.4, 4.0)) -> tuple[Any, list]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * panels, size[1]), layout="constrained")
    return fig, [fig.add_subplot(1, panels, i + 1) for i in range(panels)]


def plot_accuracy_size_latency(steps: list, latency: dict[str, float]) -> Any:
    fig, (acc, lat) = _figure(2)
    where = {s.name: (s.weight_bytes / 1024, s.accuracy * 100) for s in steps}
    for s in steps:
        if s.parent in where:
            acc.annotate("", where[s.name], where[s.parent],
                         arrowprops={"arrowstyle": "->", "color": "#888888"})
    acc.scatter([x for x, _ in where.values()], [y for _, y in where.values()], s=40,
                color="#4a6fa5", zorder=3)
    for s in steps:
        ms = latency.get(f"smelt {s.name}")
        acc.annotate(f"{s.name} ({_us(ms)} us)", where[s.name], textcoords="offset points",
                     xytext=(6, 4))
    acc.set(xlabel="weights (KiB)", ylabel="test accuracy (%)",
            title="accuracy against model size (arrows: step to step)")
    acc.grid(alpha=0.3)
    names = sorted(latency, key=latency.get)
    colors = ["#4a6fa5" if n.startswith("smelt") else "#d9480f" for n in names]
    lat.barh(names, [latency[n] * 1e3 for n in names], color=colors)
    lat.set_xscale("log")
    lat.set(xlabel="us per image (log scale; batch 1, one thread)",
            title="latency: smelt blue, peers orange")
    lat.invert_yaxis()
    return fig


def plot_layer_error(layer_errors: Any) -> Any:
    fig, (ax,) = _figure(1, (9.0, 4.0))
    errs = list(layer_errors)
    colors = {"conv": "#4a6fa5", "linear": "#d9480f", "matmul": "#3b7d3e"}
    from smelt.rewrite.layer_errors import LAYER_OPS

    ax.bar(range(len(errs)), [e.relative * 100 for e in errs],
           color=[colors[LAYER_OPS[e.op]] for e in errs])
    ax.set_xticks(range(len(errs)), [f"{e.index} {e.op}" for e in errs], rotation=70,
                  fontsize=7)
    ax.set(ylabel="relative error (%)", title="W8A8 against float, each layer's output "
           "(convolutions blue, linears orange)")
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_memory_plan(plan: Any) -> Any:
    import matplotlib
    from matplotlib.patches import Rectangle

    fig, (ax,) = _figure(1, (9.0, 4.0))
    cmap = matplotlib.colormaps["tab20"]
    last = 0
    for i, b in enumerate(plan.buffers):
        off = plan.offsets[b.name]
        ax.add_patch(Rectangle((b.start - 0.45, off / 1024), b.end - b.start + 0.9,
                               b.size / 1024, facecolor=cmap(i % 20), edgecolor="#333",
                               linewidth=0.5))
        last = max(last, b.end)
    ax.axhline(plan.arena / 1024, color="#d9480f", linestyle="--",
               label=f"arena {plan.arena:,} B")
    ax.axhline(plan.lower_bound / 1024, color="#3b7d3e", linestyle=":",
               label=f"lower bound {plan.lower_bound:,} B")
    ax.set(xlim=(-1, last + 1), ylim=(0, max(plan.arena, 1) / 1024 * 1.15),
           xlabel="call step", ylabel="arena offset (KiB)",
           title=f"activation memory plan ({len(plan.buffers)} tensors, "
                 f"one buffer each would need {plan.naive:,} B)")
    ax.legend(loc="upper right")
    return fig


def write_report(out: Path, steps: list, layer_errors: Any, plan: Any, facts: dict[str, Any],
                 ok: bool) -> Report:
    """Write report.md, report.html, the PNGs and demo.json under `out`."""
    plots = {
        "accuracy_size_latency.png": plot_accuracy_size_latency(steps, facts["latency_ms"]),
        "layer_error.png": plot_layer_error(layer_errors),
        "memory_plan.png": plot_memory_plan(plan),
    }
    for name, fig in plots.items():
        fig.savefig(out / name, dpi=110)
    blocks = document(steps, layer_errors, facts, ok)
    (out / "report.md").write_text(markdown(blocks) + "\n")
    (out / "report.html").write_text(to_html(blocks) + "\n")
    record = {"ok": ok, **{k: v for k, v in facts.items() if k != "mcu"},
              "mcu": {k: v for k, v in facts["mcu"].items() if k != "project"},
              "steps": [{"name": s.name, "parent": s.parent, "pipeline": s.pipeline,
                         "contract": s.contract, "verify_each_error": s.measured,
                         "accuracy": s.accuracy, "weight_bytes": s.weight_bytes,
                         "macs": s.macs, "compiled_error": s.compiled_error,
                         "bit_exact": s.bit_exact} for s in steps],
              "layer_errors": [{"index": e.index, "op": e.op, "shape": list(e.shape),
                                "relative": e.relative} for e in layer_errors]}
    (out / "demo.json").write_text(json.dumps(record, indent=1) + "\n")
    return Report(out / "report.md", out / "report.html",
                  tuple(out / n for n in plots), summary(steps, facts, ok, out))
