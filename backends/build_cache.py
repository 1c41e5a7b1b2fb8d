"""Builds kept for reuse, in memory for the process (the 32 most recently used) and on disk
across processes.

`cached_build(graph, target, options, build, cache_dir)` is what a target's compile calls:
it returns the module built before for the same graph (content hash), TVM target and
options, from memory, else from disk where `cache_dir` is given (a directory, or True for
the per-user cache), else builds it, and records where it came from in `module.cache`
("built", "memory" or "disk").

On disk a compiled module is stored as the shared library and JSON that
`CompiledModule.export` writes, under a key made of the graph's content hash, the target, the
compile options, and the versions of everything that shapes the code (smelt's backend
sources, TVM). A later process compiling the same graph for the same target loads the
library instead of building it again.

Entries are written to a temporary name and renamed into place, so a reader never sees half
a file; an entry that fails to load is removed and rebuilt (and the reason returned).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from smelt.ir.graph import Graph

from .compiled import CompiledModule, load_compiled
from .recent import Recent

#: entry key -> module, the most recently used of this process
MEMORY: Recent[str, CompiledModule] = Recent(32)


def default_cache_dir() -> Path:
    """~/.cache/smelt/compiled: where the cache lives unless `cache_dir=` says otherwise."""
    return Path.home() / ".cache" / "smelt" / "compiled"


@lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of smelt's backend sources and TVM's version: any change invalidates entries."""
    import tvm

    h = hashlib.sha256(str(tvm.__version__).encode())
    here = Path(__file__).resolve().parent
    for path in sorted(here.rglob("*.py")):
        h.update(path.relative_to(here).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def entry_key(graph_key: str, target: str, options: dict[str, Any]) -> str:
    blob = json.dumps({"graph": graph_key, "target": target, "options": options,
                       "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class DiskCache:
    """Compiled modules on disk, one `<key>.so` + `<key>.json` pair per entry."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.so"

    def load(self, key: str) -> tuple[CompiledModule | None, str]:
        """The cached module, or None and why not (missing, or unreadable and removed)."""
        path = self.path(key)
        if not path.is_file() or not path.with_suffix(".json").is_file():
            return None, "not cached"
        try:
            return load_compiled(path), "loaded"
        except Exception as e:  # a truncated or foreign file: drop it, the caller rebuilds
            self._remove(key)
            return None, f"cache entry {path.name} was unreadable ({e}); rebuilt"

    def store(self, key: str, module: CompiledModule) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.directory) as tmp:
            staged = module.export(Path(tmp) / f"{key}.so")
            os.replace(staged.with_suffix(".json"), self.path(key).with_suffix(".json"))
            os.replace(staged, self.path(key))
        return self.path(key)

    def _remove(self, key: str) -> None:
        for p in (self.path(key), self.path(key).with_suffix(".json")):
            p.unlink(missing_ok=True)


def graph_key(graph: Graph) -> str:
    """A hash of the graph's inputs (names, types) and outputs (content): equal graphs, equal
    keys, whatever their node identities."""
    h = hashlib.sha256()
    for x in graph.inputs:
        h.update(f"{x.attrs['name']}:{x.type}".encode())
    for o in graph.outputs:
        h.update(o.content_hash.encode())
    return h.hexdigest()


def cached_build(graph: Graph, target: Any, options: dict[str, Any],
                 build: Callable[[], CompiledModule],
                 cache_dir: str | Path | bool | None = None) -> CompiledModule:
    """The module for (graph, target, options): from memory, from disk, or `build()`."""
    key = entry_key(graph_key(graph), str(target), options)
    kept = MEMORY.get(key)
    if kept is not None:
        kept.cache = "memory"
        return kept
    disk = None if cache_dir is None or cache_dir is False else DiskCache(
        None if cache_dir is True else cache_dir)
    if disk is not None:
        module, _why = disk.load(key)
        if module is not None:
            module.cache = "disk"
            MEMORY.put(key, module)
            return module
    module = build()
    module.cache = "built"
    if disk is not None:
        disk.store(key, module)
    MEMORY.put(key, module)
    return module
