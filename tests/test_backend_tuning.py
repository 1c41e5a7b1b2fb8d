"""MetaSchedule tuning (`smelt.compile(graph, tune=N)`): a tuned module still matches the
interpreter, its records land in the on-disk database and a second compile of the same
workload reuses them, and a kernel MetaSchedule cannot tune keeps smelt's schedule with a
reason. Trials are kept to a handful: these tests check the plumbing, not the speed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder

import smelt
from smelt.backends.cpu.build import copy_module, fused_kernels
from smelt.backends.cpu.schedule import kernel_rules, schedule_cpu
from smelt.backends.cpu.tuning import (
    TUNED_RULE,
    TuningError,
    database_dir,
    default_tuning_dir,
    tune_kernels,
)
from smelt.backends.targets import make_target

TRIALS = 4


def _dense_graph(seed: int) -> tuple[smelt.Graph, np.ndarray]:
    torch.manual_seed(seed)
    x = torch.randn(16, 64)
    return smelt.trace(nn.Linear(64, 64).eval(), (x,)), x.numpy()


def _dense_kernel(module) -> str:
    (name,) = [k for k in module.tuning if "dense" in k]
    return name


def _records(work_dir) -> list[str]:
    path = database_dir(work_dir, make_target("cpu")) / "database_tuning_record.json"
    return [line for line in path.read_text().splitlines() if line.strip()]


def _matches_interpreter(module, graph: smelt.Graph, x: np.ndarray) -> None:
    (got,) = module(x)
    (want,) = smelt.interpret(graph, x)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_tune_then_reuse_records(tmp_path, capfd) -> None:
    graph, x = _dense_graph(0)
    t0 = time.perf_counter()
    module = smelt.compile(graph, "cpu", tune=TRIALS, tuning_dir=tmp_path)
    first_s = time.perf_counter() - t0
    name = _dense_kernel(module)
    entry = module.tuning[name]
    assert entry["rule"] == "dense" and not entry["reused"]
    assert 0 < entry["trials"] <= TRIALS
    assert entry["reason"] is None or entry["kept"] == "smelt", entry
    assert entry["smelt_us"] > 0 and entry["tuned_us"] > 0
    assert module.kernels[name] == (TUNED_RULE if entry["kept"] == TUNED_RULE else "dense")
    _matches_interpreter(module, graph, x)
    records = _records(tmp_path)
    assert records and min(json.loads(r)[1][1][0] for r in records) < 1.0  # seconds, measured
    err = capfd.readouterr()
    # tqdm's bar: the kernel count and name, then the trials measured of those asked for
    assert f"tuning kernel 1/1 {name}: " in err.err, err.err
    assert f"| {entry['trials']}/{TRIALS} [" in err.err, err.err
    assert "task_scheduler" not in err.err + err.out  # MetaSchedule's log went to the file
    assert (database_dir(tmp_path, make_target("cpu")) / "logs" / "tuning.log").stat().st_size

    # other weights, same shapes: the same workload, so not the in-memory cache but the record
    graph2, x2 = _dense_graph(1)
    t0 = time.perf_counter()
    module2 = smelt.compile(graph2, "cpu", tune=TRIALS, tuning_dir=tmp_path)
    second_s = time.perf_counter() - t0
    entry2 = module2.tuning[_dense_kernel(module2)]
    assert entry2["reused"] and entry2["trials"] == 0
    assert _records(tmp_path) == records  # nothing tuned again
    assert second_s < first_s / 2, (first_s, second_s)
    _matches_interpreter(module2, graph2, x2)


@derived_object
class _NoCompiler(PyBuilder):
    """A builder for which every candidate fails."""

    def build(self, build_inputs):
        return [BuilderResult(None, "no compiler on this machine") for _ in build_inputs]


def test_kernel_that_fails_to_tune_keeps_smelts_schedule(tmp_path) -> None:
    graph, _ = _dense_graph(2)
    target = make_target("cpu")
    unscheduled = fused_kernels(graph, target)
    with target, tvm.transform.PassContext(opt_level=3):
        scheduled = schedule_cpu(copy_module(unscheduled))
    out, report = tune_kernels(unscheduled, scheduled, target, TRIALS, tmp_path,
                               progress=False, builder=_NoCompiler())
    (entry,) = report.values()
    assert entry["kept"] == "smelt" and entry["trials"] == TRIALS
    assert "no compiler on this machine" in entry["reason"]
    assert kernel_rules(out) == kernel_rules(scheduled)
    assert all(rule != TUNED_RULE for rule in kernel_rules(out).values())


def test_tuning_options_are_checked(tmp_path, monkeypatch) -> None:
    graph, _ = _dense_graph(3)
    with pytest.raises(TuningError, match="trials"):
        smelt.compile(graph, tune=-1, tuning_dir=tmp_path)
    with pytest.raises(TuningError, match="schedule=True"):
        smelt.compile(graph, tune=2, schedule=False, tuning_dir=tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_tuning_dir() == tmp_path / "smelt" / "tuning"
