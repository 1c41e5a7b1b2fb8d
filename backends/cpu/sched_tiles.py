"""Register-tile schedules for smelt's contraction kernels (cpu/kernels.py).

All four follow one recipe (measured in shared/TVM_NOTES.md): tile the output so that the
accumulators of one tile fit in vector registers, run the whole reduction over the tile, keep
the tile in a "local" cache and write it back once, with the elementwise epilogue (bias,
activation, residual add) folded into that write-back; parallelize the outer tile loops,
vectorize the inner output axis, unroll the small ones, and split the reduction's initial
value off last (vectorizing after that split fails).

    kernel        tile (unrolled x vector)       vector axis     parallel over
    smelt_dense   8 rows x nb columns            n (panel)       row tiles x panels
    smelt_matmul  8 rows x 16 columns            n               batch x row tiles
    smelt_conv2d  up to 8 pixels x ob channels   out channel     image x channel block x row
    smelt_dwconv  one row of <= 16 pixels        out pixel       image x channel x row
"""

from __future__ import annotations

from tvm import s_tir

from .sched_util import all_blocks, block_named, extent, inline_epilogue, schedule_plain

PARALLEL_MIN_MACS = 1 << 16


def _largest_divisor(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def _tile(sch: s_tir.Schedule, blk, outer: list, unrolled: list, vector, reduction: list,
          tile_at, parallel: list, tile_layout=None) -> None:
    """Common tail: order loops, cache the tile, fold the epilogue, parallelize, vectorize,
    then schedule the blocks outside the tile (padding, unfolded consumers) plainly.
    `tile_layout` reorders the cached tile's axes so that the vector axis is innermost."""
    work = 1
    for lp in sch.get_loops(blk):
        work *= max(extent(sch, lp), 1)
    sch.reorder(*outer, *reduction, *unrolled, vector)
    wb = sch.cache_write(blk, 0, "local")
    if tile_layout is not None:
        sch.transform_layout(blk, ("write", 0), tile_layout)
    inline_epilogue(sch, wb)
    sch.reverse_compute_at(wb, tile_at, preserve_unit_loops=True)
    wb_loops = sch.get_loops(wb)
    fused = sch.fuse(*parallel) if len(parallel) > 1 else parallel[0]
    if work >= PARALLEL_MIN_MACS:  # below it, waking the thread pool costs more than it saves
        sch.parallel(fused)
    sch.vectorize(vector)
    for lp in unrolled:
        sch.unroll(lp)
    _vectorize_writeback(sch, wb_loops)
    sch.decompose_reduction(blk, reduction[0])
    _others(sch, blk)


def _vectorize_writeback(sch: s_tir.Schedule, loops) -> None:
    inner = loops[-1]
    if extent(sch, inner) in (4, 8, 16, 32):
        sch.vectorize(inner)


def _others(sch: s_tir.Schedule, anchor) -> None:
    """Producers before the anchor (padding, a transpose) and consumers that would not fold
    into the write-back keep their own loops: schedule them plainly at the root."""
    anchor_loops = [sch.get_sref(lp) for lp in sch.get_loops(anchor)]
    for blk in all_blocks(sch):
        loops = sch.get_loops(blk)
        if loops and not any(sch.get_sref(loops[0]).same_as(a) for a in anchor_loops):
            schedule_plain(sch, blk)


def row_panel_tiles(sch: s_tir.Schedule, lead: list, j, nb: int) -> tuple:
    """(row tiles, rows in a tile, panels, panel columns) of a dense-like kernel: the leading
    row loops fused and split by up to 8 rows, the columns by the packed panel width `nb`.
    The row tile divides the innermost leading extent: a tile that straddles two rows of a
    fused (batch, token) index would make the write-back region inexact."""
    mi = _largest_divisor(extent(sch, lead[-1]), 8)
    m = sch.fuse(*lead) if len(lead) > 1 else lead[0]
    mo, mi_loop = sch.split(m, factors=[None, mi])
    jo, ji = sch.split(j, factors=[None, nb])
    return mo, mi_loop, jo, ji


def dense(sch: s_tir.Schedule) -> bool:
    blk = block_named(sch, "smelt_dense")
    if blk is None:
        return False
    *lead, j, k = sch.get_loops(blk)
    if not lead:
        return False
    nb = int(sch.get(blk).reads[1].source.shape[2])
    mo, mi_loop, jo, ji = row_panel_tiles(sch, lead, j, nb)
    kext = extent(sch, k)
    kf = 4 if kext % 4 == 0 else 1
    ko, ki = sch.split(k, factors=[None, kf])
    _tile(sch, blk, [mo, jo], [ki, mi_loop], ji, [ko], jo, [mo, jo])
    return True


def matmul(sch: s_tir.Schedule) -> bool:
    blk = block_named(sch, "smelt_matmul")
    if blk is None:
        return False
    *batch, m, n, k = sch.get_loops(blk)
    mi = _largest_divisor(extent(sch, m), 8)
    mo, mi_loop = sch.split(m, factors=[None, mi])
    no, ni = sch.split(n, factors=[None, _largest_divisor(extent(sch, n), 16)])
    _tile(sch, blk, [*batch, mo, no], [mi_loop], ni, [k], no, [*batch, mo])
    return True


def conv2d(sch: s_tir.Schedule) -> bool:
    blk = block_named(sch, "smelt_conv2d")
    if blk is None:
        return False
    b, o, y, x, ci, ry, rx = sch.get_loops(blk)
    ob = int(sch.get(blk).reads[1].source.shape[4])
    oo, oi = sch.split(o, factors=[None, ob])
    xb = _largest_divisor(extent(sch, x), 8)
    xo, xi = sch.split(x, factors=[None, xb])
    _tile(sch, blk, [b, oo, y, xo], [rx, xi], oi, [ci, ry], xo, [b, oo, y],
          tile_layout=lambda n, c, h, w: (n, h, w, c))
    return True


def _split_row(sch: s_tir.Schedule, x):
    """An output row split into vectors of 16 or 8 lanes (or its largest divisor <= 16)."""
    xw = extent(sch, x)
    xv = 16 if xw % 16 == 0 else (8 if xw % 8 == 0 else _largest_divisor(xw, 16))
    return sch.split(x, factors=[None, xv])


def window(sch: s_tir.Schedule, prefix: str = "smelt_dwconv") -> bool:
    """Depthwise conv (and any window reduction laid out like it), or a grouped conv (its
    input-channel loop joins the window's rows in the reduction)."""
    blk = block_named(sch, prefix)
    if blk is None:
        return False
    loops = sch.get_loops(blk)
    if len(loops) == 7:  # grouped: b, o, y, x, ci, ry, rx
        b, o, y, x, ci, ry, rx = loops
        xo, xi = _split_row(sch, x)
        _tile(sch, blk, [b, o, y, xo], [rx], xi, [ci, ry], xo, [b, o, y])
        return True
    *outer, x, ry, rx = loops
    xo, xi = _split_row(sch, x)
    _tile(sch, blk, [*outer, xo], [rx], xi, [ry], xo, outer)
    return True
