"""Pictures of graphs through Graphviz: smelt writes the graph as DOT text, and Graphviz's
`dot` program lays it out and draws it (Debian and Ubuntu: `apt-get install graphviz`).

    text = graph_dot(graph, title="model")                 # DOT text; needs no Graphviz
    svg = graph_svg(graph, title="model")                  # one graph, drawn by `dot`
    svg = compare_svg(before, after, ("before", "after"))  # side by side, differences marked

Each node is a box labelled with its op, its non-default attributes and its type. Constants
get no box of their own: each appears as a line in the label of the node that uses it
(`w f32[4,3,3,3]`, or its value when it is a scalar), which keeps weight-heavy graphs readable.
Inputs are green, outputs have a thick border, and hovering a box shows the node's source name
and location.

Differences (`differing_nodes`): a node is matched by its op, attributes, type, the ops and
types of its operands and the contents of its constant operands; a node with no match left
in the other graph is highlighted. A pass that changes a layer's weights or its neighbours
therefore marks that layer, not everything downstream of it.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from collections import Counter

import numpy as np

from smelt.ir import OPS, Graph, Node, SmeltError
from smelt.ir.op_table import REQUIRED
from smelt.ir.text_format import format_value

MAX_LABEL = 48  # characters per label line; longer ones are cut with an ellipsis
STYLE = {  # fill, border
    "plain": ("#eef3fb", "#4a6fa5"),
    "input": ("#e8f5e9", "#3b7d3e"),
    "highlight": ("#ffe3c2", "#d9480f"),
}
HEAD = ['graph [fontname="monospace", fontsize=14, labelloc=t, labeljust=l, nodesep=0.3, '
        'ranksep=0.4]',
        'node [shape=box, style="rounded,filled", fontname="monospace", fontsize=12]',
        'edge [color="#666677", arrowsize=0.7]']


class DrawError(SmeltError, RuntimeError):
    """Graphviz could not draw the graph; the message carries what `dot` said."""


class GraphvizNotFoundError(DrawError):
    """Graphviz's `dot` program is not installed (or not on PATH)."""


# -- labels --------------------------------------------------------------------------------------
def _cut(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _attrs(n: Node) -> str:
    """The attributes that differ from the op's defaults, as `k=v` text."""
    spec = OPS[n.op].attrs if n.op in OPS else {}
    shown = []
    for k, v in n.attrs.items():
        default = spec[k].default if k in spec else REQUIRED
        if default is REQUIRED or not _same(v, default):
            try:
                shown.append(f"{k}={format_value(v)}")
            except Exception:  # an attribute the text format cannot print
                shown.append(f"{k}=…")
    return ", ".join(shown)


def _same(a: object, b: object) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object)))
    except Exception:
        return False


def _operand_name(n: Node, i: int) -> str:
    names = OPS[n.op].inputs if n.op in OPS else ()
    if i < len(names) and not names[i].startswith("*"):
        return names[i].rstrip("?")
    return f"#{i}"


def _constant_text(c: Node) -> str:
    if c.value.size == 1:
        return f"= {format_value(c.value.reshape(-1)[0].item())}"
    return str(c.type)


def label(graph: Graph, n: Node) -> list[str]:
    """The lines of a node's box: op (or input name), attributes, type, folded constants."""
    if n.op == "input":
        lines = [f"input {n.attrs['name']}"]
    else:
        attrs = _attrs(n) if n.op != "constant" else ""
        lines = [n.op + (f" {{{attrs}}}" if attrs else "")]
    lines.append(str(n.type))
    for i, x in enumerate(n.inputs):
        if x.op == "constant":
            lines.append(f"{_operand_name(n, i)} {_constant_text(x)}")
    lines += [f"-> output {i}" for i, o in enumerate(graph.outputs) if o is n]
    return [_cut(s) for s in lines]


def _tooltip(graph: Graph, n: Node) -> str:
    return "\n".join(s for s in (graph.names.get(n), n.op, graph.sources.get(n)) if s)


def _visible(graph: Graph, n: Node) -> bool:
    return n.op != "constant" or any(n is o for o in graph.outputs)


# -- differences ---------------------------------------------------------------------------------
def _match_key(n: Node) -> tuple:
    operands = tuple(x.content_hash if x.op == "constant" else (x.op, str(x.type))
                     for x in n.inputs)
    return (n.op, repr(sorted(n.attrs.items())), str(n.type), operands)


def differing_nodes(a: Graph, b: Graph) -> tuple[set[Node], set[Node]]:
    """The visible nodes of `a` with no match in `b`, and those of `b` with none in `a`."""
    return _unmatched(a, b), _unmatched(b, a)


