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

Results: benchmarks/results/cpu_latency.json and a table in cpu_latency.md beside it.

    .venv/bin/python benchmarks/cpu_latency.py                      # all models, 30 repeats
    .venv/bin/python benchmarks/cpu_latency.py --models resnet18,bert --repeats 50
    .venv/bin/python benchmarks/cpu_latency.py --quick --models llama_block --repeats 3
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:  # `python -m benchmarks.cpu_latency` from the repository root
    from benchmarks.cpu_models import MODEL_NAMES, BenchModel, bench_models
except ModuleNotFoundError:  # `python benchmarks/cpu_latency.py`
    from cpu_models import MODEL_NAMES, BenchModel, bench_models

RESULTS = Path(__file__).resolve().parent / "results" / "cpu_latency.json"
RUNTIMES = ("torch", "smelt", "smelt_passes", "onnxruntime")
DEFAULT_PIPELINE = "canonicalize,fuse"
# the exact passes of issue 5, timed beside the plain pipeline in the same run
PASSES_PIPELINE = "fold-bn,equalize,canonicalize,fuse"
QUIET_LOGGERS = ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")


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


@dataclass
class Runtime:
    """One way to run a model: a no-argument call to time, or the reason there is none."""

    name: str
    call: Callable[[], Any] | None = None
    outputs: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# -- threads ------------------------------------------------------------------------------------
def set_threads(threads: int) -> dict[str, int]:
    """Give torch and TVM's runtime `threads` threads; returns what each reports."""
    import torch

    from smelt.backends.threads import size_thread_pool

    torch.set_num_threads(threads)
    return {"requested": threads, "torch": torch.get_num_threads(),
            "tvm": size_thread_pool(threads)}


# -- the three runtimes -------------------------------------------------------------------------
def _outputs(value: Any) -> list[np.ndarray]:
    if hasattr(value, "detach"):
        return [value.detach().numpy()]
    return [np.asarray(v.detach().numpy() if hasattr(v, "detach") else v) for v in value]


def _failure(e: BaseException) -> str:
    """The exception's type and first line, short enough for a table note."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


def prepare_torch(model: Any, inputs: tuple[Any, ...]) -> Runtime:
    import torch

    def call() -> Any:
        with torch.inference_mode():
            return model(*inputs)

    return Runtime("torch", call, _outputs(call()))


def prepare_smelt(model: Any, inputs: tuple[Any, ...], pipeline: str, threads: int,
                  name: str = "smelt", calibration: list[Any] | None = None) -> Runtime:
    import smelt

    rt = Runtime(name)
    arrays = [x.numpy() for x in inputs]
    try:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = smelt.trace(model, inputs)
        t1 = time.perf_counter()
        graph = smelt.Pipeline.parse(pipeline)(traced, calibration=calibration)
        t2 = time.perf_counter()
        module = smelt.compile(graph, "cpu", num_cores=threads)
        t3 = time.perf_counter()
    except Exception as e:  # noqa: BLE001 - an unsupported model is a result, not a crash
        rt.error = _failure(e)
        return rt
    rt.call = lambda: module(*arrays)
    rt.outputs = list(rt.call())
    rt.info = {"graph": graph, "module": module, "arrays": arrays,
               "trace_s": t1 - t0, "pipeline_s": t2 - t1, "compile_s": t3 - t2}
    return rt


def _export_onnx(model: Any, inputs: tuple[Any, ...]) -> tuple[bytes, str, list[str]]:
    """The model as ONNX bytes: the dynamo exporter first, then the TorchScript one."""
    import torch

    failures = []
    for dynamo in (True, False):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if dynamo:
                    program = torch.onnx.export(model, inputs, dynamo=True, verbose=False,
                                                report=False)
                    return program.model_proto.SerializeToString(), "dynamo", failures
                buf = io.BytesIO()
                torch.onnx.export(model, inputs, buf, dynamo=False)
                return buf.getvalue(), "torchscript", failures
        except Exception as e:  # noqa: BLE001 - try the other exporter, then report
            failures.append(f"{'dynamo' if dynamo else 'torchscript'} exporter: {_failure(e)}")
    raise RuntimeError("; ".join(failures))


def prepare_onnxruntime(model: Any, inputs: tuple[Any, ...], threads: int) -> Runtime:
    rt = Runtime("onnxruntime")
    try:
        import onnxruntime as ort
    except ImportError as e:
        rt.error = f"onnxruntime not installed ({e}); install the 'bench' extra"
        return rt
    try:
        t0 = time.perf_counter()
        data, exporter, failures = _export_onnx(model, inputs)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - recorded in the results instead
        rt.error = _failure(e)
        return rt
    feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs, strict=True)}
    rt.call = lambda: session.run(None, feeds)
    rt.outputs = list(rt.call())
    rt.info = {"exporter": exporter, "export_s": time.perf_counter() - t0,
               "exporter_failures": failures}
    return rt


# -- timing, errors, profile --------------------------------------------------------------------
def settle(window_s: float = 0.005, cap_s: float = 2.0) -> float:
    """Wait until this process's threads stop using CPU; returns the seconds waited.

    Quiet: three 5 ms windows in a row with under 10% of a core busy, or `cap_s`."""
    start, calm = time.perf_counter(), 0
    while calm < 3 and time.perf_counter() - start < cap_s:
        c0, t0 = time.process_time(), time.perf_counter()
        time.sleep(window_s)
        busy = (time.process_time() - c0) / (time.perf_counter() - t0)
        calm = calm + 1 if busy < 0.1 else 0
    return time.perf_counter() - start


def measure(runtimes: list[Runtime], repeats: int, warmup: int
            ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per call, interleaved: repeat i visits the runtimes starting from runtime
    i mod len(runtimes); a visit makes one untimed call (the runtime's own pool hot), times
    one call, then waits for its threads to go quiet before the next runtime's visit. Also
    returns those waits (seconds after each timed call until the process was quiet)."""
    active = [r for r in runtimes if r.call is not None]
    for r in active:
        for _ in range(warmup):
            r.call()
    times: dict[str, list[float]] = {r.name: [] for r in active}
    waits: dict[str, list[float]] = {r.name: [] for r in active}
    gc.collect()
    settle()
    for i in range(repeats):
        k = i % len(active)
        for r in active[k:] + active[:k]:
            r.call()
            t0 = time.perf_counter()
            r.call()
            times[r.name].append(time.perf_counter() - t0)
            waits[r.name].append(settle())
    return times, waits


