"""Small helpers shared by smelt's CPU schedule rules."""

from __future__ import annotations

from tvm import s_tir, tirx

PARALLEL_MIN_ELEMS = 2048  # below this a parallel region costs more than it saves
VECTOR_LANES = (16, 8, 4)


def extent(sch: s_tir.Schedule, loop) -> int:
    e = sch.get(loop).extent
    return int(e) if isinstance(e, tirx.IntImm) else -1


def block_named(sch: s_tir.Schedule, prefix: str):
    """The first block whose name starts with `prefix`, or None."""
    for blk in all_blocks(sch):
        if sch.get(blk).name_hint.startswith(prefix):
            return blk
    return None


def all_blocks(sch: s_tir.Schedule) -> list:
    root = sch.get_sblock("root")
    out: list = []

    def walk(b):
        for c in sch.get_child_blocks(b):
            out.append(c)
            walk(c)

    walk(root)
    return out


def iter_kinds(sch: s_tir.Schedule, blk) -> list[str]:
    """'S' (spatial) or 'R' (reduction, or anything else) per block iterator."""
    return ["S" if iv.iter_type == tirx.IterVar.DataPar else "R" for iv in sch.get(blk).iter_vars]


def vector_split(sch: s_tir.Schedule, loop, lanes: tuple[int, ...] = VECTOR_LANES):
    """Split off and vectorize an inner loop of a lane count dividing the extent; None if none
    does (the loop is then left to LLVM)."""
    n = extent(sch, loop)
    for v in lanes:
        if n == v:
            sch.vectorize(loop)
            return loop
        if n > v and n % v == 0:
            _, inner = sch.split(loop, factors=[None, v])
            sch.vectorize(inner)
            return inner
    return None


def inline_epilogue(sch: s_tir.Schedule, producer) -> None:
    """Fold each elementwise consumer chain of `producer` into it (bias, activation, residual),
    so the epilogue runs while the tile is still in registers. Stops at the first consumer
    that cannot be folded (a transpose, a reduction); those keep their own loops."""
    while True:
        consumers = sch.get_consumers(producer)
        if len(consumers) != 1:
            return
        try:
            sch.reverse_compute_inline(consumers[0])
        except Exception:  # not foldable (non-trivial index map): leave it to its own rule
            return


def is_plain_store(sch: s_tir.Schedule, blk) -> bool:
    """The block's body is one store and it allocates nothing: each spatial iteration is
    independent of the others' registers, so its loops may be vectorized. A block with its
    own loops over a local buffer (a hand-written kernel) is not: vectorizing would share
    that buffer between lanes."""
    block = sch.get(blk)
    return isinstance(block.body, tirx.BufferStore) and not block.alloc_buffers


def schedule_plain(sch: s_tir.Schedule, blk) -> None:
    """Parallel outer spatial loops, vectorized inner spatial loop when the block is
    injective; reductions run serially inside. Used for blocks no specific rule claims."""
    loops = sch.get_loops(blk)
    kinds = iter_kinds(sch, blk)
    if not loops or len(loops) != len(kinds):
        return
    n_s = len(kinds) - len("".join(kinds).lstrip("S"))
    spatial = loops[:n_s]
    injective = n_s == len(kinds) and is_plain_store(sch, blk)
    total = 1
    for lp in spatial:
        total *= max(extent(sch, lp), 1)
    inner = None
    if injective and spatial:
        inner = spatial[-1]
        spatial = spatial[:-1]
    if spatial and total >= PARALLEL_MIN_ELEMS:
        outer = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
        sch.parallel(outer)
    elif inner is not None and not spatial and total >= PARALLEL_MIN_ELEMS * 4:
        outer, inner = sch.split(inner, factors=[None, 64])
        sch.parallel(outer)
    if inner is not None:
        vector_split(sch, inner)
