"""Malformed input gets typed errors only: no crash, no partial file left behind.

What is tried (each test counts its cases and prints the count: run with `-s` to see them),
and what must happen:

- graph text: printed graphs (a traced residual CNN, a hand-built graph with quantization
  annotations, tuples, bool/int/NaN constants) mutated by hypothesis: characters and tokens
  deleted, inserted, replaced (numbers made huge, negative, NaN; dtypes, shapes, op names,
  attribute names and values swapped; brackets nested deep), lines dropped, duplicated or
  swapped, text truncated anywhere. `parse_graph` gives a graph that verifies and prints, or
  raises a SmeltError. Whole saved files mutated byte by byte (invalid UTF-8 included) and
  loaded: a graph, or FileFormatError.
- the weights .npz: truncated at any offset, bytes flipped or inserted, empty, not a zip,
  compressed and corrupt, members with the wrong shape or dtype, missing, extra, a pickled
  object array, a header declaring a huge shape: FileFormatError, or (a flip in bytes that
  carry nothing, such as a timestamp) exactly the saved graph, never other weights.
- a compiled module's call (cpu, and the host C module): drawn arrays of every dtype, of the
  right shape or a wrong one, contiguous or not, as numpy, lists or torch tensors. The rule
  (smelt/ir/inputs.py) is the interpreter's, and the modules must agree with it exactly:
  the shape must match; a float input takes any float array (float64 is rounded, as torch's
  `.float()` does), an integer input any integer array whose values fit (else the call is
  refused, not wrapped), a bool input only bools; int or bool data for a float input is
  refused (a silent cast hides a wrong argument). Non-contiguous, Fortran-ordered and
  read-only arrays are fine, and NaN is data. A refusal is an InterpretError naming the input
  and what it expects; an accepted call returns what the interpreter returns.
- writing: `smelt.save` and the C project (`smelt.compile(graph, "c", board="host",
  out_dir=...)`) into a path under a regular file, onto a path that is a file or a directory,
  into a read-only directory, and on a disk that fills after any number of bytes (simulated:
  `open` for writing under the test's directory gets a byte budget, then ENOSPC or EACCES).
  FileFormatError or CBuildError that says what to do; nothing partial left: a directory
  smelt created is removed, and one that existed keeps exactly the files it had.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import re
import stat
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import smelt
from smelt.backends.mcu.build import CBuildError
from smelt.ir import OPS, FileFormatError, Graph, InterpretError, Node, SmeltError
from smelt.ir.text_format import parse_graph, print_graph
from smelt.zoo import ZOO

#: cases tried, by category (each test adds its own and prints the running total)
TRIED: Counter[str] = Counter()
_REAL_OPEN = io.open


def _report(category: str, at_least: int) -> None:
    print(f"\n[malformed inputs] {category}: {TRIED[category]} cases tried")
    assert TRIED[category] >= at_least, "hypothesis ran fewer cases than this test expects"


# -- the graphs ------------------------------------------------------------------------------
def _assorted() -> Graph:
    """A graph whose text has every kind of line: quantization annotations, a tuple and its
    projections, bool and int values, inline NaN / -0.0 / inf, and an @weight."""
    x, ids = Node.input("x", (4, 6), "float32"), Node.input("ids", (4,), "int32")
    scales, zps = (0.1, 0.2, 0.3, 0.4), (0, 1, 2, 3)
    q = Node.make("quantize", [x], scale=scales, zero_point=zps, axis=0)
    parts = Node.make("split", [Node.make("dequantize", [q], scale=scales, zero_point=zps,
                                          axis=0)], axis=1, sizes=(2, 4))
    p0, p1 = (Node.make("project", [parts], index=i) for i in (0, 1))
    special = Node.constant(np.array([[np.nan, -0.0], [np.inf, -np.inf], [1e-45, 3.4e38],
                                      [0.5, -2.0]], np.float32))
    kept = Node.make("where", [Node.make("greater", [p0, special]), p0, special])
    big = Node.constant(np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6))
    ids_f = Node.make("reshape", [Node.make("cast", [ids], dtype="float32")], shape=(4, 1))
    y = Node.make("add", [Node.make("mul", [x, big]), ids_f])
    return Graph([x, ids], [kept, Node.make("softmax", [p1], axis=-1), y], "assorted",
                 names={q: "q.int8", big: "big"})


@pytest.fixture(scope="module")
def printed() -> list[tuple[str, dict[str, np.ndarray]]]:
    entry = ZOO["residual_cnn"]
    cnn = smelt.trace(entry.build(), entry.inputs())
    return [print_graph(cnn), print_graph(_assorted())]


# -- mutating text -----------------------------------------------------------------------------
_TOKEN = re.compile(r"%[\w.]+|@[\w.]+|-?\d+\.?\d*(?:[eE][-+]?\d+)?|\w+|\S")
_NASTY = ["nan", "-nan", "inf", "-inf", "1e400", "-1", "0", "-0.0", "2147483648",
          "9223372036854775808", "99999999999999999999", "1.5", "true", "none", '"x"', "",
          "[", "]", "(", ")", "{", "}", ",", "=", ":", "#", "%x", "%0", "@big", "@nope",
          "[]", "[1, 2]", "[[1]]", "[-1]", "[" * 40, "(" * 40, "[" * 3000, "(" * 3000,
          "f32[]", "f32[0]", "bf16", "f16", "i4", "u4", "bool", "i64", "f64", "u8",
          "q(scale=[1.0], zero_point=[0], bits=8, axis=none, group=0)",
          "q(scale=[nan], zero_point=[0.5], bits=99, axis=7, group=-1)",
          'layout("2:4")', "layout(5)", "return", "graph", "constant", "input", "\t", "\u00e9",
          "\u2028", "\x00"]
_WORDS = sorted(OPS) + ["stride", "padding", "groups", "axis", "shape", "perm", "index",
                        "sizes", "eps", "scale", "zero_point", "bits", "dtype", "kernel"]


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """`text` after 1..4 edits of a line, a token, a character, or a cut."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        line = lines[i] if lines else ""
        edit = draw(st.sampled_from(["token", "token", "token", "insert", "delete", "drop",
                                     "duplicate", "swap", "truncate"]))
        if edit == "token" and (tokens := list(_TOKEN.finditer(line))):
            t = draw(st.sampled_from(tokens))
            new = draw(st.sampled_from(_NASTY) | st.sampled_from(_WORDS) | st.text(max_size=3))
            lines[i] = line[:t.start()] + new + line[t.end():]
        elif edit == "insert":
            j = draw(st.integers(0, len(line)))
            lines[i:i + 1] = [line[:j] + draw(st.sampled_from(_NASTY) | st.text(max_size=4))
                              + line[j:]]
        elif edit == "delete" and line:
            j = draw(st.integers(0, len(line) - 1))
            lines[i] = line[:j] + line[j + draw(st.integers(1, 8)):]
        elif edit == "drop" and lines:
            del lines[i]
        elif edit == "duplicate" and lines:
            lines.insert(draw(st.integers(0, len(lines))), line)
        elif edit == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif edit == "truncate":
            joined = "\n".join(lines)
            lines = joined[:draw(st.integers(0, len(joined)))].split("\n")
    return "\n".join(lines) + "\n"


