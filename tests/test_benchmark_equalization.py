"""benchmarks/equalization.py stays runnable (--quick: two epochs, 120 test images) and
reports what it promises: per-channel ranges and per-tensor int8 weight SQNR before and after
`equalize`, both as JSON and as a table. Its numbers are measured by running it in full."""

from __future__ import annotations

from pathlib import Path

from run_benchmark import run_benchmark


def test_equalization_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "eq.json"
    res = run_benchmark("equalization", out, "--quick")
    assert res["pipeline"] == "fold-bn,equalize(relu6='to-relu')"
    # relu6 -> relu is lossy, and says so: a finite bound, a-priori or measured on calibration
    assert res["contract"].startswith("bounded(") and res["contract"] != "bounded(inf)"
    assert any(n.startswith("LOSSY relu6 -> relu") for n in res["equalize_notes"])
    before, after = res["layers"]["before"], res["layers"]["after"]
    assert [r["layer"] for r in before] == [r["layer"] for r in after]
    assert len(before) == 18 and all(len(r["ranges"]) == r["channels"] for r in before)
    assert sum(r["groups"] > 1 for r in before) == 5  # the depthwise convs
    s0, s1 = res["summary"]["before"], res["summary"]["after"]
    assert s1["max_spread"] <= s0["max_spread"] and s1["mean_sqnr_db"] > s0["mean_sqnr_db"]
    assert set(res["per_tensor_weights"]) == {"int8", "int4"}
    assert abs(res["float"]["torch_accuracy"] - res["float"]["before"]["accuracy"]) < 0.01
    table = out.with_suffix(".md").read_text()
    assert "int8 weight SQNR dB" in table and "Anchor: Nagel et al. 2019" in table
