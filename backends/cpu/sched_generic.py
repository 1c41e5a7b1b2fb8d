"""Schedules for the kernels TVM's legalization writes: normalizations (softmax, layer norm,
RMS norm), reductions, pooling, and elementwise or data-movement chains.

- `rows`: blocks that share leading spatial axes with at least one reduction (softmax =
  max -> exp -> sum -> divide). Parallel over the shared rows; every block computed inside the
  row loop, so a row stays in cache between its passes; elementwise blocks vectorized.
- `pool`: one window reduction over a short kernel window (max / avg pooling): the output row
  vectorized, the window loops outside it, the tile kept in registers.
- `elementwise`: intermediate blocks inlined into the outputs, each output parallel over its
  outer loops and vectorized along the innermost.
- `blocks`: the last resort for anything else: every block parallel over its spatial loops,
  vectorized where it is elementwise.
"""

from __future__ import annotations

from tvm import s_tir

from smelt.backends.lowering.inlining import copies_on_inline

from .sched_util import (
    all_blocks,
    extent,
    inline_epilogue,
    iter_kinds,
    schedule_plain,
    vector_split,
)


def _leading_s(kinds: list[str]) -> int:
    return len(kinds) - len("".join(kinds).lstrip("S"))


def _shared_rows(sch: s_tir.Schedule, blocks: list, kinds: list[list[str]]) -> int:
    """How many leading axes every block iterates alike: spatial, with equal extents (a
    keep-dims reduction's extent-1 axis is not shared with the full-width output axis)."""
    doms = [[int(iv.dom.extent) for iv in sch.get(b).iter_vars] for b in blocks]
    lead = min(_leading_s(k) for k in kinds)
    for i in range(lead):
        if any(d[i] != doms[-1][i] for d in doms):
            return i
    return lead


def rows(sch: s_tir.Schedule) -> bool:
    blocks = [b for b in all_blocks(sch)]
    if len(blocks) < 2:
        return False
    kinds = [iter_kinds(sch, b) for b in blocks]
    if all("R" not in k for k in kinds) or "R" in kinds[-1]:
        return False
    lead = _shared_rows(sch, blocks, kinds)
    if lead == 0:
        return False
    last = blocks[-1]
    loops = sch.get_loops(last)
    if len(loops) != len(kinds[-1]):
        return False
    shared = loops[:lead]
    rows_total = 1
    for lp in shared:
        rows_total *= max(extent(sch, lp), 1)
    row = sch.fuse(*shared) if len(shared) > 1 else shared[0]
    for blk in reversed(blocks[:-1]):
        sch.compute_at(blk, row, preserve_unit_loops=True)
    if rows_total > 1:
        sch.parallel(row)
    for blk, k in zip(blocks, kinds, strict=True):
        inner = sch.get_loops(blk)[lead:] if blk is not last else sch.get_loops(blk)[1:]
        if "R" not in k and inner:
            vector_split(sch, inner[-1])
    return True


def pool(sch: s_tir.Schedule) -> bool:
    reductions = [b for b in all_blocks(sch) if "R" in iter_kinds(sch, b)]
    if len(reductions) != 1:
        return False
    blk = reductions[0]
    kinds = iter_kinds(sch, blk)
    loops = sch.get_loops(blk)
    if kinds != ["S", "S", "S", "S", "R", "R"] or len(loops) != 6:
        return False
    *outer, x, ry, rx = loops
    window = extent(sch, ry) * extent(sch, rx)
    if window > 64 or extent(sch, x) < 4:
        return False
    xw = extent(sch, x)
    xv = next((v for v in (16, 8, 4) if xw % v == 0), xw if xw <= 16 else 1)
    if xv == 1:
        return False
    for producer in sch.get_producers(blk):  # the padded input: read in place (measured
        try:  # 8x faster on a uint8 3x3/2 max pool than a separate padded copy)
            sch.compute_inline(producer)
        except Exception:  # noqa: BLE001 - not inlinable: it keeps its own loops
            pass
    xo, xi = sch.split(x, factors=[None, xv])
    sch.reorder(*outer, xo, ry, rx, xi)
    wb = sch.cache_write(blk, 0, "global")  # small "global" buffers live on the stack
    inline_epilogue(sch, wb)
    sch.reverse_compute_at(wb, xo, preserve_unit_loops=True)
    sch.parallel(sch.fuse(*outer))
    sch.vectorize(xi)
    sch.unroll(rx)
    if window <= 16:
        sch.unroll(ry)
    wb_inner = sch.get_loops(wb)[-1]
    if extent(sch, wb_inner) in (4, 8, 16):
        sch.vectorize(wb_inner)
    sch.decompose_reduction(blk, ry)
    for other in all_blocks(sch):
        ol = sch.get_loops(other)
        if ol and not _under(sch, other, xo):
            schedule_plain(sch, other)
    return True


def _under(sch: s_tir.Schedule, blk, outer_first) -> bool:
    return any(sch.get_sref(lp).same_as(sch.get_sref(outer_first)) for lp in sch.get_loops(blk))


def elementwise(sch: s_tir.Schedule) -> bool:
    blocks = all_blocks(sch)
    if not blocks or any("R" in iter_kinds(sch, b) for b in blocks):
        return False
    outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(sch.get_sblock("root"))}
    for blk in blocks:
        if sch.get(blk).name_hint not in outputs and not copies_on_inline(sch, blk):
            try:
                sch.compute_inline(blk)
            except Exception:  # kept: it is scheduled below as its own loop nest
                pass
    for blk in all_blocks(sch):
        schedule_plain(sch, blk)
    return True


def blocks(sch: s_tir.Schedule) -> bool:
    for blk in all_blocks(sch):
        if sch.get_loops(blk):
            schedule_plain(sch, blk)
    return True

