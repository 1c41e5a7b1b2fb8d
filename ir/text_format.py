"""The printed form of a graph, and a parser that reads it back.

One line per node, a person can read it at a glance:

    graph main(%x: f32[1,3,8,8]) {
      %w = constant @conv.weight : f32[8,3,3,3]
      %eps = constant 1e-05 : f32[]
      %y = conv2d(%x, %w) {stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1} : f32[1,8,8,8]
      return %y
    }

Large constants print as `@key`, a key into a weights table (an .npz beside the text when
saved); constants of at most `SMALL_CONSTANT` elements print their values inline. Floats are
printed with Python's shortest round-tripping repr, so print -> parse -> print is the
identity and parsed values are bit-exact (a small constant whose values text cannot carry
exactly, such as a NaN with a payload, goes to the weights table instead). A `# ...` comment
after a node line holds its source location; the parser reads it back into `Graph.sources`.
Names may be any identifier, dots allowed (`%conv.out`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy

from .dims import SymDim, format_dim, parse_dim, symbols
from .errors import ParseError, SmeltError
from .graph import Graph
from .node import SMALL_CONSTANT, Node
from .types import DTYPES, SHORT_TO_DTYPE, QuantParams, TensorType, TupleType, Type, numpy_dtype

_NAME_OK = re.compile(r"^[^\W\d][\w.]*$")


# -- printing ------------------------------------------------------------------------------
def format_value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    if isinstance(v, float | np.floating):
        if np.isnan(v) and np.signbit(v):
            return "-nan"
        return repr(float(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, sympy.Expr):
        return format_dim(v)
    if isinstance(v, tuple | list):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    raise SmeltError(f"cannot print attribute value {v!r}")


def format_type(t: Type) -> str:
    if isinstance(t, TupleType):
        return "(" + ", ".join(format_type(e) for e in t.elements) + ")"
    s = f"{DTYPES[t.dtype]}[{','.join(format_dim(d) for d in t.shape)}]"
    if t.quant is not None:
        q = t.quant
        s += (f" q(scale={format_value(q.scale)}, zero_point={format_value(q.zero_point)}, "
              f"bits={q.bits}, axis={format_value(q.axis)}, group={q.group})")
    if t.layout is not None:
        s += f" layout({json.dumps(t.layout)})"
    return s


def _inline_constant(n: Node) -> str | None:
    """The constant's values as text, or None when text cannot carry them bit-exactly."""
    flat = n.value.reshape(-1).tolist()
    back = np.array([_from_text(v) for v in flat], dtype=n.value.dtype)
    if back.tobytes() != np.ascontiguousarray(n.value).reshape(-1).tobytes():
        return None
    return format_value(flat[0]) if n.value.ndim == 0 else format_value(flat)


def _from_text(v: Any) -> Any:
    """What the parser reads back for value v (NaN keeps only its sign)."""
    if isinstance(v, float) and v != v:
        return -np.nan if np.signbit(v) else np.nan
    return v


def _short_source(src: str) -> str:
    """'model.py:12' from 'path/to/model.py:12 in forward: code' (the full line stays in the
    graph's side table for error messages)."""
    head = src.strip().splitlines()[-1].split(" in ", 1)[0]
    return head.rsplit("/", 1)[-1]


def print_graph(g: Graph) -> tuple[str, dict[str, np.ndarray]]:
    """(text, weights): the graph's printed form and the arrays its `@key`s refer to."""
    lines, weights, _ = _print(g, lenient=False)
    return "\n".join(lines) + "\n", weights


def numbered_lines(g: Graph) -> tuple[list[str], dict[int, int]]:
    """The printed lines of any graph, broken ones included (for messages: an input that is
    not a graph input prints as an `input` line, a constant without a value as `<missing>`),
    and the index of the line of each node, keyed by `id(node)`."""
    lines, _, line_of = _print(g, lenient=True)
    return lines, line_of


class _Names:
    """Printed names: a node's side-table name if it is an identifier (deduplicated with _1,
    _2, ...), else the next free number. Inputs keep their own names."""

    def __init__(self, g: Graph) -> None:
        self.g, self.counter = g, 0
        self.taken: set[str] = set()
        self.of: dict[Node, str] = {}

    def assign(self, n: Node) -> str:
        wanted = n.attrs["name"] if n.op == "input" else self.g.names.get(n)
        if wanted and _NAME_OK.match(wanted):
            base, k = wanted, 1
            while wanted in self.taken:
                wanted, k = f"{base}_{k}", k + 1
        else:
            while str(self.counter) in self.taken:
                self.counter += 1
            wanted = str(self.counter)
        self.taken.add(wanted)
        self.of[n] = wanted
        return wanted


