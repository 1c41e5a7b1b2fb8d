"""CPU latency at batch 1, float32: torch eager, smelt compiled, onnxruntime, in one process.

For each model (benchmarks/cpu_models.py: MobileNetV2, ResNet-18, a BERT encoder, a Llama
block), the three runtimes are prepared, warmed up, then timed round-robin: every repeat visits
each runtime once, starting from a different one each repeat, so a slow patch of the machine
hits all of them alike. A visit makes one untimed call (the runtime's own thread pool awake),
times one call, then waits until the process is quiet: thread pools keep spinning after a
call (TVM's for ~0.3 s, onnxruntime's ~0.1 s), and a runtime timed meanwhile would share its
cores with them. The median of the repeats is reported, with the ratio
torch_time / runtime_time (>1: faster than torch eager) and its geometric mean over models.

- torch: `model(*inputs)` under `torch.inference_mode()`, `torch.set_num_threads(threads)`.
- smelt: `smelt.trace`, the pipeline (default "canonicalize,fuse"), `smelt.compile(g, "cpu")`
  (scheduled); timed through the public call on numpy inputs (conversion included).
- onnxruntime: `torch.onnx.export` (the dynamo exporter, the TorchScript one if that fails),
  CPU execution provider, intra-op threads = `threads`, inter-op 1, all graph optimizations.
  If onnxruntime or an exporter is missing or fails, the reason is recorded, not raised.

All three use the same thread count: `--threads`, else os.cpu_count(). smelt compiles for that
many cores and sizes TVM's thread pool to it (backends/threads.py: left alone, TVM would take
half the hardware threads on x86); the count each runtime reports is recorded.

Correctness is checked in the same run: the largest absolute error of smelt against torch
and against smelt's interpreter (on the compiled graph), each divided by the output's scale
(its largest magnitude). Where smelt's time goes: `smelt.backends.profile.profile_kernels`,
the top kernels with their schedule rule and share.

The runtimes are set up by benchmarks/runtimes.py and timed by benchmarks/harness.py's
`measure`. Results: benchmarks/results/cpu_latency.json, a table in cpu_latency.md and the
speed ratios per model in cpu_latency.png beside it.

    .venv/bin/python -m benchmarks.cpu_latency                      # all models, 30 repeats
    .venv/bin/python -m benchmarks.cpu_latency --models resnet18,bert --repeats 50
    .venv/bin/python -m benchmarks.cpu_latency --quick --models llama_block --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.cpu_models import MODEL_NAMES, BenchModel, bench_models
from benchmarks.harness import (
    bar_chart,
    figure,
    geomean,
    machine_facts,
    markdown_table,
    relative_error,
    results_path,
    set_threads,
    write_report,
)
from benchmarks.runtimes import (
    Runtime,
    prepare_onnxruntime,
    prepare_smelt,
    prepare_torch,
    quiet_exporters,
    runtime_record,
    speedups,
    time_runtimes,
)

RESULTS = results_path("cpu_latency")
RUNTIMES = ("torch", "smelt", "smelt_passes", "onnxruntime")
DEFAULT_PIPELINE = "canonicalize,fuse"
# the exact passes of issue 5, timed beside the plain pipeline in the same run
PASSES_PIPELINE = "fold-bn,equalize,canonicalize,fuse"


@dataclass(frozen=True)
class Options:
    models: tuple[str, ...]
    preset: str
    repeats: int
    warmup: int
    threads: int
    pipeline: str
    passes_pipeline: str
    profile_runs: int
    top: int
    out: Path


# -- timing, errors, profile --------------------------------------------------------------------
def correctness(rts: dict[str, Runtime]) -> dict[str, Any]:
    import smelt

    want, sm, ort = rts["torch"].outputs, rts["smelt"], rts["onnxruntime"]
    out: dict[str, Any] = {}
    if sm.call is not None:
        reference = smelt.interpret(sm.info["graph"], *sm.info["arrays"])
        out["smelt_vs_torch"] = relative_error(sm.outputs, want)
        out["smelt_vs_interpreter"] = relative_error(sm.outputs, list(reference))
    sp = rts["smelt_passes"]
    if sp.call is not None:
        out["smelt_passes_vs_torch"] = relative_error(sp.outputs, want)
    if ort.call is not None:
        out["onnxruntime_vs_torch"] = relative_error(ort.outputs, want)
    return out


def kernel_profile(rt: Runtime, runs: int, top: int) -> dict[str, Any]:
    from smelt.backends.profile import profile_kernels

    module = rt.info["module"]
    rows = profile_kernels(module, *rt.info["arrays"], runs=runs)
    rules = list(module.kernels.values())
    return {"runs": runs, "total_us": sum(r["total_us"] for r in rows), "top": rows[:top],
            "kernels": rows, "unscheduled": sorted(k for k, r in module.kernels.items()
                                                   if r is None),
            "rules": {str(r): rules.count(r) for r in sorted(set(rules), key=str)}}


# -- one model ----------------------------------------------------------------------------------
def prepare(entry: BenchModel, opts: Options) -> tuple[dict[str, Runtime], tuple[Any, ...]]:
    model, inputs = entry.build(), entry.inputs()
    rts = {"torch": prepare_torch(model, inputs),
           "smelt": prepare_smelt(model, inputs, opts.pipeline, opts.threads),
           "smelt_passes": prepare_smelt(model, inputs, opts.passes_pipeline, opts.threads,
                                         "smelt_passes"),
           "onnxruntime": prepare_onnxruntime(model, inputs, opts.threads)}
    return rts, inputs


def bench_one(entry: BenchModel, opts: Options) -> dict[str, Any]:
    rts, inputs = prepare(entry, opts)
    timings = time_runtimes(list(rts.values()), opts.repeats, opts.warmup)
    record: dict[str, Any] = {
        "model": entry.name, "description": entry.description,
        "inputs": [{"shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch.")}
                   for x in inputs],
        "runtimes": {name: runtime_record(rt, timings) for name, rt in rts.items()},
    }
    record["speedup_vs_torch"] = speedups(record["runtimes"])
    record["correctness"] = correctness(rts)
    if rts["smelt"].call is not None:
        record["profile"] = kernel_profile(rts["smelt"], opts.profile_runs, opts.top)
    return record


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in RUNTIMES[1:]:
        ratios = [r["speedup_vs_torch"][name] for r in records if name in r["speedup_vs_torch"]]
        out[f"geomean_speedup_{name}_vs_torch"] = geomean(ratios)
        out[f"models_timed_{name}"] = len(ratios)
    return out


# -- report -------------------------------------------------------------------------------------
def _cell(runtime: dict[str, Any]) -> str:
    return f"{runtime['median_ms']:.2f}" if runtime["status"] == "ok" else "n/a"


def _ratio(record: dict[str, Any], name: str) -> str:
    r = record["speedup_vs_torch"].get(name)
    return f"{r:.2f}x" if r is not None else "n/a"


def _err(record: dict[str, Any], key: str) -> str:
    e = record["correctness"].get(key)
    return f"{e['relative']:.1e}" if e else "n/a"


def latency_table(records: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    head = ["model", "torch ms", "smelt ms", "smelt+passes ms", "onnxruntime ms",
            "smelt vs torch", "smelt+passes vs torch", "ort vs torch", "smelt err vs torch",
            "smelt+passes err vs torch", "smelt err vs interp"]
    rows = [[r["model"], *(_cell(r["runtimes"][n]) for n in RUNTIMES), _ratio(r, "smelt"),
             _ratio(r, "smelt_passes"), _ratio(r, "onnxruntime"), _err(r, "smelt_vs_torch"),
             _err(r, "smelt_passes_vs_torch"), _err(r, "smelt_vs_interpreter")]
            for r in records]
    geo = [summary[f"geomean_speedup_{n}_vs_torch"] for n in RUNTIMES[1:]]
    rows.append(["geomean", "", "", "", "", *(f"{g:.2f}x" if g else "n/a" for g in geo),
                 "", "", ""])
    return markdown_table(head, rows)


def busy_table(records: list[dict[str, Any]]) -> list[str]:
    """How long each runtime's threads keep a core busy after a call returns."""
    rows = [[r["model"], *(f"{r['runtimes'][n]['busy_after_call_ms']:.0f}"
                           if r["runtimes"][n]["status"] == "ok" else "n/a" for n in RUNTIMES)]
            for r in records]
    return markdown_table(["model", *(f"{n} ms" for n in RUNTIMES)], rows)


