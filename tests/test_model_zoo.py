"""The zoo sweep (benchmarks/model_zoo.py) on its CI subset, and how it records what fails.

The full sweep (every torchvision classification model, a timm sample, transformers
architectures) takes hours; it is run by hand (`make zoo`), and its numbers are in its report.
Here: the quick subset passes every stage; a model that fails is a row with its typed error,
never an exception out of the sweep; a model that runs too long is stopped and recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from run_benchmark import run_benchmark
from torch import nn

from benchmarks.model_zoo import QUICK, ZOO_PACKAGES, error_key, versions_against_pins
from benchmarks.zoo_models import ZooModel, image_inputs
from benchmarks.zoo_stages import STAGES, Options, run_stages

STATUSES = {"ok", "fail", "skip", "timeout", "memory", "crash", "not run"}


def _check_shape(data: dict, out: Path) -> None:
    assert data["config"]["stages"] == list(STAGES)
    assert {"cpu", "threads", "versions"} <= set(data["machine"])
    for rec in data["results"]:
        assert {"zoo", "name", "passed", "first_error", "stages"} <= set(rec)
        assert list(rec["stages"]) == list(STAGES)
        assert all(s["status"] in STATUSES for s in rec["stages"].values())
    table = out.with_suffix(".md").read_text()
    head = next(line for line in table.splitlines() if line.startswith("| zoo | model |"))
    assert all(f" {stage} |" in head for stage in STAGES)


@pytest.mark.slow
def test_quick_subset_passes_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "zoo.json"
    data = run_benchmark("model_zoo", out, "--quick", timeout=1800)
    _check_shape(data, out)
    assert [f"{r['zoo']}:{r['name']}" for r in data["results"]] == list(QUICK)
    failed = {f"{r['zoo']}:{r['name']}": r["first_error"] for r in data["results"]
              if not r["passed"]}
    assert not failed, failed
    assert set(data["summary"]["per_zoo"]) == {"torchvision", "timm", "transformers"}
    for rec in data["results"]:
        assert rec["stages"]["speed"]["speedup"] > 0
        assert rec["stages"]["interpret"]["error"]["relative"] < 1e-4
        assert rec["stages"]["torch_compile"]["graphs"] >= 1
    assert data["summary"]["pass_rate"] == 1.0


class Spectrum(nn.Module):
    """A complex FFT: out of smelt's scope (complex dtypes), so the frontend refuses it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(x, dim=-1).abs()


def test_a_failing_stage_is_recorded_with_its_typed_error() -> None:
    zm = ZooModel("test", "spectrum", "classification", Spectrum, image_inputs(8))
    seen: list[tuple[str, str]] = []
    results = run_stages(lambda: zm, ["build", "trace", "interpret", "torch_compile"],
                         Options(), lambda stage, rec: seen.append((stage, rec["status"])))
    assert results["build"]["status"] == "ok"
    trace = results["trace"]
    assert trace["status"] == "fail" and trace["error_type"] == "UnsupportedOpError"
    assert "fft" in trace["op"] and trace["op"] in trace["error"]
    assert results["interpret"] == {"status": "skip", "reason": "needs trace"}
    dynamo = results["torch_compile"]
    assert dynamo["status"] == "fail" and dynamo["error_type"] == "FallbackWarning"
    assert "fft" in dynamo["error"]
    assert ("trace", "running") in seen and ("trace", "fail") in seen
    assert error_key(trace) == f"UnsupportedOpError: {trace['op']}"


def test_a_model_past_its_time_is_stopped_and_recorded(tmp_path: Path) -> None:
    out = tmp_path / "zoo.json"
    data = run_benchmark("model_zoo", out, "--models", "torchvision:resnet18", "--timeout",
                         "15", timeout=300)
    _check_shape(data, out)
    (rec,) = data["results"]
    statuses = [s["status"] for s in rec["stages"].values()]
    assert statuses.count("timeout") == 1 and not rec["passed"]
    assert rec["first_error"]["error_type"] == "timeout"
    stopped = statuses.index("timeout")
    assert all(s == "not run" for s in statuses[stopped + 1:])
    assert "TIMEOUT" in out.with_suffix(".md").read_text()


def test_installed_zoo_packages_are_the_pinned_ones() -> None:
    versions = versions_against_pins()
    assert set(versions) == set(ZOO_PACKAGES)
    assert all(v["pinned"] for v in versions.values()), versions
    assert not [k for k, v in versions.items() if v["differs"]], versions
