"""benchmarks/transformer_quant.py stays runnable: its --quick run (one MiniLM layer, 8
sentences, one Llama batch) writes every field, and the orderings the full run shows hold even
there: AWQ above round to nearest on both models, SmoothQuant above naive W8A8 on the Llama
block's outlier channels, and packed W4A16 weights under a third of fp32's bytes."""

from __future__ import annotations

from pathlib import Path

from run_benchmark import run_benchmark


def test_transformer_quant_quick(tmp_path: Path) -> None:
    out = tmp_path / "tq.json"
    data = run_benchmark("transformer_quant", out, "--quick", "--repeats", "1")
    m, ll = data["minilm"]["variants"], data["llama"]["variants"]
    assert m["fp32"]["min"] > 0.99999
    assert m["w4a16 awq"]["mean"] > m["w4a16 rtn"]["mean"]
    assert ll["w4a16 awq"]["mean"] > ll["w4a16 rtn"]["mean"]
    assert ll["w8a8 smoothquant a=0.5"]["mean"] > ll["w8a8 naive"]["mean"]
    fp32, w4 = (m[k]["bytes"]["without_embeddings"] for k in ("fp32", "w4a16 awq"))
    assert w4 < fp32 / 3
    lat = data["latency"]
    assert set(lat) == {"torch fp32 eager", "smelt fp32", "smelt w8a8 smoothquant",
                        "smelt w4a16 awq"}
    assert all(v["median_ms"] > 0 for v in lat.values())
    assert not any(v.get("unscheduled") for v in lat.values())
    assert "| w4a16 awq |" in out.with_suffix(".md").read_text()
