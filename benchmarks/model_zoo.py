"""The zoo sweep: the models people run, through every stage of smelt, each in its own process.

    python -m benchmarks.model_zoo                    # everything (hours on 2 cores)
    python -m benchmarks.model_zoo --quick            # the CI subset (a few minutes)
    python -m benchmarks.model_zoo --zoo transformers --stages build,trace,interpret
    python -m benchmarks.model_zoo --models torchvision:resnet18,timm:resnet10t

Models (benchmarks/zoo_models.py): every torchvision classification model, a seeded sample of
timm models under 30M parameters (the seed and the models passed over are in the report),
and transformers architectures with tiny random configs. Stages (benchmarks/zoo_stages.py):
build (eager), trace, interpret vs eager, fold-bn,canonicalize,fuse vs eager, compile cpu vs
eager, speed vs torch eager, torch.compile with smelt's backend (a fallback fails it), W8A8
compiled bit-exact with the interpreter, compile cuda (sm_90, no device needed).

Each model runs in a child process (`--worker`) that writes one JSON line as each stage
starts and ends; the parent stops a child that runs past `--timeout` seconds or `--memory-gb`
of resident memory, and records that stage as "timeout" or "memory" (a hung compile does not
stop the sweep; a crash is "crash" with the end of its stderr).

Output (benchmarks/harness.write_report): JSON with every stage of every model; a Markdown
table with one column per stage, pass counts per zoo and stage, and the failures grouped by
their first error (the error's type and first line: the frontend's UnsupportedOpError names
the op); a PNG of the pass rate per stage and zoo and of the speed ratios.

Versions. `make setup` installs the zoo packages at the versions in constraints.txt, and the
tests run against those. `--newest` marks a run made in a venv with the newest releases
(`make zoo-newest` makes build/venv-newest with `pip install -U` of the zoo packages, no
constraints, and runs the sweep there): its report (model_zoo_newest.json) lists each zoo
package's version beside its pin, so that a new transformers shows up as rows of this table
instead of a silent break.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks.harness import (
    bar_chart,
    figure,
    geomean,
    machine_facts,
    machine_line,
    markdown_table,
    results_path,
    set_threads,
    write_report,
)
from benchmarks.zoo_stages import STAGES, Options, run_stages
from benchmarks.zoo_torchvision import define_missing_schemas

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
ZOO_PACKAGES = ("torch", "torchvision", "timm", "transformers", "huggingface_hub", "tvm",
                "numpy")
PIN_NAMES = {"tvm": "apache-tvm", "huggingface_hub": "huggingface-hub"}
#: the CI subset: one CNN per zoo and a transformer, each passing every stage today, small
#: enough for about two minutes in all (the test suite runs it)
QUICK = ("torchvision:squeezenet1_1", "timm:test_resnet", "transformers:vit")
STATUS_MARK = {"ok": "ok", "fail": "FAIL", "skip": "-", "timeout": "TIMEOUT",
               "memory": "MEMORY", "crash": "CRASH", "not run": "-"}


# -- which models -------------------------------------------------------------------------------
def model_list(args: argparse.Namespace) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The (zoo, name) pairs to run, and facts about how they were chosen (the timm sample),
    or a listing's failure as a row of its own (name "(list)")."""
    from benchmarks import zoo_models

    if args.models:
        pairs = [parse_model(m) for m in args.models.split(",") if m]
        return pairs, {}
    if args.quick:
        return [parse_model(m) for m in QUICK], {}
    pairs, facts = [], {}
    for zoo in args.zoo.split(","):
        try:
            if zoo == "torchvision":
                names = zoo_models.torchvision_names()
            elif zoo == "timm":
                facts["timm_sample"] = zoo_models.timm_sample(
                    args.timm_count, args.timm_seed, args.timm_max_params)
                names = facts["timm_sample"]["names"]
            elif zoo == "transformers":
                names = zoo_models.transformers_names()
            else:
                raise SystemExit(f"unknown zoo {zoo!r}: one of {', '.join(zoo_models.ZOOS)}")
        except Exception as e:  # noqa: BLE001 - a zoo that cannot list is a row, not a crash
            facts[f"{zoo}_list_error"] = f"{type(e).__name__}: {e}"
            names = ["(list)"]
        pairs += [(zoo, n) for n in names]
    return pairs, facts


