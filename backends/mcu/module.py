"""`smelt.compile(graph, "c", board=...)`: a C project for a microcontroller (or the host),
built, measured, and callable like any compiled module.

    module = smelt.compile(graph, "c", board="mps2-an386", out_dir="build/m4")
    module.project            # the generated project: out_dir, or a temporary directory that
                              # is removed when the module is (give out_dir to keep it)
    module.report             # sizes, arena, workspace, stack, instructions of the last run
    print(module.describe())
    (y,) = module(x)          # run: natively (host) or under qemu (mps2-*), outputs as numpy

The project is generated and built at compile time (so the report has its sizes); a call
writes the inputs to files, runs the program and reads the outputs back. On the host
`module.run(x, sanitize=True)` builds and runs the AddressSanitizer + UBSan variant;
`board="host-asan"` builds only that one.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from smelt.ir.errors import InterpretError
from smelt.ir.graph import Graph
from smelt.ir.inputs import input_array
from smelt.ir.types import TensorType

from ..build_cache import graph_key
from ..recent import Recent
from ..targets import TargetError, check_options
from .aot import CallSequence, call_sequence
from .boards import Board, get_board
from .build import CBuildError, Sizes, build, sizes
from .emit import C_TYPES, write_project
from .kernels_c import Kernels, lower_graph
from .memory_plan import MemoryPlan, plan_memory
from .run import run

OPTIONS = ("board", "out_dir")
STACK_KIND = "estimate: gcc -fstack-usage, deepest kernel + its call chain"
_CACHE: Recent[tuple, CModule] = Recent(16)  # the most recently used, for this process


class CModule:
    """A generated, built C project; `module(*inputs) -> tuple[np.ndarray, ...]`."""

    def __init__(self, project: Path, board: Board, seq: CallSequence, plan: MemoryPlan,
                 workspace: int, kernels: int, program: Path, size: Sizes,
                 input_names: list[str] | None = None) -> None:
        self.project = project
        self.input_names = input_names or [f"input{i}" for i in range(len(seq.inputs))]
        self.board = board
        self.plan = plan
        self.program = program
        self.cache = "built"
        self._seq = seq
        self.report: dict[str, Any] = {
            "board": board.name, "core": board.core, "project": str(project),
            "flash_bytes": size.flash, "sram_bytes": size.sram,
            "text": size.text, "data": size.data, "bss": size.bss,
            "arena_bytes": plan.arena, "arena_lower_bound": plan.lower_bound,
            "arena_naive": plan.naive, "workspace_bytes": workspace,
            "weight_bytes": int(sum(w.nbytes for w in seq.weights)),
            "stack_bytes": size.stack if not board.is_host else None,
            "stack_kind": STACK_KIND if not board.is_host else "not measured on the host",
            "kernels": kernels, "steps": len(seq.steps), "instructions": None,
        }

    def __call__(self, *inputs: Any) -> tuple[np.ndarray, ...]:
        return self.run(*inputs)

    def run(self, *inputs: Any, sanitize: bool = False) -> tuple[np.ndarray, ...]:
        arrays = self._check_inputs(inputs)
        program = self.program
        if sanitize and not self.board.sanitized:
            if not self.board.is_host:
                raise InterpretError("sanitize=True runs the host build: compile with "
                                     "board='host' (or 'host-asan', built sanitized)")
            program = build(self.project, self.board, "app-asan")
        result = run(program, self.board, arrays, self._seq.outputs)
        if result.instructions is not None:
            self.report["instructions"] = result.instructions
        return result.outputs

    def _check_inputs(self, inputs: tuple[Any, ...]) -> list[np.ndarray]:
        """The inputs as C-ordered arrays, by the interpreter's rule (ir/inputs.py)."""
        specs = self._seq.inputs
        if len(inputs) != len(specs):
            raise InterpretError(f"the module takes {len(specs)} inputs "
                                 f"({', '.join(self.input_names)}), got {len(inputs)}")
        return [np.ascontiguousarray(input_array(x, name, spec.shape, spec.dtype, "the module"))
                for name, spec, x in zip(self.input_names, specs, inputs, strict=True)]

    def describe(self) -> str:
        r = self.report
        ins = r["instructions"]
        lines = [
            f"C module for {r['board']} ({r['core']}) in {r['project']}",
            f"  flash {r['flash_bytes']} B (text {r['text']} + data {r['data']}), "
            f"SRAM {r['sram_bytes']} B (data {r['data']} + bss {r['bss']})",
            f"  arena {r['arena_bytes']} B (lower bound {r['arena_lower_bound']} B, one "
            f"buffer per tensor {r['arena_naive']} B), workspace {r['workspace_bytes']} B",
            f"  weights {r['weight_bytes']} B, {r['kernels']} kernels, {r['steps']} steps",
            f"  stack {r['stack_bytes']} B ({r['stack_kind']})",
            f"  instructions {ins if ins is not None else 'not measured (run it on a board)'}",
        ]
        return "\n".join(lines)


def check_dtypes(graph: Graph) -> None:
    """The C target computes in the C types of emit.C_TYPES: float16, bfloat16 and 4-bit
    values have none (and Cortex-M4/M7 no half-precision arithmetic)."""
    found = sorted({n.dtype for n in graph.nodes() if isinstance(n.type, TensorType)
                    and n.dtype not in C_TYPES})
    if found:
        raise TargetError(f"the c target builds float32, float64, integer and bool graphs; "
                          f"this one has {', '.join(found)} tensors. Cast the model to float32 "
                          "before tracing (model.float()), or quantize it to int8.")


def compile_c(graph: Graph, board: str | None = None, out_dir: str | Path | None = None,
              **unknown: Any) -> CModule:
    """Generate, build and measure the C project of `graph` for `board`."""
    check_options("c", unknown, OPTIONS)
    check_dtypes(graph)
    spec = get_board(board)
    key = (graph_key(graph), spec.name, str(out_dir))
    kept = _CACHE.get(key)
    if kept is not None and kept.project.is_dir():
        kept.cache = "memory"
        return kept
    kernels = lower_graph(graph, checks=spec.is_host)
    seq = call_sequence(kernels.main, set(kernels.elementwise))
    plan = plan_memory(seq.buffers())
    project = _write(out_dir, spec, kernels, seq, plan)
    program = build(project, spec)
    module = CModule(project, spec, seq, plan, kernels.workspace_bytes, len(kernels.names),
                     program, sizes(program, spec), [x.attrs["name"] for x in graph.inputs])
    if out_dir is None:  # the temporary project lives as long as its module
        weakref.finalize(module, shutil.rmtree, project, ignore_errors=True)
    _CACHE.put(key, module)
    return module


def _write(out_dir: str | Path | None, spec: Board, kernels: Kernels, seq: CallSequence,
           plan: MemoryPlan) -> Path:
    """The project written into `out_dir`, or into a fresh temporary directory (removed again
    if the project cannot be written there)."""
    if out_dir is not None:
        write_project(Path(out_dir), spec, kernels, seq, plan, checks=spec.is_host)
        return Path(out_dir)
    try:
        project = Path(tempfile.mkdtemp(prefix=f"smelt-c-{spec.name}-"))
    except OSError as e:
        raise CBuildError(f"cannot create a temporary directory for the C project "
                          f"({e.strerror or e}); pass out_dir, or set TMPDIR to a writable "
                          "directory with free space") from None
    try:
        write_project(project, spec, kernels, seq, plan, checks=spec.is_host)
    except CBuildError:
        shutil.rmtree(project, ignore_errors=True)
        raise
    return project
