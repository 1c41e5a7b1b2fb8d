"""Pipelines: parse, print, run, report, calibration, verify-each and bisection to a planted
bad pass."""

import numpy as np
import pytest

from smelt.ir import Graph, Node
from smelt.passes import canonicalize, fuse
from smelt.rewrite import (
    PassContractError,
    PassResult,
    Pipeline,
    PipelineParseError,
    UnknownPassError,
    bounded,
    exact,
    function_pass,
)
from smelt.rewrite.registry import unregister_pass

rng = np.random.default_rng(0)
X = Node.input("x", (2, 4))
W = Node.constant(rng.standard_normal((4, 4)).astype(np.float32))
B = Node.constant(rng.standard_normal(4).astype(np.float32))


def mk(name, *inputs, **attrs):
    return Node.make(name, inputs, **attrs)


def model() -> Graph:
    h = mk("mul", X, Node.constant(np.float32(1.0)))
    h = mk("relu", mk("add", mk("matmul", h, W), B))
    h = mk("transpose", mk("transpose", h, perm=[1, 0]), perm=[1, 0])
    return Graph([X], [mk("relu", mk("add", mk("matmul", h, W), B))])


def _scale_constants(graph: Graph, factor: float) -> Graph:
    """Every large constant times `factor` (a planted bug when factor != 1)."""

    new: dict[Node, Node] = {}
    for n in graph.nodes():
        if n.op == "constant" and n.value.size > 1:
            new[n] = Node.constant((n.value * np.float32(factor)).astype(n.value.dtype))
        elif n.inputs:
            new[n] = Node.rebuild(n, [new.get(x, x) for x in n.inputs])
    return graph.replace(outputs=[new.get(o, o) for o in graph.outputs])


@function_pass("perturb", contract=exact, register=False)
def perturb(graph, ctx, *, factor=1.001):
    """Scale the weights slightly while claiming to be exact (a planted bug)."""
    return PassResult(_scale_constants(graph, factor), True, {"notes": ["scaled weights"]})


@function_pass("jitter", contract=bounded(0.1), register=False)
def jitter(graph, ctx):
    """Add 0.01 to every output: lossy, within its stated bound."""
    outs = [mk("add", o, Node.constant(np.float32(0.01))) for o in graph.outputs]
    return graph.replace(outputs=outs)


def test_parse_and_print_round_trip():
    p = Pipeline.parse("canonicalize, fuse(budget=5000)")
    assert str(p) == "canonicalize,fuse(budget=5000)"
    assert str(Pipeline.parse(str(p))) == str(p)
    assert repr(p) == "Pipeline.parse('canonicalize,fuse(budget=5000)')"
    assert [q.name for q in p] == ["canonicalize", "fuse"] and len(p) == 2
    assert str(Pipeline([canonicalize(), "fuse"])) == "canonicalize,fuse"


def test_options_are_literals_and_bare_words_are_strings():
    seen = {}

    @function_pass("record-options", contract=exact)
    def record(graph, ctx, mode="float", *, alpha=1.0, layers=()):
        """Record its options (test)."""
        seen.update(mode=mode, alpha=alpha, layers=layers)
        return graph

    try:
        p = Pipeline.parse("record-options(w8a8, alpha=0.5, layers=[1, 2])")
        assert str(p) == "record-options(w8a8, alpha=0.5, layers=[1, 2])"
        p(model())
        assert seen == {"mode": "w8a8", "alpha": 0.5, "layers": [1, 2]}
        with pytest.raises(PipelineParseError, match="bad options"):
            Pipeline.parse("record-options(beta=2)")
    finally:
        unregister_pass("record-options")


@pytest.mark.parametrize("spec, message", [
    ("canonicalize,,fuse", "empty pass name"),
    ("fuse(budget=", r"missing '\)'"),
    ("fuse)", "unbalanced"),
    ("fuse(budget=1 2)", "cannot read the options"),
    ("fuse(budget=len(x))", "not a literal"),
    ("Fuse!", "bad pass name"),
])
def test_bad_specs_say_where(spec, message):
    with pytest.raises(PipelineParseError, match=message) as e:
        Pipeline.parse(spec)
    assert spec in str(e.value) and "^" in str(e.value)