def _parses_or_refuses(text: str, weights: dict[str, np.ndarray], category: str) -> None:
    TRIED[category] += 1
    try:
        graph = parse_graph(text, weights)
    except SmeltError as e:  # ParseError, with the line; never a bare ValueError or KeyError
        assert str(e), "an error must say what is wrong"
        TRIED[f"{category}: refused"] += 1
        return
    graph.verify()  # a parsed graph is a valid graph
    print_graph(graph)
    TRIED[f"{category}: parsed"] += 1


def test_mutated_graph_text_parses_to_a_valid_graph_or_raises_a_typed_error(printed) -> None:
    @settings(max_examples=700, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def check(data: st.DataObject) -> None:
        text, weights = data.draw(st.sampled_from(printed))
        _parses_or_refuses(data.draw(mutated(text)), weights, "graph text")

    check()
    print(f"\n  parsed {TRIED['graph text: parsed']}, refused {TRIED['graph text: refused']}")
    _report("graph text", 700)


def test_deep_nesting_huge_dimensions_and_long_lines_are_typed() -> None:
    head = "graph main(%x: f32[2]) {\n"
    cases = {
        "nested values": head + "  %c = constant " + "[" * 5000 + " : f32[]\n  return %x\n}",
        "nested attrs": head + "  %y = relu(%x) {a=" + "[" * 5000 + "} : f32[2]\n"
                        "  return %y\n}",
        "nested tuples": head + "  %y = relu(%x) : " + "(" * 5000 + "\n  return %y\n}",
        "huge dim": head + "  %y = relu(%x) : f32[99999999999999999999]\n  return %y\n}",
        "bool dim": head + "  %y = relu(%x) : f32[true]\n  return %y\n}",
        "layout not a string": head + "  %y = relu(%x) : f32[2] layout(5)\n  return %y\n}",
        "quant field types": head + "  %y = relu(%x) : f32[2] q(scale=[\"a\"], zero_point=[0], "
                             "bits=8.5, axis=none, group=0)\n  return %y\n}",
        "quant extra field": head + "  %y = relu(%x) : f32[2] q(scale=[1.0], zero_point=[0], "
                             "bits=8, axis=none, group=0, extra=1)\n  return %y\n}",
        "long bad line": head + "  %c = constant [" + "1.0, " * 100_000 + "x] : f32[2]\n}",
        "attribute twice": head + "  %y = softmax(%x) {axis=0, axis=-1} : f32[2]\n"
                           "  return %y\n}",
    }
    fragments = {"nested values": "nest more than 32", "nested attrs": "nest more than 32",
                 "nested tuples": "tuples cannot nest", "huge dim": "below 2**63",
                 "bool dim": "non-negative integer", "layout not a string": "quoted string",
                 "quant field types": "scale must be a list of numbers",
                 "quant extra field": "exactly the fields", "long bad line": "characters)",
                 "attribute twice": "axis is given twice"}
    for name, text in cases.items():
        TRIED["graph text: handwritten"] += 1
        with pytest.raises(smelt.ParseError) as info:
            parse_graph(text)
        assert fragments[name] in str(info.value), (name, str(info.value)[:300])
        assert len(str(info.value)) < 1000, "a message quotes a long line only in part"
    _report("graph text: handwritten", len(cases))


# -- saved files -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The assorted graph saved once: (its text file, its printed text)."""
    path = smelt.save(_assorted(), tmp_path_factory.mktemp("saved") / "model.smelt")
    return path, print_graph(smelt.load(path))[0]


def _bytes_mutated(data: st.DataObject, raw: bytes) -> bytes:
    b = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        edit = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        i = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if edit == "flip" and b:
            b[i] = data.draw(st.integers(0, 255))
        elif edit == "insert":
            b[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del b[i:i + data.draw(st.integers(1, 16))]
        else:
            del b[i:]
    return bytes(b)


def _loads_the_same_or_refuses(path: Path, original: str, category: str) -> None:
    """load(path) is exactly the saved graph, or FileFormatError that names the file."""
    TRIED[category] += 1
    try:
        graph = smelt.load(path)
    except FileFormatError as e:
        assert path.name in str(e) or path.with_suffix(".npz").name in str(e), str(e)
        TRIED[f"{category}: refused"] += 1
        return
    graph.verify()
    if category == "npz":  # the text is intact: the weights must be too, bit for bit
        assert print_graph(graph)[0] == original
    TRIED[f"{category}: loaded"] += 1


def test_mutated_text_files_load_or_raise_file_format_errors(saved, tmp_path_factory) -> None:
    path, original = saved
    raw, weights = path.read_bytes(), path.with_suffix(".npz").read_bytes()
    work = tmp_path_factory.mktemp("text-files")
    (work / "model.npz").write_bytes(weights)

    @settings(max_examples=200)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        (work / "model.smelt").write_bytes(_bytes_mutated(data, raw))
        _loads_the_same_or_refuses(work / "model.smelt", original, "text file")

    check()
    _report("text file", 200)


def test_mutated_weights_files_load_exactly_or_raise_file_format_errors(
        saved, tmp_path_factory) -> None:
    path, original = saved
    stored = path.with_suffix(".npz").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(path.with_suffix(".npz")) as zf:  # the same arrays, deflated
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
            for info in zf.infolist():
                out.writestr(info.filename, zf.read(info))
    work = tmp_path_factory.mktemp("npz-files")
    (work / "model.smelt").write_bytes(path.read_bytes())

    @settings(max_examples=300)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        raw = data.draw(st.sampled_from([stored, buf.getvalue()]), label="archive")
        (work / "model.npz").write_bytes(_bytes_mutated(data, raw))
        _loads_the_same_or_refuses(work / "model.smelt", original, "npz")

    check()
    print(f"\n  loaded unchanged {TRIED['npz: loaded']}, refused {TRIED['npz: refused']}")
    _report("npz", 300)


def _npy(array: np.ndarray | None = None, header: dict | None = None,
         payload: bytes = b"") -> bytes:
    out = io.BytesIO()
    if header is not None:
        np.lib.format.write_array_header_1_0(out, header)
        out.write(payload)
    else:
        np.lib.format.write_array(out, array, allow_pickle=True)
    return out.getvalue()


def _archive(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


_BIG = np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)
WEIGHT_FILES: dict[str, tuple[bytes, str]] = {
    "empty file": (b"", "not a zip archive"),
    "not a zip": (b"PK\x03\x04 this is not really a zip" * 4, "not a zip archive"),
    "text instead": (b"# smelt-graph 1\ngraph main() {}\n", "not a zip archive"),
    "wrong shape": (_archive({"big.npy": _npy(_BIG.reshape(6, 4))}),
                    "weight @big is float32[6, 4], but the text declares f32[4,6]"),
    "wrong dtype": (_archive({"big.npy": _npy(_BIG.astype(np.float64))}),
                    "weight @big is float64[4, 6]"),
    "big-endian": (_archive({"big.npy": _npy(_BIG.astype(">f4"))}), "weight @big is >f4"),
    "strings": (_archive({"big.npy": _npy(np.full((4, 6), "ab"))}), "weight @big is <U2"),
    "missing array": (_archive({"other.npy": _npy(_BIG)}), "@big is not in the weights"),
    "extra array": (_archive({"big.npy": _npy(_BIG), "spare.npy": _npy(_BIG)}),
                    "holds arrays the text does not use (spare)"),
    "not an array": (_archive({"big.npy": _npy(_BIG), "notes.txt": b"hi"}),
                     "'notes.txt' is not an array"),
    "object array": (_archive({"big.npy": _npy(np.array([{"a": 1}] * 24).reshape(4, 6))}),
                     "allow_pickle=False"),
    "huge declared shape": (_archive({"big.npy": _npy(header={
        "descr": "<f4", "fortran_order": False, "shape": (10**12, 10**6)}, payload=b"\0" * 96)}),
        "declares shape [1000000000000, 1000000] of float32"),
    "short data": (_archive({"big.npy": _npy(header={
        "descr": "<f4", "fortran_order": False, "shape": (4, 6)}, payload=b"\0" * 95)}),
        "the file is truncated or corrupt"),
    "trailing bytes": (_archive({"big.npy": _npy(_BIG) + b"junk"}), "followed by"),
    "bad header": (_archive({"big.npy": b"\x93NUMPY\x01\x00\x20\x00{'descr': [[[[[[[[[[[[\n"}),
                   "not a valid weights file"),
}


@pytest.mark.parametrize("name", list(WEIGHT_FILES))
def test_broken_weights_files_are_file_format_errors(name: str, saved, tmp_path: Path) -> None:
    path, _ = saved
    data, fragment = WEIGHT_FILES[name]
    (tmp_path / "model.smelt").write_bytes(path.read_bytes())
    (tmp_path / "model.npz").write_bytes(data)
    TRIED["npz: handwritten"] += 1
    with pytest.raises(FileFormatError) as info:
        smelt.load(tmp_path / "model.smelt")
    assert fragment in str(info.value), str(info.value)


def test_truncated_weights_files_at_every_offset_are_refused(saved, tmp_path: Path) -> None:
    path, _ = saved
    stored = path.with_suffix(".npz").read_bytes()
    (tmp_path / "model.smelt").write_bytes(path.read_bytes())
    for cut in range(0, len(stored), 7):
        (tmp_path / "model.npz").write_bytes(stored[:cut])
        TRIED["npz: truncated"] += 1
        with pytest.raises(FileFormatError, match="not a zip archive|not a valid weights|"
                                                  "truncated or corrupt|is not in the weights"):
            smelt.load(tmp_path / "model.smelt")
    _report("npz: truncated", len(stored) // 7)


# -- a compiled module's call ------------------------------------------------------------------
def _small() -> Graph:
    x, n = Node.input("x", (2, 3), "float32"), Node.input("n", (4,), "int32")
    y = Node.make("mul", [x, Node.constant(np.float32(2.0))])
    return Graph([x, n], [y, Node.make("add", [n, Node.constant(np.int32(1))])], "small")


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    graph = _small()
    return {"graph": graph, "cpu": smelt.compile(graph, "cpu"),
            "c": smelt.compile(graph, "c", board="host", out_dir=tmp_path_factory.mktemp("c"))}


_DTYPES = ["float16", "float32", "float64", "int8", "uint8", "int32", "int64", "bool",
           "complex64"]
_EXPECTED = {"x": ((2, 3), "float32"), "n": ((4,), "int32")}


@st.composite
def an_input(draw: st.DrawFn, name: str) -> Any:
    """Something passed for input `name`: any dtype, the right shape or a near miss, any
    memory layout, as numpy, a list or a torch tensor."""
    shape, dtype = _EXPECTED[name]
    dtype = draw(st.sampled_from([dtype, dtype, *_DTYPES]))
    shape = draw(st.sampled_from([shape, shape, shape, (), shape[::-1], (*shape, 1),
                                  (0, *shape[1:]), (shape[0] + 1, *shape[1:])]))
    a = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(["c", "fortran", "strided", "reversed", "read-only"]))
    if layout == "fortran":
        a = np.asfortranarray(a)
    elif layout == "strided":
        a = np.repeat(a, 2, axis=-1)[..., ::2] if a.ndim else a
    elif layout == "reversed":
        a = a[::-1] if a.ndim else a
    elif layout == "read-only":
        a = a.copy()
        a.flags.writeable = False
    kind = draw(st.sampled_from(["numpy", "numpy", "list", "torch"]))
    if kind == "list":
        return a.tolist()
    if kind == "torch" and dtype != "complex64":
        return torch.from_numpy(np.array(a))  # (a writable copy: torch wants one)
    return a


def _same(got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...], what: str = "") -> None:
    assert len(got) == len(want), what
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape, what
        np.testing.assert_array_equal(g, w, err_msg=what)  # x*2, n+1: exact; NaN equals NaN


def _call_like_the_interpreter(graph: Graph, module: Any, args: tuple[Any, ...],
                               category: str) -> None:
    TRIED[category] += 1
    try:
        with np.errstate(over="ignore"):  # x * 2 of drawn floats may overflow: inf is right
            want = smelt.interpret(graph, *args)
    except InterpretError as e:
        with pytest.raises(InterpretError) as info:
            module(*args)
        name = re.search(r"input '(\w+)'", str(e)).group(1)
        shape, dtype = _EXPECTED[name]
        for message in (str(e), str(info.value)):
            assert f"input '{name}'" in message and "expects" in message, message
            assert f"{dtype}{list(shape)}" in message or "whose values lie in" in message, \
                message
        TRIED[f"{category}: refused"] += 1
        return
    _same(module(*args), want)
    TRIED[f"{category}: ran"] += 1


def test_a_cpu_module_accepts_and_refuses_exactly_what_the_interpreter_does(modules) -> None:
    @settings(max_examples=300)
    @given(an_input("x"), an_input("n"))
    def check(x: Any, n: Any) -> None:
        _call_like_the_interpreter(modules["graph"], modules["cpu"], (x, n), "cpu call")

    check()
    print(f"\n  ran {TRIED['cpu call: ran']}, refused {TRIED['cpu call: refused']}")
    _report("cpu call", 300)
    assert TRIED["cpu call: ran"] >= 30 and TRIED["cpu call: refused"] >= 30


def test_a_c_module_accepts_and_refuses_exactly_what_the_interpreter_does(modules) -> None:
    @settings(max_examples=60)
    @given(an_input("x"), an_input("n"))
    def check(x: Any, n: Any) -> None:
        _call_like_the_interpreter(modules["graph"], modules["c"], (x, n), "c call")

    check()
    _report("c call", 60)


def _ok() -> tuple[np.ndarray, np.ndarray]:
    return np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(4, dtype=np.int32)


ODD_BUT_VALID: dict[str, Callable[[], tuple[Any, ...]]] = {
    "float64 rounds": lambda: (_ok()[0].astype(np.float64) + 1e-12, _ok()[1]),
    "float16": lambda: (_ok()[0].astype(np.float16), _ok()[1]),
    "transposed view": lambda: (np.ascontiguousarray(_ok()[0].T).T, _ok()[1]),
    "Fortran order": lambda: (np.asfortranarray(_ok()[0]), _ok()[1]),
    "every other column": lambda: (np.repeat(_ok()[0], 2, axis=1)[:, ::2], _ok()[1]),
    "unaligned": lambda: (np.frombuffer(b"\0" + _ok()[0].tobytes(), np.float32, 6, 1)
                          .reshape(2, 3), _ok()[1]),
    "NaN and inf": lambda: (np.array([[np.nan, np.inf, -np.inf], [-0.0, 1e38, 3e38]],
                                     np.float32), _ok()[1]),
    "int64 ids that fit": lambda: (_ok()[0], np.array([0, 2**31 - 2, -(2**31), 7], np.int64)),
    "uint8": lambda: (_ok()[0], np.array([0, 1, 254, 255], np.uint8)),
    "lists": lambda: ([[0.5, 1.5, 2.5], [3.5, 4.5, 5.5]], [1, 2, 3, 4]),
    "torch": lambda: (torch.ones(2, 3, requires_grad=True), torch.arange(4)),
    "torch bfloat16": lambda: (torch.ones(2, 3, dtype=torch.bfloat16), torch.arange(4)),
}
WRONG: dict[str, tuple[Callable[[], tuple[Any, ...]], str]] = {
    "no inputs": (lambda: (), "takes 2 inputs (x, n), got 0"),
    "one input": (lambda: _ok()[:1], "takes 2 inputs (x, n), got 1"),
    "three inputs": (lambda: (*_ok(), _ok()[1]), "takes 2 inputs (x, n), got 3"),
    "transposed shape": (lambda: (_ok()[0].T, _ok()[1]),
                         "input 'x' has shape [3, 2], the module expects [2, 3]"),
    "0-d": (lambda: (np.float32(1), _ok()[1]), "input 'x' has shape [], the module expects"),
    "batch of one": (lambda: (_ok()[0][None], _ok()[1]), "input 'x' has shape [1, 2, 3]"),
    "int64 for float": (lambda: (_ok()[0].astype(np.int64), _ok()[1]),
                        "input 'x' is int64, the module expects float32[2, 3]"),
    "bool for float": (lambda: (_ok()[0] > 2, _ok()[1]), "input 'x' is bool"),
    "int list for float": (lambda: ([[0, 1, 2], [3, 4, 5]], _ok()[1]), "input 'x' is int64"),
    "float for int": (lambda: (_ok()[0], _ok()[1].astype(np.float32)),
                      "input 'n' is float32, the module expects int32[4]"),
    "ids out of range": (lambda: (_ok()[0], np.array([0, 1, 2, 2**31], np.int64)),
                         "input 'n' is int32, whose values lie in"),
    "complex": (lambda: (_ok()[0].astype(np.complex64), _ok()[1]), "input 'x' is complex64"),
    "strings": (lambda: (np.full((2, 3), "a"), _ok()[1]), "input 'x' is <U1"),
    "ragged list": (lambda: ([[1.0, 2.0], [3.0]], _ok()[1]), "input 'x' is not an array"),
    "None": (lambda: (None, _ok()[1]), "input 'x' has shape [], the module expects [2, 3]"),
    "torch int64 for float": (lambda: (torch.zeros(2, 3, dtype=torch.int64), _ok()[1]),
                              "input 'x' is int64"),
}


@pytest.mark.parametrize("target", ["cpu", "c"])
def test_odd_but_valid_calls_run_and_wrong_ones_say_what_to_pass(modules, target: str) -> None:
    module, graph = modules[target], modules["graph"]
    for name, make in ODD_BUT_VALID.items():
        TRIED["calls: handwritten"] += 1
        with np.errstate(over="ignore"):  # 3e38 * 2 is inf
            _same(module(*make()), smelt.interpret(graph, *make()), name)
    for name, (make, fragment) in WRONG.items():
        TRIED["calls: handwritten"] += 1
        with pytest.raises(InterpretError) as info:
            module(*make())
        assert fragment in str(info.value), (name, str(info.value))
        if "has shape" in fragment or "the module expects" in fragment:
            assert "pass" in str(info.value) or "convert" in str(info.value)


# -- writing: smelt.save and the C project -----------------------------------------------------
class _Disk:
    """`open` for writing under `root` gets `budget` bytes in all, then fails with `err`
    (ENOSPC: the crossing write stores its first part, as a full disk does; EACCES: the
    open itself fails, as in a read-only directory). `stop()` makes the disk normal again."""

    def __init__(self, root: Path, budget: int, err: int = errno.ENOSPC) -> None:
        self.root, self.left, self.err, self.opened = os.fspath(root), budget, err, 0
        self.active = True

    def stop(self) -> None:
        self.active = False

    def open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        writing = any(c in mode for c in "wax+")
        if self.active and writing and isinstance(file, str | os.PathLike) and \
                os.fspath(file).startswith(self.root):
            self.opened += 1
            if self.err == errno.EACCES:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(file))
            return _Budgeted(_REAL_OPEN(file, mode, *args, **kwargs), self, os.fspath(file))
        return _REAL_OPEN(file, mode, *args, **kwargs)


