"""The graph's kernels as C: smelt's Relax lowering for the `c` target, TVM's legalization and
fusion, then TVM's C code generator on every TIR function.

- The lowering is the generic one (backends/lowering/) plus this target's entries
  (lowering.py): requantize keeps its integer forms (an integer graph has no float
  arithmetic), and int8 convolutions and linears run on plain layouts (no activation packed
  into 4-channel words, a second arena copy; no lanes padded).
- TVM's own legalization (not smelt's x86-packed CPU kernels); the kernels stay plain loops,
  which is what a C compiler for a single-issue core wants, except that `schedule_c` moves
  each reduction's epilogue under its spatial loops, so a fused kernel's int32 accumulator
  tensor shrinks to a scalar or a row instead of a whole-tensor workspace block.
- `reshape` kernels become views (RewriteDataflowReshape): no copy, no arena bytes.
- Argument checks are stripped (`tirx.disable_assert`) except where `checks=True` (the host
  build, where they validate the call sequence's tensor metadata under the sanitizers).
- Kernels take large temporaries from `TVMBackendAllocWorkspace` (constant sizes, freed in
  LIFO order): `workspace_bytes` replays each kernel's allocations in source order and
  keeps the largest total, every block rounded up to `WORKSPACE_ALIGN`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tvm
from tvm import relax, tirx

from smelt.ir.graph import Graph

from ..float_literals import mark, unmark
from ..lowering import LoweringError, to_relax
from ..relax_pipeline import fuse_kernels
from . import c_intrinsics, lowering  # noqa: F401  (C math rules, the C target's entries)
from .memory_plan import align_up
from .schedule_c import schedule_kernels

WORKSPACE_ALIGN = 16
ELEMWISE = 0  # AnnotateTIROpPattern's kElemWise


@dataclass(frozen=True)
class Kernels:
    main: relax.Function
    source: str  # C of every kernel, as TVM's C generator wrote it
    names: tuple[str, ...]
    elementwise: frozenset[str]
    workspace_bytes: int
    rules: dict[str, str | None]  # kernel -> the schedule_c rule that shrank it (None: none)


def c_target() -> tvm.target.Target:
    return tvm.target.Target({"kind": "c"})


def fused_kernels(graph: Graph) -> tvm.IRModule:
    """`graph` lowered for the C target (integer-only requantize, plain int8 layouts),
    legalized and fused into (unscheduled) TIR kernels, the Relax main a sequence of calls
    to them."""
    with tvm.transform.PassContext(opt_level=3), c_target():
        mod = fuse_kernels()(to_relax(graph, "c"))
        mod = relax.transform.RewriteDataflowReshape()(mod)
        return relax.transform.DeadCodeElimination()(mod)


def lower_graph(graph: Graph, checks: bool = False, schedule: bool = True) -> Kernels:
    """The kernels of `graph` as C. To compare against: `schedule=False` skips `schedule_c`."""
    mod = fused_kernels(graph)
    funcs = {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)}
    elementwise = frozenset(name for name, f in funcs.items()
                            if f.attrs is not None and "op_pattern" in f.attrs
                            and int(f.attrs["op_pattern"]) == ELEMWISE)
    rules: dict[str, str | None] = dict.fromkeys(funcs)
    if schedule:
        funcs, rules = schedule_kernels(funcs)
    source = fix_literals(c_source(funcs, checks))
    return Kernels(mod["main"], source, tuple(sorted(funcs)), elementwise,
                   workspace_bytes(source), rules)


def c_source(funcs: dict[str, tirx.PrimFunc], checks: bool) -> str:
    """TVM's C for the kernels, float constants exact (float_literals.py); a kernel its C
    generator cannot take raises a LoweringError naming it (each is built alone to find
    which)."""
    def build(kernels: dict[str, tirx.PrimFunc]) -> str:
        tir = tvm.IRModule({n: mark(f).with_attr("global_symbol", n)
                            for n, f in kernels.items()})
        with tvm.transform.PassContext(opt_level=3, config={"tirx.disable_assert": not checks}):
            return unmark(tvm.compile(tir, target=c_target()).mod.inspect_source())

    try:
        return build(funcs)
    except RuntimeError:  # TVM's errors: find the kernels that fail, and say why
        failures = []
        for name, func in funcs.items():
            try:
                build({name: func})
            except RuntimeError as e:
                failures.append(f"{name}: {str(e).strip().splitlines()[-1]}")
        raise LoweringError("TVM's C code generator cannot build these kernels for the c "
                            "target: " + "; ".join(failures) + ". Compile the graph for "
                            "'cpu' instead, or rewrite the op it comes from into ops the C "
                            "target takes.") from None


_NONFINITE = {  # TVM's C generator prints these as bare words, which no C header defines
    re.compile(r"(?<![\w.])inff(?![\w.])"): "INFINITY",
    re.compile(r"(?<![\w.])inf(?![\w.])"): "((double)INFINITY)",
    re.compile(r"(?<![\w.])nanf(?![\w.(])"): "NAN",
}


def fix_literals(source: str) -> str:
    """Infinities and NaNs as <math.h>'s INFINITY and NAN (the source includes it)."""
    for pattern, literal in _NONFINITE.items():
        source = pattern.sub(literal, source)
    return source


_FUNC = re.compile(r"^TVM_DLL int32_t (__tvm_ffi_\w+)\(.*\) \{$", re.MULTILINE)
_ALLOC = re.compile(r"(\w+) = \(\(\w+\*\)\(\(\w+\*\)TVMBackendAllocWorkspace\(\w+, \w+, "
                    r"\(uint64_t\)(\d+)ULL")
_FREE = re.compile(r"TVMBackendFreeWorkspace\(\w+, \w+, (\w+)\)")


def workspace_bytes(source: str) -> int:
    """The most workspace bytes any one kernel holds at once (each block aligned)."""
    starts = [m.start() for m in _FUNC.finditer(source)] + [len(source)]
    peak = 0
    for a, b in zip(starts, starts[1:], strict=False):
        body = source[a:b]
        events = sorted([(m.start(), m.group(1), int(m.group(2))) for m in _ALLOC.finditer(body)]
                        + [(m.start(), m.group(1), None) for m in _FREE.finditer(body)])
        held: dict[str, int] = {}
        for _, name, size in events:
            if size is None:
                held.pop(name, None)
            else:
                held[name] = align_up(size, WORKSPACE_ALIGN)
            peak = max(peak, sum(held.values()))
    return peak
