"""Compressed weights on the microcontroller: a graph with 2:4-packed linears (`linear24`:
kept values + 2-bit positions) or 4-bit weights two per byte (`linear_w4`) builds for the
Cortex-M4 (mps2-an386), runs under qemu within the float32 tolerance of the `exact` contract,
and what sits in flash is the compressed arrays, not a dense copy of the weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import smelt
from smelt.rewrite.contract import exact_tolerance, run64

pytestmark = pytest.mark.xdist_group("c_target")

DENSE_WEIGHT_BYTES = 4 * (32 * 64 + 64 + 64 * 12 + 12)  # two float32 linears with biases


def _mlp():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(),
                            torch.nn.Linear(64, 12)).eval()
    x = torch.randn(2, 32)
    return smelt.trace(m, (x,)), x.numpy()


def _constant_bytes(graph) -> int:
    return sum(n.value.nbytes for n in graph.nodes() if n.op == "constant")


@pytest.mark.parametrize(("pipeline", "op", "packed_bytes"), [
    # values (N, K/2) float32 + meta (N, K/8) uint8 + float32 bias, per layer
    ("sparsify-24", "linear24", 64 * 16 * 4 + 64 * 4 + 64 * 4 + 12 * 32 * 4 + 12 * 8 + 12 * 4),
    # nibbles (N, K/2) uint8 + one float32 scale per group of 16 + float32 bias, per layer
    ("quantize(w4a16, group=16),pack-int4", "linear_w4",
     64 * 16 + 64 * 2 * 4 + 64 * 4 + 12 * 32 + 12 * 4 * 4 + 12 * 4),
])
def test_compressed_linears_run_on_the_m4_from_compressed_flash(pipeline, op,
                                                               packed_bytes) -> None:
    graph, x = _mlp()
    packed = smelt.Pipeline.parse(pipeline)(graph)
    assert [n.op for n in packed.nodes()].count(op) == 2
    assert _constant_bytes(packed) == packed_bytes < DENSE_WEIGHT_BYTES / 1.7
    module = smelt.compile(packed, "c", board="mps2-an386")
    assert module.report["weight_bytes"] <= packed_bytes + 2 * 16 * 6  # + alignment padding
    (got,) = module(x)
    ref = run64(packed, [x])
    err = np.abs(got.astype(np.float64) - ref.outputs[0]).max()
    assert err <= exact_tolerance(ref, ref), err
