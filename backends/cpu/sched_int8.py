"""Schedules of smelt's int8 kernels (int8_kernels.py): register tiles fed by `vpdpbusd`.

The contractions follow sched_tiles.py's recipe: tile the output so that its int32
accumulators stay in vector registers, run the whole reduction over the tile, keep the tile
in a cache and fold the epilogue (the folded bias, then the requantize: multiply, rounding
shift, clamp) into its write-back, so the int32 accumulator never reaches memory;
parallelize the outer tiles; split the reduction's initial value off last. The innermost
L x 4 block (L int32 lanes, 4 reduced bytes) is one `vpdpbusd` (vnni.py).

A tile stays in registers only when TVM puts it on the stack and every access has a
constant offset. TVM 0.27 puts a "global"-scope buffer under 1 KB on the stack but sends
every "local" one to its workspace allocator (a call per tile, and LLVM keeps the tile in
memory), so the cache is "global" and under 1 KB; the tile loops and the write-back's are
unrolled, and the write-back reads whole vectors of the tile.

    rule                   anchor            tile (unrolled)                  vector
    int8-dense             smelt_qdense      <= 8 rows x 1-4 L-blocks         L out channels
    int8-matmul            smelt_qbmm        the same, per batch index        16 out columns
    int8-conv2d            smelt_qconv2d     R channels x V pixel vectors     16 out pixels
    int8-conv2d-cv         smelt_qconv2d_cv  <= 15 pixels x 1-4 L-blocks      L out channels
    int8-depthwise-window  smelt_qdwconv4    <= 8 row vectors, one channel    L out pixels
    int8-depthwise         smelt_qdwconv     one row chunk, window unrolled   16 or 8 pixels
    int8-pack              smelt_i8pa*,      parallel rows, vectorized innermost axis
                           smelt_i8sum*      (qmatmul's zero-point sums: serial reduction)

A padded tile (channels or a row rounded up to whole vectors) ends in a slice: the slice and
its epilogue run per tile after the write-back (`_fold_epilogue`), never storing the surplus.
Pixel vectors (int8-conv2d) need 16 consecutive output pixels: 16 divides the output row,
or for a stride-1 unpadded 1x1 conv the flattened H x W (the block then iterates over flat
pixels), or that image padded to whole vectors (`smelt_qconv2d_flat`: one tile holds every
vector, and its `smelt_unflatten` write-back stores the H x W pixels row by row). The
depthwise windows need `vpermb` (avx512vbmi) too. Without VNNI (`vnni.has_vnni` false for
the current target) the same tiles run the L x 4 block as plain int32 vector code (LLVM
widens and multiplies): correct, slower.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tvm
from tvm import s_tir, tirx
from tvm.tirx import IndexMap

from smelt.backends.lowering.inlining import copies_on_inline

from .int8_kernels import WINDOW_ATTR, pixel_lanes
from .sched_tiles import PARALLEL_MIN_MACS, _largest_divisor, _others
from .sched_util import (
    PARALLEL_MIN_ELEMS,
    all_blocks,
    extent,
    inline_epilogue,
    schedule_plain,
    vector_split,
)
from .vnni import LLVM_DOT, has_vbmi, has_vnni, intrinsic, window_fits, window_intrinsic

TILE_BYTES = 1024  # TVM puts a local buffer under this size on the stack (registers)
REGISTERS = 24  # of the 32 vector registers, the ones accumulators may take


def _accumulators(lanes: int) -> int:
    """How many int32 vectors of `lanes` lanes one register tile may hold."""
    return min(REGISTERS, (TILE_BYTES - 1) // (4 * lanes))


def _intrinsic(broadcast_x: bool, lanes: int) -> str | None:
    """The `vpdpbusd` intrinsic for the current target, or None (no VNNI: plain vectors)."""
    if lanes not in LLVM_DOT or not has_vnni(tvm.target.Target.current(allow_none=True)):
        return None
    return intrinsic(lanes, broadcast_x)


def _block(sch: s_tir.Schedule, name: str):
    return next((b for b in all_blocks(sch) if sch.get(b).name_hint == name), None)


def _shape(sch: s_tir.Schedule, blk, rank: int, dtype: str) -> tuple[int, ...]:
    """The shape of the block's operand of that rank and dtype (the packed input or weight)."""
    for region in sch.get(blk).reads:
        buf = region.source
        if str(buf.dtype) == dtype and len(buf.shape) == rank:
            return tuple(int(d) for d in buf.shape)
    raise ValueError(f"no {rank}-d {dtype} operand")