def relative_error(got: list[np.ndarray], want: list[np.ndarray]) -> dict[str, float]:
    """Largest |got - want| over all outputs, and that divided by the largest |want|."""
    err = max(float(np.abs(np.asarray(g, np.float64) - w).max()) for g, w in
              zip(got, want, strict=True))
    scale = max(float(np.abs(w).max()) for w in want)
    return {"max_abs": err, "scale": scale, "relative": err / scale if scale else err}


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


def timing_summary(times: list[float]) -> dict[str, Any]:
    ms = sorted(t * 1e3 for t in times)
    return {"median_ms": float(np.median(ms)), "min_ms": ms[0],
            "p90_ms": float(np.percentile(ms, 90)), "times_ms": [round(t, 4) for t in ms]}


def runtime_record(rt: Runtime, times: dict[str, list[float]],
                   waits: dict[str, list[float]]) -> dict[str, Any]:
    if rt.call is None:
        return {"status": "unavailable", "reason": rt.error}
    info = {k: v for k, v in rt.info.items() if k not in ("graph", "module", "arrays")}
    return {"status": "ok", **info, **timing_summary(times[rt.name]),
            "busy_after_call_ms": 1e3 * float(np.median(waits[rt.name]))}


def bench_one(entry: BenchModel, opts: Options) -> dict[str, Any]:
    rts, inputs = prepare(entry, opts)
    times, waits = measure(list(rts.values()), opts.repeats, opts.warmup)
    record: dict[str, Any] = {
        "model": entry.name, "description": entry.description,
        "inputs": [{"shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch.")}
                   for x in inputs],
        "runtimes": {name: runtime_record(rt, times, waits) for name, rt in rts.items()},
    }
    torch_ms = record["runtimes"]["torch"]["median_ms"]
    record["speedup_vs_torch"] = {
        name: torch_ms / r["median_ms"] for name, r in record["runtimes"].items()
        if name != "torch" and r["status"] == "ok"}
    record["correctness"] = correctness(rts)
    if rts["smelt"].call is not None:
        record["profile"] = kernel_profile(rts["smelt"], opts.profile_runs, opts.top)
    return record