class _Budgeted:
    def __init__(self, f: Any, disk: _Disk, name: str) -> None:
        self._f, self._disk, self._name = f, disk, name

    def write(self, data: Any) -> int:
        n = len(data) if isinstance(data, str) else memoryview(data).nbytes
        if n > self._disk.left:
            keep, self._disk.left = self._disk.left, 0
            self._f.write(data[:keep] if isinstance(data, str) else bytes(data)[:keep])
            raise OSError(self._disk.err, os.strerror(self._disk.err), self._name)
        self._disk.left -= n
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _Budgeted:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Callable[..., _Disk]:
    """`disk(root, budget, err)`: from now on, writes under root go to a failing disk."""
    current: list[_Disk] = []

    def route(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return current[-1].open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", route)
    monkeypatch.setattr(io, "open", route)

    def install(root: Path, budget: int, err: int = errno.ENOSPC) -> _Disk:
        current.append(_Disk(root, budget, err))
        return current[-1]
    install(Path("/nonexistent-root-for-nothing"), 0)
    return install


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root (hidden ones included) with its bytes (None for a directory)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(root.rglob("*"))}


def test_save_on_a_full_disk_leaves_no_partial_file(tmp_path: Path, disk) -> None:
    graph, old = _assorted(), _small()
    smelt.save(graph, tmp_path / "probe" / "model.smelt")
    total = sum(len(b or b"") for b in _tree(tmp_path / "probe").values())
    for budget in [0, 1, 100, 500, total // 2, total - 200, total - 1]:
        for existing in (False, True):
            TRIED["save: full disk"] += 1
            where = tmp_path / f"{budget}-{existing}"
            where.mkdir()
            if existing:  # an earlier save of another graph: it must survive intact
                smelt.save(old, where / "model.smelt")
            before = _tree(where)
            full = disk(where, budget)
            with pytest.raises(FileFormatError, match="No space left on device.*free some "
                                                      "space or save elsewhere"):
                smelt.save(graph, where / "model.smelt")
            assert full.opened >= 1
            full.stop()
            assert _tree(where) == before, f"budget {budget}: files were left or changed"
            if existing:
                assert smelt.load(where / "model.smelt").to_text() == old.to_text()
    _report("save: full disk", 14)


def test_save_where_it_cannot_write_is_a_file_format_error(tmp_path: Path, disk) -> None:
    graph = _assorted()
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "model.smelt").mkdir()
    cases = {"under a file": tmp_path / "a-file" / "model.smelt",
             "onto a directory": tmp_path / "model.smelt"}
    before = _tree(tmp_path)
    for name, path in cases.items():
        TRIED["save: unwritable"] += 1
        with pytest.raises(FileFormatError, match="cannot save the graph to .*save elsewhere"):
            smelt.save(graph, path)
        assert _tree(tmp_path) == before, name
    readonly = tmp_path / "read-only"
    readonly.mkdir()
    TRIED["save: unwritable"] += 1
    disk(readonly, 0, errno.EACCES)
    with pytest.raises(FileFormatError, match="Permission denied.*make the directory writable"):
        smelt.save(graph, readonly / "model.smelt")
    assert _tree(readonly) == {}


