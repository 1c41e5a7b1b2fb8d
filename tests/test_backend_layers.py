"""The backends' layout holds: targets own their folders, shared code imports none of them, and a
compile walks down the layers.

    smelt.compile                               smelt/__init__.py
      -> backends/compile.py                    look the target up (targets.py), hand over
        -> backends/<target>/target.py          the target's options and build
          -> backends/<target>/*                its lowering entries, kernels, schedules
            -> backends/*.py, backends/lowering/   shared: lowering table, Relax stages, cache
              -> ir/, rewrite/

Three checks: no context variable in backends/ (nothing switches what a lowering emits);
imports, read from the source with `ast`, never reach a target folder from shared code or from
another target's folder; and a traced compile for `cpu` and for `c` calls only downward or
sideways, except where shared code calls back what a target registered or passed in (the
lowering table, the build cache's build function, requantize's rounding form), which the
test names. Run it alone: `.venv/bin/python -m pytest tests/test_backend_layers.py`.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import smelt
from smelt.ir import Graph, Node

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ROOT / "backends"
TARGET_FOLDERS = ("cpu", "cuda", "mcu")
#: the shared functions that call what a target registered or handed them (callbacks)
DISPATCH = {
    ("backends/lowering/module.py", "to_relax"),        # the lowering table
    ("backends/lowering/fused.py", "lower_unfused"),    # the same table, inside a fused op
    ("backends/build_cache.py", "cached_build"),        # the target's build function
    ("backends/lowering/quant.py", "lower_requantize"),  # a target's rounding form ...
    ("backends/lowering/quant.py", "fn"),               # ... applied in the kernel body
}


def _folder(path: Path) -> str | None:
    """The target folder a backends/ file is in, else None (shared)."""
    rel = path.relative_to(BACKENDS).parts
    return rel[0] if len(rel) > 1 and rel[0] in TARGET_FOLDERS else None


def _imported_modules(path: Path) -> list[str]:
    """Dotted names of the smelt.backends modules `path` imports (relative ones resolved)."""
    package = ["smelt", "backends", *path.relative_to(BACKENDS).parts[:-1]]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out += [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return [m for m in out if m.startswith("smelt.backends.")]


def _target_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[2] in TARGET_FOLDERS else None


def test_no_context_variable_switches_a_lowering() -> None:
    found = [str(p.relative_to(ROOT)) for p in BACKENDS.rglob("*.py")
             if "ContextVar" in p.read_text()]
    assert found == []


def test_shared_code_imports_no_target_folder() -> None:
    bad = []
    for path in BACKENDS.rglob("*.py"):
        own = _folder(path)
        for mod in _imported_modules(path):
            other = _target_of(mod)
            if other is not None and other != own:
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert bad == []


@cache
def _source(path: str) -> str | None:
    """A source file's path relative to the repository (None: not in it)."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else None


@cache
def _rank(path: str) -> int | None:
    """The layer of a smelt source file (None: not smelt's)."""
    rel = _source(path)
    if rel is None:
        return None
    parts = Path(rel).parts
    if parts[0] == "smelt":
        return 0
    if parts[0] in ("ir", "rewrite", "passes"):
        return 5
    if parts[0] != "backends":
        return None
    if parts[1:] == ("compile.py",):
        return 1
    if parts[1] in TARGET_FOLDERS:
        return 2 if parts[2] == "target.py" else 3
    return 4


def _upward_calls(run) -> set[tuple[str, str, str, str]]:
    """(caller file, caller function, callee file, callee function) of each call from a
    smelt frame into a smelt frame of a higher layer (a smaller rank) while `run()` runs."""
    up: set[tuple[str, str, str, str]] = set()

    def profile(frame, event, _arg):
        if event != "call" or frame.f_back is None or frame.f_code.co_name == "<module>":
            return
        callee, caller = frame.f_code, frame.f_back.f_code
        rc, rr = _rank(callee.co_filename), _rank(caller.co_filename)
        if rc is not None and rr is not None and rc < rr:
            up.add((_source(caller.co_filename), caller.co_name, _source(callee.co_filename),
                    callee.co_name))

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return up


def _int8_conv_graph() -> tuple[Graph, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1, 8, 6, 6)).astype(np.uint8)
    xin = Node.input("x", x.shape, "uint8")
    w = Node.constant(rng.integers(-128, 128, (16, 8, 3, 3)).astype(np.int8))
    acc = Node.make("qconv2d", [xin, w], x_zp=3, padding=[1])
    y = Node.make("requantize", [acc], multiplier=[1 << 30], shift=[-8], out_scale=1.0,
                  signed=False)
    return Graph([xin], [y]), x


@pytest.mark.parametrize("target, options", [("cpu", {}), ("c", {"board": "host"})])
def test_a_compile_walks_down_the_layers(target: str, options: dict, tmp_path) -> None:
    graph, x = _int8_conv_graph()
    if target == "c":
        options = {**options, "out_dir": tmp_path}
    modules = []
    up = _upward_calls(lambda: modules.append(smelt.compile(graph, target, **options)))
    assert modules[0].cache == "built"  # a build, not a cache hit
    np.testing.assert_array_equal(modules[0](x)[0], smelt.interpret(graph, x)[0])
    assert {(f, fn) for f, fn, _, _ in up} <= DISPATCH, sorted(up)
