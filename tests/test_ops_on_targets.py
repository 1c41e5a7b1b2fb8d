"""Every op on the targets beside the CPU: the `c` target (built for the host and run there,
against the interpreter within the op's contract; float16 has no C type there, so those
examples are left out and a float16 graph must be refused) and `cuda` (sm_90, built by nvcc;
no device is needed to build).

One example of every op of CASES (tests/test_ops_reference.py) goes into one graph per
target, so a target is built once (one C project, one nvcc run) instead of once per op. The
per-op CPU test (tests/test_backend_ops.py) draws many examples of each op; this one checks
that each op's lowering is one the other targets' code generators take: every op builds for
both (a kernel TVM's C generator cannot take would raise a typed LoweringError naming it).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_backend_cuda import needs_nvcc
from test_backend_ops import _host, _wide_ints
from test_ops_reference import CASES, assert_matches

import smelt
from smelt.backends.mcu.emit import C_TYPES
from smelt.backends.targets import TargetError
from smelt.ir import Graph, Node, TupleType
from smelt.ir.types import dtype_of_array, numpy_dtype

pytestmark = pytest.mark.xdist_group("c_target")


def _c_types(ex) -> bool:
    """Operands and a cast's result the C target has types for (no float16)."""
    return (all(dtype_of_array(a) in C_TYPES for a in ex.args)
            and ex.attrs.get("dtype", "float32") in C_TYPES)


def _all_ops_graph(data: st.DataObject, ops: list[str], keep=_wide_ints):
    """One drawn example of each op, side by side in one graph: (graph, feed, per-output
    (example, case))."""
    inputs, feed, outputs, checks = [], [], [], []
    for op in ops:
        case = CASES[op]
        ex = data.draw(case.examples.filter(keep), label=op)
        xs = [Node.input(f"x{len(inputs) + i}", a.shape, dtype_of_array(a))
              for i, a in enumerate(ex.args)]
        inputs += xs
        feed += list(ex.args)
        node = Node.make(op, xs, **ex.attrs)
        parts = [node] if not isinstance(node.type, TupleType) else [
            Node.make("project", [node], index=i) for i in range(len(node.type.elements))]
        outputs += parts
        checks += [(op, ex, case)] * len(parts)
    return Graph(inputs, outputs), feed, checks


def _compared(graph: Graph, feed, checks, got) -> None:
    with np.errstate(all="ignore"):
        want = smelt.interpret(graph, *feed, precision="float64")
    for g, w, out, (op, ex, case) in zip(got, want, graph.outputs, checks, strict=True):
        g = _host(np.asarray(g))
        assert g.dtype == numpy_dtype(out.dtype), f"{op}: {g.dtype} for a {out.dtype} output"
        w = w.astype(np.float64) if np.issubdtype(w.dtype, np.floating) else w
        try:
            assert_matches(g, w, ex, case)
        except AssertionError as e:
            raise AssertionError(f"{op} on the c target: {e}") from None


@settings(max_examples=1)
@given(data=st.data())
def test_every_op_runs_on_the_c_target(data: st.DataObject, tmp_path_factory) -> None:
    graph, feed, checks = _all_ops_graph(data, sorted(CASES),
                                         lambda ex: _wide_ints(ex) and _c_types(ex))
    module = smelt.compile(graph, "c", board="host", out_dir=tmp_path_factory.mktemp("ops"))
    _compared(graph, feed, checks, module(*feed))


def test_a_float16_graph_is_refused_by_the_c_target(tmp_path) -> None:
    x = Node.input("x", (4,), "float16")
    with pytest.raises(TargetError, match="float16"):
        smelt.compile(Graph([x], [Node.make("exp", [x])]), "c", board="host", out_dir=tmp_path)


@needs_nvcc
@settings(max_examples=1)
@given(data=st.data())
def test_every_op_builds_for_cuda(data: st.DataObject) -> None:
    graph, _, _ = _all_ops_graph(data, sorted(CASES))
    module = smelt.compile(graph, "cuda")
    assert module.build.fatbin and module.cuda_kernels
