"""The register-tile schedule of the W4A16 kernel `smelt_dense_w4` (cpu/int4_kernels.py).

The dense recipe (cpu/sched_tiles.py): a tile of up to 8 rows x nb columns (the weight
panel) held in registers over the whole reduction, the reduction over the packed bytes
outermost, each byte's two nibbles and the tile's rows unrolled inside it, the panel's
columns vectorized, the bias epilogue folded into the write-back, the row-tile x panel
loops parallel.
"""

from __future__ import annotations

from tvm import s_tir

from .sched_tiles import _tile, row_panel_tiles
from .sched_util import block_named


def dense_w4(sch: s_tir.Schedule) -> bool:
    blk = block_named(sch, "smelt_dense_w4")
    if blk is None:
        return False
    *lead, j, kb, h = sch.get_loops(blk)
    if not lead:
        return False
    reads = [r.source for r in sch.get(blk).reads]
    packed = next(b for b in reads if str(b.dtype) == "uint8")
    mo, mi_loop, jo, ji = row_panel_tiles(sch, lead, j, int(packed.shape[2]))
    _tile(sch, blk, [mo, jo], [h, mi_loop], ji, [kb], jo, [mo, jo])
    return True
