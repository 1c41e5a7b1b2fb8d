"""Save and load graphs: the printed text, plus an .npz of the weights beside it.

`save(graph, "model.smelt")` writes `model.smelt` (text; first line `# smelt-graph 1
weights=model.npz`) and `model.npz`. Loading parses the text and reads the arrays with
`allow_pickle=False`: a file can hold only numbers, so loading never executes code.
Round trips are exact: the text carries shortest-repr floats, the npz raw bytes.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from .errors import FileFormatError, ParseError
from .graph import Graph
from .text_format import parse_graph, print_graph

MAGIC = "# smelt-graph 1"
_HEADER = re.compile(r"^# smelt-graph 1(?: weights=(?P<weights>[^\s/\\]+))?\s*$")


def save(graph: Graph, path: str | Path) -> Path:
    """Write `graph` to `path` (text) and its weights to `path` with suffix .npz."""
    path = Path(path)
    if path.suffix == ".npz":
        raise FileFormatError("give the path of the text file (e.g. model.smelt), not the .npz")
    text, weights = print_graph(graph)
    wpath = path.with_suffix(".npz")
    header = MAGIC + (f" weights={wpath.name}" if weights else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    if weights:
        with open(wpath, "wb") as f:
            np.savez(f, **{k: np.ascontiguousarray(v) for k, v in weights.items()})
    path.write_text(header + "\n" + text)
    return path


def load(path: str | Path) -> Graph:
    """Read a graph written by `save`. Never unpickles, never executes code."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"no graph file at {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FileFormatError(f"{path} is not a smelt text file (not UTF-8)") from None
    first = text.split("\n", 1)[0]
    m = _HEADER.match(first)
    if not m:
        raise FileFormatError(
            f"{path} does not start with '{MAGIC}'; is it a file written by smelt.save?"
        )
    weights: dict[str, np.ndarray] = {}
    if m.group("weights"):
        wpath = path.parent / m.group("weights")
        if not wpath.is_file():
            raise FileFormatError(f"{path} refers to weights {wpath.name}, which is missing; "
                                  f"keep the .npz beside the text file")
        try:
            with np.load(wpath, allow_pickle=False) as data:
                weights = {k: data[k] for k in data.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            raise FileFormatError(f"{wpath} is not a valid weights file: {e}") from None
    body = text.split("\n", 1)[1] if "\n" in text else ""
    try:
        return parse_graph("\n" * 1 + body, weights)
    except ParseError as e:
        raise FileFormatError(f"{path}: {e}") from None