def parse_model(text: str) -> tuple[str, str]:
    zoo, sep, name = text.partition(":")
    if not sep or not name:
        raise SystemExit(f"--models takes zoo:name (e.g. torchvision:resnet18), got {text!r}")
    return zoo, name


# -- the child process --------------------------------------------------------------------------
def worker(args: argparse.Namespace) -> int:
    """Run the stages of one model, writing a JSON line as each stage starts and ends."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    for name in ("transformers", "torch._dynamo", "torch._inductor", "torch.export"):
        logging.getLogger(name).setLevel(logging.ERROR)
    set_threads(args.threads)
    zoo, name = parse_model(args.worker)
    progress = open(args.progress, "a", buffering=1)  # noqa: SIM115 - open for the whole run

    def report(stage: str, record: Mapping[str, Any]) -> None:
        progress.write(json.dumps({"stage": stage, **record}, default=str) + "\n")

    def make() -> Any:
        from benchmarks.zoo_models import zoo_model

        if name == "(list)":
            raise RuntimeError(f"could not list the {zoo} models (see the report's facts)")
        return zoo_model(zoo, name)

    opts = Options(repeats=args.repeats, warmup=1, calibration=args.calibration,
                   threads=args.threads)
    run_stages(make, args.stages.split(","), opts, report)
    progress.close()
    return 0


# -- the parent: one child per model ------------------------------------------------------------
@dataclass
class Child:
    zoo: str
    name: str
    proc: subprocess.Popen
    progress: Path
    log: Path
    start: float
    stopped: str | None = None
    peak_gb: float = 0.0


def start_child(zoo: str, name: str, args: argparse.Namespace, tmp: Path, i: int) -> Child:
    progress, log = tmp / f"{i}.jsonl", tmp / f"{i}.log"
    cmd = [sys.executable, "-m", "benchmarks.model_zoo", "--worker", f"{zoo}:{name}",
           "--progress", str(progress), "--stages", args.stages, "--threads",
           str(args.threads), "--repeats", str(args.repeats), "--calibration",
           str(args.calibration)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Child(zoo, name, proc, progress, log, time.perf_counter())


def resident_gb(pid: int) -> float:
    """Resident memory of a process and its children, in GiB (0 where psutil is missing)."""
    try:
        import psutil
    except ImportError:
        return 0.0
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**30


def stop(child: Child, why: str) -> None:
    """Kill the child's process group (it started a session of its own)."""
    child.stopped = why
    try:
        os.killpg(child.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.proc.wait()


def collect(child: Child, stages: Sequence[str], timeout: float,
            memory_gb: float) -> dict[str, Any]:
    """The model's record from its progress lines; a stage left running is the one the
    child was stopped in (timeout, memory) or died in (crash)."""
    results: dict[str, dict[str, Any]] = {}
    if child.progress.exists():
        for line in child.progress.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short where the child was stopped
                continue
            results[rec.pop("stage")] = rec
    running = next((s for s, r in results.items() if r.get("status") == "running"), None)
    code = child.proc.returncode
    if running is None and (code != 0 or child.stopped is not None):  # stopped between stages
        running = next((s for s in STAGES if s in stages and s not in results), None)
    if running is not None:
        tail = child.log.read_text(errors="replace")[-1500:] if child.log.exists() else ""
        if child.stopped == "timeout":
            rec = {"status": "timeout", "error": f"timeout: still running after {timeout:g} s",
                   "error_type": "timeout"}
        elif child.stopped == "memory":
            rec = {"status": "memory", "error": f"memory: over {memory_gb:g} GiB resident",
                   "error_type": "memory"}
        else:
            last = [ln for ln in tail.splitlines() if ln.strip()][-1:] or [f"exit code {code}"]
            rec = {"status": "crash", "error": f"crash (exit code {code}): {last[0][:200]}",
                   "error_type": "crash", "log_tail": tail}
        results[running] = rec
    for stage in stages:
        results.setdefault(stage, {"status": "not run",
                                   "reason": f"the process stopped in {running}"})
    build = results.get("build", {})
    first = next((s for s in STAGES if s in stages and results[s]["status"] not in
                  ("ok", "skip", "not run")), None)
    return {"zoo": child.zoo, "name": child.name, "family": build.get("family"),
            "passed": all(results[s]["status"] == "ok" for s in stages),
            "first_error": None if first is None else {"stage": first,
                                                       **error_of(results[first])},
            "seconds": round(time.perf_counter() - child.start, 1),
            "peak_memory_gb": round(child.peak_gb, 2),
            "stages": {s: results[s] for s in STAGES if s in stages}}


def error_of(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in ("error", "error_type", "op") if k in rec}


def sweep(pairs: list[tuple[str, str]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run every model in its own child, `args.jobs` at a time; records in input order."""
    stages = args.stages.split(",")
    records: dict[int, dict[str, Any]] = {}
    queue = list(enumerate(pairs))
    running: dict[int, Child] = {}
    bar = tqdm(total=len(pairs), desc="zoo", unit="model", file=sys.stderr,
               mininterval=0.5 if sys.stderr.isatty() else 60.0)
    with bar, tempfile.TemporaryDirectory(prefix="smelt-zoo-") as tmp:
        while queue or running:
            while queue and len(running) < args.jobs:
                i, (zoo, name) = queue.pop(0)
                running[i] = start_child(zoo, name, args, Path(tmp), i)
            time.sleep(0.5)
            for i, child in list(running.items()):
                child.peak_gb = max(child.peak_gb, resident_gb(child.proc.pid))
                if child.proc.poll() is None:
                    if time.perf_counter() - child.start > args.timeout:
                        stop(child, "timeout")
                    elif child.peak_gb > args.memory_gb:
                        stop(child, "memory")
                    else:
                        continue
                records[i] = collect(child, stages, args.timeout, args.memory_gb)
                del running[i]
                bar.write(log_line(records[i]), file=sys.stderr)
                bar.update()
    return [records[i] for i in sorted(records)]


def log_line(rec: Mapping[str, Any]) -> str:
    """One model's outcome, printed above the sweep's progress bar."""
    err = rec["first_error"]
    what = "pass" if rec["passed"] else (f"{err['stage']}: {err['error'][:120]}" if err
                                          else "not every stage ran")
    return f"{rec['zoo']}:{rec['name']} ({rec['seconds']:.0f} s) {what}"


# -- the report ---------------------------------------------------------------------------------
def pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    """name -> version of each `name==version` line of the constraints file."""
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#;]+)", line.strip())
            if m:
                out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def versions_against_pins() -> dict[str, dict[str, Any]]:
    """Each zoo package's installed distribution version beside its pin in constraints.txt
    (local labels such as +cpu aside)."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = pins()
    out = {}
    for pkg in ZOO_PACKAGES:
        dist = PIN_NAMES.get(pkg, pkg)
        try:
            have = version(dist)
        except PackageNotFoundError:
            have = "not installed"
        pin = pinned.get(dist)
        out[pkg] = {"installed": have, "pinned": pin,
                    "differs": pin is not None and have.split("+")[0] != pin.split("+")[0]}
    return out


def error_key(err: Mapping[str, Any]) -> str:
    """Failures grouped by reason: the op of an unsupported op, else the error's first line
    with its numbers written as #."""
    if err.get("op"):
        return f"{err.get('error_type')}: {err['op']}"
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", err.get("error", ""))[:160]


def summarize(records: Sequence[Mapping[str, Any]], stages: Sequence[str]) -> dict[str, Any]:
    zoos = list(dict.fromkeys(r["zoo"] for r in records))
    per_zoo = {}
    for zoo in zoos:
        rs = [r for r in records if r["zoo"] == zoo]
        per_zoo[zoo] = {"models": len(rs), "passed": sum(r["passed"] for r in rs),
                        "stages": {s: sum(r["stages"][s]["status"] == "ok" for r in rs)
                                   for s in stages}}
    first: dict[str, list[str]] = defaultdict(list)
    every: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in records:
        label = f"{r['zoo']}:{r['name']}"
        if r["first_error"]:
            first[error_key(r["first_error"])].append(label)
        for s in stages:
            if r["stages"][s]["status"] not in ("ok", "skip", "not run"):
                every[(s, error_key(r["stages"][s]))].append(label)
    speed = [r["stages"]["speed"]["speedup"] for r in records
             if "speed" in r["stages"] and r["stages"]["speed"]["status"] == "ok"]
    total = len(records)
    passed = sum(r["passed"] for r in records)
    return {"models": total, "passed": passed, "pass_rate": passed / total if total else None,
            "per_zoo": per_zoo,
            "by_first_error": dict(sorted(first.items(), key=lambda kv: -len(kv[1]))),
            "by_stage_error": [{"stage": s, "error": e, "models": ms} for (s, e), ms in
                               sorted(every.items(), key=lambda kv: (-len(kv[1]), kv[0]))],
            "geomean_speedup": geomean(speed), "speedups": len(speed)}


def cell(rec: Mapping[str, Any], stage: str) -> str:
    mark = STATUS_MARK.get(rec["status"], rec["status"])
    if stage == "speed" and rec["status"] == "ok":
        return f"{rec['speedup']:.2f}x"
    return mark


def markdown(report: Mapping[str, Any]) -> str:
    stages, summary = report["config"]["stages"], report["summary"]
    lines = [f"# Model zoo sweep{' (newest releases)' if report['config']['newest'] else ''}",
             "", machine_line(report["machine"]), "",
             "Versions: " + ", ".join(f"{k} {v['installed']}" + (
                 f" (pinned {v['pinned']})" if v["differs"] else "")
                 for k, v in report["versions"].items()) + ".", ""]
    if "timm_sample" in report["facts"]:
        t = report["facts"]["timm_sample"]
        lines += [f"timm sample: {len(t['names'])} of {t['of']} models with under "
                  f"{t['max_params'] / 1e6:g}M parameters, random.Random({t['seed']}) order; "
                  f"{len(t['passed_over'])} passed over.", ""]
    rate, speed = summary["pass_rate"], summary["geomean_speedup"]
    lines += [f"**{summary['passed']} of {summary['models']} models pass every stage"
              f"{f' ({100 * rate:.1f}%)' if rate is not None else ''}.**" + (
                  f" Speed: torch eager median / smelt median, geometric mean {speed:.2f}x "
                  f"over {summary['speedups']} models (>1: smelt faster)." if speed else ""),
              "", "## Passes per zoo and stage", ""]
    rows = [[zoo, str(z["models"]), str(z["passed"]),
             *(f"{z['stages'][s]}/{z['models']}" for s in stages)]
            for zoo, z in summary["per_zoo"].items()]
    lines += markdown_table(["zoo", "models", "every stage", *stages], rows)
    lines += ["", "## Models by first error", ""]
    rows = [[f"`{key}`", str(len(ms)), ", ".join(ms)]
            for key, ms in summary["by_first_error"].items()]
    lines += markdown_table(["first error", "models", "which"], rows) if rows else ["none"]
    lines += ["", "## Every failed stage, by error", ""]
    rows = [[e["stage"], f"`{e['error']}`", str(len(e["models"])), ", ".join(e["models"])]
            for e in summary["by_stage_error"]]
    lines += markdown_table(["stage", "error", "models", "which"], rows) if rows else ["none"]
    lines += ["", "## Every model", ""]
    rows = []
    for r in report["results"]:
        err = r["first_error"]
        first = "" if err is None else f"{err['stage']}: {err.get('error', '')[:150]}"
        rows.append([r["zoo"], r["name"], *(cell(r["stages"][s], s) for s in stages),
                     first.replace("|", "\\|").replace("\n", " ")])
    lines += markdown_table(["zoo", "model", *stages, "first error"], rows)
    return "\n".join(lines)


def plot(report: Mapping[str, Any]) -> Any:
    summary, stages = report["summary"], report["config"]["stages"]
    fig, (rates, speed) = figure("smelt through the model zoos", panels=2, size=(7.5, 4.2))
    values = {s: {zoo: 100 * z["stages"][s] / z["models"] for zoo, z in
                  summary["per_zoo"].items() if z["models"]} for s in stages}
    bar_chart(rates, values, "models passing (%)", fmt="")
    ratios = sorted(r["stages"]["speed"]["speedup"] for r in report["results"]
                    if "speed" in r["stages"] and r["stages"]["speed"]["status"] == "ok")
    if ratios:
        speed.bar(range(len(ratios)), ratios, width=0.9)
        speed.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        speed.set_yscale("log")
    speed.set_xlabel("models, sorted")
    speed.set_ylabel("torch eager / smelt (median time)")
    speed.set_title("speed vs torch eager (>1: smelt faster)", fontsize=9)
    return fig


# -- command line -------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from benchmarks.zoo_models import TIMM_COUNT, TIMM_MAX_PARAMS, TIMM_SEED, ZOOS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default=",".join(ZOOS), help="comma-separated zoos")
    ap.add_argument("--models", default="", help="comma-separated zoo:name (instead of --zoo)")
    ap.add_argument("--stages", default=",".join(STAGES),
                    help=f"comma-separated stages of {','.join(STAGES)}")
    ap.add_argument("--quick", action="store_true",
                    help="the CI subset: " + ", ".join(QUICK) + "; fewer repeats")
    ap.add_argument("--jobs", type=int, default=1, help="models run at once")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per model")
    ap.add_argument("--memory-gb", type=float, default=12, help="resident GiB per model")
    ap.add_argument("--threads", type=int, default=1, help="torch and TVM threads")
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats (speed stage)")
    ap.add_argument("--calibration", type=int, default=4, help="W8A8 calibration batches")
    ap.add_argument("--timm-count", type=int, default=TIMM_COUNT)
    ap.add_argument("--timm-seed", type=int, default=TIMM_SEED)
    ap.add_argument("--timm-max-params", type=int, default=TIMM_MAX_PARAMS)
    ap.add_argument("--newest", action="store_true",
                    help="a run in a venv of the newest releases (make zoo-newest): "
                         "reported as such, beside the pins")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--progress", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        ap.error(f"unknown stages {sorted(unknown)}: choose from {','.join(STAGES)}")
    if args.quick and not args.worker:
        args.repeats, args.calibration = min(args.repeats, 2), min(args.calibration, 2)
    if args.out is None:
        args.out = results_path("model_zoo_newest" if args.newest else "model_zoo")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    define_missing_schemas()  # before anything imports torchvision (transformers, timm)
    if args.worker:
        return worker(args)
    load = os.getloadavg()[0]
    pairs, facts = model_list(args)
    print(f"{len(pairs)} models, {args.jobs} at a time", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    records = sweep(pairs, args)
    stages = args.stages.split(",")
    report = {
        "benchmark": "model_zoo",
        "config": {"stages": [s for s in STAGES if s in stages], "quick": args.quick,
                   "newest": args.newest, "jobs": args.jobs, "timeout_s": args.timeout,
                   "memory_gb": args.memory_gb, "threads": args.threads,
                   "repeats": args.repeats, "calibration": args.calibration},
        "machine": machine_facts({"requested": args.threads, "torch": args.threads,
                                  "tvm": args.threads}, load, (*ZOO_PACKAGES, "smelt")),
        "versions": versions_against_pins(),
        "facts": facts,
        "seconds": round(time.perf_counter() - t0, 1),
        "summary": summarize(records, [s for s in STAGES if s in stages]),
        "results": records,
    }
    print(write_report(args.out, report, markdown(report), plot(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