def _print(g: Graph, lenient: bool) -> tuple[list[str], dict[str, np.ndarray], dict[int, int]]:
    names = _Names(g)
    weights: dict[str, np.ndarray] = {}
    line_of: dict[int, int] = {}
    for x in g.inputs:
        names.assign(x)
    params = ", ".join(f"%{names.of[x]}: {format_type(x.type)}" for x in g.inputs)
    dims = sorted(symbols(d for x in g.inputs for d in x.shape), key=lambda d: d.name)
    where = " where " + ", ".join(f"{d.name} in [{d.lo}, {d.hi}]" for d in dims) if dims else ""
    lines = [f"graph {g.name}({params}){where} {{"]
    for n in g.nodes():
        if n.op == "input" and n in names.of:
            continue
        if n.op == "input" and not lenient:
            raise SmeltError(
                f"input {n.attrs['name']!r} is used but is not one of the graph's inputs"
            )
        name = names.assign(n)
        line = f"  %{name} = {_body(n, name, names.of, weights)} : {format_type(n.type)}"
        src = g.sources.get(n)
        if src:
            line += f"  # {_short_source(src)}"
        line_of[id(n)] = len(lines)
        lines.append(line)
    lines.append("  return " + ", ".join(f"%{names.of[o]}" for o in g.outputs))
    lines.append("}")
    return lines, weights, line_of


def _body(n: Node, name: str, names: dict[Node, str], weights: dict[str, np.ndarray]) -> str:
    """What follows `%name = ` on a node's line (a large constant adds itself to weights)."""
    if n.op == "constant":
        if not isinstance(n.value, np.ndarray):
            return "constant <missing>"
        inline = _inline_constant(n) if n.value.size <= SMALL_CONSTANT else None
        if inline is not None:
            return f"constant {inline}"
        weights[name] = n.value
        return f"constant @{name}"
    body = f"{n.op}(" + ", ".join(f"%{names[x]}" for x in n.inputs) + ")"
    if n.attrs:
        body += " {" + ", ".join(f"{k}={format_value(v)}" for k, v in n.attrs.items()) + "}"
    return body


