"""The schedule rule `sparse-24` for the 2:4-compressed linear (cpu/sparse24_kernels.py).

The recipe of cpu/sched_tiles.py, with the vector along the activation rows: m is split by
up to 64 rows (vectorized: four AVX-512 vectors per column, so one position decode and one
broadcast weight serve four FMAs), n by up to 4 columns (unrolled; measured on a 2-core
Zen 4 at 128x768 -> 3072, 16 lanes x 8 columns was 2.2x slower), the slot reduction r runs over
the whole tile, which lives in a "local" cache laid out (n, m) so that each column's
accumulator is one vector; the bias (and any elementwise epilogue) folds into the write-back.
The outer m and n tiles are parallel. The transpose of x (`smelt_xt24`) is scheduled plainly.
"""

from __future__ import annotations

from tvm import s_tir

from .sched_tiles import _largest_divisor, _tile
from .sched_util import block_named, extent

VECTOR_ROWS = 64
TILE_COLUMNS = 4


def linear24(sch: s_tir.Schedule) -> bool:
    blk = block_named(sch, "smelt_sp24")
    if blk is None:
        return False
    m, n, r = sch.get_loops(blk)
    mo, mi = sch.split(m, factors=[None, _largest_divisor(extent(sch, m), VECTOR_ROWS)])
    no, ni = sch.split(n, factors=[None, _largest_divisor(extent(sch, n), TILE_COLUMNS)])
    _tile(sch, blk, [mo, no], [ni], mi, [r], no, [mo, no], tile_layout=lambda i, j: (j, i))
    return True
