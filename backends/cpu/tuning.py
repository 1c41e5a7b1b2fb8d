"""Optional MetaSchedule tuning of the contraction kernels (`smelt.compile(..., tune=N)`).

For every kernel that smelt's own rules scheduled as a contraction, MetaSchedule searches up to
N schedules of the unscheduled kernel. Its records live in a JSON database on disk, keyed by
workload (MetaSchedule's structural hash of the kernel) and by target, so a kernel with the
same shapes is tuned once and later compiles, in any process, reuse the record. The best
tuned schedule then races smelt's schedule of the same kernel (both built for the target, run
on the same random inputs, median of several runs); the faster one is kept, and the tuned
one only if its outputs match smelt's. A kernel MetaSchedule cannot tune keeps smelt's
schedule and the report says why. A kernel with a record is not tuned again, whatever N
(delete its directory under the work dir to tune afresh); one whose tuning failed has no
record and is tried again next time.

Two costs of TVM 0.27 are avoided here (measured on a shared 2-core machine):
- MetaSchedule imports `tvm.s_tir.tensor_intrin`, which parses every target's tensor
  intrinsics (CUDA's alone took 28 s); only the host CPU's intrinsics are loaded here.
- Its builder imports the same package in every fresh worker, so each candidate's build ran
  past the 30 s builder timeout; candidates are built here with `_build` instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import statistics
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tqdm import tqdm
from tvm import tirx
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.arg_info import ArgInfo
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

from smelt.ir.errors import SmeltError

from .schedule import SCHEDULE_ATTR

#: the rules whose kernels are worth tuning (smelt's register-tile contraction rules)
CONTRACTION_RULES = frozenset({"dense", "matmul", "conv2d", "depthwise", "grouped-conv"})
#: the `smelt.schedule` attribute of a kernel whose MetaSchedule schedule was kept
TUNED_RULE = "metaschedule"
_LOGGER = "tvm.s_tir.meta_schedule"
LOG_INTERVAL_S = 30.0  # off a terminal, the progress bar is rewritten at most this often


class TuningError(SmeltError, ValueError):
    """A tuning request smelt cannot carry out (bad option values)."""


def default_tuning_dir() -> Path:
    """Where tuning records are kept unless the caller says otherwise: the per-user cache
    (`$XDG_CACHE_HOME/smelt/tuning`, by default `~/.cache/smelt/tuning`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "smelt" / "tuning"


def database_dir(work_dir: Path, target: tvm.target.Target) -> Path:
    """One database per target inside `work_dir`: a record measured for one CPU is not
    reused for another."""
    attrs = target.attrs
    mcpu = str(attrs["mcpu"]) if "mcpu" in attrs else "generic"
    digest = hashlib.sha256(str(target).encode()).hexdigest()[:10]
    return Path(work_dir) / f"{target.kind.name}-{mcpu}-{digest}"


def open_database(work_dir: Path, target: tvm.target.Target) -> ms.database.JSONDatabase:
    path = database_dir(work_dir, target)
    path.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(
        path_workload=str(path / "database_workload.json"),
        path_tuning_record=str(path / "database_tuning_record.json"),
        module_equality="structural")


def tune_kernels(unscheduled: tvm.IRModule, scheduled: tvm.IRModule,
                 target: tvm.target.Target, trials: int, work_dir: Path,
                 progress: bool = True, *,
                 builder: ms.Builder | None = None) -> tuple[tvm.IRModule, dict[str, dict]]:
    """Tune each contraction kernel of `scheduled` (its unscheduled version taken from
    `unscheduled`, under the same name) and keep the faster of MetaSchedule's and smelt's
    schedule. Returns the new module (the input is left as it was) and a report:
    kernel name -> {"rule", "trials" (run now; 0 if reused), "reused", "smelt_us",
    "tuned_us", "kept" ("smelt" or "metaschedule"), "reason" (why smelt's was kept)}.
    `builder` replaces the candidate builder (tests, remote build farms)."""
    if trials < 0:
        raise TuningError(f"tune= must be a number of trials >= 0, got {trials}")
    chosen = _contraction_kernels(scheduled)
    if trials == 0 or not chosen:
        return scheduled, {}
    work_dir = Path(work_dir)
    db_dir = database_dir(work_dir, target)
    database = open_database(work_dir, target)
    log_path = db_dir / "logs" / "tuning.log"
    updates: dict[tvm.ir.GlobalVar, tirx.PrimFunc] = {}
    report: dict[str, dict] = {}
    names = {g.name_hint for g in unscheduled.get_global_vars()}
    session = _Session(target, database, builder, log_path)
    try:
        for k, (gv, rule) in enumerate(chosen, 1):
            entry = report[gv.name_hint] = {
                "rule": rule, "trials": 0, "reused": False, "smelt_us": None,
                "tuned_us": None, "kept": "smelt", "reason": None}
            with _bar(f"tuning kernel {k}/{len(chosen)} {gv.name_hint}", trials,
                      progress) as bar:
                try:
                    if gv.name_hint not in names:
                        raise _Skip("the unscheduled module has no kernel of that name")
                    func = _tune_one(session, unscheduled[gv.name_hint], scheduled[gv],
                                     trials, entry, bar)
                    if func is not None:
                        updates[gv] = func
                except _Skip as e:
                    entry["reason"] = str(e)
                except Exception as e:  # MetaSchedule or the race broke: keep smelt's
                    entry["reason"] = (f"{type(e).__name__}: {_first_line(e)} "
                                       f"(log: {log_path})")
    finally:
        session.close()
    if not updates:
        return scheduled, report
    out = tvm.IRModule(dict(scheduled.functions_items()), attrs=scheduled.attrs,
                       global_infos=scheduled.global_infos)
    for gv, func in updates.items():
        out[gv] = func
    return out, report


class _Skip(Exception):
    """This kernel keeps smelt's schedule; the message says why."""


def _contraction_kernels(mod: tvm.IRModule) -> list[tuple[tvm.ir.GlobalVar, str]]:
    out = []
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and SCHEDULE_ATTR in (func.attrs or {}):
            rule = str(func.attrs[SCHEDULE_ATTR])
            if rule in CONTRACTION_RULES:
                out.append((gv, rule))
    return sorted(out, key=lambda item: item[0].name_hint)


def _workload(func: tirx.PrimFunc) -> tvm.IRModule:
    """The kernel as MetaSchedule keys it: alone in a module, named `main`."""
    func = func.with_attr("global_symbol", "main").with_attr("tirx.noalias", True)
    return tvm.IRModule({"main": func})


def _tune_one(session: _Session, unscheduled: tirx.PrimFunc, ours: tirx.PrimFunc,
              trials: int, entry: dict, bar: tqdm) -> tirx.PrimFunc | None:
    """Tune (or reuse), race, and return the tuned kernel if it wins, else None."""
    if SCHEDULE_ATTR in (unscheduled.attrs or {}):
        raise _Skip("its version in the unscheduled module is already scheduled")
    workload = _workload(unscheduled)
    db, target = session.database, session.target
    if db.has_workload(workload) and db.query_tuning_record(workload, target, "main"):
        entry["reused"] = True
        bar.set_postfix_str("reused", refresh=False)
        bar.update(trials)
    else:
        entry["trials"] = session.tune(workload, trials, bar)
    sch = db.query_schedule(workload, target, "main")
    if sch is None:
        why = session.last_error or "no candidate was measured"
        raise _Skip(f"MetaSchedule found no schedule that builds and runs in "
                    f"{entry['trials']} trials; first error: {why}")
    tuned = sch.mod["main"]
    ours_us, tuned_us, mismatch = _race(ours, tuned, target)
    entry["smelt_us"], entry["tuned_us"] = round(ours_us, 3), round(tuned_us, 3)
    if mismatch:
        raise _Skip(f"the tuned kernel's outputs differ from smelt's ({mismatch})")
    if tuned_us >= ours_us:
        entry["reason"] = "smelt's schedule was faster"
        return None
    entry["kept"] = TUNED_RULE
    attrs = {k: v for k, v in (ours.attrs or {}).items() if k != SCHEDULE_ATTR}
    func = tuned.without_attr("global_symbol") if "global_symbol" not in attrs else tuned
    for key, value in attrs.items():
        func = func.with_attr(key, value)
    return func.with_attr(SCHEDULE_ATTR, TUNED_RULE).with_attr("tirx.is_scheduled", True)


# ---- the MetaSchedule session ----------------------------------------------------------------


class _Session:
    """Builder, runner, cost model and logging shared by the kernels of one call."""

    def __init__(self, target, database, builder, log_path: Path) -> None:
        self.target = target
        self.database = database
        self._builder = builder
        self._runner: ms.Runner | None = None
        self.log_path = log_path
        self.last_error: str | None = None
        self._logging: contextlib.ExitStack | None = None

    def _start(self) -> None:
        if self._logging is None:
            self._logging = contextlib.ExitStack()
            self._logging.enter_context(_log_to_file(self.log_path))
        if self._builder is None:
            self._builder = ms.builder.LocalBuilder(f_build=_build, timeout_sec=60.0,
                                                    max_workers=_cores())
        if self._runner is None:
            self._runner = ms.runner.LocalRunner(
                timeout_sec=60.0,
                evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1,
                                                           min_repeat_ms=20))

    def tune(self, workload: tvm.IRModule, trials: int, bar: tqdm) -> int:
        """Run up to `trials` trials; return how many were measured."""
        self._start()
        counter = _Counter(bar, trials)
        with _host_intrinsics(self.target):
            ctx = ms.TuneContext(mod=workload, target=self.target,
                                 space_generator="post-order-apply",
                                 search_strategy=_search_strategy(), task_name="main",
                                 rand_state=1, num_threads=_cores(),
                                 logger=logging.getLogger(_LOGGER + ".smelt"))
        ms.tune.tune_tasks(
            tasks=[ctx], task_weights=[1.0], work_dir=str(self.log_path.parent),
            max_trials_global=trials, max_trials_per_task=trials,
            num_trials_per_iter=min(trials, 64), builder=self._builder,
            runner=self._runner, database=self.database, cost_model=_cost_model(),
            measure_callbacks=[*ms.MeasureCallback.create("default"), counter],
            task_scheduler="round-robin")
        self.last_error = counter.first_error
        return counter.count

    def close(self) -> None:
        if self._logging is not None:
            self._logging.close()


