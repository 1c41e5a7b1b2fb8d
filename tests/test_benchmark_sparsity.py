"""benchmarks/sparsity.py stays runnable (--quick: two small layers, one epoch on 400 digits
images, 64 test images) and reports what it promises: per layer the weight bytes dense and
packed, smelt 2:4 / smelt dense / torch latency and the packed result's error; for the
digits CNN the accuracy dense, dense + the same extra epochs, 2:4 and 2:4 + fine-tune,
weight bytes and latency. Its numbers are measured by running it in full."""

from __future__ import annotations

from pathlib import Path

from run_benchmark import run_benchmark


def test_sparsity_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "sparsity.json"
    res = run_benchmark("sparsity", out, "--quick")
    assert [(r["m"], r["k"], r["n"]) for r in res["layers"]] == [(8, 64, 64), (1, 128, 32)]
    for r in res["layers"]:
        wb = r["weight_bytes"]
        assert wb["packed"] == r["n"] * r["k"] // 2 * 4 + r["n"] * r["k"] // 8  # values + meta
        assert wb["dense"] == r["n"] * r["k"] * 4
        assert all(v > 0 for v in r["ms"].values()) and set(r["ms"]) == {
            "smelt_dense", "smelt_24", "torch_dense"}
        assert r["max_abs_error_vs_float64"] < 1e-4
        assert set(r["kernels"]["sparse"].values()) == {"sparse-24"}
    d = res["digits"]
    assert list(d["rows"]) == ["dense", "dense + fine-tune", "2:4", "2:4 + fine-tune"]
    assert d["rows"]["dense"]["linear24"] == 0 and d["rows"]["2:4"]["linear24"] == 3
    assert d["rows"]["2:4"]["weight_bytes"] < d["rows"]["dense"]["weight_bytes"]
    assert all(0 <= r["accuracy"] <= 1 for r in d["rows"].values())
    assert d["compiled_vs_interpreter"] < 1e-3
    assert len(d["layers"]) == 3 and all(s.startswith("packed 2:4") for s in d["layers"])
    table = out.with_suffix(".md").read_text()
    assert "| M x K -> N | weight bytes dense |" in table and "## Digits CNN" in table