# -- parsing -------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<var>%[\w.]+)
      | (?P<ref>@[\w.]+)
      | (?P<num>-?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|(?:inf|nan)(?!\w)))
      | (?P<id>[^\W\d]\w*)
      | (?P<punct>[(){}\[\],=:*+/-])
      | (?P<comment>\#.*)
    )""",
    re.VERBOSE,
)
_BLANK_REST = re.compile(r"\s*$")
#: how deep `[...]` values may nest: deeper text is refused instead of exhausting the stack
MAX_NESTING = 32
#: dimensions must fit the int64 that numpy and every backend index with
MAX_DIM = 2**63 - 1
_QUANT_KEYS = ("scale", "zero_point", "bits", "axis", "group")


class _Tokens:
    def __init__(self, text: str, line_no: int):
        self.line, self.line_no = text, line_no
        self.dims: dict[str, SymDim] = {}  # the symbols the graph header declares
        self.toks: list[tuple[str, str]] = []
        self.comment = ""
        pos = 0
        while pos < len(text):
            if _BLANK_REST.match(text, pos):  # (not text[pos:]: that is quadratic in the line)
                break
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                self.fail(f"unexpected character {text[pos:].strip()[:1]!r}")
            kind = m.lastgroup
            if kind == "comment":
                self.comment = m.group(kind)[1:].strip()
                break
            self.toks.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def fail(self, msg: str):
        raise ParseError(msg, self.line_no, self.line)

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self, kind: str | None = None, value: str | None = None) -> str:
        tok = self.peek()
        if tok is None:
            self.fail(f"line ends early; expected {value or kind}")
        if (kind and tok[0] != kind) or (value and tok[1] != value):
            self.fail(f"expected {value or kind}, found {tok[1]!r}")
        self.i += 1
        return tok[1]

    def accept(self, value: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[1] == value and tok[0] in ("punct", "id"):
            self.i += 1
            return True
        return False

    def done(self) -> None:
        if self.peek() is not None:
            self.fail(f"unexpected {self.peek()[1]!r} at the end of the line")

    def value(self, depth: int = 0) -> Any:
        kind, tok = self.peek() or ("", "")
        if tok == "[":
            if depth >= MAX_NESTING:
                self.fail(f"values nest more than {MAX_NESTING} brackets deep")
            self.next()
            items = []
            while not self.accept("]"):
                items.append(self.value(depth + 1))
                if not self.accept(","):
                    self.next("punct", "]")
                    break
            return tuple(items)
        if self.dims and ((kind == "id" and tok not in ("true", "false", "none")) or (
                kind == "num" and self.i + 1 < len(self.toks)
                and self.toks[self.i + 1][1] in ("*", "+", "/"))):
            return self.dim_expression()  # an attribute that holds a symbolic size
        self.i += 1
        if kind == "num":
            return float(tok) if any(c in tok for c in ".eEin") else int(tok)
        if kind == "str":
            return json.loads(tok)
        if kind == "id" and tok in ("true", "false", "none"):
            return {"true": True, "false": False, "none": None}[tok]
        self.i -= 1
        self.fail(f"expected a value, found {tok!r}" if tok else "expected a value")

    def type_(self) -> Type:
        if self.accept("("):
            parts = []
            while not self.accept(")"):
                if self.peek() == ("punct", "("):
                    self.fail("tuples cannot nest")
                parts.append(self.tensor_type())
                if not self.accept(","):
                    self.next("punct", ")")
                    break
            return TupleType(tuple(parts))
        return self.tensor_type()

    def tensor_type(self) -> TensorType:
        short = self.next("id")
        if short not in SHORT_TO_DTYPE:
            self.fail(f"unknown dtype {short!r}; expected one of {', '.join(SHORT_TO_DTYPE)}")
        self.next("punct", "[")
        dims: list[Any] = []
        while not self.accept("]"):
            dims.append(self.dim())
            if not self.accept(","):
                self.next("punct", "]")
                break
        quant = layout = None
        while (tok := self.peek()) is not None and tok[1] in ("q", "layout"):
            self.next()
            self.next("punct", "(")
            if tok[1] == "layout":
                layout = self.value()
                if not isinstance(layout, str):
                    self.fail(f"a layout is a quoted string, got {format_value(layout)}")
                self.next("punct", ")")
            else:
                quant = self.quant(self.keywords(")"))
        return TensorType(tuple(dims), SHORT_TO_DTYPE[short], quant, layout)

    def dim(self) -> Any:
        """One dimension: an integer, or an expression of the declared symbols (ir/dims.py),
        whose tokens run to the next `,` or `]` outside parentheses."""
        tok = self.peek()
        if tok is not None and tok[0] == "num" and self.i + 1 < len(self.toks) and \
                self.toks[self.i + 1][1] in (",", "]"):
            d = self.value()
            if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= MAX_DIM:
                self.fail(f"a dimension must be a non-negative integer below 2**63, got "
                          f"{format_value(d)}")
            return d
        if not self.dims:
            tok = self.peek()
            self.fail(f"a dimension must be a non-negative integer below 2**63, or a symbol "
                      f"the graph header declares (`where n in [1, 64]`); got "
                      f"{tok[1] if tok else 'nothing'!r}")
        d = self.dim_expression()
        if isinstance(d, int) and not 0 <= d <= MAX_DIM:
            self.fail(f"a dimension must be a non-negative integer below 2**63, got {d}")
        return d

    def dim_expression(self) -> Any:
        """An expression of the declared symbols (ir/dims.py): its tokens run to the next
        `,`, `]`, `}` or unmatched `)`."""
        parts: list[str] = []
        depth = 0
        while (tok := self.peek()) is not None and not (depth == 0 and tok[1] in ",])}"):
            if tok[0] not in ("num", "id", "punct") or tok[1] in "{}[=:":
                break
            depth += {"(": 1, ")": -1}.get(tok[1], 0)
            parts.append(tok[1])
            self.i += 1
        if not parts:
            self.fail(f"expected a dimension, found {tok[1]!r}" if tok else
                      "line ends early; expected a dimension")
        try:
            return parse_dim("".join(parts), self.dims)
        except SmeltError as e:
            self.fail(str(e))

    def declarations(self) -> dict[str, SymDim]:
        """The header's `where n in [lo, hi], ...` (after the inputs, before `{`), read
        first because the inputs' types use it; its tokens are then dropped."""
        at = max((i for i, t in enumerate(self.toks) if t == ("id", "where")), default=None)
        if at is None:
            return {}
        rest, self.toks = self.toks[at + 1:], self.toks[:at]
        sub = _Tokens("", self.line_no)
        sub.line, sub.toks = self.line, rest
        declared: dict[str, SymDim] = {}
        while True:
            name = sub.next("id")
            sub.next("id", "in")
            bounds = sub.value()
            if not (isinstance(bounds, tuple) and len(bounds) == 2
                    and all(_is_int(b) for b in bounds)):
                sub.fail(f"the range of {name} is `[lo, hi]` (two integers), got "
                         f"{format_value(bounds)}")
            if name in declared:
                sub.fail(f"dimension {name} is declared twice")
            try:
                declared[name] = SymDim(name, *bounds)
            except SmeltError as e:
                sub.fail(str(e))
            if not sub.accept(","):
                break
        self.toks.extend(sub.toks[sub.i:])  # the `{`
        self.dims = declared
        return declared

    def quant(self, kw: dict[str, Any]) -> QuantParams:
        """The annotation `q(scale=[...], zero_point=[...], bits=B, axis=A, group=G)`, each
        field of its type (numbers for scales, integers for zero points and counts)."""
        if sorted(kw) != sorted(_QUANT_KEYS):
            self.fail(f"a quantization annotation has exactly the fields {', '.join(_QUANT_KEYS)}"
                      f"; got {', '.join(kw) or 'none'}")
        scale, zero_point, bits, axis, group = (kw[k] for k in _QUANT_KEYS)
        checks = (
            ("scale", isinstance(scale, tuple) and all(_is_number(s) for s in scale),
             "a list of numbers"),
            ("zero_point", isinstance(zero_point, tuple) and all(_is_int(z) for z in zero_point),
             "a list of integers"),
            ("bits", _is_int(bits), "an integer"),
            ("axis", axis is None or _is_int(axis), "an integer or none"),
            ("group", _is_int(group) and group >= 0, "a non-negative integer"),
        )
        for name, ok, what in checks:
            if not ok:
                self.fail(f"bad quantization annotation: {name} must be {what}, "
                          f"got {format_value(kw[name])}")
        try:
            return QuantParams(scale, zero_point, bits, axis, group)
        except SmeltError as e:
            self.fail(f"bad quantization annotation: {e}")

    def keywords(self, close: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while not self.accept(close):
            key = self.next("id")
            if key in out:
                self.fail(f"{key} is given twice")
            self.next("punct", "=")
            out[key] = self.value()
            if not self.accept(","):
                self.next("punct", close)
                break
        return out


def parse_graph(text: str, weights: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Read a printed graph back. `weights` maps each `@key` to its array."""
    weights = weights or {}
    env: dict[str, Node] = {}
    names: dict[Node, str] = {}
    sources: dict[Node, str] = {}
    lines = text.splitlines()
    header_seen = closed = False
    header_dims: dict[str, SymDim] = {}
    inputs: list[Node] = []
    outputs: list[Node] | None = None
    graph_name = "main"
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.strip().startswith("#"):
            continue
        toks = _Tokens(raw, line_no)
        toks.dims = header_dims
        if closed:
            toks.fail("nothing may follow the `}` that closes the graph")
        if not header_seen:
            if toks.next("id") != "graph":
                toks.fail("a graph starts with `graph NAME(...) {`")
            graph_name = toks.next("id")
            header_dims = toks.declarations()
            toks.next("punct", "(")
            while not toks.accept(")"):
                var = toks.next("var")[1:]
                toks.next("punct", ":")
                t = toks.type_()
                if not isinstance(t, TensorType):
                    toks.fail("a graph input must be a tensor")
                if var in env:
                    toks.fail(f"input %{var} is declared twice")
                try:
                    node = Node.input(var, t.shape, t.dtype)
                except SmeltError as e:
                    toks.fail(str(e))
                env[var] = node
                inputs.append(node)
                if not toks.accept(","):
                    toks.next("punct", ")")
                    break
            toks.next("punct", "{")
            toks.done()
            header_seen = True
            continue
        if outputs is not None:
            if toks.toks != [("punct", "}")]:
                toks.fail("expected `}` to close the graph after the `return` line")
            closed = True
            continue
        first = toks.peek()
        if first == ("id", "return"):
            toks.next()
            outputs = []
            while toks.peek() is not None:
                outputs.append(_lookup(toks, env, toks.next("var")[1:]))
                if not toks.accept(","):
                    break
            toks.done()
            if not outputs:
                toks.fail("return needs at least one value")
            continue
        if raw.strip() == "}":
            toks.fail("the graph ends without a `return` line")
        var = toks.next("var")[1:]
        if var in env:
            toks.fail(f"%{var} is defined twice (each name is assigned once)")
        toks.next("punct", "=")
        op = toks.next("id")
        if op == "constant":
            node = _parse_constant(toks, weights)
        else:
            toks.next("punct", "(")
            args: list[Node] = []
            while not toks.accept(")"):
                args.append(_lookup(toks, env, toks.next("var")[1:]))
                if not toks.accept(","):
                    toks.next("punct", ")")
                    break
            attrs = toks.keywords("}") if toks.accept("{") else {}
            toks.next("punct", ":")
            declared = toks.type_()
            toks.done()
            try:
                node = Node.make(op, args, **attrs)
            except SmeltError as e:
                toks.fail(str(e))
            if node.type != declared:
                if isinstance(declared, TensorType) and declared.quant is not None or (
                    isinstance(declared, TensorType) and declared.layout is not None
                ):
                    node = Node.unchecked(op, args, dict(node.attrs), declared)
                else:
                    toks.fail(f"declared type {format_type(declared)} but {op} gives "
                              f"{format_type(node.type)}")
        env[var] = node
        if not var.isdigit():
            names.setdefault(node, var)
        if toks.comment:
            sources.setdefault(node, toks.comment)
    if not header_seen:
        raise ParseError("empty text: expected `graph NAME(...) {`", 1, lines[0] if lines else "")
    if outputs is None:
        raise ParseError("the graph has no `return` line", len(lines), lines[-1])
    if not closed:
        raise ParseError("the graph is not closed with `}`", len(lines), lines[-1])
    return Graph(inputs, outputs, graph_name, names, sources)


_NOTHING = object()


def _fits_dtype(v: Any, dtype: str) -> bool:
    """Whether text value v is a value of `dtype` as written (no silent rounding or casting)."""
    if dtype == "bool":
        return isinstance(v, bool)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    if dtype in SHORT_TO_DTYPE.values() and np.issubdtype(numpy_dtype(dtype), np.integer):
        return isinstance(v, int)
    return True


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _lookup(toks: _Tokens, env: dict[str, Node], var: str) -> Node:
    if var not in env:
        toks.fail(f"%{var} is used before it is defined")
    return env[var]


def _parse_constant(toks: _Tokens, weights: Mapping[str, np.ndarray]) -> Node:
    kind, tok = toks.peek() or ("", "")
    if kind == "ref":
        toks.next()
        key = tok[1:]
        if key not in weights:
            toks.fail(f"weight @{key} is not in the weights file")
        array = np.asarray(weights[key])
        toks.next("punct", ":")
        declared = toks.type_()
        toks.done()
        if not isinstance(declared, TensorType):
            toks.fail("a constant must be a tensor")
        if tuple(array.shape) != declared.shape or array.dtype != numpy_dtype(declared.dtype):
            toks.fail(f"weight @{key} is {array.dtype}{list(array.shape)}, but the text "
                      f"declares {format_type(declared)}")
        return Node.constant(array, declared.dtype)
    value = toks.value()
    toks.next("punct", ":")
    declared = toks.type_()
    toks.done()
    if not isinstance(declared, TensorType):
        toks.fail("a constant must be a tensor")
    flat = list(value) if isinstance(value, tuple) else [value]
    if len(flat) != declared.size:
        toks.fail(f"{len(flat)} values given for a constant of {declared.size} elements")
    wrong = next((v for v in flat if not _fits_dtype(v, declared.dtype)), _NOTHING)
    if wrong is not _NOTHING:
        toks.fail(f"value {format_value(wrong)} is not of type {DTYPES[declared.dtype]}")
    try:
        array = np.array(flat, dtype=numpy_dtype(declared.dtype)).reshape(declared.shape)
    except (TypeError, ValueError, OverflowError) as e:
        toks.fail(f"bad constant value: {e}")
    return Node.constant(array, declared.dtype)
