"""A small progress bar on stderr for long loops (calibration batches, ...).

    with Progress(40, "calibrate") as bar:
        for batch in batches:
            ...
            bar.update()

writes `calibrate [#####---------------] 10/40 batches, 3.1 s`. On a terminal the line is
rewritten in place (carriage return, at most ten times a second, and once at the end); on
anything else (a log file, a CI console) it writes a few plain lines instead: at each quarter
of the total, or at 1, 2, 4, 8, ... steps when the total is unknown, and at the end.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

REFRESH_S = 0.1  # the shortest interval between two rewrites of a terminal line


class Progress:
    """`Progress(total, label)`: a context manager; `update(n)` after every n steps done.
    `total` None shows the count without a bar."""

    def __init__(self, total: int | None, label: str, *, unit: str = "batches",
                 stream: TextIO | None = None, width: int = 20) -> None:
        self.total, self.label, self.unit, self.width = total, label, unit, width
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.done = 0
        self.start = time.perf_counter()
        self._written_at = -1.0
        self._last_line = ""
        self._next_plain = 1
        self._advance_plain()
        self._closed = False

    def __enter__(self) -> Progress:
        if self.tty:
            self._write(self.line())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self) -> str:
        """The bar as it stands: `label [####------] done/total unit, elapsed s`."""
        elapsed = time.perf_counter() - self.start
        if self.total:
            filled = round(self.width * min(self.done, self.total) / self.total)
            bar = f"[{'#' * filled}{'-' * (self.width - filled)}] "
            count = f"{self.done}/{self.total}"
        else:
            bar, count = "", str(self.done)
        return f"{self.label} {bar}{count} {self.unit}, {elapsed:.1f} s"

    def update(self, n: int = 1) -> None:
        """Record n more steps done and redraw if it is time to."""
        self.done += n
        now = time.perf_counter()
        if self.tty:
            if now - self._written_at >= REFRESH_S or self.done == self.total:
                self._write(self.line())
        elif self.done >= self._next_plain:
            self._write(self.line())
            self._advance_plain()

    def close(self) -> None:
        """Write the final state (and end the terminal line). Idempotent."""
        if self._closed:
            return
        self._closed = True
        line = self.line()
        if self.tty:
            self._write(line)
            self.stream.write("\n")
        elif self.done and self._count_part(line) != self._count_part(self._last_line):
            self._write(line)
        self.stream.flush()

    def _advance_plain(self) -> None:
        if self.total:
            quarters = [-(-self.total * k // 4) for k in range(1, 5)]
            self._next_plain = min((q for q in quarters if q > self.done), default=self.total + 1)
        else:
            while self._next_plain <= self.done:
                self._next_plain *= 2

    @staticmethod
    def _count_part(line: str) -> str:
        return line.rsplit(",", 1)[0]

    def _write(self, line: str) -> None:
        if self.tty:
            pad = " " * max(len(self._last_line) - len(line), 0)
            self.stream.write(f"\r{line}{pad}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last_line = line
        self._written_at = time.perf_counter()
