"""The producer of a padded int8 activation writes it padded: the pad copy disappears.

A depthwise int8 conv reads its input padded with the zero point (`lowering/int8_sums.pad_nchw`,
plus slack rows and columns for its 4-tap windows), so its lowering emits a pad kernel: a
full copy of the activation, 17 of them in MobileNetV2 (9% of its int8 run time, measured).
After scheduling, this pass rewrites each pair

    o = call_tir(producer, args)          # o: (N, C, H, W) uint8, read only by the pad
    p = call_tir(pad, (o,))               # p: (N, C, H + t + b, W + l + r), o at (t, l)

into one call, p = call_tir(producer', args), where producer' is the scheduled producer
with its output buffer declared as a strided view of p at (t, l) (`T.decl_buffer(...,
data=p.data, strides=..., elem_offset=...)`), so every store of the scheduled code lands in
place, and a loop writes the zero point over the border first (per channel: the rows above,
the gaps between rows, a vector each, and the rows below). Nothing else of the producer changes.

TVM 0.27 exposes no Python statement mutator (and `PrimFunc.specialize` cannot give a buffer
strides), so producer' is made by editing the producer's TVMScript and parsing it back; a
producer that does not round-trip, or binds its output to a `match_buffer`, is left as it
was. The pad kernel is recognized by its block annotation (`PAD_ATTR`: [top, left, value]),
set only on a pure copy (uint8 in, no other stage fused into it).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import tvm
from tvm import relax, s_tir, tirx

from ..lowering.int8_sums import PAD_ATTR
from .sched_util import PARALLEL_MIN_ELEMS, all_blocks

CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def _shape(t) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape)


def _pad_spec(func: tirx.PrimFunc) -> tuple[int, int, int] | None:
    """(top, left, value) of a pure pad kernel (one block carrying PAD_ATTR), else None."""
    if len(func.params) != 2:
        return None
    sch = s_tir.Schedule(func)
    blocks = all_blocks(sch)
    if len(blocks) != 1:
        return None
    block = sch.get(blocks[0])
    if PAD_ATTR not in block.annotations:
        return None
    top, left, value = (int(v) for v in block.annotations[PAD_ATTR])
    return top, left, value


def _border_fill(name: str, shape: tuple[int, ...], inner: tuple[int, ...],
                 top: int, left: int, value: int, ty: str) -> list[str]:
    """TVMScript lines writing `value` over the border of the padded buffer `name` (its
    interior (H, W) at (top, left)), per channel: the span before the first interior byte,
    the gaps between interior rows, the span after the last one (the spans become memsets).

    The fill runs before the kernel's own loops, which then write every interior byte, so a
    gap may be written as one whole vector from its start, running on into the next row's
    interior (one store where exact ones took a byte store per gap byte: 96 channels of
    80 rows padded by 2, 11 us serial). Channels run in parallel when there are many bytes."""
    *lead, hp, wp = shape
    h, w = inner
    channels = math.prod(lead)
    plane = hp * wp
    tail_start = (top + h - 1) * wp + left + w
    gap = wp - w
    v = f"T.uint8({value})"

    def i(k: int) -> str:
        return f"T.{ty}({k})"

    flat = f"{name}_flat"
    loop = ("T.parallel" if channels > 1 and channels * (plane - h * w) >= PARALLEL_MIN_ELEMS
            else "T.serial")
    lines = [f'{flat} = T.decl_buffer(({i(channels * plane)},), "uint8", data={name}.data)',
             f"for smelt_c in {loop}({i(channels)}):"]
    if top * wp + left:
        lines += [f"    for smelt_i in T.serial({i(top * wp + left)}):",
                  f"        {flat}[smelt_c * {i(plane)} + smelt_i] = {v}"]
    if h > 1 and gap:
        last = (top + h - 2) * wp + left + w  # the last gap's start
        lanes = next((n for n in (4, 8, 16) if n >= gap and last + n <= plane), None)
        inner_loop = f"T.vectorized({i(lanes)})" if lanes else f"T.unroll({i(gap)})"
        lines += [f"    for smelt_y in T.serial({i(h - 1)}):",
                  f"        for smelt_j in {inner_loop}:",
                  f"            {flat}[smelt_c * {i(plane)} + (smelt_y + {i(top)}) * {i(wp)}"
                  f" + {i(left + w)} + smelt_j] = {v}"]
    if plane > tail_start:
        lines += [f"    for smelt_i in T.serial({i(plane - tail_start)}):",
                  f"        {flat}[smelt_c * {i(plane)} + {i(tail_start)} + smelt_i] = {v}"]
    return lines


def write_padded(producer: tirx.PrimFunc, padded: tuple[int, ...], top: int, left: int,
                 value: int) -> tirx.PrimFunc | None:
    """`producer` with its (last, output) buffer a view at (top, left) of a new output of
    shape `padded`, the border filled with `value`; None where that cannot be done."""
    out = producer.params[-1]
    inner = _shape(out)
    if (str(out.dtype) != "uint8" or len(inner) != len(padded) or len(inner) < 2
            or inner[:-2] != padded[:-2] or top + inner[-2] > padded[-2]
            or left + inner[-1] > padded[-1]):
        return None
    name = out.name
    src = producer.script(show_meta=True)
    decl = re.compile(rf"\b{re.escape(name)}: T\.Buffer\(\((.*?)\), \"uint8\"\)")
    if len(decl.findall(src)) != 1 or re.search(rf"match_buffer\({re.escape(name)}\[", src):
        return None
    ty = "int64" if "T.int64(" in decl.search(src).group(1) else "int32"
    new = f"{name}_padded"
    if re.search(rf"\b{re.escape(new)}\b", src):
        return None
    strides, acc = [], 1
    for d in reversed(padded):
        strides.insert(0, acc)
        acc *= d
    offset = top * strides[-2] + left * strides[-1]

    def tup(values) -> str:
        return "(" + ", ".join(f"T.{ty}({v})" for v in values) + ",)"

    src = decl.sub(f'{new}: T.Buffer({tup(padded)}, "uint8")', src)
    lines = src.split("\n")
    at = next((k for k, line in enumerate(lines) if line.strip().startswith("T.func_attr(")),
              None)
    if at is None:
        return None
    indent = re.match(r"\s*", lines[at]).group(0)
    body = [f'{name} = T.decl_buffer({tup(inner)}, "uint8", data={new}.data, '
            f"strides={tup(strides)}, elem_offset=T.{ty}({offset}))",
            *_border_fill(new, padded, inner[-2:], top, left, value, ty)]
    lines[at + 1:at + 1] = [indent + line for line in body]
    try:
        func = tvm.script.from_source("\n".join(lines))
    except Exception:  # noqa: BLE001 - a kernel TVMScript does not round-trip stays as it is
        return None
    return func.with_attrs(producer.attrs) if producer.attrs else func


def _use_counts(func: relax.Function) -> Counter:
    counts: Counter = Counter()

    def visit(e) -> None:
        if isinstance(e, relax.Var):
            counts[e] += 1

    for block in func.body.blocks:
        for b in block.bindings:
            relax.analysis.post_order_visit(b.value, visit)
    relax.analysis.post_order_visit(func.body.body, visit)
    return counts


def _tir_call(value) -> tuple[tvm.ir.GlobalVar, list] | None:
    if isinstance(value, relax.Call) and value.op.same_as(CALL_TIR):
        return value.args[0], list(value.args[1].fields)
    return None


@tvm.transform.module_pass(opt_level=0, name="smelt.ProducersWritePadded")
def producers_write_padded(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    main = mod["main"]
    uses = _use_counts(main)
    bound = {b.var: b.value for block in main.body.blocks for b in block.bindings}
    builder = relax.BlockBuilder(mod)  # gives the new kernels typed GlobalVars
    specs: dict[str, tuple[int, int, int] | None] = {}  # pad kernel -> _pad_spec, once each
    made: dict[tuple[str, str], tvm.ir.GlobalVar | None] = {}
    replace: dict[relax.Var, relax.Call] = {}  # pad binding -> the producer's padded call
    drop: set = set()
    for block in main.body.blocks:
        for b in block.bindings:
            call = _tir_call(b.value)
            if call is None or len(call[1]) != 1:
                continue
            pad_gv, (src,) = call
            if pad_gv.name_hint not in specs:
                func = mod[pad_gv]
                specs[pad_gv.name_hint] = (_pad_spec(func) if isinstance(func, tirx.PrimFunc)
                                           else None)
            spec = specs[pad_gv.name_hint]
            producer = _tir_call(bound.get(src))
            if spec is None or producer is None or uses[src] != 1:
                continue
            prod_gv, args = producer
            func = mod[prod_gv]
            if not isinstance(func, tirx.PrimFunc) or len(func.params) != len(args) + 1:
                continue
            if _shape(func.params[-1]) != _shape(mod[pad_gv].params[0]):
                continue
            key = (prod_gv.name_hint, pad_gv.name_hint)
            if key not in made:
                padded = _shape(mod[pad_gv].params[1])
                new = write_padded(func, padded, *spec)
                made[key] = None if new is None else builder.add_func(
                    new, f"{prod_gv.name_hint}_into_{pad_gv.name_hint}")
            if made[key] is None:
                continue
            replace[b.var] = relax.call_tir(made[key], relax.Tuple(args), b.var.ty)
            drop.add(src)
    if not replace:
        return mod
    mod = builder.get()
    blocks = []
    for block in main.body.blocks:
        bindings = [relax.VarBinding(b.var, replace[b.var]) if b.var in replace else b
                    for b in block.bindings if b.var not in drop]
        kind = relax.DataflowBlock if isinstance(block, relax.DataflowBlock) else relax.BindingBlock
        blocks.append(kind(bindings))
    mod["main"] = relax.Function(main.params, relax.SeqExpr(blocks, main.body.body),
                                 main.ret_ty, main.is_pure, main.attrs)
    return relax.transform.DeadCodeElimination()(mod)
