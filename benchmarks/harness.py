"""The benchmark harness: what every benchmark in benchmarks/ shares.

Timing. `measure(calls, repeats)` times several runtimes of the same work in one process,
interleaved: repeat i visits every runtime once, starting from runtime i mod n, so that a slow
patch of the machine (another process, a frequency change) hits all of them alike. A visit
makes untimed calls first (the runtime's own thread pool awake, its cores out of their idle
states), times a sample of calls, then waits until the process is quiet (`settle`): thread
pools keep spinning after a call (TVM's for ~0.3 s, onnxruntime's ~0.1 s), and a runtime
timed meanwhile would share its cores with them. A sample is one call, `number` calls, or as
many calls as take about `batch_s` seconds (for calls of microseconds). Each runtime gets a
`Timing`: seconds per call of every repeat, and its median, best and 90th percentile.

Threads. `set_threads(n)` gives torch and TVM's runtime pool n threads (the pool through
`smelt.backends.threads.size_thread_pool`: left alone, TVM takes half the hardware threads on
x86) and returns what each reports; call it first, before anything starts TVM's pool.
`onnxruntime_options(n)` is the matching onnxruntime session configuration.

Facts. `machine_facts` (CPU model, cores, threads, load average before and after, LLVM's
mcpu, library versions) for the JSON, `machine_line` for the Markdown, `library_versions`
where only versions matter.

Errors. `relative_error(got, want)`: the largest |got - want| over all outputs, and that over
the largest |want|. `failure(e)`: an exception as one short line, for a result that records
why a runtime did not run instead of crashing.

Reports. `write_report(out, report, markdown, plot)` writes `out` (JSON), the Markdown beside
it (.md) and the plot beside both (.png). Plots are matplotlib figures made with `figure`,
filled with `bar_chart` (values per group and series, e.g. speed ratios per model with the 1.0
line of the peer) or `line_chart` (sweeps); `markdown_table` makes the tables.

Every benchmark runs as a module from the repository root (`python -m benchmarks.<name>`)
and imports this one as `from benchmarks.harness import ...`.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MACHINE_LIBRARIES = ("smelt", "torch", "tvm", "onnxruntime", "onnx", "onnxscript",
                     "transformers", "numpy")


def results_path(name: str) -> Path:
    """The default JSON path of a benchmark's results: benchmarks/results/<name>.json."""
    return RESULTS_DIR / f"{name}.json"


# -- threads ------------------------------------------------------------------------------------
def set_threads(threads: int) -> dict[str, int]:
    """Give torch and TVM's runtime `threads` threads; returns what each reports."""
    import torch

    from smelt.backends.threads import size_thread_pool

    torch.set_num_threads(threads)
    return {"requested": threads, "torch": torch.get_num_threads(),
            "tvm": size_thread_pool(threads)}


def onnxruntime_options(threads: int) -> Any:
    """onnxruntime session options: `threads` intra-op threads, one inter-op, every graph
    optimization."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


# -- timing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """One runtime's measurement: seconds per call of each repeat (in the order taken), the
    seconds its threads kept the process busy after each sample, and the calls per sample."""

    times: tuple[float, ...]
    waits: tuple[float, ...]
    number: int

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def p90(self) -> float:
        return float(np.percentile(self.times, 90))

    def summary_ms(self) -> dict[str, Any]:
        """Median, best, 90th percentile and every repeat (sorted) in milliseconds, and the
        median time the process stayed busy after a sample."""
        ms = sorted(t * 1e3 for t in self.times)
        return {"median_ms": 1e3 * self.median, "min_ms": ms[0], "p90_ms": 1e3 * self.p90,
                "times_ms": [round(t, 4) for t in ms],
                "busy_after_call_ms": 1e3 * statistics.median(self.waits)}


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


def _no_sync() -> None:
    return None


def calls_for(call: Callable[[], object], seconds: float,
              sync: Callable[[], object] = _no_sync) -> int:
    """How many calls of `call` take about `seconds` (1 to 1000), from one timed call."""
    t0 = time.perf_counter()
    call()
    sync()
    return max(1, min(1000, int(seconds / max(time.perf_counter() - t0, 1e-7))))


def measure(calls: Mapping[str, Callable[[], object]], repeats: int, *, warmup: int = 1,
            number: int = 1, batch_s: float | None = None,
            sync: Callable[[], object] | None = None) -> dict[str, Timing]:
    """Seconds per call of each named call, interleaved (see the module docstring).

    `warmup`: untimed calls of each before the first repeat. A sample is `number` calls, or,
    with `batch_s`, as many as take about `batch_s` seconds (counted once per call after the
    warm-up); before each sample a visit makes one untimed call (with `batch_s`: as many as
    take half of it). `sync` runs after every group of calls and inside the timing: a GPU's
    synchronize, so that a sample ends when its work does."""
    done = sync or _no_sync
    names = list(calls)

    def run(name: str, count: int) -> None:
        for _ in range(count):
            calls[name]()
        done()

    for name in names:
        run(name, warmup)
    if batch_s is None:
        sizes, before = dict.fromkeys(names, number), dict.fromkeys(names, 1)
    else:
        sizes = {n: calls_for(calls[n], batch_s, done) for n in names}
        before = {n: calls_for(calls[n], batch_s / 2, done) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    waits: dict[str, list[float]] = {n: [] for n in names}
    gc.collect()
    settle()
    for i in range(repeats if names else 0):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            run(name, before[name])
            t0 = time.perf_counter()
            run(name, sizes[name])
            times[name].append((time.perf_counter() - t0) / sizes[name])
            waits[name].append(settle())
    return {n: Timing(tuple(times[n]), tuple(waits[n]), sizes[n]) for n in names}


def geomean(values: Iterable[float]) -> float | None:
    """The geometric mean, or None for no values."""
    values = list(values)
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


# -- errors -------------------------------------------------------------------------------------
def relative_error(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> dict[str, float]:
    """Largest |got - want| over all outputs, and that divided by the largest |want|."""
    err = max(float(np.abs(np.asarray(g, np.float64) - w).max()) for g, w in
              zip(got, want, strict=True))
    scale = max(float(np.abs(w).max()) for w in want)
    return {"max_abs": err, "scale": scale, "relative": err / scale if scale else err}


def failure(e: BaseException) -> str:
    """The exception's type and first line, short enough for a table note."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


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