def geomean(values: list[float]) -> float | None:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in RUNTIMES[1:]:
        ratios = [r["speedup_vs_torch"][name] for r in records if name in r["speedup_vs_torch"]]
        out[f"geomean_speedup_{name}_vs_torch"] = geomean(ratios)
        out[f"models_timed_{name}"] = len(ratios)
    return out


# -- machine facts ------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except Exception as e:  # noqa: BLE001 - report, do not fail
        return f"unavailable ({type(e).__name__})"


def library_versions(*modules: str) -> dict[str, str]:
    """Python's version and each module's, for a report."""
    return {"python": platform.python_version(), **{m: _version(m) for m in modules}}


def machine_busy(load_at_start: float) -> bool:
    """Other work was running: a 1-minute load average of a quarter of the CPUs (at least
    1) before this benchmark started. Shared cores make every runtime slower and noisier,
    torch's OpenMP threads most of all (measured here: ResNet-18 12 ms alone, over 1 s at
    load 5 on 2 cores)."""
    return load_at_start >= max(1.0, 0.25 * (os.cpu_count() or 1))


def machine_line(m: dict[str, Any]) -> str:
    """One line of `machine_facts` for a report: CPU, threads, load before and after."""
    return (f"{m['cpu']} ({m['cpu_count']} CPUs, mcpu {m['mcpu']}); threads: torch "
            f"{m['threads']['torch']}, TVM {m['threads']['tvm']}; load at start "
            f"{m['load_average']['at_start']:.2f}, at end {m['load_average']['at_end']:.2f}.")


def machine_facts(threads: dict[str, int], load_at_start: float) -> dict[str, Any]:
    from smelt.backends.targets import host_cpu

    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": threads,
            "load_average": {"at_start": load_at_start, "at_end": os.getloadavg()[0]},
            "busy": machine_busy(load_at_start),
            "mcpu": host_cpu(), "platform": platform.platform(),
            "python": platform.python_version(),
            "versions": {m: _version(m) for m in ("smelt", "torch", "tvm", "onnxruntime",
                                                   "onnx", "onnxscript", "transformers",
                                                   "numpy")}}


# -- report -------------------------------------------------------------------------------------
def _cell(runtime: dict[str, Any]) -> str:
    return f"{runtime['median_ms']:.2f}" if runtime["status"] == "ok" else "n/a"


def _ratio(record: dict[str, Any], name: str) -> str:
    r = record["speedup_vs_torch"].get(name)
    return f"{r:.2f}x" if r is not None else "n/a"


def _err(record: dict[str, Any], key: str) -> str:
    e = record["correctness"].get(key)
    return f"{e['relative']:.1e}" if e else "n/a"


def _rows_to_markdown(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


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
    return _rows_to_markdown(head, rows)


def busy_table(records: list[dict[str, Any]]) -> list[str]:
    """How long each runtime's threads keep a core busy after a call returns."""
    rows = [[r["model"], *(f"{r['runtimes'][n]['busy_after_call_ms']:.0f}"
                           if r["runtimes"][n]["status"] == "ok" else "n/a" for n in RUNTIMES)]
            for r in records]
    return _rows_to_markdown(["model", *(f"{n} ms" for n in RUNTIMES)], rows)


def profile_table(record: dict[str, Any]) -> list[str]:
    prof = record["profile"]
    rows = [[r["name"] if len(r["name"]) <= 60 else r["name"][:57] + "...", str(r["rule"]),
             str(r["calls"]), f"{r['total_us']:.1f}", f"{100 * r['share']:.1f}%"]
            for r in prof["top"]]
    title = (f"### {record['model']}: top kernels ({prof['total_us'] / 1e3:.2f} ms per run "
             f"summed over {len(prof['kernels'])} callees, {prof['runs']} runs)")
    return [title, "", *_rows_to_markdown(["kernel", "rule", "calls", "us", "share"], rows)]


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
    ap.add_argument("--out", default=str(RESULTS), help="JSON path (the .md goes beside it)")
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


def quiet_exporters() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def write_report(report: dict[str, Any], out: Path,
                 render: Callable[[dict[str, Any]], str] | None = None) -> str:
    """`out` (JSON) and the markdown `render(report)` beside it (.md); returns the markdown."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    text = (render or markdown_report)(report)
    out.with_suffix(".md").write_text(text + "\n")
    return text


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
    print(write_report(report, opts.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
