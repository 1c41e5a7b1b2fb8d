"""The `c` target: a self-contained C project for a Cortex-M board (or the host), generated,
built with gcc and measured at compile time (module.py).

    smelt.compile(graph, "c", board="mps2-an386", out_dir=None) -> CModule

The boards are listed in boards.py; `board` is checked before any work. TVM's target is its
C code generator.
"""

from __future__ import annotations

from typing import Any

import tvm

from ..targets import Target, check_options
from .boards import get_board
from .module import OPTIONS, compile_c


def _tvm_target(board: str | None = None, **options: Any) -> tvm.target.Target:
    check_options("c", options, OPTIONS)
    get_board(board)
    return tvm.target.Target({"kind": "c"})


C = Target("c", "C for a Cortex-M board or the host (board=), built with gcc",
           compile=compile_c, tvm_target=_tvm_target)
