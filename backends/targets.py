"""Compilation targets: the host CPU for LLVM (detected, with a safe fallback), and CUDA
(cuda_target.py: arch and nvcc checked)."""

from __future__ import annotations

import os
from functools import lru_cache

import tvm

from smelt.ir.errors import SmeltError


class TargetError(SmeltError):
    """A target smelt does not know, or one this machine cannot build for."""


@lru_cache(maxsize=1)
def host_cpu() -> str:
    """LLVM's name for this machine's CPU (e.g. 'znver4'), or 'x86-64' if LLVM cannot tell."""
    try:
        from tvm.target import codegen

        cpu = str(codegen.llvm_get_system_cpu())
        triple = str(codegen.llvm_get_system_triple())
        if cpu and cpu != "generic" and codegen.llvm_is_valid_cpu(cpu, triple):
            return cpu
    except Exception:  # an old or odd LLVM: fall back
        pass
    return "x86-64"


def cpu_target(mcpu: str | None = None, num_cores: int | None = None) -> tvm.target.Target:
    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu or host_cpu(),
                              "num-cores": int(num_cores or os.cpu_count() or 1)})


def make_target(target: str, **options) -> tvm.target.Target:
    if target == "cpu":
        return cpu_target(options.get("mcpu"), options.get("num_cores"))
    if target == "cuda":
        from .cuda_target import cuda_target

        return cuda_target(options.get("arch"))
    if target == "c":  # C source for a board (backends/mcu); the board is checked here
        from .mcu.boards import get_board

        get_board(options.get("board"))
        return tvm.target.Target({"kind": "c"})
    raise TargetError(f"unknown target {target!r}; smelt compiles for 'cpu', 'cuda' and 'c' "
                      "(C for a microcontroller board: board='mps2-an386', ...)")
