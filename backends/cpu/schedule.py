"""The pass that schedules every CPU kernel: each PrimFunc gets the first rule that applies,
and records its name in the `smelt.schedule` attribute, so a test (and the compile report)
can tell which rule scheduled which kernel and whether any kernel was left unscheduled.

Rules, most specific first: the int8 kernels' rules (cpu/sched_int8.py), the register-tile
rules for smelt's own contraction kernels (cpu/sched_tiles.py), then the rules for
TVM-legalized kernels (cpu/sched_generic.py).
A rule that raises part-way leaves nothing behind: each attempt works on a fresh schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import tvm
from tvm import s_tir, tirx

from . import sched_generic, sched_int4, sched_int8, sched_tiles
from .sched_sparse import linear24 as sparse24

SCHEDULE_ATTR = "smelt.schedule"

RULES: list[tuple[str, Callable[[s_tir.Schedule], bool]]] = [
    ("int8-dense", sched_int8.qdense),
    ("int8-matmul", sched_int8.qbmm),
    ("int8-conv2d", sched_int8.qconv2d),
    ("int8-conv2d-cv", sched_int8.qconv2d_cv),
    ("int8-depthwise-window", sched_int8.qdwconv_window),
    ("int8-depthwise", sched_int8.qdwconv),
    ("int8-pack", sched_int8.pack),
    ("int4-dense", sched_int4.dense_w4),
    ("sparse-24", sparse24),
    ("dense", sched_tiles.dense),
    ("matmul", sched_tiles.matmul),
    ("conv2d", sched_tiles.conv2d),
    ("depthwise", sched_tiles.window),
    ("grouped-conv", partial(sched_tiles.window, prefix="smelt_gconv2d")),
    ("pool", sched_generic.pool),
    ("rows", sched_generic.rows),
    ("elementwise", sched_generic.elementwise),
    ("blocks", sched_generic.blocks),
]


def schedule_func(func: tirx.PrimFunc) -> tuple[tirx.PrimFunc, str | None]:
    """The scheduled function and the rule's name; (func, None) if no rule applied."""
    for name, rule in RULES:
        sch = s_tir.Schedule(func)
        try:
            applied = rule(sch)
        except Exception:  # a rule's precondition failed deep in TVM: try the next rule
            continue
        if applied:
            out = sch.mod["main"].with_attr(SCHEDULE_ATTR, name)
            return out.with_attr("tirx.is_scheduled", True), name
    return func, None


@tvm.transform.module_pass(opt_level=0, name="smelt.ScheduleCPU")
def schedule_cpu(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    updates = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and SCHEDULE_ATTR not in (func.attrs or {}):
            updates[gv] = schedule_func(func)[0]
    for gv, func in updates.items():
        mod[gv] = func
    return mod


def kernel_rules(mod: tvm.IRModule) -> dict[str, str | None]:
    """Kernel name -> the rule that scheduled it (None: left unscheduled)."""
    out: dict[str, str | None] = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            attrs = func.attrs or {}
            out[gv.name_hint] = str(attrs[SCHEDULE_ATTR]) if SCHEDULE_ATTR in attrs else None
    return out
