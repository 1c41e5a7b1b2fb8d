"""The benchmarks stay runnable: each runs on its smallest size (their numbers are measured
by running them in full, not here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_rewrite_scale_runs_and_fuses(tmp_path: Path) -> None:
    out = tmp_path / "rs.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rewrite_scale.py"), "--sizes", "1001",
         "--peers", "smelt,smelt-fuse", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["summary"]["largest_within_limit"] == {"smelt": 1001, "smelt-fuse": 1001}
    assert all(r["status"] == "ok" and r["correct"] for r in data["results"])