def _divisor(n: int, cap: int) -> int:
    return _largest_divisor(n, max(1, cap))


Arrange = Callable[[s_tir.Schedule, list], tuple]


def _tile(sch: s_tir.Schedule, blk, outer: list, reduction: list, unrolled: list, lane_loop,
          tile_at, parallel: list, arrange: Arrange, intrin: str | None,
          tile_layout=None, flatten=None, whole_rows: bool = False,
          trim_layout=None) -> None:
    """Order the loops, cache the tile, fold the epilogue into its write-back (`arrange`
    splits and orders the write-back's own loops and returns (vector loop, loops to
    unroll)), parallelize, split off the initial value, tensorize (without `intrin`: the
    lanes vectorized first, as vectorizing after the split fails).
    `flatten`: the index map that merged the block's output axes (flat pixels, flat rows);
    the tile and the write-back are merged alike (a tensorized block needs plain splits).
    `whole_rows`: the tile holds whole rows of the output, so only the tile is merged and the
    write-back keeps the output's (.., y, x) loops: each row is stored as vectors along x, the
    last one masked. A merged write-back's vectors straddle two rows wherever the vector
    length does not divide a row; into a strided (padded) output LLVM then stores them byte
    by byte (MobileNetV2's 20x20 expand convs: 43 -> 28 us, 40x40: 80 -> 61 us).
    `trim_layout`: an index map applied to the trimming consumer before it is computed in
    the tile (TVM 0.27 infers a wrong region for (y, x) read at y W + x from a flat tile that
    runs past H W; iterating that consumer over flat pixels avoids the inference)."""
    work = 1
    for lp in sch.get_loops(blk):
        work *= max(extent(sch, lp), 1)
    k4 = sch.get_loops(blk)[-1]
    if intrin is not None:  # the L x 4 block, as the intrinsic reads it
        sch.reorder(*outer, *reduction, *unrolled, lane_loop, k4)
    else:  # plain vectors along the lanes, the 4 products unrolled around them
        sch.reorder(*outer, *reduction, *unrolled, k4, lane_loop)
        sch.unroll(k4)
        sch.vectorize(lane_loop)
    wb = sch.cache_write(blk, 0, "global")  # a small "global" buffer lives on the stack
    if tile_layout is not None:
        sch.transform_layout(blk, ("write", 0), tile_layout)
    trim = _fold_epilogue(sch, wb)
    if flatten is not None:
        sch.transform_layout(blk, ("write", 0), flatten)
        if not whole_rows:
            sch.transform_block_layout(wb, flatten)
    depth = next(i for i, lp in enumerate(outer) if lp.same_as(tile_at)) + 1
    sch.reverse_compute_at(wb, tile_at, preserve_unit_loops=True)
    if trim is not None:  # the slice of a padded tile, its epilogue, in the same tile
        if trim_layout is not None:
            sch.transform_block_layout(trim, trim_layout)
        sch.reverse_compute_at(trim, tile_at, preserve_unit_loops=True)
    vector, wb_unrolled = arrange(sch, sch.get_loops(wb)[depth:])
    fused = sch.fuse(*parallel) if len(parallel) > 1 else parallel[0]
    if work >= PARALLEL_MIN_MACS:  # below it, waking the thread pool costs more than it saves
        sch.parallel(fused)
    for lp in [*unrolled, *wb_unrolled]:
        sch.unroll(lp)
    sch.vectorize(vector)
    init = sch.decompose_reduction(blk, reduction[0])
    vector_split(sch, sch.get_loops(init)[-1])
    _others(sch, blk)
    if intrin is not None:
        sch.tensorize(lane_loop, intrin)  # replaces the block: last


