"""Run a script of benchmarks/ as a user would (its own process) and read the JSON it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_benchmark(script: str, out: Path, *flags: str, timeout: int = 600) -> dict[str, Any]:
    """`python benchmarks/<script> <flags> --out <out>`; asserts it exits 0 (showing the end
    of its stderr when it does not) and returns the JSON report."""
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *flags, "--out", str(out)],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())
