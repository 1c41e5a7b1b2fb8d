"""The `smelt` command end to end: each command run as a subprocess on tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import smelt

MODELS = '''
import numpy as np


def tiny():
    """conv -> batch norm -> relu -> flatten -> linear, and its example input."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    return model, (torch.randn(1, 3, 6, 6),)


def graph():
    """A smelt Graph built directly: linear -> relu -> (* 1) -> + x (no torch)."""
    from smelt.ir import Graph, Node, const, make

    rng = np.random.default_rng(0)
    x = Node.input("x", (2, 8))
    w = const(rng.standard_normal((8, 8)).astype(np.float32))
    h = make("relu", make("linear", x, w, const(np.zeros(8, np.float32))))
    return Graph([x], [make("add", make("mul", h, const(np.float32(1.0))), x)])


def raises():
    raise RuntimeError("weights file missing")


def unsupported():
    """A model that carries its example inputs, and uses an op smelt does not cover."""
    import torch

    class Inverter(torch.nn.Module):
        example_inputs = (torch.randn(4),)

        def forward(self, x):
            return torch.linalg.inv(x.reshape(2, 2))

    return Inverter()
'''


def smelt_cli(*args: str, cwd: Path, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smelt.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


# reading what Graphviz drew: a group per node, edge and cluster, with its text lines
SVG = "{http://www.w3.org/2000/svg}"
HIGHLIGHT = "#ffe3c2"  # the fill of a node that differs (smelt.draw.STYLE)


def svg_groups(svg: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if g.get("class") == kind]


def texts(group: ET.Element) -> list[str]:
    return [t.text or "" for t in group.iter(f"{SVG}text")]


def fill(node: ET.Element) -> str | None:
    """The fill of a node's box (its first path or polygon)."""
    shape = next(e for e in node.iter() if e.tag in (f"{SVG}path", f"{SVG}polygon"))
    return shape.get("fill")


def assert_clean_error(result: subprocess.CompletedProcess, status: int, *words: str) -> None:
    """A failure: the given exit status, one `smelt: error:` message, no traceback."""
    assert result.returncode == status, result.stderr
    assert result.stderr.startswith("smelt: error: "), result.stderr
    assert result.stderr.count("smelt: error:") == 1
    assert "Traceback" not in result.stderr
    for w in words:
        assert w in result.stderr, result.stderr


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    (d / "models.py").write_text(MODELS)
    (d / "broken.py").write_text("def tiny(:\n    pass\n")
    return d


def test_compile_int8_with_calibration_file(work: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(work / "cal.npz", rng.normal(size=(4, 1, 3, 6, 6)).astype(np.float32))
    result = smelt_cli("compile", "models.py:tiny", "--pipeline",
                       "fold-bn,quantize(w8a8),fold-qdq", "--calibration", "cal.npz",
                       "--out", "int8", cwd=work)
    assert result.returncode == 0, result.stderr
    report = json.loads((work / "int8" / "report.json").read_text())
    assert report["passes"][1]["contract"].startswith("bounded(")
    assert report["max_error_compiled_vs_interpreter"] == 0.0  # integer kernels: bit-exact
    after = smelt.load(work / "int8" / "after.smelt")
    assert {"qconv2d", "qlinear", "requantize"} <= set(after.summary().ops)
    np.savez(work / "bad.npz", np.zeros((4, 3, 6, 6), np.float32))
    bad = smelt_cli("compile", "models.py:tiny", "--pipeline", "quantize(w8a8)",
                    "--calibration", "bad.npz", "--out", "bad", cwd=work)
    assert_clean_error(bad, 2, "bad.npz", "expected (N, 1, 3, 6, 6)")


def test_compile_then_inspect_and_draw_what_it_wrote(work: Path) -> None:
    # one test, so the model compiles once however pytest-xdist spreads the tests
    result = smelt_cli("compile", "models.py:tiny", "--pipeline", "fold-bn,canonicalize,fuse",
                       "--target", "cpu", "--out", "out", cwd=work)
    assert result.returncode == 0, result.stderr
    out = work / "out"
    for name in ("model.so", "model.json", "before.smelt", "after.smelt", "report.md",
                 "report.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert [p["name"] for p in report["passes"]] == ["fold-bn", "canonicalize", "fuse"]
    assert report["passes"][0]["fired"] == {"fold_bn_into_conv": 1}
    assert all(p["measured_error"] is not None for p in report["passes"])  # verify-each ran
    assert report["before"]["nodes"] == 11 and report["after"]["nodes"] == 8
    assert report["before"]["macs"] == report["after"]["macs"] == 4608
    assert report["after"]["param_bytes"] < report["before"]["param_bytes"]
    assert report["kernels"] and None not in report["kernels"].values()
    assert report["max_error_compiled_vs_interpreter"] < 1e-5
    assert report["compile_seconds"] > 0
    before, after = smelt.load(out / "before.smelt"), smelt.load(out / "after.smelt")
    assert before.summary().ops["batch_norm"] == 1 and "batch_norm" not in after.summary().ops
    markdown = (out / "report.md").read_text()
    assert "| fold-bn |" in markdown and "| kernel | schedule rule |" in markdown
    assert markdown in result.stdout

    shown = smelt_cli("inspect", "out/after.smelt", cwd=work)
    assert shown.returncode == 0, shown.stderr
    assert "fused_conv2d" in shown.stdout and "MACs 4,608" in shown.stdout
    assert "bytes moved" in shown.stdout

    drawn = smelt_cli("draw", "out/before.smelt", "--compare", "out/after.smelt",
                      "-o", "diff.svg", cwd=work)
    assert drawn.returncode == 0, drawn.stderr
    svg = ET.parse(work / "diff.svg").getroot()
    titles = [" ".join(texts(g)) for g in svg_groups(svg, "cluster")]
    assert titles == ["out/before.smelt (4 differ)", "out/after.smelt (2 differ)"]
    # conv, batch norm, relu and reshape changed on the left; fused conv and reshape on the
    # right; the linear layer and the input are the same in both
    marked = {g.find(f"{SVG}title").text[0] + texts(g)[0].split()[0]
              for g in svg_groups(svg, "node") if fill(g) == HIGHLIGHT}
    assert marked == {"aconv2d", "abatch_norm", "arelu", "areshape", "bfused_conv2d",
                      "breshape"}
    plain = sorted(texts(g)[0] for g in svg_groups(svg, "node") if fill(g) != HIGHLIGHT)
    assert plain == ["input input", "input input", "linear", "linear"]


def test_inspect_a_factory_that_builds_a_graph(work: Path) -> None:
    result = smelt_cli("inspect", "models.py:graph", "--summary-only", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "graph main" not in result.stdout
    assert "nodes 8  MACs 128  parameters 73 (292 bytes)" in result.stdout
    assert "  linear                  1" in result.stdout


def test_draw_folds_constants_into_their_users(work: Path) -> None:
    result = smelt_cli("draw", "models.py:graph", "-o", "graph.svg", cwd=work)
    assert result.returncode == 0, result.stderr
    svg = ET.parse(work / "graph.svg").getroot()
    boxes = {texts(g)[0]: texts(g)[1:] for g in svg_groups(svg, "node")}
    assert set(boxes) == {"input x", "linear", "relu", "mul", "add"}  # no constant boxes
    assert boxes["linear"] == ["f32[2,8]", "w f32[8,8]", "b f32[8]"]
    assert boxes["mul"] == ["f32[2,8]", "b = 1.0"]
    assert boxes["add"] == ["f32[2,8]", "-> output 0"]
    assert fill(next(g for g in svg_groups(svg, "node") if texts(g)[0] == "input x")) != (
        fill(next(g for g in svg_groups(svg, "node") if texts(g)[0] == "relu")))
    assert len(svg_groups(svg, "edge")) == 5  # one per operand use between boxes
    assert [t.text for t in svg.iter(f"{SVG}text")][0] == "models.py:graph (8 nodes, 128 MACs)"

    result = smelt_cli("draw", "models.py:graph", "-o", "graph.dot", cwd=work)
    assert result.returncode == 0, result.stderr
    dot = (work / "graph.dot").read_text()
    assert dot.startswith("digraph smelt {") and dot.count(" -> ") == 5
    assert "<B>linear</B>" in dot and "w f32[8,8]" in dot


def test_draw_without_graphviz_says_what_to_install(work: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # python, but no `dot`
    result = smelt_cli("draw", "models.py:graph", "-o", "nodot.svg", cwd=work, env=env)
    assert_clean_error(result, 1, "apt-get install graphviz", "FILE.dot")
    assert not (work / "nodot.svg").exists()
    result = smelt_cli("draw", "models.py:graph", "-o", "graph.png", cwd=work)
    assert_clean_error(result, 2, "give -o FILE.svg or -o FILE.dot")


def test_verify_one_rule(work: Path) -> None:
    result = smelt_cli("verify", "--rule", "mul_one", "--examples", "20", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "[1/1] mul_one  ok" in result.stdout
    assert result.stdout.rstrip().endswith("1 rule: 1 passed, 0 failed")


BROKEN_RULE = '''
import sys

