"""Save and load graphs: the printed text, plus an .npz of the weights beside it.

`save(graph, "model.smelt")` writes `model.smelt` (UTF-8 text; first line `# smelt-graph 1
weights=model.npz`) and `model.npz`, a zip of one .npy member per weight, written and read
member by member with `allow_pickle=False` (so any weight name works, `file` included): a file
can hold only numbers, so loading never executes code. Anything else in the archive (an object
array, a member that is not .npy, a file that is not a zip) is a FileFormatError.
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
_HEADER = re.compile(r"^# smelt-graph 1(?: weights=(?P<weights>[^/\\]*[^\s/\\]))?\s*$")


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
        _write_weights(wpath, weights)
    path.write_text(header + "\n" + text, encoding="utf-8")
    return path


def _write_weights(path: Path, weights: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for key, array in weights.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    """Every .npy member of the archive at `path`, refusing pickles and anything else."""
    if not zipfile.is_zipfile(path):
        raise FileFormatError(f"{path} is not a weights file: it is not a zip archive (.npz)")
    weights: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise FileFormatError(f"{path}: member {info.filename!r} is not an array "
                                          f"(.npy); a weights file holds arrays only")
                with zf.open(info) as f:
                    weights[info.filename[:-4]] = np.lib.format.read_array(
                        f, allow_pickle=False)
    except FileFormatError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError, RuntimeError, NotImplementedError,
            zipfile.BadZipFile) as e:  # bad headers, pickles, encrypted or odd compression
        raise FileFormatError(f"{path} is not a valid weights file: {e}") from None
    return weights


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
        weights = _read_weights(wpath)
    body = text.split("\n", 1)[1] if "\n" in text else ""
    try:
        return parse_graph("\n" * 1 + body, weights)
    except ParseError as e:
        raise FileFormatError(f"{path}: {e}") from None
