"""Which producers a schedule may inline, shared by the targets' schedules (cpu, c): TVM's
compute_inline copies a producer's expression into each read of it, which some of smelt's
integer kernels, and chains of float kernels that read their operand many times, make
expensive."""

from __future__ import annotations

from tvm import s_tir

#: integer rescales (ir/ops/quant.py, qarith.py): each reads its operand three times (the
#: quotient, the remainder and the tie test of rounding to nearest even)
RESCALES = ("requantize", "qadd", "qmul")
#: the most TVMScript characters a consumer's body may grow to by inlining a producer: an
#: expression copied k times per inline grows as k^depth, and TVM's TIR passes then take
#: minutes (the fuzzer's tanh(tanh(x)) -> hardswish: tanh reads x 21 times, Let-free; see
#: lowering/te_kernels.py)
INLINE_BUDGET = 6000


def copies_on_inline(sch: s_tir.Schedule, producer) -> bool:
    """Would inlining `producer` put a rescale inside a rescale or a table index? A rescale
    copies its operand's expression three times, so a chain of k inlined rescales grows as
    3^k; and a rescale inlined into qlookup's index (a requantize before a SiLU table) makes
    TVM's compute_inline analyse a non-affine index, which stalls on a 256x256 image for
    minutes. Nor is anything inlined into a concat: with 16 quantized parts (bat_resnext26ts's
    relative positions) each inline took longer than the last, 5 to 36 s. Such a producer
    keeps its own loops (one buffer between them)."""
    if grows_past_budget(sch, producer):
        return True
    consumers = [sch.get(c).name_hint for c in sch.get_consumers(producer)]
    if any(c.startswith("T_concat") for c in consumers):
        return True  # a concat of many inlined parts re-simplifies per part: seconds each
    if not sch.get(producer).name_hint.startswith(RESCALES):
        return False
    return any(c.startswith(RESCALES + ("qlookup",)) for c in consumers)


def grows_past_budget(sch: s_tir.Schedule, producer) -> bool:
    """Would inlining `producer` make a consumer's body longer than INLINE_BUDGET characters
    of TVMScript? The consumer's body plus the producer's expression once per read of its
    buffer: a measure of the expression TVM's passes will simplify."""
    block = sch.get(producer)
    if len(block.writes) != 1:
        return False
    read = block.writes[0].source.name + "["
    size = len(str(block.body))
    for consumer in sch.get_consumers(producer):
        text = str(sch.get(consumer).body)
        if len(text) + text.count(read) * size > INLINE_BUDGET:
            return True
    return False