def _domain(sch: s_tir.Schedule, blk) -> tuple[int, ...]:
    return tuple(int(iv.dom.extent) for iv in sch.get(blk).iter_vars)


def _fold_epilogue(sch: s_tir.Schedule, wb):
    """Inline the elementwise consumers over the tile's whole domain into the write-back
    `wb`. The first consumer over a smaller domain (the slice that drops a padded tile's
    surplus) is not inlined (that would store the surplus out of bounds): its own
    elementwise consumers are inlined into it and it is returned, to be computed per tile;
    None if there is none."""
    blk = wb
    while True:
        consumers = sch.get_consumers(blk)
        if len(consumers) != 1:
            return None
        nxt = consumers[0]
        if _domain(sch, nxt) != _domain(sch, blk):
            inline_epilogue(sch, nxt)
            return nxt
        try:
            sch.reverse_compute_inline(nxt)
        except Exception:  # not foldable: it keeps its own loops
            return None


def _grid(rows: int, cols: int, budget: int, caps: tuple[int, int] = (8, 8)) -> tuple[int, int]:
    """(r, c) dividing (rows, cols), at most `caps`, r c <= budget accumulators: the most
    accumulators, then the most columns (pixels: their operands come from the input, hot in
    cache, where the rows' weights stream from further away)."""
    best = (0, 0, 1)
    for r in range(1, min(rows, caps[0]) + 1):
        for c in range(1, min(cols, caps[1]) + 1):
            if rows % r == 0 and cols % c == 0 and r * c <= budget:
                best = max(best, (r * c, c, r))
    return best[2], best[1]


def _columns(lanes: int) -> Arrange:
    """Write-back (..., columns): columns split into vectors of `lanes`, the rest unrolled."""
    def arrange(sch: s_tir.Schedule, loops: list) -> tuple:
        *rest, cols = loops
        cols_o, cols_i = sch.split(cols, factors=[None, lanes])
        return cols_i, [*rest, cols_o]

    return arrange