def machine_facts(threads: Mapping[str, int], load_at_start: float,
                  libraries: Sequence[str] = MACHINE_LIBRARIES) -> dict[str, Any]:
    """The machine a benchmark ran on: CPU, cores, the threads `set_threads` reported, the
    1-minute load average before (`os.getloadavg()[0]`, taken by the caller at its start)
    and now, LLVM's mcpu, the platform and the libraries' versions."""
    from smelt.backends.cpu.target import host_cpu

    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": dict(threads),
            "load_average": {"at_start": load_at_start, "at_end": os.getloadavg()[0]},
            "busy": machine_busy(load_at_start),
            "mcpu": host_cpu(), "platform": platform.platform(),
            "python": platform.python_version(),
            "versions": {m: _version(m) for m in libraries}}


def machine_line(m: Mapping[str, Any]) -> str:
    """One line of `machine_facts` for a report: CPU, threads, load before and after."""
    return (f"{m['cpu']} ({m['cpu_count']} CPUs, mcpu {m['mcpu']}); threads: torch "
            f"{m['threads']['torch']}, TVM {m['threads']['tvm']}; load at start "
            f"{m['load_average']['at_start']:.2f}, at end {m['load_average']['at_end']:.2f}.")


# -- reports ------------------------------------------------------------------------------------
def markdown_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table, one line per row."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def figure(title: str, panels: int = 1, size: tuple[float, float] = (6.4, 4.2)
           ) -> tuple[Any, list[Any]]:
    """A matplotlib figure of `panels` plots side by side, each `size` inches, and its axes."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("the benchmark plots need matplotlib: pip install -e '.[bench]'"
                          ) from e
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * panels, size[1]), layout="constrained")
    fig.suptitle(title)
    return fig, list(fig.subplots(1, panels, squeeze=False)[0])


Reference = float | Mapping[str, float] | None


def _references(ax: Any, reference: Reference) -> None:
    """A dashed line at a value (1.0: as fast as the peer), or one per label (budgets)."""
    if reference is None:
        return
    if not isinstance(reference, Mapping):
        ax.axhline(reference, color="black", linewidth=0.8, linestyle="--")
        return
    for (label, value), style in zip(reference.items(), ("--", ":", "-.", "--"), strict=False):
        ax.axhline(value, color="black", linewidth=0.8, linestyle=style, label=label)


def bar_chart(ax: Any, values: Mapping[str, Mapping[str, float | None]], ylabel: str, *,
              reference: Reference = None, log: bool = False, fmt: str = "{:.2f}") -> None:
    """Grouped bars: one group per key of `values` (a model), one bar per inner key (a
    runtime), labelled with its value in `fmt` (empty: no labels); None draws no bar.
    `reference`: a dashed line at a value (1.0: as fast as the peer), or labelled lines
    {label: value} (a budget)."""
    groups = list(values)
    series = list(dict.fromkeys(s for g in values.values() for s in g))
    width = 0.8 / max(1, len(series))
    for j, name in enumerate(series):
        ys = [values[g].get(name) for g in groups]
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(groups))]
        drawn = ax.bar(xs, [math.nan if y is None else y for y in ys], width, label=name)
        if fmt:
            ax.bar_label(drawn, labels=["" if y is None else fmt.format(y) for y in ys],
                         fontsize=7)
    long = any(len(g) > 12 for g in groups) or len(groups) > 6
    ax.set_xticks(range(len(groups)), groups, rotation=30 if long else 0,
                  ha="right" if long else "center", fontsize=8 if long else 10)
    _references(ax, reference)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    if len(series) > 1 or isinstance(reference, Mapping):
        ax.legend(fontsize=8)


def line_chart(ax: Any, series: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
               xlabel: str, ylabel: str, *, reference: Reference = None, logx: bool = False,
               logy: bool = False) -> None:
    """One line with markers per series, `series[name] = (xs, ys)`; None leaves a gap.
    `reference` as for `bar_chart`."""
    for name, (xs, ys) in series.items():
        ax.plot(xs, [math.nan if y is None else y for y in ys], marker="o", label=name)
    _references(ax, reference)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(series) > 1 or isinstance(reference, Mapping):
        ax.legend(fontsize=8)


def write_report(out: Path, report: Mapping[str, Any], markdown: str,
                 plot: Any | None = None) -> str:
    """`out` (JSON), `markdown` beside it (.md) and `plot`, a figure, beside both (.png);
    returns the Markdown."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown + "\n")
    if plot is not None:
        plot.savefig(out.with_suffix(".png"), dpi=110)
    return markdown