import smelt
from smelt.cli import main
from smelt.ir import make
from smelt.rewrite import const, exact, rule, var


@rule(var("x") * const("two", 2), contract=exact, family="broken")
def mul_two_as_add(x, two):
    """x * 2 -> x + 2   (wrong on purpose)"""
    return make("add", x, two)


smelt.register_rules(mul_two_as_add)
sys.exit(main(["verify", "--rule", "mul_two_as_add", "--examples", "5"]))
'''


def test_verify_reports_a_broken_rule_with_its_counterexample(work: Path) -> None:
    (work / "broken_rule.py").write_text(BROKEN_RULE)
    result = subprocess.run([sys.executable, "broken_rule.py"], cwd=work, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "[1/1] mul_two_as_add  FAIL" in result.stdout
    assert "broke its contract (exact)" in result.stdout and "graph after:" in result.stdout
    assert result.stdout.rstrip().endswith("1 rule: 0 passed, 1 failed (mul_two_as_add)")


def test_export_onnx_writes_what_onnxruntime_runs(work: Path) -> None:
    import numpy as np

    ort = pytest.importorskip("onnxruntime")
    result = smelt_cli("export-onnx", "models.py:graph", "-o", "onnx/graph.onnx", cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote onnx/graph.onnx: opset 21")
    session = ort.InferenceSession(str(work / "onnx" / "graph.onnx"),
                                   providers=["CPUExecutionProvider"])
    namespace: dict = {}
    exec(MODELS, namespace)
    graph = namespace["graph"]()
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    (got,) = session.run(None, {"x": x})
    np.testing.assert_allclose(got, smelt.interpret(graph, x)[0], rtol=1e-6, atol=1e-6)


def test_rules_table_and_markdown(work: Path) -> None:
    table = smelt_cli("rules", cwd=work)
    assert table.returncode == 0
    assert "fold_bn_into_conv" in table.stdout and "x * 1 -> x" in table.stdout
    markdown = smelt_cli("rules", "--markdown", cwd=work).stdout.splitlines()
    assert markdown[:2] == ["| rule | family | contract | rewrite |", "|---|---|---|---|"]
    assert len(markdown) == 2 + len(smelt.rules())
    assert "| `mul_one` | canonicalize | exact | `x * 1 -> x` (multiplicative" in markdown[
        2 + smelt.rules().names().index("mul_one")]


BAD_INPUT = [
    pytest.param(["inspect", "missing.smelt"], 2, "no such file: missing.smelt",
                 id="missing-graph-file"),
    pytest.param(["inspect", "missing.py:tiny"], 2, "no such file: missing.py",
                 id="missing-model-file"),
    pytest.param(["inspect", "models.py"], 2, "models.py:FACTORY", id="no-factory-named"),
    pytest.param(["inspect", "models.py:nothing"], 2, "has no function 'nothing'",
                 id="no-such-factory"),
    pytest.param(["inspect", "broken.py:tiny"], 1, "importing broken.py failed: SyntaxError",
                 id="syntax-error"),
    pytest.param(["inspect", "models.py:raises"], 1,
                 "raises() raised RuntimeError: weights file missing", id="factory-raises"),
    pytest.param(["compile", "models.py:tiny", "--pipeline", "fold-bn,frobnicate", "--out", "o"],
                 2, "unknown pass 'frobnicate'; registered passes: awq, canonicalize",
                 id="unknown-pass"),
    pytest.param(["compile", "models.py:tiny", "--target", "tpu", "--out", "o"], 2, "'cpu'",
                 id="unknown-target"),
    pytest.param(["verify", "--rule", "no_such_rule"], 2, "`smelt rules` lists them",
                 id="unknown-rule"),
    pytest.param(["export-onnx", "models.py:graph", "-o", "graph.txt"], 2, "-o FILE.onnx",
                 id="export-onnx-not-onnx"),
]


@pytest.mark.parametrize(("args", "status", "message"), BAD_INPUT)
def test_bad_input_is_one_clear_error(work: Path, args, status, message) -> None:
    result = smelt_cli(*args, cwd=work)
    assert_clean_error(result, status, message)
    assert not (work / "o").exists()


def test_an_unsupported_op_names_the_op_and_the_line(work: Path) -> None:
    # the factory returns a model with an `example_inputs` attribute: tracing gets that far
    result = smelt_cli("compile", "models.py:unsupported", "--out", "o", cwd=work)
    line = MODELS.splitlines().index("            return torch.linalg.inv(x.reshape(2, 2))") + 1
    assert_clean_error(result, 1, "unsupported operation 'aten.linalg_inv_ex.default'",
                       f"models.py:{line}", "to do:")


def test_debug_shows_the_traceback(work: Path) -> None:
    result = smelt_cli("inspect", "models.py:raises", "--debug", cwd=work)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "weights file missing" in result.stderr


def test_usage_errors_come_from_argparse(work: Path) -> None:
    result = smelt_cli("compile", "models.py:tiny", "--out", "o", "--tune", "-1", cwd=work)
    assert result.returncode == 2 and "--tune" in result.stderr
    assert smelt_cli("frobnicate", cwd=work).returncode == 2


def test_ops_lists_the_op_table(work: Path) -> None:
    result = smelt_cli("ops", cwd=work)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == len(smelt.ops())
    assert result.stdout.startswith(smelt.ops()[0] + "(")
