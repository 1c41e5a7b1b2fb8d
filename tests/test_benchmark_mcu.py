"""benchmarks/mcu.py stays runnable (--quick: the MCUNet-class model at 32x32 on the Cortex-M4
board) and reports what it promises: flash, SRAM, the memory plan against its lower bound
and a naive plan, and the C program bit-exact against the interpreter. Its full numbers are
measured by running it without --quick."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from run_benchmark import run_benchmark

from benchmarks.mcu import graph_buffers
from benchmarks.mcu_models import MCUNetVWW, mcu_models
from smelt.backends.mcu.memory_plan import plan_conflicts, plan_memory


@pytest.fixture(scope="module")
def quick_graph():
    return mcu_models("quick")["mcunet_vww_int8"].graph(calibration=2)


def test_mcunet_class_model_size() -> None:
    params = sum(p.numel() for p in MCUNetVWW().parameters())
    assert 300_000 <= params <= 800_000
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in MCUNetVWW().modules())


def test_graph_buffers_plan_within_goal(quick_graph) -> None:
    bufs = graph_buffers(quick_graph)
    ops = {b.name.split(":")[1] for b in bufs}
    assert "qconv2d" not in ops  # int32 accumulators are fused with their requantize
    assert "requantize" in ops and "qadd" in ops
    by_name = {b.name: b for b in bufs}
    for b in bufs:
        assert b.start <= b.end
        if b.inplace_of is not None:  # only elementwise ops, and only a dying operand
            assert b.name.split(":")[1] in ("qadd", "reshape", "quantize")
            assert by_name[b.inplace_of].end == b.start
    plan = plan_memory(bufs)
    assert plan_conflicts(plan) == []
    assert plan.arena <= 1.05 * plan.lower_bound
    assert plan.arena < plan.naive / 2


def test_mcu_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "mcu.json"
    res = run_benchmark("mcu", out, "--quick")
    (rec,) = res["results"]
    assert rec["model"] == "mcunet_vww_int8" and rec["input_shape"] == [1, 3, 32, 32]
    plan = rec["graph_plan"]
    assert plan["lower_bound"] <= plan["arena"] <= 1.05 * plan["lower_bound"]
    assert plan["arena"] < plan["naive"]
    board = rec["boards"]["mps2-an386"]
    assert board["status"] == "ok", board.get("reason")
    assert board["bit_exact"] and board["max_abs_error"] == 0.0
    assert board["arena_lower_bound"] <= board["arena_bytes"] <= 1.05 * board["arena_lower_bound"]
    assert board["arena_bytes"] <= board["arena_naive"]
    assert board["sram_total"] == (board["arena_bytes"] + board["workspace_bytes"]
                                   + board["stack_bytes"])
    assert 0 < board["flash_bytes"] <= 1024 * 1024 and board["sram_total"] <= 256 * 1024
    assert board["fits"]
    table = out.with_suffix(".md").read_text()
    assert "| mcunet_vww_int8 | mps2-an386 |" in table and "bit-exact" in table
