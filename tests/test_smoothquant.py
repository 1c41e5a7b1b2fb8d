"""smoothquant: the migration is exact, its scales land in layer norms / RMSNorm weights, the
report names every linear layer, and on a decoder with planted outlier channels it beats
plain W8A8. (The smoothing rules are verified with every registered rule.)"""

from __future__ import annotations

import numpy as np
import pytest

import smelt
from smelt import zoo
from smelt.passes.smoothing import SMOOTH
from smelt.passes.smoothquant import groups, migrate, smoothing_scales
from smelt.rewrite.contract import exact
from smelt.rewrite.driver import rewrite
from smelt.rewrite.errors import PipelineParseError
from smelt.rewrite.pipeline import Pipeline
from smelt.rewrite.verify import assert_equivalent


def outlier_llama():
    """The zoo's Llama block with three activation channels 40x larger, compensated in the
    weights that read them (zoo.plant_outliers)."""
    entry = zoo.ZOO["llama_block"]
    model = zoo.plant_outliers(entry.build())
    inputs = entry.inputs()
    graph = smelt.trace(model, inputs)
    rng = np.random.default_rng(7)
    cal = [rng.normal(size=inputs[0].shape).astype(np.float32) for _ in range(4)]
    return graph, cal, inputs[0].numpy()


@pytest.fixture(scope="module")
def llama():
    return outlier_llama()


def test_migration_is_exact(llama) -> None:
    graph, cal, _ = llama
    grouped, _ = groups(graph)
    rng = np.random.default_rng(0)
    scales = {x: rng.uniform(0.2, 5.0, size=x.shape[-1]) for x in grouped}
    migrated = rewrite(migrate(graph, scales), SMOOTH).graph
    assert_equivalent(graph, migrated, exact, cal[:2], what="smoothing migration")


def test_scales_are_absorbed_and_every_linear_is_reported(llama) -> None:
    graph, cal, _ = llama
    result = Pipeline.parse("smoothquant(alpha=0.5)").run(graph, calibration=cal)
    notes = result.report.passes[0].notes
    linears = [n for n in graph.nodes() if n.op == "linear"]
    reported = [n for n in notes if n.startswith("linear")]
    assert len(reported) == len(linears)
    assert sum("absorbed into mul" in n for n in reported) == 5  # q, k, v, gate, up
    assert any("not smoothed" in n for n in reported)  # wo: its input is a reshape
    assert result.report.passes[0].fired  # the rules did the absorbing


def test_smoothquant_beats_plain_w8a8_on_outlier_channels(llama) -> None:
    graph, cal, x = llama
    ref = smelt.interpret(graph, x)[0]

    def cosine(spec: str) -> float:
        got = smelt.interpret(Pipeline.parse(spec)(graph, calibration=cal), x)[0]
        return float((got * ref).sum() / np.linalg.norm(got) / np.linalg.norm(ref))

    naive, smooth = cosine("quantize(w8a8)"), cosine("smoothquant(alpha=0.5)")
    assert smooth > naive and smooth > 0.99, (naive, smooth)


def test_scales_follow_the_formula() -> None:
    x_max = np.array([8.0, 1.0, 0.0])
    w = [np.array([[2.0, 0.5, 1.0]]), np.array([[0.5, 4.0, 1.0]])]
    s = smoothing_scales(x_max, w, 0.5)
    np.testing.assert_allclose(s, [np.sqrt(8.0) / np.sqrt(2.0), 1.0 / 2.0, 1.0])


def test_bad_alpha_and_missing_calibration() -> None:
    with pytest.raises(PipelineParseError, match="alpha"):
        Pipeline.parse("smoothquant(alpha=2)")
    graph, _, _ = outlier_llama()
    with pytest.raises(PipelineParseError, match="calibration"):
        Pipeline.parse("smoothquant")(graph)