def profile_table(record: dict[str, Any]) -> list[str]:
    prof = record["profile"]
    rows = [[r["name"] if len(r["name"]) <= 60 else r["name"][:57] + "...", str(r["rule"]),
             str(r["calls"]), f"{r['total_us']:.1f}", f"{100 * r['share']:.1f}%"]
            for r in prof["top"]]
    title = (f"### {record['model']}: top kernels ({prof['total_us'] / 1e3:.2f} ms per run "
             f"summed over {len(prof['kernels'])} callees, {prof['runs']} runs)")
    return [title, "", *markdown_table(["kernel", "rule", "calls", "us", "share"], rows)]


def notes(records: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in records:
        for name, rt in r["runtimes"].items():
            if rt["status"] != "ok":
                out.append(f"- {r['model']} / {name}: {rt['reason']}")
            elif rt.get("exporter_failures"):
                out.append(f"- {r['model']} / {name}: {'; '.join(rt['exporter_failures'])}")
        if r.get("profile", {}).get("unscheduled"):
            out.append(f"- {r['model']} / smelt: unscheduled kernels "
                       f"{', '.join(r['profile']['unscheduled'])}")
    return out


def markdown_report(report: dict[str, Any]) -> str:
    m, cfg = report["machine"], report["config"]
    lines = [f"# CPU latency, batch 1, float32 ({cfg['preset']} sizes)", "",
             f"{m['cpu']} ({m['cpu_count']} CPUs, mcpu {m['mcpu']}); threads: torch "
             f"{m['threads']['torch']}, TVM {m['threads']['tvm']}, onnxruntime "
             f"{cfg['threads']}. torch {m['versions']['torch']}, tvm {m['versions']['tvm']}, "
             f"onnxruntime {m['versions']['onnxruntime']}.", "",
             f"Median of {cfg['repeats']} interleaved repeats after {cfg['warmup']} warm-up "
             f"calls; speed = torch time / runtime time (>1: faster than torch eager); errors "
             f"are max |diff| / max |reference|. smelt pipeline: `{cfg['pipeline']}`; "
             f"smelt+passes: `{cfg['passes_pipeline']}`.", "",
             *latency_table(report["results"], report["summary"]), ""]
    if m["busy"]:
        lines += [f"**Warning: the machine was busy** (1-minute load "
                  f"{m['load_average']['at_start']:.1f} on {m['cpu_count']} CPUs before the "
                  "run): other processes shared the cores, so these times are not reliable.",
                  ""]
    lines += ["Threads still busy after a call returns (thread pools spinning; the harness "
              "waits for quiet before the next runtime):", "",
              *busy_table(report["results"]), ""]
    found = notes(report["results"])
    if found:
        lines += ["Notes:", *found, ""]
    for r in report["results"]:
        if "profile" in r:
            lines += [*profile_table(r), ""]
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------------
def parse_options(argv: list[str] | None) -> Options:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODEL_NAMES),
                    help=f"comma-separated subset of {', '.join(MODEL_NAMES)}")
    ap.add_argument("--quick", action="store_true", help="tiny shapes (a smoke test)")
    ap.add_argument("--repeats", type=int, default=30, help="timed calls per runtime")
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls per runtime first")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads for every runtime (default: os.cpu_count())")
    ap.add_argument("--pipeline", default=DEFAULT_PIPELINE, help="smelt pipeline spec")
    ap.add_argument("--passes-pipeline", default=PASSES_PIPELINE,
                    help="a second smelt pipeline timed in the same run (smelt_passes)")
    ap.add_argument("--profile-runs", type=int, default=10, help="runs the profile averages")
    ap.add_argument("--top", type=int, default=8, help="kernels shown per model")
    ap.add_argument("--out", default=str(RESULTS), help="JSON path (the .md and .png go beside it)")
    args = ap.parse_args(argv)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {', '.join(MODEL_NAMES)}")
    if args.repeats < 1 or args.threads < 1:
        ap.error("--repeats and --threads must be at least 1")
    return Options(models, "quick" if args.quick else "full", args.repeats, args.warmup,
                   args.threads, args.pipeline, args.passes_pipeline, args.profile_runs,
                   args.top, Path(args.out))


