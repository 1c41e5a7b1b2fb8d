"""Table lookup: an 8-bit quantized tensor mapped elementwise through a 256-entry table.

    qlookup(x, table){out_scale, out_zp, bits, signed}      int8/uint8 -> the table's type

y = table[x - lo] with lo the least value of x's type (0 for uint8, -128 for int8), so every
value of x has its entry. `fold-qdq` builds the table of an elementwise float function
between a dequantize and a quantize (gelu, silu, sigmoid, tanh, hardswish, exp, a change of
scale, ...) by evaluating that function once on all 256 inputs: the lookup is then that
Q/DQ chain, bit for bit, on any target (the TFLite / CMSIS-NN way of running int8
transcendentals). The output carries `TensorType.quant` (out_scale, out_zp, bits).
"""

from __future__ import annotations

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import QuantParams, TensorType
from .quant import INT_RANGES, _check_scales, storage

LOOKUP_INPUTS = ("int8", "uint8")


def _lookup_infer(types: list[TensorType], attrs: dict) -> TensorType:
    x, table = types
    if x.dtype not in LOOKUP_INPUTS:
        raise TypeInferenceError(f"qlookup indexes by an int8 or uint8 tensor, got {x.dtype}")
    lo, hi = INT_RANGES[x.dtype]
    if table.shape != (hi - lo + 1,):
        raise TypeInferenceError(f"qlookup's table needs one entry per {x.dtype} value, shape "
                                 f"[{hi - lo + 1}], got {list(table.shape)}")
    dtype, out_lo, out_hi = storage(attrs["bits"], attrs["signed"])
    if table.dtype != dtype:
        raise TypeInferenceError(f"qlookup's table is {table.dtype}; {attrs['bits']} bits "
                                 f"(signed={attrs['signed']}) are stored as {dtype}")
    _check_scales("out_scale", (attrs["out_scale"],))
    if not out_lo <= attrs["out_zp"] <= out_hi:
        raise TypeInferenceError(f"out_zp={attrs['out_zp']} must lie in [{out_lo}, {out_hi}]")
    return TensorType(x.shape, dtype, QuantParams((attrs["out_scale"],), (attrs["out_zp"],),
                                                  attrs["bits"], None))


@defop("qlookup", ("x", "table"), _lookup_infer, category="quant",
       attrs={"out_scale": AttrSpec("float"), "out_zp": AttrSpec("int", 0),
              "bits": AttrSpec("int", 8), "signed": AttrSpec("bool", True)})
def qlookup(x, table, *, out_scale, out_zp, bits, signed):
    """table[x - lo], lo the least value of x's type."""
    lo = INT_RANGES[np.asarray(x).dtype.name][0]
    return np.asarray(table)[np.asarray(x, np.int64) - lo]
