"""The documentation runs, so it cannot drift from the code.

- Every ```python block of docs/*.md and README.md is executed. The blocks of one file run in
  order in one namespace (a file reads as one session), in a fresh temporary working
  directory, so the files a tutorial writes land there. Tracebacks point at the Markdown file
  and line.
- A block whose first line is `# raises: SomeError` must raise that error (a name from smelt,
  smelt.rewrite, smelt.testing or builtins); the file goes on after it.
- The rule and pass registries are restored after each file: a page that registers its own
  rule or pass does not leak it into other tests.
- docs/rules.md must be exactly what `python docs/gen_rules.py` prints for today's registry.
"""

from __future__ import annotations

import builtins
import difflib
import importlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_RAISES = re.compile(r"#\s*raises:\s*([A-Za-z_][A-Za-z0-9_.]*)\s*$")


@dataclass(frozen=True)
class Block:
    """One ```python block: its first code line in the page (1-based), code, expected error."""

    line: int
    code: str
    raises: str | None


def python_blocks(page: Path) -> list[Block]:
    text = page.read_text()
    blocks = []
    for m in _FENCE.finditer(text):
        code = m.group(1)
        line = text.count("\n", 0, m.start(1)) + 1
        first = code.split("\n", 1)[0]
        marker = _RAISES.fullmatch(first.strip())
        if first.strip().startswith("# raises") and marker is None:
            raise ValueError(f"{page.name}:{line}: write the marker as `# raises: ErrorName`")
        blocks.append(Block(line, code, marker.group(1) if marker else None))
    return blocks


def error_class(name: str) -> type[BaseException]:
    # by module name: the attribute `smelt.rewrite` is the function, not the package
    modules = [importlib.import_module(m) for m in ("smelt", "smelt.rewrite", "smelt.testing")]
    for where in (*modules, builtins):
        found = getattr(where, name, None)
        if isinstance(found, type) and issubclass(found, BaseException):
            return found
    raise LookupError(f"`# raises: {name}`: no such error in smelt, smelt.rewrite, "
                      "smelt.testing or builtins")


def run_block(block: Block, page: Path, namespace: dict) -> None:
    # pad with newlines so that tracebacks give the line numbers of the Markdown file
    code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
    if block.raises is None:
        exec(code, namespace)
        return
    expected = error_class(block.raises)
    try:
        exec(code, namespace)
    except expected:
        return
    pytest.fail(f"{page.name}:{block.line}: the block is marked `# raises: {block.raises}` "
                "but raised nothing")


@pytest.fixture
def restored_registries():
    """Snapshot the rule and pass registries; put them back afterwards."""
    import smelt.passes  # noqa: F401  (the shipped rules and passes are registered first)
    from smelt.rewrite import registry

    rules, passes = dict(registry._RULES), dict(registry._PASSES)
    yield
    registry._RULES.clear()
    registry._RULES.update(rules)
    registry._PASSES.clear()
    registry._PASSES.update(passes)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_runs(page, tmp_path, monkeypatch, restored_registries):
    blocks = python_blocks(page)
    if page.parent == DOCS and page.name != "rules.md":
        assert blocks, f"{page.name} has no ```python blocks to check"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}"}
    for block in blocks:
        run_block(block, page, namespace)


def test_blocks_are_found_and_markers_read(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n```python\nx = 1\n```\n\n```python\n# raises: ZeroDivisionError\n"
                    "1 / 0\n```\n```text\nnot code\n```\n")
    blocks = python_blocks(page)
    assert [(b.line, b.raises) for b in blocks] == [(3, None), (7, "ZeroDivisionError")]
    namespace: dict = {}
    for b in blocks:
        run_block(b, page, namespace)
    assert namespace["x"] == 1
    with pytest.raises(pytest.fail.Exception, match="raised nothing"):
        run_block(Block(1, "# raises: ValueError\nx = 2\n", "ValueError"), page, namespace)


def test_rules_catalogue_is_up_to_date():
    out = subprocess.run([sys.executable, str(DOCS / "gen_rules.py")], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    current = (DOCS / "rules.md").read_text()
    if out.stdout != current:
        diff = "".join(list(difflib.unified_diff(
            current.splitlines(keepends=True), out.stdout.splitlines(keepends=True),
            "docs/rules.md", "python docs/gen_rules.py"))[:60])
        pytest.fail("docs/rules.md is out of date with the rule registry; regenerate it with\n"
                    "  .venv/bin/python docs/gen_rules.py > docs/rules.md\n" + diff)
