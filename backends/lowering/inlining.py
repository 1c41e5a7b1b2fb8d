"""Which producers a schedule may inline, shared by the targets' schedules (cpu, c): TVM's
compute_inline copies a producer's expression into each read of it, which some of smelt's
integer kernels make expensive."""

from __future__ import annotations

from tvm import s_tir

#: integer rescales (ir/ops/quant.py, qarith.py): each reads its operand three times (the
#: quotient, the remainder and the tie test of rounding to nearest even)
RESCALES = ("requantize", "qadd", "qmul")


def copies_on_inline(sch: s_tir.Schedule, producer) -> bool:
    """Would inlining `producer` put a rescale inside a rescale or a table index? A rescale
    copies its operand's expression three times, so a chain of k inlined rescales grows as
    3^k; and a rescale inlined into qlookup's index (a requantize before a SiLU table) makes
    TVM's compute_inline analyse a non-affine index, which stalls on a 256x256 image for
    minutes. Nor is anything inlined into a concat: with 16 quantized parts (bat_resnext26ts's
    relative positions) each inline took longer than the last, 5 to 36 s. Such a producer
    keeps its own loops (one buffer between them)."""
    consumers = [sch.get(c).name_hint for c in sch.get_consumers(producer)]
    if any(c.startswith("T_concat") for c in consumers):
        return True  # a concat of many inlined parts re-simplifies per part: seconds each
    if not sch.get(producer).name_hint.startswith(RESCALES):
        return False
    return any(c.startswith(RESCALES + ("qlookup",)) for c in consumers)
