"""The text form, save/load, the verifier's messages and the networkx export.

Round trips are checked on random graphs from `smelt.rewrite.strategies.graphs()`: printing
a parsed graph gives back the same text, and parsing with the same weight arrays gives back
the very same (hash-consed) nodes. With copied weights the nodes are new objects, but their
structural content hashes are equal and they compute bit-identical outputs. Malformed text is
a ParseError naming its line; a broken graph is a VerificationError that shows the lines
around the bad node; loading never unpickles.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smelt
from smelt.ir import (
    FileFormatError,
    Graph,
    Node,
    ParseError,
    VerificationError,
    parse_graph,
    print_graph,
)
from smelt.rewrite import strategies as sst


def _bits(arrays: tuple[np.ndarray, ...]) -> list[tuple[str, tuple, bytes]]:
    return [(str(a.dtype), a.shape, np.ascontiguousarray(a).tobytes()) for a in arrays]


# -- round trips ---------------------------------------------------------------------------
@settings(max_examples=150)
@given(sst.graphs())
def test_print_parse_print_is_the_identity(g: Graph) -> None:
    text, weights = print_graph(g)
    again, weights_again = print_graph(parse_graph(text, weights))
    assert again == text
    assert weights_again.keys() == weights.keys()
    assert all(weights_again[k] is weights[k] for k in weights)


@settings(max_examples=100)
@given(sst.graphs(), st.data())
def test_parsing_with_the_same_weights_gives_the_same_nodes(g: Graph, data) -> None:
    parsed = parse_graph(*print_graph(g))
    assert all(a is b for a, b in zip(parsed.inputs, g.inputs, strict=True))
    assert all(a is b for a, b in zip(parsed.outputs, g.outputs, strict=True))
    args = data.draw(sst.graph_inputs(g))
    assert _bits(smelt.interpret(parsed, *args)) == _bits(smelt.interpret(g, *args))


@settings(max_examples=60)
@given(sst.graphs(), st.data())
def test_parsing_with_copied_weights_is_equal_in_content(g: Graph, data) -> None:
    text, weights = print_graph(g)
    parsed = parse_graph(text, {k: v.copy() for k, v in weights.items()})
    assert print_graph(parsed)[0] == text
    for a, b in zip(parsed.outputs, g.outputs, strict=True):
        assert a.content_hash == b.content_hash
        assert (a is b) == (not weights), "only graphs without large weights share nodes"
    args = data.draw(sst.graph_inputs(g))
    assert _bits(smelt.interpret(parsed, *args)) == _bits(smelt.interpret(g, *args))


@settings(max_examples=40)
@given(g=sst.graphs(), data=st.data())
def test_save_load_is_exact(g: Graph, data, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("saved") / "model.smelt"
    loaded = smelt.load(smelt.save(g, path))
    assert print_graph(loaded)[0] == print_graph(g)[0]
    for a, b in zip(loaded.constants(), g.constants(), strict=True):
        assert _bits((a.value,)) == _bits((b.value,))
    args = data.draw(sst.graph_inputs(g))
    assert _bits(smelt.interpret(loaded, *args)) == _bits(smelt.interpret(g, *args))


def _awkward_graph() -> Graph:
    """Names and values that once broke round trips: a weight named `file` (np.savez's own
    argument name), a non-ASCII input name, a graph name starting with `inf`, signed NaN and
    zero inline, a NaN with a payload, integer and bool constants, a source comment."""
    x = Node.input("é", (2, 3))
    big = Node.constant(np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)[:, :3][:2])
    file_w = Node.constant(np.arange(20, dtype=np.float32))
    payload = np.array([np.nan], np.float32).view(np.uint32) | np.uint32(3)
    odd = Node.constant(np.array([np.nan, -np.nan, np.inf, -0.0], np.float32))
    y = Node.make("add", [x, big])
    y = Node.make("mul", [y, Node.make("reduce_sum", [file_w])])
    y = Node.make("add", [y, Node.make("reduce_max", [odd])])
    y = Node.make("add", [y, Node.constant(payload.view(np.float32))])
    mask = Node.make("greater", [y, Node.constant(np.float32(0.5))])
    idx = Node.make("take", [y, Node.constant(np.array([1, -1], np.int64))], axis=1)
    z = Node.make("where", [mask, y, Node.constant(np.zeros((1, 3), np.float32))])
    return Graph([x], [z, idx], name="inference", names={file_w: "file", big: "w.0"},
                 sources={z: "model.py:12 in forward: z = torch.where(m, y, 0)"})


def test_awkward_names_and_values_round_trip(tmp_path: Path) -> None:
    g = _awkward_graph()
    text, weights = print_graph(g)
    assert "%file = constant @file" in text and "%é" in text and "[nan, -nan, inf, -0.0]" in text
    assert "# model.py:12" in text
    parsed = parse_graph(text, weights)
    assert print_graph(parsed)[0] == text
    assert all(a is b for a, b in zip(parsed.outputs, g.outputs, strict=True))
    loaded = smelt.load(smelt.save(g, tmp_path / "a model with spaces.smelt"))
    assert print_graph(loaded)[0] == text
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert _bits(smelt.interpret(loaded, x)) == _bits(smelt.interpret(g, x))


# -- malformed text ------------------------------------------------------------------------
HEADER = "graph main(%x: f32[2,3]) {"
MALFORMED: list[tuple[str, str, int, str]] = [
    ("unknown op", "  %y = frobnicate(%x) : f32[2,3]\n  return %y\n}", 2, "unknown op"),
    ("undefined name", "  %y = relu(%z) : f32[2,3]\n  return %y\n}", 2, "%z is used before"),
    ("bad dtype", "  %y = relu(%x) : f33[2,3]\n  return %y\n}", 2, "unknown dtype 'f33'"),
    ("bad dimension", "  %y = relu(%x) : f32[2,-3]\n  return %y\n}", 2, "non-negative"),
    ("type mismatch", "  %y = relu(%x) : f32[3,2]\n  return %y\n}", 2,
     "declared type f32[3,2] but relu gives f32[2,3]"),
    ("missing return", "  %y = relu(%x) : f32[2,3]\n}", 3, "without a `return`"),
    ("no closing brace", "  %y = relu(%x) : f32[2,3]\n  return %y", 3, "not closed"),
    ("garbage", "  %y = relu(%x) $ : f32[2,3]\n  return %y\n}", 2, "unexpected character '$'"),
    ("wrong arity", "  %y = add(%x) : f32[2,3]\n  return %y\n}", 2, "add takes 2 input(s)"),
    ("bad attribute", "  %y = softmax(%x) {axis=7} : f32[2,3]\n  return %y\n}", 2,
     "out of range"),
    ("defined twice", "  %y = relu(%x) : f32[2,3]\n  %y = neg(%x) : f32[2,3]\n  return %y\n}",
     3, "defined twice"),
    ("constant value", "  %c = constant 1.5 : i32[]\n  return %x\n}", 2, "is not of type i32"),
    ("constant size", "  %c = constant [1.0, 2.0] : f32[3]\n  return %x\n}", 2,
     "2 values given"),
    ("missing weight", "  %c = constant @w : f32[40]\n  return %x\n}", 2, "@w is not in"),
    ("after return", "  return %x\n  %y = relu(%x) : f32[2,3]\n}", 3, "expected `}`"),
    ("after the end", "  return %x\n}\n%y = relu(%x) : f32[2,3]", 4, "nothing may follow"),
]


@pytest.mark.parametrize("name, body, line, fragment", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_text_names_its_line(name: str, body: str, line: int, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_graph(f"{HEADER}\n{body}\n")
    assert info.value.line_no == line
    message = str(info.value)
    assert message.startswith(f"line {line}: ") and fragment in message, message
    assert f"\n  {line} | " in message, "the message quotes the offending line"


def test_a_bad_header_names_line_one() -> None:
    with pytest.raises(ParseError, match=r"^line 1: .*graph NAME"):
        parse_graph("grph main() {\n  return %x\n}\n")


# -- the verifier --------------------------------------------------------------------------
def _chain(x: Node, middle: Node) -> Graph:
    """x -> neg -> [middle's op applied] -> relu -> exp, so the bad node has lines around it."""
    return Graph([x], [Node.make("exp", [Node.make("relu", [middle])])])


def _mistyped() -> tuple[Graph, str]:
    x = Node.input("x", (2, 3))
    a = Node.make("neg", [x])
    bad = Node.unchecked("abs", [a], {}, smelt.TensorType((3, 2), "float32"))
    return _chain(x, bad), "%1 = abs(%0) : f32[3,2]"


def _writable_constant() -> tuple[Graph, str]:
    x = Node.input("x", (2, 3))
    c = Node.constant(np.full((2, 3), 2.0, np.float32))
    c.value.flags.writeable = True  # the array owns its data, so this is allowed: and wrong
    return _chain(x, Node.make("mul", [Node.make("neg", [x]), c])), "%1 = constant [2.0, 2.0"


def _stray_input() -> tuple[Graph, str]:
    x, y = Node.input("x", (2, 3)), Node.input("y", (2, 3))
    return _chain(x, Node.make("add", [Node.make("neg", [x]), y])), '%y = input() {name="y"}'


def _unknown_op() -> tuple[Graph, str]:
    x = Node.input("x", (2, 3))
    bad = Node.unchecked("frobnicate", [Node.make("neg", [x])], {}, smelt.TensorType(
        (2, 3), "float32"))
    return _chain(x, bad), "%1 = frobnicate(%0)"


BROKEN = {"mistyped": (_mistyped, "type is f32[3,2] but abs of these operands gives f32[2,3]"),
          "writable constant": (_writable_constant, "writeable"),
          "stray input": (_stray_input, "not among the graph's inputs"),
          "unknown op": (_unknown_op, "not in the op table")}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_graph_fails_verification_with_context(name: str) -> None:
    build, reason = BROKEN[name]
    g, bad_line = build()
    with pytest.raises(VerificationError) as info:
        g.verify()
    message = str(info.value)
    assert reason in message, message
    marked = [ln for ln in message.splitlines() if ln.startswith(">>")]
    assert len(marked) == 1 and bad_line in marked[0], message
    shown = [ln for ln in message.splitlines() if " | " in ln]
    assert len(shown) >= 3, "the lines around the bad node are shown too"


@settings(max_examples=50)
@given(sst.graphs())
def test_drawn_graphs_verify(g: Graph) -> None:
    g.verify()


# -- loading never executes code -----------------------------------------------------------
class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _saved(tmp_path: Path) -> Path:
    x = Node.input("x", (2,))
    w = Node.constant(np.arange(20, dtype=np.float32))
    g = Graph([x], [Node.make("add", [x, Node.make("reduce_sum", [w])])], names={w: "w"})
    return smelt.save(g, tmp_path / "model.smelt")


def test_a_pickled_object_array_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    marker = tmp_path / "pwned"
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    np.savez(path.with_suffix(".npz"), w=evil)  # np.save pickles object arrays by default
    with pytest.raises(FileFormatError, match="not a valid weights file"):
        smelt.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("how", ["npy", "pickle", "member"])
def test_a_crafted_weights_file_does_not_run_code(tmp_path: Path, how: str) -> None:
    path = _saved(tmp_path)
    marker = tmp_path / "pwned"
    wpath = path.with_suffix(".npz")
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    if how == "npy":  # a bare .npy holding a pickle, renamed
        with open(wpath, "wb") as f:
            np.save(f, evil, allow_pickle=True)
    elif how == "pickle":  # a plain pickle
        wpath.write_bytes(pickle.dumps(_Payload(marker)))
    else:  # a zip whose member is a pickle, not an array
        with zipfile.ZipFile(wpath, "w") as zf:
            zf.writestr("w.pkl", pickle.dumps(_Payload(marker)))
    with pytest.raises(FileFormatError):
        smelt.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("header", ["", "# smelt-graph 2", "graph main() {",
                                    "# smelt-graph 1 weights=../elsewhere.npz"])
def test_a_bad_header_is_refused(tmp_path: Path, header: str) -> None:
    path = _saved(tmp_path)
    body = path.read_text(encoding="utf-8").split("\n", 1)[1]
    path.write_text(f"{header}\n{body}", encoding="utf-8")
    with pytest.raises(FileFormatError):
        smelt.load(path)


def test_unreadable_or_missing_files_are_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    path.with_suffix(".npz").unlink()
    with pytest.raises(FileFormatError, match="missing"):
        smelt.load(path)
    path.write_bytes(b"\xff\xfe not text")
    with pytest.raises(FileFormatError, match="UTF-8"):
        smelt.load(path)
    with pytest.raises(FileFormatError, match="no graph file"):
        smelt.load(tmp_path / "absent.smelt")


def test_a_load_error_in_the_text_names_the_file_and_line(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace("add(", "frobnicate("),
                    encoding="utf-8")
    with pytest.raises(FileFormatError, match=r"model\.smelt: line \d+: unknown op"):
        smelt.load(path)


# -- networkx ------------------------------------------------------------------------------
@settings(max_examples=40)
@given(sst.graphs())
def test_to_networkx_has_a_vertex_per_node_and_an_edge_per_operand(g: Graph) -> None:
    nx_graph = g.to_networkx()
    assert nx_graph.number_of_nodes() == len(g.nodes())
    assert nx_graph.number_of_edges() == sum(len(n.inputs) for n in g.nodes())
    outputs = [v for v, d in nx_graph.nodes(data=True) if d["is_output"]]
    assert len(outputs) == len({id(o) for o in g.outputs})


def test_to_networkx_counts_a_repeated_operand_twice() -> None:
    x = Node.input("x", (3,))
    sq = Node.make("mul", [x, x])
    g = Graph([x], [Node.make("add", [sq, Node.constant(np.float32(1.0))])])
    nx_graph = g.to_networkx()
    assert nx_graph.number_of_nodes() == 4  # x, x*x, 1.0, add
    assert nx_graph.number_of_edges() == 4  # x twice into mul, mul and 1.0 into add
    assert sorted(d["index"] for _, _, d in nx_graph.in_edges(1, data=True)) == [0, 1]
