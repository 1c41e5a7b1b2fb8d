"""The C target's schedule step: shrink each kernel's temporaries to what one output
element (or row) needs, so kernels stop taking whole-tensor scratch from
`TVMBackendAllocWorkspace`.

Legalization and FuseOps leave a fused kernel (conv -> bias add -> requantize -> slice) as
one loop nest per op, each writing a whole intermediate tensor. Per PrimFunc:
- `inline`: every intermediate elementwise block (bias add, slice, requantize before a
  dequantize or a residual add) is inlined into its consumer; a block feeding a reduction
  (an input padding) stays, so the reduction's inner loop keeps plain loads;
- `epilogue-at-reduction`: each consumer of a reduction (its epilogue) moves under the
  reduction's innermost spatial loop where legal, else the next loop out
  (`reverse_compute_at`); TVM's buffer compaction then shrinks the int32 accumulator tensor
  to one element (a local) or one row;
- `init-hoisted`: each reduction's init moves out of its reduction loops.
The rule that changed a kernel is recorded in its `smelt.schedule_c` attribute ("inline",
"epilogue-at-reduction", "init-hoisted", joined by "+"); a kernel no rule changes keeps its
loops and no attribute. Each primitive runs on a copy, so a failed one leaves nothing behind.
"""

from __future__ import annotations

from tvm import s_tir, tirx

from smelt.backends.lowering.inlining import copies_on_inline

SCHEDULE_ATTR = "smelt.schedule_c"


def _block_names(sch: s_tir.Schedule) -> list[str]:
    return [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]


def _iter_kinds(sch: s_tir.Schedule, blk) -> list[str]:
    """'S' (spatial) or 'R' (reduction, or anything else) per block iterator."""
    return ["S" if iv.iter_type == tirx.IterVar.DataPar else "R" for iv in sch.get(blk).iter_vars]


def _is_reduction(sch: s_tir.Schedule, blk) -> bool:
    return "R" in _iter_kinds(sch, blk)


def _spatial_loops(sch: s_tir.Schedule, blk) -> list:
    """The loops over the block's leading spatial iterators (unscheduled kernels bind one
    loop per iterator, in order); [] if the nest is not of that form."""
    loops = sch.get_loops(blk)
    kinds = _iter_kinds(sch, blk)
    if len(loops) != len(kinds):
        return []
    n = next((i for i, kind in enumerate(kinds) if kind == "R"), len(kinds))
    return list(loops[:n])


def _output_names(sch: s_tir.Schedule) -> set[str]:
    """The blocks that write the kernel's outputs."""
    return {sch.get(b).name_hint for b in sch.get_output_blocks(sch.get_sblock("root"))}


def _try(sch: s_tir.Schedule, step) -> s_tir.Schedule | None:
    """`step` applied to a copy of `sch`: the copy, or None where TVM refused."""
    trial = sch.copy()
    try:
        step(trial)
    except (RuntimeError, ValueError):  # TVM's ScheduleError and InternalError are
        return None  # RuntimeErrors
    return trial


def _inline(sch: s_tir.Schedule) -> tuple[s_tir.Schedule, bool]:
    outputs = _output_names(sch)
    changed = True
    done = False
    while changed:
        changed = False
        for name in _block_names(sch):
            blk = sch.get_sblock(name)
            if _is_reduction(sch, blk) or name in outputs:
                continue
            consumers = sch.get_consumers(blk)
            if not consumers or any(_is_reduction(sch, c) for c in consumers) \
                    or copies_on_inline(sch, blk):
                continue
            trial = _try(sch, lambda s, n=name: s.compute_inline(s.get_sblock(n)))
            if trial is not None:
                sch, changed, done = trial, True, True
                break
    return sch, done


def _elements(sch: s_tir.Schedule, blk) -> int:
    """How many elements the block's (first) output buffer holds."""
    n = 1
    for d in sch.get(blk).writes[0].source.shape:
        n *= int(d)
    return n


def _epilogues(sch: s_tir.Schedule) -> tuple[s_tir.Schedule, bool]:
    done = False
    for producer in _block_names(sch):
        blk = sch.get_sblock(producer)
        if not _is_reduction(sch, blk):
            continue
        for name in [sch.get(c).name_hint for c in sch.get_consumers(blk)]:
            if _elements(sch, sch.get_sblock(name)) > _elements(sch, blk):
                # a consumer that writes more than the reduction (a pad of its output):
                # TVM's reverse_compute_at covered only the positions that read the
                # producer and dropped the pad rows (found by the fuzzer: an int8 avg pool
                # -> quantize -> pad left a row of the padded buffer unwritten)
                continue
            depths = len(_spatial_loops(sch, sch.get_sblock(producer)))
            for depth in reversed(range(depths)):
                def step(s, p=producer, c=name, d=depth):
                    loop = _spatial_loops(s, s.get_sblock(p))[d]
                    s.reverse_compute_at(s.get_sblock(c), loop, preserve_unit_loops=False)

                trial = _try(sch, step)
                if trial is not None:
                    sch, done = trial, True
                    break
    return sch, done


def _decompose(sch: s_tir.Schedule) -> tuple[s_tir.Schedule, bool]:
    """Each reduction's init hoisted out of its reduction loops (an init block before
    them), not an `if (first iteration)` test on every multiply-accumulate."""
    done = False
    for name in _block_names(sch):
        blk = sch.get_sblock(name)
        if not _is_reduction(sch, blk) or sch.get(blk).init is None:
            continue
        loops = sch.get_loops(blk)
        if len(loops) != len(_iter_kinds(sch, blk)):
            continue  # not one loop per iterator: leave it
        n = len(_spatial_loops(sch, blk))  # 0 for a full reduction: the init goes first
        if n == len(loops):
            continue

        def step(s, b=name, i=n):
            s.decompose_reduction(s.get_sblock(b), s.get_loops(s.get_sblock(b))[i])

        trial = _try(sch, step)
        if trial is not None:
            sch, done = trial, True
    return sch, done


def schedule_kernel(func: tirx.PrimFunc) -> tuple[tirx.PrimFunc, str | None]:
    """`func` with its temporaries shrunk, and the rules that did it (None: unchanged)."""
    sch = s_tir.Schedule(func)
    sch, inlined = _inline(sch)
    sch, placed = _epilogues(sch)
    sch, split = _decompose(sch)
    rules = [r for r, hit in (("inline", inlined), ("epilogue-at-reduction", placed),
                              ("init-hoisted", split)) if hit]
    if not rules:
        return func, None
    rule = "+".join(rules)
    return sch.mod["main"].with_attr(SCHEDULE_ATTR, rule), rule


def schedule_kernels(funcs: dict[str, tirx.PrimFunc]
                     ) -> tuple[dict[str, tirx.PrimFunc], dict[str, str | None]]:
    """Every kernel through `schedule_kernel`: name -> kernel, and name -> rule."""
    out = {name: schedule_kernel(f) for name, f in funcs.items()}
    return {n: f for n, (f, _) in out.items()}, {n: r for n, (_, r) in out.items()}
