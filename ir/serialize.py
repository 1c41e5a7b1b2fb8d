"""Save and load graphs: the printed text, plus an .npz of the weights beside it.

`save(graph, "model.smelt")` writes `model.smelt` (UTF-8 text; first line `# smelt-graph 1
weights=model.npz`) and `model.npz`, a zip of one .npy member per weight, written and read
member by member with `allow_pickle=False` (so any weight name works, `file` included): a file
can hold only numbers, so loading never executes code. Anything else in the archive (an object
array, a member that is not .npy, a file that is not a zip) is a FileFormatError.
Round trips are exact: the text carries shortest-repr floats, the npz raw bytes.

Saving writes both files to temporary files beside them and then renames them into place,
so a failed save (a full disk, a read-only directory) leaves no partial file and earlier
files of the same name intact, and raises FileFormatError. Loading refuses a weights
file whose arrays are not exactly the ones the text names, and an array whose header
declares more bytes than its member holds (it is never allocated).
"""

from __future__ import annotations

import errno
import lzma
import os
import re
import secrets
import tokenize
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

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
    data = (header + "\n" + text).encode("utf-8")
    writes: list[tuple[Path, Callable[[IO[bytes]], object]]] = [(path, lambda f: f.write(data))]
    if weights:
        writes.insert(0, (wpath, lambda f: _write_weights(f, weights)))
    staged: list[tuple[str, Path]] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for final, write in writes:  # every byte first (where a full disk fails), then renames
            if final.is_dir():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(final))
            staged.append((_staged(final, write), final))
        for tmp, final in staged:
            os.replace(tmp, final)
    except OSError as e:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise FileFormatError(f"cannot save the graph to {path}: {_reason(e)}") from None
    return path


def _reason(e: OSError) -> str:
    """What went wrong writing, and what to do (nothing partial is left: the caller's
    temporary files are removed before this is raised)."""
    what = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
            errno.EACCES: "make the directory writable", errno.EPERM:
            "make the directory writable", errno.EROFS: "save to a writable file system"}
    todo = what.get(e.errno or 0, "check the path")
    return f"{e.strerror or e} ({e.filename or 'while writing'}); {todo} or save elsewhere. " \
           "No partial file was left; files saved there before are unchanged"


def _staged(path: Path, write: Callable[[IO[bytes]], object]) -> str:
    """A temporary file beside `path` holding what `write` wrote (removed if that fails).
    Created by `open(..., "xb")`, not mkstemp, so that it gets the umask's permissions."""
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"))
    try:
        with open(tmp, "xb") as f:
            write(f)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _write_weights(f: IO[bytes], weights: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(f, "w") as zf:
        for key, array in weights.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array),
                                          allow_pickle=False)


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
                    _check_declared_size(path, info, f)
                with zf.open(info) as f:
                    weights[info.filename[:-4]] = np.lib.format.read_array(
                        f, allow_pickle=False)
                    if f.read(1):  # (reading to the end also checks the member's CRC)
                        raise FileFormatError(f"{path}: array {info.filename[:-4]!r} is "
                                              "followed by bytes that are not part of it; the "
                                              "file is corrupt: save the graph again")
    except FileFormatError:
        raise
    except MemoryError:
        raise FileFormatError(f"{path} holds an array too large for this machine's memory") \
            from None
    except (ValueError, OSError, EOFError, SyntaxError, RuntimeError, NotImplementedError,
            tokenize.TokenError, zipfile.BadZipFile, zlib.error, lzma.LZMAError) as e:
        # bad headers (numpy tokenizes them), pickles, encrypted or odd compression, corrupt
        # compressed data; RecursionError is a RuntimeError
        raise FileFormatError(f"{path} is not a valid weights file: {e}; save the graph "
                              "again with smelt.save") from None
    return weights


def _check_declared_size(path: Path, info: zipfile.ZipInfo, f: IO[bytes]) -> None:
    """Refuse a member whose .npy header declares more bytes than the member holds (a
    truncated or crafted file), before an array of that size is allocated."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    declared = dtype.itemsize
    for d in shape:
        declared *= d
    held = info.file_size - f.tell()
    if declared > held:
        raise FileFormatError(
            f"{path}: array {info.filename[:-4]!r} declares shape {list(shape)} of {dtype} "
            f"({declared} bytes) but holds {held} bytes; the file is truncated or corrupt: "
            "save the graph again with smelt.save")


def load(path: str | Path) -> Graph:
    """Read a graph written by `save`. Never unpickles, never executes code."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"no graph file at {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FileFormatError(f"{path} is not a smelt text file (not UTF-8)") from None
    except OSError as e:
        raise FileFormatError(f"cannot read {path}: {e.strerror or e}") from None
    first = text.split("\n", 1)[0]
    m = _HEADER.match(first)
    if not m:
        raise FileFormatError(
            f"{path} does not start with '{MAGIC}'; is it a file written by smelt.save?"
        )
    weights = _Recorded()
    if m.group("weights"):
        wpath = path.parent / m.group("weights")
        if not wpath.is_file():
            raise FileFormatError(f"{path} refers to weights {wpath.name}, which is missing; "
                                  f"keep the .npz beside the text file")
        weights.update(_read_weights(wpath))
    body = text.split("\n", 1)[1] if "\n" in text else ""
    try:
        graph = parse_graph("\n" * 1 + body, weights)
    except ParseError as e:
        raise FileFormatError(f"{path}: {e}") from None
    unused = sorted(set(weights) - weights.used)
    if unused:
        shown = ", ".join(unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
        raise FileFormatError(f"{wpath} holds arrays the text does not use ({shown}): it does "
                              f"not belong to {path.name}; save the graph again with smelt.save")
    return graph


class _Recorded(dict):
    """The weights table, recording which keys the parser read."""

    def __init__(self) -> None:
        super().__init__()
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> np.ndarray:
        self.used.add(key)
        return super().__getitem__(key)