def test_save_into_a_read_only_directory(tmp_path: Path) -> None:
    """chmod 555: refused with nothing left, unless this process may write anyway (root)."""
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    TRIED["save: unwritable"] += 1
    try:
        if os.access(readonly, os.W_OK):  # root: permission bits do not stop it
            smelt.save(_assorted(), readonly / "model.smelt")
            assert sorted(p.name for p in readonly.iterdir()) == ["model.npz", "model.smelt"]
        else:
            with pytest.raises(FileFormatError, match="make the directory writable"):
                smelt.save(_assorted(), readonly / "model.smelt")
            assert list(readonly.iterdir()) == []
    finally:
        readonly.chmod(0o755)


def _c_project_bytes(modules: dict[str, Any]) -> int:
    project = modules["c"].project
    return sum(len(b or b"") for k, b in _tree(project).items()
               if not k.startswith("app"))


def test_a_c_project_on_a_full_disk_leaves_nothing_partial(modules, tmp_path: Path,
                                                            disk) -> None:
    graph, total = modules["graph"], _c_project_bytes(modules)
    for budget in [0, 1000, total // 3, total - 1]:
        for existing in (False, True):
            TRIED["c project: full disk"] += 1
            out = tmp_path / f"{budget}-{existing}" / "project"
            out.parent.mkdir()
            if existing:  # a directory of the user's, and an older project's Makefile
                out.mkdir()
                (out / "Makefile").write_text("# an older project\n")
                (out / "notes.txt").write_text("the user's\n")
            before = _tree(out.parent)
            full = disk(out.parent, budget)
            with pytest.raises(CBuildError, match="cannot write the C project to .*No space "
                                                  "left.*pass another out_dir"):
                smelt.compile(graph, "c", board="host", out_dir=out)
            assert full.opened >= 1
            full.stop()
            assert _tree(out.parent) == before, f"budget {budget}: files were left or changed"
    _report("c project: full disk", 8)


def test_a_c_project_where_it_cannot_write_is_a_typed_error(modules, tmp_path: Path,
                                                            disk) -> None:
    graph = modules["graph"]
    (tmp_path / "a-file").write_text("not a directory")
    cases = {"under a file": (tmp_path / "a-file" / "project", "Not a directory"),
             "onto a file": (tmp_path / "a-file", "File exists")}
    for name, (out, fragment) in cases.items():
        TRIED["c project: unwritable"] += 1
        before = _tree(tmp_path)
        with pytest.raises(CBuildError, match=f"cannot write the C project.*{fragment}.*"
                                              "nothing was left behind"):
            smelt.compile(graph, "c", board="host", out_dir=out)
        assert _tree(tmp_path) == before, name
    TRIED["c project: unwritable"] += 1
    readonly = tmp_path / "read-only"
    readonly.mkdir()
    disk(readonly, 0, errno.EACCES)
    with pytest.raises(CBuildError, match="Permission denied.*make the directory writable"):
        smelt.compile(graph, "c", board="host", out_dir=readonly)
    assert _tree(readonly) == {}


def test_a_c_project_in_a_read_only_directory(modules, tmp_path: Path) -> None:
    """chmod 555: refused with nothing left, unless this process may write anyway (root)."""
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    TRIED["c project: unwritable"] += 1
    try:
        if os.access(readonly, os.W_OK):  # root: permission bits do not stop it
            module = smelt.compile(modules["graph"], "c", board="host", out_dir=readonly / "p")
            _same(module(*_ok()), smelt.interpret(modules["graph"], *_ok()))
        else:
            with pytest.raises(CBuildError, match="make the directory writable"):
                smelt.compile(modules["graph"], "c", board="host", out_dir=readonly / "p")
            assert list(readonly.iterdir()) == []
    finally:
        readonly.chmod(0o755)


def test_report_the_counts() -> None:
    """Every category's count, for the issue's "count of cases tried" (run with -s)."""
    print("\n[malformed inputs] cases tried, by category:")
    for category, n in sorted(TRIED.items()):
        print(f"  {category}: {n}")
    assert sum(n for k, n in TRIED.items() if ":" not in k) > 0