def plot(report: dict[str, Any]) -> Any:
    """Speed against torch eager per model (and the geometric mean), one bar per runtime."""
    ratios = {r["model"]: {n: r["speedup_vs_torch"].get(n) for n in RUNTIMES[1:]}
              for r in report["results"]}
    ratios["geomean"] = {n: report["summary"][f"geomean_speedup_{n}_vs_torch"]
                         for n in RUNTIMES[1:]}
    fig, (ax,) = figure(f"CPU latency, batch 1, float32 ({report['config']['preset']} sizes, "
                        f"{report['config']['threads']} threads): speed vs torch eager")
    bar_chart(ax, ratios, "torch time / runtime time (>1: faster)", reference=1.0)
    return fig


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    load_at_start = os.getloadavg()[0]
    threads = set_threads(opts.threads)  # first: before anything starts TVM's thread pool
    quiet_exporters()
    entries = bench_models(opts.preset)
    records = []
    for name in opts.models:
        t0 = time.perf_counter()
        records.append(bench_one(entries[name], opts))
        print(f"{name}: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    report = {"config": {"models": list(opts.models), "preset": opts.preset,
                         "repeats": opts.repeats, "warmup": opts.warmup,
                         "threads": opts.threads, "pipeline": opts.pipeline,
                         "passes_pipeline": opts.passes_pipeline,
                         "profile_runs": opts.profile_runs},
              "machine": machine_facts(threads, load_at_start), "results": records,
              "summary": summarize(records)}
    print(write_report(opts.out, report, markdown_report(report), plot(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
