"""Run a benchmark as a user would (`python -m benchmarks.<name>` from the repository root, in
its own process) and read the JSON it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(name: str, out: Path, *flags: str, timeout: int = 600,
                  beside: tuple[str, ...] = (".md", ".png")) -> dict[str, Any]:
    """`python -m benchmarks.<name> <flags> --out <out>`; asserts it exits 0 (showing the end
    of its stderr when it does not) and wrote the files `beside` the JSON (its Markdown table
    and its PNG plot); returns the JSON report."""
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *flags, "--out", str(out)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if ".md" in beside:
        assert out.with_suffix(".md").read_text().strip(), f"{name} wrote an empty table"
    if ".png" in beside:
        png = out.with_suffix(".png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n") and len(png) > 10_000, f"{name}: no plot drawn"
    return json.loads(out.read_text())
