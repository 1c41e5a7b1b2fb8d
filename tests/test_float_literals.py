"""Float constants are exact in the C and CUDA source (backends/float_literals.py): TVM's
generators print six digits, so a constant that needs more is passed through a marker and
written as a hexadecimal literal.

The marker's literal reads back as the constant's exact dtype value for any finite float;
end to end, a float64 clamp with 16-digit bounds and float32 gelu and leaky_relu constants
run bit for bit like the interpreter on the `c` target built for the host (before the fix the
clamp bound was 4e-8 off), and the CUDA build's nvcc source holds the exact literal.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_backend_cuda import needs_nvcc

import smelt
from smelt.backends.float_literals import mark, printed_exactly, unmark
from smelt.backends.mcu.kernels_c import lower_graph
from smelt.ir import Graph, Node

pytestmark = pytest.mark.xdist_group("c_target")

BOUND = -0.9459188375577856  # the probe's float64 clamp bound: printed as -9.459188e-01


def _float32(v: float) -> float:
    return struct.unpack("<f", struct.pack("<f", v))[0]


@given(st.floats(allow_nan=False, allow_infinity=False, width=64)
       | st.sampled_from([3.4028234663852886e38, -1.7976931348623157e308, -0.9459188375577856]),
       st.sampled_from(["float32", "float64"]))
def test_a_marked_constant_reads_back_exactly(value: float, dtype: str) -> None:
    from tvm import te, tirx

    if dtype == "float32" and abs(value) > 3.0e38:  # past float32's range: its largest
        value = float(np.copysign(3.0e38, value))
    x = te.placeholder((1,), dtype, name="x")
    y = te.compute((1,), lambda i: x[i] * tirx.const(value, dtype), name="y")
    func = mark(te.create_prim_func([x, y]))
    text = func.script()
    want = _float32(value) if dtype == "float32" else value
    if printed_exactly(value, dtype):
        assert "smelt_f" not in text  # printed as is: nothing to fix
        return
    if abs(want) == np.finfo(dtype).max:  # a reducer's identity: kept, spelled exactly
        assert "smelt_f" not in text
        literal = unmark(f"y = x * {value:e}{'f' if dtype == 'float32' else ''};")
    else:
        marker = re.search(r'"(smelt_f(?:32|64)_[0-9a-f]+)"', text).group(1)
        literal = unmark(f"y = x * {marker}();")
    got = float.fromhex(re.search(r"-?\(?(-?0x[0-9a-f.]+p[+-]\d+)", literal).group(0)
                        .replace("(", ""))
    assert got == want, (literal, value)


def _constants_graph() -> Graph:
    x64 = Node.input("x", (6,), "float64")
    x32 = Node.input("y", (6,), "float32")
    return Graph([x64, x32], [
        Node.make("clamp", [x64], min=BOUND, max=3.3598851234567),
        Node.make("leaky_relu", [x32], alpha=0.0123456789),
        Node.make("gelu", [x32], approximate="none")])


def _feed() -> list[np.ndarray]:
    return [np.array([-2.0, BOUND, np.nextafter(BOUND, 0), 0.3, 3.3598851234567, 9.0]),
            np.array([-1.5, -0.25, 0.0, 0.90597726, 2.0, -3.0], np.float32)]


def test_c_constants_are_bit_exact(tmp_path) -> None:
    graph = _constants_graph()
    module = smelt.compile(graph, "c", board="host", out_dir=tmp_path)
    got, want = module(*_feed()), smelt.interpret(graph, *_feed())
    np.testing.assert_array_equal(got[0], want[0])  # clamp: a comparison, so bit for bit
    np.testing.assert_array_equal(got[1], want[1])  # leaky_relu: one multiply
    ulp = np.spacing(np.abs(want[2]).astype(np.float32))
    assert (np.abs(got[2] - want[2]) <= 2 * ulp).all()  # gelu: libm's erff, within 2 ulps
    source = lower_graph(graph).source
    assert "(-0x1.e44f794ff6490p-1)" in source and "-9.459188e-01" not in source


@needs_nvcc
def test_cuda_source_for_nvcc_holds_the_exact_literal() -> None:
    module = smelt.compile(_constants_graph(), "cuda")
    source = unmark(module.build.source)
    assert "(-0x1.e44f794ff6490p-1)" in source  # BOUND, exactly
    assert "-9.459188e-01" not in source and "smelt_f" not in source
    assert module.build.fatbin  # nvcc built the unmarked source
