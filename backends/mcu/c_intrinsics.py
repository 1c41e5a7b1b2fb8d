"""C spellings of the math intrinsics TVM 0.27's C code generator leaves unresolved.

TVM lowers each TIR intrinsic per target through registered rules; its `c` target has rules
for exp, log, sqrt, tanh, the trigonometric functions and isnan, but none for `fabs` (which
`abs` of a float becomes), `fmod`, `exp2`, `exp10`, `isinf` and `isfinite` (measured: each
raised "Unresolved call" at build). These rules give them <math.h>'s functions (the `f`
variants for float32; float16 computes in float32 as TVM's C does) and, for the
classifications, comparisons that need no header: isinf(x) is |x| == inf, isfinite(x) is
!isnan(x) && !isinf(x). Registered once, when the C target loads.
"""

from __future__ import annotations

import math

from tvm import tirx
from tvm.tirx.op import register_intrin_lowering

TARGET = "c"


def _libm(name: str):
    """A rule calling <math.h>'s `name` (`namef` for float32) on the call's arguments."""
    def lower(call):
        dtype = str(call.ty)
        suffix = "f" if dtype in ("float32", "float16") else ""
        return tirx.call_pure_extern(dtype, f"{name}{suffix}", *call.args)

    return lower


def _exp10(call):
    dtype = str(call.ty)
    name = "powf" if dtype in ("float32", "float16") else "pow"
    return tirx.call_pure_extern(dtype, name, tirx.const(10.0, dtype), call.args[0])


def _is_inf(x):
    return tirx.Or(tirx.EQ(x, tirx.const(math.inf, str(x.ty))),
                   tirx.EQ(x, tirx.const(-math.inf, str(x.ty))))


def _isinf(call):
    return _is_inf(call.args[0])


def _isfinite(call):
    x = call.args[0]
    return tirx.Not(tirx.Or(tirx.isnan(x), _is_inf(x)))


RULES = {"tirx.fabs": _libm("fabs"), "tirx.fmod": _libm("fmod"), "tirx.exp2": _libm("exp2"),
         "tirx.exp10": _exp10, "tirx.isinf": _isinf, "tirx.isfinite": _isfinite}

for _op, _rule in RULES.items():
    register_intrin_lowering(_op, TARGET, f=_rule, level=100)
