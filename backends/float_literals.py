"""Float constants kept exact through TVM's C and CUDA code generators.

TVM 0.27's C and CUDA generators print a `FloatImm` with C++'s default `std::scientific`
precision, six digits after the point: gelu's sqrt(1/2) becomes `7.071068e-01f` (one float32
ulp off) and a float64 clamp bound -0.9459188375577856 becomes `-9.459188e-01` (4e-8 off).
smelt's per-op tests on the `c` target found both; LLVM (the `cpu` target) keeps the bits.

So before a C or CUDA build, `mark` replaces each float constant whose six-digit spelling is
another number by a call to a marker whose name carries the constant's bits
(`smelt_f32_3f3504f3()`), and `unmark` turns the markers in the generated source into C99
hexadecimal literals (`(0x1.6a09e60000000p-1f)`), exact in C and CUDA alike. A marker is a
pure call, so no TIR pass folds it into a new (printed-short) constant. A float32 constant is
the float32 rounding of the double TVM stores, which is what LLVM emits. The largest finite
values stay constants (TVM's GPU reduction schedules match a reducer by its identity, -FLT_MAX
for a max), and `unmark` spells them exactly.

    func = mark(func)            # a tirx.PrimFunc, before the build (mark_module: all of them)
    source = unmark(source)      # the generated C / CUDA source, after it
"""

from __future__ import annotations

import math
import re
import struct

import tvm
import tvm_ffi
from tvm import tirx

_FORMATS = {"float32": ("f32", "<f", "<I", 8), "float64": ("f64", "<d", "<Q", 16)}


def _rounded(value: float, dtype: str) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0] if dtype == "float32" else value


def printed_exactly(value: float, dtype: str) -> bool:
    """Whether TVM's six-digit `%e` spelling of `value` reads back as the same `dtype` value."""
    if not math.isfinite(value):  # inf and nan have their own spellings (mcu/kernels_c.py)
        return True
    return _rounded(float(f"{value:e}"), dtype) == _rounded(value, dtype)


#: the largest finite values, as TVM prints them: the identities of max and min reductions
#: (-FLT_MAX...), which stay constants so that TVM's schedules still recognise the reducer;
#: `unmark` spells them exactly (any other constant printed the same way was marked)
_LARGEST = {"float32": (3.4028234663852886e38, re.compile(r"(?<![\w.])3\.402823e\+38f(?!\w)"),
                        "0x1.fffffep+127f"),
            "float64": (1.7976931348623157e308, re.compile(r"(?<![\w.])1\.797693e\+308(?!\w)"),
                        "0x1.fffffffffffffp+1023")}


def _marker(imm: tirx.FloatImm, _mutator) -> tirx.PrimExpr:
    dtype = str(imm.ty)
    if dtype not in _FORMATS or printed_exactly(imm.value, dtype):
        return imm
    if abs(_rounded(imm.value, dtype)) == _LARGEST[dtype][0]:
        return imm
    tag, ffmt, ifmt, digits = _FORMATS[dtype]
    bits = struct.unpack(ifmt, struct.pack(ffmt, _rounded(imm.value, dtype)))[0]
    return tirx.call_pure_extern(dtype, f"smelt_{tag}_{bits:0{digits}x}")


def mark(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """`func` with each float constant that would print inexactly replaced by its marker."""
    return tvm_ffi.structural_mutate(func, [(tirx.FloatImm, _marker)])


def mark_module(mod: tvm.IRModule) -> tvm.IRModule:
    """`mod` with `mark` applied to each of its TIR functions (Relax functions kept)."""
    return tvm.IRModule({gv: mark(f) if isinstance(f, tirx.PrimFunc) else f
                         for gv, f in mod.functions_items()},
                        attrs=mod.attrs, global_infos=mod.global_infos)


_DECLARATION = re.compile(r"^.*\b(?:float|double) smelt_f(?:32|64)_[0-9a-f]+\(\);\n",
                          re.MULTILINE)
_CALL = re.compile(r"\bsmelt_(f32|f64)_([0-9a-f]+)\(\)")


def _literal(match: re.Match) -> str:
    tag, bits = match.group(1), int(match.group(2), 16)
    if tag == "f32":
        return "(" + float.hex(struct.unpack("<f", struct.pack("<I", bits))[0]) + "f)"
    return "(" + float.hex(struct.unpack("<d", struct.pack("<Q", bits))[0]) + ")"


def unmark(source: str) -> str:
    """The generated source with each marker's declaration removed, each call written as its
    exact hexadecimal literal, and the largest finite values spelled exactly."""
    source = _CALL.sub(_literal, _DECLARATION.sub("", source))
    for _, spelling, exact in _LARGEST.values():
        source = spelling.sub(exact, source)
    return source