def _unmatched(a: Graph, b: Graph) -> set[Node]:
    left = Counter(_match_key(n) for n in b.nodes() if _visible(b, n))
    out = set()
    for n in a.nodes():
        if not _visible(a, n):
            continue
        k = _match_key(n)
        if left[k]:
            left[k] -= 1
        else:
            out.add(n)
    return out


# -- DOT -----------------------------------------------------------------------------------------
def _quote(text: str) -> str:
    """A DOT string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html_label(lines: list[str]) -> str:
    """An HTML-like DOT label: the first line bold, folded constants grey, all left-aligned."""
    op, *rest = [html.escape(s) for s in lines]
    parts = [f"<B>{op}</B>", rest[0], *(f'<FONT COLOR="#666666">{s}</FONT>' for s in rest[1:])]
    return "<" + "".join(f'{s}<BR ALIGN="LEFT"/>' for s in parts) + ">"


def _body(graph: Graph, highlight: set[Node], prefix: str) -> list[str]:
    """A node statement per visible node and an edge per distinct operand between them."""
    shown = [n for n in graph.nodes() if _visible(graph, n)]
    ids = {n: f"{prefix}{i}" for i, n in enumerate(shown)}
    out = []
    for n, name in ids.items():
        kind = "highlight" if n in highlight else "input" if n.op == "input" else "plain"
        fill, border = STYLE[kind]
        thick = kind == "highlight" or any(n is o for o in graph.outputs)
        out.append(f'{name} [label={_html_label(label(graph, n))}, fillcolor="{fill}", '
                   f'color="{border}", penwidth={2.5 if thick else 1.0}, '
                   f'tooltip={_quote(_tooltip(graph, n))}]')
    for n, name in ids.items():
        out += [f"{ids[x]} -> {name}" for x in dict.fromkeys(n.inputs) if x in ids]
    return out


def _title(text: str) -> str:
    return f"label=<<B>{html.escape(text)}</B>>"


def _document(lines: list[str]) -> str:
    return "digraph smelt {\n" + "".join(f"  {s}\n" for s in [*HEAD, *lines]) + "}\n"


def graph_dot(graph: Graph, title: str = "", highlight: set[Node] | None = None) -> str:
    """The graph as DOT text; nodes in `highlight` are filled orange."""
    s = graph.summary()
    heading = f"{title} ({s.nodes} nodes, {s.macs:,} MACs)" if title else f"{s.nodes} nodes"
    return _document([_title(heading), *_body(graph, highlight or set(), "n")])


def compare_dot(a: Graph, b: Graph, titles: tuple[str, str] = ("before", "after")) -> str:
    """Both graphs side by side, each in its own box with its title; nodes with no
    counterpart in the other graph filled orange."""
    only_a, only_b = differing_nodes(a, b)
    lines = []
    for key, graph, title, only in (("a", a, titles[0], only_a), ("b", b, titles[1], only_b)):
        lines += [f"subgraph cluster_{key} {{", f"  {_title(f'{title} ({len(only)} differ)')}",
                  '  color="#cccccc"', *(f"  {s}" for s in _body(graph, only, key)), "}"]
    return _document(lines)


# -- rendering -----------------------------------------------------------------------------------
def render(dot: str, fmt: str = "svg") -> str:
    """Lay out and draw DOT text with Graphviz's `dot` program (`fmt`: one of its text
    formats, `svg` by default)."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFoundError(
            "drawing a graph needs Graphviz's `dot` program, which is not on PATH; install "
            "Graphviz (Debian/Ubuntu: `apt-get install graphviz`, macOS: `brew install "
            "graphviz`), or write DOT text instead (`smelt draw MODEL -o FILE.dot`)")
    done = subprocess.run([exe, f"-T{fmt}"], input=dot, capture_output=True,
                          encoding="utf-8", check=False)
    if done.returncode != 0:
        raise DrawError(f"Graphviz's dot failed (exit status {done.returncode}): "
                        f"{done.stderr.strip() or 'no message'}")
    return done.stdout


def graph_svg(graph: Graph, title: str = "", highlight: set[Node] | None = None) -> str:
    """The graph as an SVG document, drawn by Graphviz; nodes in `highlight` in orange."""
    return render(graph_dot(graph, title, highlight))


def compare_svg(a: Graph, b: Graph, titles: tuple[str, str] = ("before", "after")) -> str:
    """Both graphs side by side, drawn by Graphviz; nodes with no counterpart in the other
    graph in orange."""
    return render(compare_dot(a, b, titles))
