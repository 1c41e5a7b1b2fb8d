"""benchmarks/pruning.py stays runnable (--quick: one epoch on 400 images, ratios 0 and 0.5, 64
test images) and reports what it promises: per model and ratio, accuracy before and after a
fine-tune, MACs, parameters and compiled / torch latency, as JSON and as a table. Its numbers
are measured by running it in full."""

from __future__ import annotations

from pathlib import Path

from run_benchmark import run_benchmark


def test_pruning_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "pruning.json"
    res = run_benchmark("pruning", out, "--quick")
    assert [m["model"] for m in res["models"]] == ["resnet", "mobilenet_v2"]
    for m in res["models"]:
        base, half = m["rows"]
        assert (base["ratio"], half["ratio"]) == (0.0, 0.5)
        assert base["accuracy_finetuned"] == base["accuracy_pruned"]  # ratio 0: unchanged
        assert half["macs_per_image"] < base["macs_per_image"] / 2  # in and out channels halve
        assert half["params"] < base["params"] / 2
        for r in m["rows"]:
            assert 0 <= r["accuracy_pruned"] <= 1 and 0 <= r["accuracy_finetuned"] <= 1
            assert r["latency_smelt_ms"] > 0 and r["latency_torch_ms"] > 0
            assert r["compiled_vs_interpreter"] < 1e-3
        assert half["measured_error"].startswith("pruned ") and half["groups"]
        assert any("depthwise conv" in g or "add" in g for g in half["groups"])
    table = out.with_suffix(".md").read_text()
    assert "| ratio | MACs / image |" in table and "Anchor: Fang et al. 2023" in table