@derived_object
class _Counter(PyMeasureCallback):
    """Counts measured trials, moves the progress bar, keeps the first error message."""

    def __init__(self, bar: tqdm, trials: int) -> None:
        self.bar, self.trials, self.count = bar, trials, 0
        self.first_error: str | None = None

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
              runner_results) -> None:
        shown = min(self.count, self.trials)
        self.count += len(measure_candidates)
        if self.first_error is None:
            for b, r in zip(builder_results, runner_results, strict=False):
                msg = b.error_msg or (r.error_msg if r is not None else None)
                if msg:
                    self.first_error = _first_line(msg)
                    break
        self.bar.update(min(self.count, self.trials) - shown)


def _build(mod: tvm.IRModule, target: tvm.target.Target, _params: Any) -> Any:
    """MetaSchedule's default build without its import of every target's intrinsics."""
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm.tirx.build(mod, target=target)  # a runtime Module, which the exporter needs


def _cores() -> int:
    try:
        import psutil

        return max(1, psutil.cpu_count(logical=False) or 1)
    except ImportError:
        return max(1, os.cpu_count() or 1)


def _has_xgboost() -> bool:
    try:
        import xgboost  # noqa: F401
    except ImportError:
        return False
    return True


def _cost_model() -> str:
    return "xgb" if _has_xgboost() else "random"