# -- the rules -----------------------------------------------------------------------------
def qdense(sch: s_tir.Schedule) -> bool:
    blk = _block(sch, "smelt_qdense")
    if blk is None:
        return False
    *lead, j, k = sch.get_loops(blk)
    if not lead:
        return False
    nblocks, _, lanes, _ = _shape(sch, blk, 4, "int8")
    extents = [extent(sch, lp) for lp in lead]
    flatten = None
    if len(lead) > 1:  # one row axis (leading axes are contiguous rows of the output)
        def flat(*idx):
            row = idx[0]
            for i, e in zip(idx[1:-1], extents[1:], strict=True):
                row = row * e + i
            return (row, idx[-1])

        rank = len(lead) + 1
        sch.transform_block_layout(blk, IndexMap.from_func(
            lambda *ax: (*flat(*ax[:rank]), ax[rank]), ndim=rank + 1))
        flatten = IndexMap.from_func(flat, ndim=rank)
        m, j, k = sch.get_loops(blk)
    else:
        m = lead[0]
    mi = _divisor(extent(sch, m), min(8, _accumulators(lanes)))
    per_tile = _divisor(nblocks, min(4, _accumulators(lanes) // mi))
    mo, mi_loop = sch.split(m, factors=[None, mi])
    jo, jb, jl = sch.split(j, factors=[None, per_tile, lanes])
    ko, _ = sch.split(k, factors=[None, 4])
    _tile(sch, blk, [mo, jo], [ko], [mi_loop, jb], jl, jo, [mo, jo], _columns(lanes),
          _intrinsic(True, lanes), flatten=flatten)
    return True


def qbmm(sch: s_tir.Schedule) -> bool:
    """qmatmul: the dense tile per batch index (B differs between batches)."""
    blk = _block(sch, "smelt_qbmm")
    if blk is None:
        return False
    *batch, m, j, k = sch.get_loops(blk)
    packed = next(r.source for r in sch.get(blk).reads if str(r.source.dtype) == "int8")
    nblocks, lanes = int(packed.shape[-4]), int(packed.shape[-2])
    per_tile, mi = _grid(nblocks, extent(sch, m), _accumulators(lanes), (4, 8))
    mo, mi_loop = sch.split(m, factors=[None, mi])
    jo, jb, jl = sch.split(j, factors=[None, per_tile, lanes])
    ko, _ = sch.split(k, factors=[None, 4])
    _tile(sch, blk, [*batch, mo, jo], [ko], [mi_loop, jb], jl, jo, [*batch, mo, jo],
          _columns(lanes), _intrinsic(True, lanes))
    return True


def _flat_pixels(sch: s_tir.Schedule, blk) -> int | None:
    """For a stride-1 unpadded 1x1 conv (its packed input as large as its output, flattened
    or not), make the block iterate over flat pixels p = y * W + x and return W; else None."""
    _, _, hp, phases, wq, _ = _shape(sch, blk, 6, "uint8")
    _, _, ho, wo = (int(d) for d in sch.get(blk).writes[0].source.shape)
    kh, kw = _shape(sch, blk, 5, "int8")[2:4]
    if (kh, kw, phases, hp, wq) not in ((1, 1, 1, 1, ho * wo), (1, 1, 1, ho, wo)):
        return None
    sch.transform_block_layout(blk, lambda b, o, y, x, g, ry, rx, t:
                               (b, o, y * wo + x, g, ry, rx, t))
    return wo


def qconv2d(sch: s_tir.Schedule) -> bool:
    """Pixel vectors: R output channels x V vectors of L output pixels per tile."""
    blk = _block(sch, "smelt_qconv2d")
    if blk is None:
        return False
    channels = _shape(sch, blk, 5, "int8")[0]
    flat = _flat_pixels(sch, blk)
    if flat is not None:
        b, o, x, g, ry, rx, _ = sch.get_loops(blk)
        rows = []
    else:
        b, o, y, x, g, ry, rx, _ = sch.get_loops(blk)
        rows = [y]
    lanes = pixel_lanes(extent(sch, x))
    if lanes is None:
        return False
    unflatten = _block(sch, "smelt_unflatten")
    if unflatten is not None:  # padded flat pixels: one tile holds them all (whole rows)
        v = extent(sch, x) // lanes
        r = _divisor(channels, _accumulators(lanes) // v)
    else:
        r, v = _grid(channels, extent(sch, x) // lanes, _accumulators(lanes))
    whole_rows = flat is not None and flat % lanes != 0 and (v * lanes) % flat == 0
    oo, oi = sch.split(o, factors=[None, r])
    xo, xv, xl = sch.split(x, factors=[None, v, lanes])
    _tile(sch, blk, [b, oo, *rows, xo], [g, ry, rx], [oi, xv], xl, xo, [b, oo, *rows, xo],
          _columns(lanes), _intrinsic(False, lanes),
          flatten=None if flat is None else lambda n, c, h, w: (n, c, h * flat + w),
          whole_rows=whole_rows,
          trim_layout=None if unflatten is None else _flat_rows(sch, unflatten))
    if unflatten is not None:  # reads the tile itself; one vector per output row
        sch.compute_inline(_block(sch, "smelt_qconv2d_global"))
        height, width = (int(d) for d in sch.get(unflatten).writes[0].source.shape[-2:])
        _, row = sch.split(sch.get_loops(unflatten)[-1], factors=[height, width])
        sch.vectorize(row)
    return True


def _flat_rows(sch: s_tir.Schedule, blk) -> IndexMap:
    """(b, c, y, x) -> (b, c, y W + x) for the block writing (.., H, W)."""
    width = int(sch.get(blk).writes[0].source.shape[-1])
    return IndexMap.from_func(lambda b, c, y, x: (b, c, y * width + x))


def _channels_inner(lanes: int) -> Arrange:
    """Write-back (b, o, y, x) of a channel-vector tile kept as (n, h, w, c): channels
    innermost in vectors of `lanes` (whole vectors of the tile), pixels unrolled."""
    def arrange(sch: s_tir.Schedule, loops: list) -> tuple:
        b, o, y, x = loops
        oo, oi = sch.split(o, factors=[None, lanes])
        sch.reorder(b, y, x, oo, oi)
        return oi, [b, y, x, oo]

    return arrange


def qconv2d_cv(sch: s_tir.Schedule) -> bool:
    """Channel vectors: up to 15 pixels of a row x 1-4 blocks of L output channels."""
    blk = _block(sch, "smelt_qconv2d_cv")
    if blk is None:
        return False
    b, o, y, x, g, ry, rx, _ = sch.get_loops(blk)
    nblocks, _, _, _, lanes, _ = _shape(sch, blk, 6, "int8")
    per_tile, xb = _grid(nblocks, extent(sch, x), _accumulators(lanes), (4, 15))
    oo, ob, ol = sch.split(o, factors=[None, per_tile, lanes])
    xo, xi = sch.split(x, factors=[None, xb])
    _tile(sch, blk, [b, oo, y, xo], [g, ry, rx], [ob, xi], ol, xo, [b, oo, y],
          _channels_inner(lanes), _intrinsic(True, lanes),
          tile_layout=lambda n, c, h, w: (n, h, w, c))
    return True


def qdwconv_window(sch: s_tir.Schedule) -> bool:
    """Depthwise on 4-tap windows: up to 8 vectors of L output pixels of one row (one
    channel) per tile; each (kernel row, vector) is one load, `vpermb` and `vpdpbusd`."""
    blk = _block(sch, "smelt_qdwconv4")
    if blk is None:
        return False
    b, ch, y, x, ry, _ = sch.get_loops(blk)
    width = extent(sch, x)
    lanes = next(v for v in (16, 8, 4) if width % v == 0)
    v = _divisor(width // lanes, min(8, _accumulators(lanes)))
    xo, xv, xl = sch.split(x, factors=[None, v, lanes])
    (sh, dh), (sw, dw) = _window_steps(sch, blk)
    intrin = None
    if has_vbmi(tvm.target.Target.current(allow_none=True)) and window_fits(lanes, sw, dw):
        intrin = window_intrinsic(lanes, sw, dw)
    _tile(sch, blk, [b, ch, y, xo], [ry], [xv], xl, xo, [b, ch, y], _columns(lanes), intrin)
    return True


def _window_steps(sch: s_tir.Schedule, blk) -> tuple[tuple[int, int], tuple[int, int]]:
    """((stride, dilation) of the rows, (stride, dilation) of the columns) of a window
    kernel, from the block attribute its TE compute sets."""
    sh, dh, sw, dw = (int(v) for v in sch.get(blk).annotations[WINDOW_ATTR])
    return (sh, dh), (sw, dw)


def qdwconv(sch: s_tir.Schedule) -> bool:
    """Depthwise: a chunk of one output row in int32 vectors, the window unrolled."""
    blk = _block(sch, "smelt_qdwconv")
    if blk is None:
        return False
    *outer, x, ry, rx = sch.get_loops(blk)
    xw = extent(sch, x)
    xv = 16 if xw % 16 == 0 else (8 if xw % 8 == 0 else _largest_divisor(xw, 16))
    xo, xi = sch.split(x, factors=[None, xv])
    sch.reorder(*outer, xo, ry, rx, xi)
    wb = sch.cache_write(blk, 0, "global")  # a small "global" buffer lives on the stack
    inline_epilogue(sch, wb)
    sch.reverse_compute_at(wb, xo, preserve_unit_loops=True)
    wb_inner = sch.get_loops(wb)[-1]
    sch.parallel(sch.fuse(*outer))
    sch.vectorize(xi)
    sch.unroll(rx)
    if extent(sch, wb_inner) in (4, 8, 16):
        sch.vectorize(wb_inner)
    sch.decompose_reduction(blk, ry)
    _others(sch, blk)
    return True


def pack(sch: s_tir.Schedule) -> bool:
    """The activation stages (pack, pad, +128), with any producer FuseOps put before them
    inlined, except a float quantize: that one runs as its own stage over the plain image,
    whose rows vectorize, and the pack then only moves bytes (inlined, the float64 divides
    ran in the pack's loop over output words, which a strided or padded layout leaves
    unvectorized: MobileNetV2's input, 160x160x3 into stride-2 words, 90 -> 37 us; ResNet-18's,
    128x128x3 into stride-2 words padded by 3, 84 -> 29 us). Each stage runs parallel over
    rows, vectorized along its innermost axis; a row of words no lane count divides is cut
    into 16-lane vectors, the last one masked."""
    blk = next((b for b in all_blocks(sch)
                if sch.get(b).name_hint.startswith(("smelt_i8pa", "smelt_i8sum"))), None)
    if blk is None:
        return False
    name = sch.get(blk).name_hint
    for other in all_blocks(sch):
        if sch.get(other).name_hint not in (name, "quantize") \
                and not copies_on_inline(sch, other):
            try:
                sch.compute_inline(other)
            except Exception:  # an output (or a reduction) keeps its own loops
                pass
    for other in all_blocks(sch):
        if sch.get(other).name_hint == "smelt_i8sum_cols":
            _column_sums(sch, other)
        elif sch.get(other).name_hint == "quantize":
            _quantize_rows(sch, other)
        else:
            schedule_plain(sch, other)
            if sch.get(other).name_hint == name:
                _vectorize_ragged(sch, other)
    return True


def _quantize_rows(sch: s_tir.Schedule, blk) -> None:
    """The float quantize before a pack, over the plain image: parallel rows, 32 lanes (with
    16, LLVM turned the loads of 128-wide rows into gathers and the stores into byte
    extracts: ResNet-18's input took 84 us, 29 with 32 lanes)."""
    *rows, cols = sch.get_loops(blk)
    if rows and math.prod(extent(sch, lp) for lp in sch.get_loops(blk)) >= PARALLEL_MIN_ELEMS:
        sch.parallel(sch.fuse(*rows) if len(rows) > 1 else rows[0])
    vector_split(sch, cols, (32, 16, 8, 4))


def _vectorize_ragged(sch: s_tir.Schedule, blk) -> None:
    """A row of words whose length no lane count divides (a strided layout's columns): 16
    lanes with the last vector masked, rather than a scalar loop that LLVM vectorizes into
    gathers and byte extracts by itself."""
    inner = sch.get_loops(blk)[-1]
    if sch.get(inner).kind == tirx.ForKind.VECTORIZED or extent(sch, inner) < 16:
        return
    if sch.get(blk).iter_vars[-1].iter_type != tirx.IterVar.DataPar:
        return
    sch.vectorize(sch.split(inner, factors=[None, 16])[1])


def _column_sums(sch: s_tir.Schedule, blk) -> None:
    """sum_k B[..., k, n]: rows of B added as vectors along n (its contiguous axis)."""
    *outer, n, r = sch.get_loops(blk)
    sch.reorder(*outer, r, n)
    if outer:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    vector_split(sch, n)
    sch.decompose_reduction(blk, r)
