"""Runs a built program on its inputs and reads its outputs back.

The harness (main.c) reads `input<i>.bin` and writes `output<i>.bin` and `ticks.bin` in its
working directory: a fresh temporary directory per run. On the host the program runs
natively; on an MPS2 board under `qemu-system-arm -M <board> -nographic -semihosting-config
enable=on,target=native -icount shift=0 -kernel app.elf`, whose file I/O and exit status go
through semihosting. With `-icount shift=0` an instruction is 1 ns of virtual time and a
SysTick tick (25 MHz) 40 ns, so the instructions of the model call are ticks x 40, to
within one tick.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .aot import View
from .boards import Board
from .build import CBuildError, require

RUN_TIMEOUT_S = 300
INSTRUCTIONS_PER_TICK = 40  # 1 ns per instruction (-icount shift=0) / 25 MHz SysTick


class CRunError(CBuildError):
    """The program (natively or under qemu) failed, timed out, or wrote no outputs."""


@dataclass(frozen=True)
class RunResult:
    outputs: tuple[np.ndarray, ...]
    instructions: int | None  # the model call's, on the boards; None on the host


def command(program: Path, board: Board) -> list[str]:
    if board.is_host:
        return [str(program.resolve())]
    return [require("qemu-system-arm"), "-M", board.machine, "-nographic", "-monitor", "none",
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
            "-kernel", str(program.resolve())]


def run(program: Path, board: Board, inputs: list[np.ndarray], outputs: list[View],
        timeout: int = RUN_TIMEOUT_S) -> RunResult:
    try:
        return _run(program, board, inputs, outputs, timeout)
    except OSError as e:  # the temporary directory (a full or read-only disk), the program
        where = e.filename or "a temporary file"
        raise CRunError(f"cannot run {program.name} on {board.name}: {e.strerror or e} "
                        f"({where}); check that TMPDIR is a writable directory with free "
                        "space and that the program is executable") from None


def _run(program: Path, board: Board, inputs: list[np.ndarray], outputs: list[View],
         timeout: int) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="smelt-run-") as tmp:
        work = Path(tmp)
        for i, x in enumerate(inputs):
            (work / f"input{i}.bin").write_bytes(np.ascontiguousarray(x).tobytes())
        cmd = command(program, board)
        try:
            done = subprocess.run(cmd, cwd=work, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise CRunError(f"{program.name} on {board.name} ran longer than {timeout} s "
                            f"({' '.join(cmd)})") from e
        log = (done.stderr + done.stdout).decode(errors="replace")[-4000:]
        if done.returncode != 0:
            raise CRunError(f"{program.name} on {board.name} failed (exit {done.returncode}):"
                            f"\n{log}")
        outs = []
        for i, v in enumerate(outputs):
            path = work / f"output{i}.bin"
            if not path.is_file():
                raise CRunError(f"{program.name} on {board.name} wrote no {path.name}:\n{log}")
            outs.append(np.frombuffer(path.read_bytes(), dtype=v.dtype).reshape(v.shape).copy())
        ticks = int(np.frombuffer((work / "ticks.bin").read_bytes(), np.uint64)[0])
    instructions = None if board.is_host else ticks * INSTRUCTIONS_PER_TICK
    return RunResult(tuple(outs), instructions)