def _search_strategy() -> str:
    """Evolutionary search needs a cost model to steer it; with the random one (xgboost is
    optional) it costs seconds per round for nothing, so sample the design space instead."""
    return "evolutionary" if _has_xgboost() else "replay-trace"


@contextlib.contextmanager
def _host_intrinsics(target: tvm.target.Target) -> Iterator[None]:
    """Let MetaSchedule's `import tvm.s_tir.tensor_intrin` load only the host's intrinsics.
    A stand-in package is put in `sys.modules` for the duration and taken out after, so a
    later real import still loads everything."""
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    from tvm import s_tir

    stub = types.ModuleType(name)
    stub.__path__ = [str(Path(s_tir.__file__).parent / "tensor_intrin")]
    stub.__package__ = name
    sys.modules[name] = stub
    try:
        triple = str(target.attrs.get("mtriple", "")) or platform.machine()
        arch = "arm_cpu" if any(a in triple for a in ("aarch64", "arm")) else "x86"
        __import__(f"{name}.{arch}")
        yield
    finally:
        if sys.modules.get(name) is stub:
            del sys.modules[name]


@contextlib.contextmanager
def _log_to_file(path: Path) -> Iterator[None]:
    """Send MetaSchedule's log (design spaces, errors, the task table) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(_LOGGER)
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
    saved = (logger.level, logger.propagate, list(logger.handlers))
    for h in saved[2]:
        logger.removeHandler(h)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        for h in saved[2]:
            logger.addHandler(h)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


# ---- the race: smelt's schedule against the tuned one ---------------------------------------


def _race(ours: tirx.PrimFunc, tuned: tirx.PrimFunc,
          target: tvm.target.Target) -> tuple[float, float, str | None]:
    """Median run time of each (microseconds), and how their outputs differ (None: they
    agree). Both run on the same random arguments, timed in alternating rounds."""
    dev = tvm.cpu()
    libs = [tvm.tirx.build(_workload(f), target=target) for f in (ours, tuned)]
    rng = np.random.default_rng(0)
    init = [_random_array(a, rng) for a in ArgInfo.from_prim_func(ours)]
    args = [[tvm.runtime.tensor(a.copy(), dev) for a in init] for _ in libs]
    for lib, a in zip(libs, args, strict=True):
        lib["main"](*a)
    mismatch = _compare([x.numpy() for x in args[0]], [x.numpy() for x in args[1]])
    times: list[list[float]] = [[], []]
    for _ in range(3):
        for i, (lib, a) in enumerate(zip(libs, args, strict=True)):
            evaluator = lib.time_evaluator("main", dev, number=1, repeat=5, min_repeat_ms=10)
            times[i].extend(evaluator(*a).results)
    ours_us, tuned_us = (statistics.median(t) * 1e6 for t in times)
    return ours_us, tuned_us, mismatch


def _random_array(info: Any, rng: np.random.Generator) -> np.ndarray:
    shape = [int(d) for d in info.shape]
    dtype = str(info.dtype)
    if dtype.startswith("float"):
        return rng.uniform(-1, 1, shape).astype(dtype)
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    return rng.integers(0, 4, shape).astype(dtype)  # small: in range for any index use


def _compare(ref: list[np.ndarray], got: list[np.ndarray]) -> str | None:
    for i, (r, g) in enumerate(zip(ref, got, strict=True)):
        if r.dtype.kind == "f":
            scale = max(1.0, float(np.abs(r).max(initial=0.0)))
            err = float(np.abs(r.astype(np.float64) - g).max(initial=0.0))
            if not np.isfinite(err) or err > 1e-3 * scale:
                return f"argument {i}: max error {err:.3g} at scale {scale:.3g}"
        elif not np.array_equal(r, g):
            return f"argument {i}: integer outputs differ"
    return None


def _first_line(e: object) -> str:
    """The message's first line, and its last if that one differs (a traceback's error)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return text[:300]


def _bar(label: str, trials: int, enabled: bool) -> tqdm:
    """One kernel's trials on stderr, a line per kernel:
    `tuning kernel 2/5 fused_dense_add:  41%|####      | 13/32 [00:03<00:05, 4.1trial/s]`.
    Off a terminal (a CI log) it is rewritten at most every LOG_INTERVAL_S seconds."""
    return tqdm(total=trials, desc=label, unit="trial", disable=not enabled, file=sys.stderr,
                mininterval=0.1 if sys.stderr.isatty() else LOG_INTERVAL_S,
                maxinterval=LOG_INTERVAL_S)