def test_unknown_passes_list_the_registered_ones():
    with pytest.raises(UnknownPassError, match="registered passes: .*canonicalize.*fuse"):
        Pipeline.parse("canonicalize,fold-everything")


def test_a_pipeline_returns_the_graph_and_keeps_a_report():
    g = model()
    p = Pipeline.parse("canonicalize,fuse")
    out = p(g)
    assert [n.op for n in out.nodes() if n.op not in ("input", "constant")] == \
        ["fused_matmul", "fused_matmul"]
    canon, fused = p.report.passes
    assert canon.rewrites == 2 and canon.nodes == (len(g), len(g) - 4)
    assert canon.fired == {"mul_one": 1, "transpose_transpose": 1}
    assert fused.fired == {"fuse_addend": 2, "fuse_epilogue_activation": 2}
    assert fused.macs == (g.cost().macs, out.cost().macs) and fused.seconds > 0
    text = str(p.report)
    assert text.splitlines()[0].split() == ["pass", "time", "ms", "rewrites", "nodes", "MACs",
                                            "weights", "KiB", "contract", "measured"]
    assert "total" in text and "exact" in text


def test_report_sizes_are_measured_when_read_and_match_the_summary(monkeypatch):
    from smelt.rewrite import graph_size

    measured = []
    real = graph_size.node_size
    monkeypatch.setattr(graph_size, "node_size", lambda n: measured.append(n) or real(n))
    g = model()
    p = Pipeline("canonicalize,fuse")  # a string is one spec
    assert p.spec() == Pipeline.parse("canonicalize,fuse").spec()
    out = p(g)
    assert measured == []  # running the pipeline measured nothing
    canon, fused = p.report.passes
    assert canon.after is fused.before  # one measurement of the graph between the passes
    s0, s1 = g.summary(), out.summary()
    assert (fused.nodes[1], fused.macs[1], fused.weight_bytes[1]) == \
        (s1.nodes, s1.macs, s1.param_bytes)
    assert (canon.nodes[0], canon.macs[0], canon.weight_bytes[0]) == \
        (s0.nodes, s0.macs, s0.param_bytes)
    assert len(measured) == len(set(measured))  # shared nodes are measured once


def test_calibration_batches_reach_the_passes():
    seen = []

    @function_pass("peek", contract=exact, register=False)
    def peek(graph, ctx):
        """Record the calibration batches (test)."""
        seen.extend(ctx.calibration)
        return graph

    a, b = (rng.standard_normal((2, 4)).astype(np.float32) for _ in range(2))
    Pipeline([peek()])(model(), calibration=[a, b])  # arrays, for a one-input graph
    assert len(seen) == 2 and seen[0][0] is not None and seen[0][0].shape == (2, 4)


def test_verify_each_names_the_planted_bad_pass():
    p = Pipeline([canonicalize(), perturb(), fuse()], verify_each=True)
    with pytest.raises(PassContractError) as e:
        p(model())
    assert e.value.index == 1 and e.value.pass_name == "perturb"
    msg = str(e.value)
    assert msg.startswith("pipeline step 2 of 3, pass perturb, broke its contract (exact)")
    assert "graph before" in msg and "graph after" in msg and "input x = " in msg
    # the same pipeline without the bad pass verifies, and reports what it measured
    good = Pipeline([canonicalize(), fuse()], verify_each=True)
    good(model())
    assert all(r.measured is not None and r.measured < 1e-5 for r in good.report.passes)


def test_bounded_passes_are_held_to_their_bound():
    p = Pipeline([canonicalize(), jitter(), fuse()], verify_each=True)
    p(model())
    assert str(p.contract) == "bounded(0.1)"
    assert p.report.passes[1].measured == pytest.approx(0.01, rel=1e-3)
    with pytest.raises(PassContractError, match="perturb"):
        Pipeline([jitter(), perturb(factor=1.5)], verify_each=True)(model())


def test_bisect_finds_the_first_breaking_pass():
    p = Pipeline([canonicalize(), fuse(), perturb(), canonicalize(), fuse()])
    out = p.bisect(model())
    assert out.index == 2 and out.pass_name == "perturb"
    assert out.checks <= 4
    assert "pass 3 (perturb) is the first" in str(out)
    clean = Pipeline([canonicalize(), jitter(), fuse()]).bisect(model())
    assert clean.index is None
