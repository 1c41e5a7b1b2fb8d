"""Builds a generated project with make (gcc for the host, arm-none-eabi-gcc for the boards)
and measures it: text / data / bss from `size`, flash = text + data, SRAM = data + bss, and
a stack estimate from `gcc -fstack-usage` (the deepest kernel's frame plus the frames of
the chain that calls it: reset, main, smelt_model_run, smelt_call).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from smelt.ir.errors import SmeltError

from .boards import Board

BUILD_TIMEOUT_S = 300
CALL_CHAIN = ("smelt_reset", "main", "smelt_model_run", "smelt_call")


class CBuildError(SmeltError):
    """A tool the C target needs is missing, or the generated project could not be written
    or did not build."""


@dataclass(frozen=True)
class Sizes:
    text: int
    data: int
    bss: int
    stack: int  # estimate from -fstack-usage (0 where not measured: the host)

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def sram(self) -> int:
        return self.data + self.bss


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise CBuildError(f"{tool} is not installed (or not on PATH); `make setup` installs "
                          "the C target's tools (gcc-arm-none-eabi, libnewlib-arm-none-eabi, "
                          "qemu-system-arm)")
    return path


def run_tool(cmd: list[str], cwd: Path, timeout: int, what: str) -> str:
    require(cmd[0])
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise CBuildError(f"{what} took longer than {timeout} s ({' '.join(cmd)} in {cwd})") \
            from e
    if done.returncode != 0:
        raise CBuildError(f"{what} failed (exit {done.returncode}) in {cwd}:\n"
                          f"{(done.stderr or done.stdout)[-4000:]}")
    return done.stdout


def build(project: Path, board: Board, target: str | None = None) -> Path:
    """`make` in `project`; returns the program (app, app.elf, or `target`)."""
    require(board.compiler)
    goal = target or ("app" if board.is_host else "app.elf")
    run_tool(["make", "-s", goal], project, BUILD_TIMEOUT_S, f"building {goal}")
    return project / goal


def sizes(program: Path, board: Board) -> Sizes:
    tool = "size" if board.is_host else "arm-none-eabi-size"
    out = run_tool([tool, "-B", program.name], program.parent, 60, tool)
    text, data, bss = (int(x) for x in out.splitlines()[1].split()[:3])
    return Sizes(text, data, bss, 0 if board.is_host else stack_estimate(program.parent))


_SU = re.compile(r"^.*:\d+:\d+:(\w+)\s+(\d+)\s+(\w+)", re.MULTILINE)


def stack_estimate(project: Path) -> int:
    frames: dict[str, int] = {}
    for su in project.glob("*.su"):
        for m in _SU.finditer(su.read_text()):
            frames[m.group(1)] = max(frames.get(m.group(1), 0), int(m.group(2)))
    kernels = [v for k, v in frames.items() if k.startswith("__tvm_ffi_")]
    return sum(frames.get(f, 0) for f in CALL_CHAIN) + max(kernels, default=0)
