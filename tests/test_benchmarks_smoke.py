"""The benchmarks stay runnable: each runs on its smallest size (their numbers are measured
by running them in full, not here)."""

from __future__ import annotations

from pathlib import Path

from run_benchmark import run_benchmark


def test_rewrite_scale_runs_and_fuses(tmp_path: Path) -> None:
    out = tmp_path / "rs.json"
    data = run_benchmark("rewrite_scale", out, "--sizes", "1001", "--peers",
                         "smelt,smelt-fuse", timeout=300)
    assert data["summary"]["largest_within_limit"] == {"smelt": 1001, "smelt-fuse": 1001}
    assert all(r["status"] == "ok" and r["correct"] for r in data["results"])


def test_cpu_latency_quick_writes_every_field(tmp_path: Path) -> None:
    out = tmp_path / "cpu.json"
    data = run_benchmark("cpu_latency", out, "--quick", "--models", "llama_block",
                         "--repeats", "2", "--warmup", "1", "--profile-runs", "2", timeout=300)
    assert {"cpu", "cpu_count", "threads", "mcpu", "versions"} <= set(data["machine"])
    assert data["machine"]["threads"]["tvm"] == data["config"]["threads"]
    (rec,) = data["results"]
    runtimes = rec["runtimes"]
    for name in ("torch", "smelt"):
        assert runtimes[name]["status"] == "ok" and runtimes[name]["median_ms"] > 0
    ort = runtimes["onnxruntime"]
    assert ort["status"] == "ok" or ort["reason"]  # missing onnxruntime is reported, not fatal
    assert rec["speedup_vs_torch"]["smelt"] > 0
    assert data["summary"]["geomean_speedup_smelt_vs_torch"] > 0
    assert rec["correctness"]["smelt_vs_torch"]["relative"] < 1e-4
    assert rec["correctness"]["smelt_vs_interpreter"]["relative"] < 1e-4
    top = rec["profile"]["top"]
    assert top and {"name", "rule", "calls", "total_us", "share"} <= set(top[0])
    assert "llama_block" in out.with_suffix(".md").read_text()


def test_int8_quick_runs_smelt_and_onnxruntime_int8(tmp_path: Path) -> None:
    out = tmp_path / "int8.json"
    data = run_benchmark("int8", out, "--quick", "--models", "resnet18", "--warmup", "1",
                         "--epochs", "1")
    (rec,) = data["results"]
    smelt_int8 = rec["runtimes"]["smelt_int8"]
    assert smelt_int8["status"] == "ok" and smelt_int8["float_islands"] == []
    assert rec["errors"]["smelt_int8"]["rel_error"] < 0.2
    acc = data["accuracy"]["accuracy"]
    assert {"fp32", "w8a8", "w8a8-tensor", "equalize + w8a8"} <= set(acc)
    assert all(0 <= v <= 1 for v in acc.values() if isinstance(v, float))
    assert "Digits accuracy" in out.with_suffix(".md").read_text()


def test_profile_kernels_names_every_kernel_with_its_rule() -> None:
    import numpy as np

    import smelt
    from smelt.backends.profile import profile_kernels
    from smelt.zoo import ZOO

    entry = ZOO["residual_cnn"]
    args = entry.inputs()
    module = smelt.compile(smelt.trace(entry.build(), args))
    rows = profile_kernels(module, *args, runs=3)
    kernels = [r for r in rows if not r["builtin"]]
    assert kernels and all(r["name"] in module.kernels for r in kernels)
    assert all(r["rule"] == module.kernels[r["name"]] and r["calls"] >= 1 for r in kernels)
    assert all(r["builtin"] == r["name"].startswith("vm.builtin.") for r in rows)
    assert np.isclose(sum(r["share"] for r in rows), 1.0)
    assert [r["total_us"] for r in rows] == sorted((r["total_us"] for r in rows), reverse=True)
