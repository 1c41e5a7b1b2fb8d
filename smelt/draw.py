"""Pictures of graphs as SVG, written by hand (no graphviz): a layered layout, top to bottom.

    svg = graph_svg(graph, title="model")              # one graph
    svg = compare_svg(before, after, ("before", "after"))  # side by side, differences marked

Each node is a box labelled with its op, its non-default attributes and its type. Constants
get no box of their own: each appears as a line in the label of the node that uses it
(`w f32[4,3,3,3]`, or its value when it is a scalar), which keeps weight-heavy graphs readable.
Layers are networkx's topological generations of the graph without its constants; within a
layer a node sits under the mean of its operands (one downward barycenter sweep), and an edge
that skips layers passes through a waypoint in each, beside the boxes instead of through them.

Differences (`differing_nodes`): a node is matched by its op, attributes, type, the ops and
types of its operands and the contents of its constant operands; a node with no match left
in the other graph is highlighted. A pass that changes a layer's weights or its neighbours
therefore marks that layer, not everything downstream of it.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from smelt.ir import OPS, Graph, Node
from smelt.ir.op_table import REQUIRED
from smelt.ir.text_format import format_value

CHAR_W, LINE_H, PAD = 7.2, 15.0, 7.0  # monospace 12px: glyph width and line height
GAP_X, GAP_Y, MARGIN, TITLE_H = 24.0, 40.0, 20.0, 28.0
MAX_LABEL = 48  # characters per label line; longer ones are cut with an ellipsis
STYLE = {  # fill, stroke
    "plain": ("#eef3fb", "#4a6fa5"),
    "input": ("#e8f5e9", "#3b7d3e"),
    "highlight": ("#ffe3c2", "#d9480f"),
}


@dataclass
class Slot:
    """A place in a layer: a node's box, or a waypoint where a longer edge crosses it."""

    x: float = field(default=0.0, kw_only=True)  # left edge
    y: float = field(default=0.0, kw_only=True)  # top edge
    width: float = field(default=8.0, kw_only=True)
    height: float = field(default=0.0, kw_only=True)

    @property
    def center(self) -> float:
        return self.x + self.width / 2


@dataclass
class Box(Slot):
    node: Node
    lines: list[str]
    tooltip: str
    output: bool = False

    def __post_init__(self) -> None:
        self.width = max(len(s) for s in self.lines) * CHAR_W + 2 * PAD
        self.height = len(self.lines) * LINE_H + 2 * PAD


@dataclass
class Edge:
    src: Box
    dst: Box
    waypoints: list[Slot]  # one per layer strictly between the two boxes


@dataclass
class Layout:
    boxes: dict[Node, Box]
    edges: list[Edge]
    width: float
    height: float


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


# -- layout --------------------------------------------------------------------------------------
def _visible(graph: Graph, n: Node) -> bool:
    return n.op != "constant" or any(n is o for o in graph.outputs)


def layers(graph: Graph) -> list[list[Node]]:
    """Topological generations of the graph's non-constant nodes (graph order within each)."""
    g = graph.to_networkx()
    g.remove_nodes_from([v for v, d in g.nodes(data=True) if not _visible(graph, d["node"])])
    return [[g.nodes[v]["node"] for v in sorted(gen)] for gen in nx.topological_generations(g)]


def layout(graph: Graph) -> Layout:
    """Boxes placed layer by layer; an edge that skips layers gets a waypoint in each, so it
    runs beside the boxes it passes instead of through them."""
    rows = layers(graph)
    level = {n: k for k, row in enumerate(rows) for n in row}
    boxes = {n: Box(n, label(graph, n), _tooltip(graph, n),
                    output=any(n is o for o in graph.outputs)) for n in level}
    incoming: dict[Node, list[Edge]] = {n: [] for n in level}
    crossing: list[list[tuple[Slot, Slot]]] = [[] for _ in rows]  # (waypoint, slot above it)
    for n in level:
        for x in dict.fromkeys(i for i in n.inputs if i in level):
            e = Edge(boxes[x], boxes[n], [Slot() for _ in range(level[x] + 1, level[n])])
            for j, w in enumerate(e.waypoints):
                crossing[level[x] + 1 + j].append((w, e.waypoints[j - 1] if j else e.src))
            incoming[n].append(e)
    y = 0.0
    for k, row in enumerate(rows):
        slots: list[Slot] = [boxes[n] for n in row] + [w for w, _ in crossing[k]]
        wanted = [_mean_center([_anchor(e) for e in incoming[n]]) for n in row]
        wanted += [above.center for _, above in crossing[k]]
        _place(slots, wanted)
        height = max(s.height for s in slots)
        for s in slots:
            s.y, s.height = y, (s.height if isinstance(s, Box) else height)
        y += height + GAP_Y
    edges = [e for n in level for e in incoming[n]]
    every = [*boxes.values(), *(w for e in edges for w in e.waypoints)]
    left = min((s.x for s in every), default=0.0)
    for s in every:
        s.x -= left
    width = max((s.x + s.width for s in every), default=0.0)
    return Layout(boxes, edges, width, max(y - GAP_Y, 0.0))


