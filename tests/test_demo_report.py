"""The demo's report (smelt/demo_report.py) on a small made-up run: both documents say the same
thing, the plots are real PNGs, the summary is short. `make demo` itself runs in CI (.ci/run)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from smelt.backends.mcu.memory_plan import Buffer, plan_memory
from smelt.demo_report import write_report
from smelt.rewrite.layer_errors import LayerError, LayerErrors


@dataclass
class FakeStep:  # the fields of smelt.demo.Step that the report reads
    name: str
    parent: str | None
    pipeline: str
    contract: str
    measured: float | None
    accuracy: float
    weight_bytes: int
    macs: int
    compiled_error: float = 1e-7
    bit_exact: bool | None = None


@pytest.fixture
def written(tmp_path):
    steps = [FakeStep("float32", None, "fold-bn", "exact", 1e-7, 0.97, 150_000, 300_000),
             FakeStep("W8A8", "float32", "quantize(scheme=w8a8),fold-qdq", "bounded(0.5)",
                      0.01, 0.96, 30_000, 250_000, bit_exact=True)]
    errors = LayerErrors((LayerError(0, "conv2d", (1, 16, 8, 8), 0.01, 0.02),
                          LayerError(1, "linear", (1, 10), 0.03, 0.1)), 0)
    plan = plan_memory([Buffer("a", 4096, 0, 1), Buffer("b", 2048, 1, 2), Buffer("c", 1024, 2, 3)])
    facts = {"torch_accuracy": 0.97, "train_seconds": 5.0, "epochs": 8, "train_images": 1437,
             "test_images": 360, "seconds": 90.0, "mcu_bit_exact": True, "mcu_images": 20,
             "mcu_accuracy": 0.95,
             "latency_ms": {"smelt float32": 0.2, "smelt W8A8": 0.1, "torch eager float32": 1.5,
                            "onnxruntime float32": 0.15},
             "mcu": {"board": "mps2-an386", "core": "cortex-m4", "project": "/tmp/p",
                     "flash_bytes": 47_000, "sram_bytes": 9_000, "weight_bytes": 27_000,
                     "arena_bytes": plan.arena, "arena_lower_bound": plan.lower_bound,
                     "arena_naive": plan.naive, "workspace_bytes": 1024, "stack_bytes": 1100,
                     "stack_kind": "estimate", "instructions": 2_164_440}}
    return tmp_path, write_report(tmp_path, steps, errors, plan, facts, ok=True)


def test_markdown_and_html_carry_the_same_tables(written):
    out, report = written
    md, page = report.markdown.read_text(), report.html.read_text()
    assert md.startswith("# smelt demo") and "PASS" in md
    # 1.5 / 0.2 ms: 7.50x torch eager; 0.15 / 0.2 ms: 0.75x onnxruntime
    for text in ("W8A8", "bit-exact", "7.50x", "0.75x", "2,164,440", "mps2-an386"):
        assert text in md and text in page, text
    assert md.count("![") == page.count("<img") == 3
    tables = sum(line.startswith("|---") for line in md.splitlines())
    assert page.count("<table>") == tables == 3 and "<code>fold-bn</code>" in page


def test_plots_are_pngs_of_the_stated_size(written):
    from matplotlib.image import imread

    _, report = written
    for path in report.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = imread(path)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 600
        assert np.std(pixels[..., :3]) > 0.05  # something is drawn, not a blank canvas


def test_json_and_summary(written):
    out, report = written
    record = json.loads((out / "demo.json").read_text())
    assert record["ok"] and [s["name"] for s in record["steps"]] == ["float32", "W8A8"]
    assert "project" not in record["mcu"] and record["layer_errors"][1]["relative"] == 0.03
    lines = report.summary.splitlines()
    assert len(lines) <= 10 and lines[-1].startswith("PASS")