def _anchor(e: Edge) -> Slot:
    """Where edge `e` arrives from: its last waypoint, or its source box."""
    return e.waypoints[-1] if e.waypoints else e.src


def _mean_center(slots: list[Slot]) -> float | None:
    return sum(s.center for s in slots) / len(slots) if slots else None


def _place(slots: list[Slot], wanted: list[float | None]) -> None:
    """Put each slot under the mean of what feeds it, left to right, without overlaps; boxes
    before waypoints where they want the same place (the main path stays straight)."""
    order = sorted(range(len(slots)), key=lambda i: (
        wanted[i] is None, wanted[i] or 0.0, not isinstance(slots[i], Box), i))
    right: float | None = None  # the right edge of the last slot placed
    for i in order:
        s, center = slots[i], wanted[i]
        if center is None:
            s.x = 0.0 if right is None else right + GAP_X
        else:
            s.x = center - s.width / 2 if right is None else max(center - s.width / 2,
                                                                 right + GAP_X)
        right = s.x + s.width


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


# -- SVG -----------------------------------------------------------------------------------------
def _edge(e: Edge) -> str:
    """A path from the source's bottom to the destination's top: curves between layers,
    straight through each waypoint."""
    points = [(e.src.center, e.src.y + e.src.height)]
    for w in e.waypoints:
        points += [(w.center, w.y), (w.center, w.y + w.height)]
    points.append((e.dst.center, e.dst.y - 2))
    d = f"M{points[0][0]:.1f},{points[0][1]:.1f}"
    for i in range(1, len(points)):
        (x1, y1), (x2, y2) = points[i - 1], points[i]
        if i % 2:  # between layers
            bend = (y2 - y1) / 2
            d += f" C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}"
        else:  # through a layer
            d += f" L{x2:.1f},{y2:.1f}"
    return f'<path d="{d}" fill="none" stroke="#667" marker-end="url(#arrow)"/>'


def _box(b: Box, highlighted: bool) -> list[str]:
    kind = "highlight" if highlighted else "input" if b.node.op == "input" else "plain"
    fill, stroke = STYLE[kind]
    width = 2.5 if b.output or highlighted else 1.0
    out = [f"<g><title>{html.escape(b.tooltip)}</title>",
           f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.width:.1f}" height="{b.height:.1f}" '
           f'rx="5" fill="{fill}" stroke="{stroke}" stroke-width="{width}"/>']
    for i, line in enumerate(b.lines):
        weight = ' font-weight="bold"' if i == 0 else ""
        color = "#223" if i < 2 else "#666"
        out.append(f'<text x="{b.x + PAD:.1f}" y="{b.y + PAD + (i + 0.8) * LINE_H:.1f}" '
                   f'fill="{color}"{weight}>{html.escape(line)}</text>')
    out.append("</g>")
    return out


def _panel(graph: Graph, title: str, highlight: set[Node], dx: float
           ) -> tuple[list[str], float, float]:
    lay = layout(graph)
    parts = [f'<g transform="translate({dx:.1f},{MARGIN:.1f})">',
             f'<text x="0" y="14" font-size="14" font-weight="bold">{html.escape(title)}</text>',
             f'<g transform="translate(0,{TITLE_H:.1f})">']
    parts += [_edge(e) for e in lay.edges]
    for b in lay.boxes.values():
        parts += _box(b, b.node in highlight)
    parts += ["</g>", "</g>"]
    width = max(lay.width, len(title) * CHAR_W * 1.2)
    return parts, width, lay.height + TITLE_H


def _document(parts: list[str], width: float, height: float) -> str:
    w, h = width + 2 * MARGIN, height + 2 * MARGIN
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
            f'viewBox="0 0 {w:.0f} {h:.0f}" font-family="monospace" font-size="12">',
            '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="8" '
            'markerHeight="8" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#667"/></marker>'
            '</defs>',
            f'<rect width="{w:.0f}" height="{h:.0f}" fill="white"/>']
    return "\n".join(head + parts + ["</svg>"]) + "\n"


def graph_svg(graph: Graph, title: str = "", highlight: set[Node] | None = None) -> str:
    """The graph as an SVG document; nodes in `highlight` are drawn in orange."""
    s = graph.summary()
    heading = f"{title}  ({s.nodes} nodes, {s.macs:,} MACs)" if title else f"{s.nodes} nodes"
    parts, width, height = _panel(graph, heading, highlight or set(), MARGIN)
    return _document(parts, width, height)


def compare_svg(a: Graph, b: Graph, titles: tuple[str, str] = ("before", "after")) -> str:
    """Both graphs side by side; nodes with no counterpart in the other graph in orange."""
    only_a, only_b = differing_nodes(a, b)
    left, wa, ha = _panel(a, f"{titles[0]}  ({len(only_a)} differ)", only_a, MARGIN)
    right, wb, hb = _panel(b, f"{titles[1]}  ({len(only_b)} differ)", only_b,
                           MARGIN + wa + 3 * GAP_X)
    return _document(left + right, wa + 3 * GAP_X + wb, max(ha, hb))
