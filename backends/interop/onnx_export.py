"""A smelt Graph as an ONNX model: `model = smelt.export_onnx(graph, "model.onnx")`.

What maps to what:
- graph inputs -> ONNX graph inputs, same names, order, dtypes and static shapes;
- graph outputs -> ONNX outputs `output` (one) or `output_0`, `output_1`, ... (several);
- constants -> initializers (named after the graph's side table, else `const`), created when
  an op's ONNX form first reads them, so a weight a form folds away (linear24's compressed
  values, linear_w4's nibbles) is stored once, in the form it is read;
- every other node -> the ONNX nodes its entry in `ONNX_OPS` writes (onnx_ops.py: elementwise
  ops, math, reductions; onnx_shapes.py: data movement, indexing; onnx_layers.py: conv,
  linear, norms, pools, resampling, quantize / dequantize); its result carries the node's
  side-table name where it has one (intermediate values are `name/OpType`), and a
  value_info with its type, which `onnx.checker`'s full check compares with ONNX's own.

The default opset is 21 (ONNX 1.16, every current ONNX Runtime); opsets 18 and up are
accepted (18: Reduce* and Pad take their axes as inputs, BitwiseAnd and friends exist; 20:
Gelu). `ONNX_DTYPES` maps each smelt dtype to its TensorProto type (bfloat16, int4 and uint4
included; their initializers go through ml_dtypes, which onnx installs).

An op with no exact ONNX form raises `OnnxExportError` naming the op, its line in the printed
graph and what to do; nothing is dropped or approximated silently. onnx is optional: importing
this module does not import it; `export_onnx` raises `OnnxNotInstalledError` without it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from smelt.ir.errors import SmeltError
from smelt.ir.graph import Graph
from smelt.ir.node import Node
from smelt.ir.types import TensorType, numpy_dtype

DEFAULT_OPSET = 21
MIN_OPSET = 18
#: smelt dtype -> the name of its onnx.TensorProto data type
ONNX_DTYPES = {
    "float64": "DOUBLE", "float32": "FLOAT", "float16": "FLOAT16", "bfloat16": "BFLOAT16",
    "int64": "INT64", "int32": "INT32", "int16": "INT16", "int8": "INT8", "uint8": "UINT8",
    "int4": "INT4", "uint4": "UINT4", "bool": "BOOL",
}
_ML_DTYPES = {"bfloat16": "bfloat16", "int4": "int4", "uint4": "uint4"}  # numpy has none
_EXTERNAL_DATA_BYTES = 1 << 31  # protobuf's limit: past it, weights go to a side file
_NOT_NAME = re.compile(r"[^A-Za-z0-9_./]")


class OnnxExportError(SmeltError):
    """A graph cannot be written as ONNX; the message names the op, shows its line and says
    what to do."""


class OnnxNotInstalledError(OnnxExportError, ImportError):
    """The onnx package is missing."""


class NoOnnxForm(OnnxExportError):
    """Raised by an op's ONNX entry: this node has no exact ONNX form (`reason`), and what to
    do instead (`hint`). `export_onnx` reraises it as OnnxExportError with the node's line."""

    def __init__(self, reason: str, hint: str) -> None:
        self.reason, self.hint = reason, hint
        super().__init__(f"{reason}; {hint}")


def require_onnx() -> Any:
    """The onnx module, or OnnxNotInstalledError saying how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise OnnxNotInstalledError(
            f"export_onnx needs the onnx package ({e}); install it with `pip install onnx`, "
            "or install smelt's `bench` extra (`pip install 'smelt[bench]'`), which has it "
            "and onnxruntime") from None
    return onnx


def export_onnx(graph: Graph, path: str | Path | None = None, *,
                opset: int = DEFAULT_OPSET) -> Any:
    """`graph` as an onnx.ModelProto (opset `opset` of the default domain), checked by
    onnx.checker; written to `path` too when given."""
    onnx = require_onnx()
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise OnnxExportError(f"opset {opset} is outside what the exporter writes "
                              f"({MIN_OPSET} to {newest}, this onnx's newest); the default "
                              f"is {DEFAULT_OPSET}")
    model = OnnxGraph(graph, opset, onnx).model()
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise OnnxExportError(f"the exported model fails onnx.checker (a smelt bug: please "
                              f"report it with the graph): {e}") from e
    if path is not None:
        big = sum(t.ByteSize() for t in model.graph.initializer) >= _EXTERNAL_DATA_BYTES
        onnx.save_model(model, str(path), save_as_external_data=big,
                        location=f"{Path(path).name}.data" if big else None)
    return model


class OnnxGraph:
    """What the per-op entries write into: ONNX nodes, initializers and fresh value names.

    `g[node]` is the ONNX value holding a smelt node's result (a tuple of names for a
    multi-result op); a constant becomes an initializer on first use, and a node that is not
    in the graph (a fused op's unfused chain) is lowered on first use. Entries call
    `g.op(op_type, inputs, **attrs)` to add a node, `g.const(array)`, `g.ints([...])` and
    `g.scalar(v, dtype)` for initializers, and `g.cast(name, dtype)`."""

    def __init__(self, graph: Graph, opset: int, onnx: Any) -> None:
        from smelt.backends.interop.onnx_ops import ONNX_OPS  # needs this module: import late

        self.graph, self.opset, self.onnx, self.table = graph, opset, onnx, ONNX_OPS
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.types: dict[str, TensorType] = {}  # the value_info of each node's result
        self.taken: set[str] = set(graph.input_names())
        self.values: dict[Node, str | tuple[str, ...]] = {
            x: x.attrs["name"] for x in graph.inputs}
        self.lowered: list[Node] = []  # in the order their ONNX nodes were written
        self._small: dict[tuple, str] = {}
        self._next: dict[str, int] = {}
        self._hint = "v"

    # -- names and values ------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """An unused value name: `hint` (made a plain name), else hint_1, hint_2, ..."""
        base = _NOT_NAME.sub("_", hint) or "v"
        name, k = base, self._next.get(base, 1)
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self._next[base] = k  # numbering goes on from here: linear in the graph's size
        self.taken.add(name)
        return name

    def __getitem__(self, node: Node) -> Any:
        found = self.values.get(node)
        if found is None:
            if node.op == "constant":
                found = self.const(node.value, node.dtype, self.graph.names.get(node, "const"))
                self.values[node] = found
            else:
                self._lower_below(node)
                found = self.values[node]
        return found

    def _lower_below(self, root: Node) -> None:
        """Lower `root` and whatever it reads that is not lowered yet, operands first; the
        walk stops at lowered nodes, so a fused op's chain costs its own length."""
        stack = [(root, False)]
        while stack:
            n, ready = stack.pop()
            if n in self.values or n.op in ("input", "constant"):
                continue
            if ready:
                self.lower(n)
            else:
                stack.append((n, True))
                stack.extend((x, False) for x in reversed(n.inputs))

    def operands(self, node: Node) -> list[str]:
        return [self[x] for x in node.inputs]

    def dtype(self, dtype: str) -> int:
        """The TensorProto data type of a smelt dtype."""
        return getattr(self.onnx.TensorProto, ONNX_DTYPES[dtype])

    # -- building --------------------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence[str], outputs: int = 1, **attrs: Any) -> Any:
        """Add an ONNX node; its output name (a tuple of `outputs` names if more than one).
        Attributes given as None are left out."""
        outs = [self.fresh(f"{self._hint}/{op_type}") for _ in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if outputs == 1 else tuple(outs)

    def const(self, value: Any, dtype: str | None = None, hint: str = "const") -> str:
        """An initializer holding `value` as smelt dtype `dtype` (default: the array's own);
        small arrays are shared."""
        array = np.asarray(value)
        dtype = dtype or array.dtype.name
        array = np.asarray(array, numpy_dtype(dtype), order="C")  # keeps 0-d arrays 0-d
        key = (dtype, array.shape, array.tobytes()) if array.size <= 64 else None
        if key is not None and key in self._small:
            return self._small[key]
        name = self.fresh(hint)
        if dtype in _ML_DTYPES:
            import ml_dtypes

            array = array.astype(getattr(ml_dtypes, _ML_DTYPES[dtype]))
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        if key is not None:
            self._small[key] = name
        return name

    def ints(self, values: Sequence[int]) -> str:
        """A 1-D int64 initializer (shapes, axes, pads)."""
        return self.const(np.asarray(list(values), np.int64).reshape(-1), "int64", "ints")

    def scalar(self, value: Any, dtype: str) -> str:
        """A 0-d initializer of smelt dtype `dtype`."""
        return self.const(np.asarray(value).astype(numpy_dtype(dtype)), dtype, "scalar")

    def cast(self, name: str, dtype: str) -> str:
        return self.op("Cast", [name], to=self.dtype(dtype))

    # -- the walk --------------------------------------------------------------------------
    def lower(self, node: Node) -> None:
        """Write `node`'s ONNX form; its result is named after the node where it is new."""
        entry = self.table.get(node.op)
        hint = self.graph.names.get(node) or node.op
        final = self.fresh(hint)  # reserved for the result; the rest are hint/OpType
        outer, self._hint = self._hint, hint
        start, mark = len(self.nodes), len(self.lowered)
        try:
            if entry is None:
                raise NoOnnxForm(f"the exporter has no entry for op {node.op!r}",
                                 "add one to ONNX_OPS in backends/interop/onnx_ops.py")
            result = entry(self, node)
        except NoOnnxForm as e:
            raise OnnxExportError(self._message(node, e)) from None
        finally:
            self._hint = outer
        made = {o for n in self.nodes[start:] for o in n.output}
        if isinstance(result, str) and result in made:
            # only this node's ONNX nodes, and the nodes lowered inside it, can hold it
            self._rename({result: final}, self.nodes[start:], self.lowered[mark:])
            result = final
        else:  # an alias of an existing value (a projection, a no-op reshape) or a tuple
            self.taken.discard(final)
        self.values[node] = result
        self.lowered.append(node)
        if result == final:
            self.types[final] = node.type
        elif isinstance(result, tuple):
            self.types.update((name, t) for name, t in zip(result, node.type.elements,
                                                           strict=True) if name in made)

    def _message(self, node: Node, e: NoOnnxForm) -> str:
        from smelt.ir.text_format import numbered_lines

        lines, line_of = numbered_lines(self.graph)
        at = line_of.get(id(node))
        where = (f"\n  >> {at + 1:4d} | {lines[at]}" if at is not None
                 else "\n  (inside a fused op's unfused chain)")
        return f"cannot export op {node.op!r} to ONNX: {e.reason}{where}\n  to do: {e.hint}"

    def _typed(self, name: str, t: TensorType) -> Any:
        return self.onnx.helper.make_tensor_value_info(name, self.dtype(t.dtype), list(t.shape))

    def model(self) -> Any:
        """Lower every node, name the outputs, and assemble the ModelProto."""
        for n in self.graph.nodes():
            if n not in self.values and n.op not in ("input", "constant"):
                self.lower(n)
        helper, outputs = self.onnx.helper, []
        values = [self[out] for out in self.graph.outputs]
        produced = {o for n in self.nodes for o in n.output}
        renamed: dict[str, str] = {}
        copies = []
        plural = len(self.graph.outputs) > 1
        for i, (out, value) in enumerate(zip(self.graph.outputs, values, strict=True)):
            if not isinstance(value, str):
                raise OnnxExportError(f"output {i} is a tuple ({out.op}); read its parts with "
                                      "project nodes")
            want = self.fresh(f"output_{i}" if plural else "output")
            if value in produced and value not in renamed:
                renamed[value] = want
            else:  # a graph input, an initializer, or an output given twice
                copies.append(helper.make_node("Identity", [renamed.get(value, value)], [want]))
            outputs.append(self._typed(want, out.tensor_type))
        self._rename(renamed, self.nodes, [])
        self.nodes += copies
        for n in self.nodes:
            n.name = n.output[0]
        inputs = [self._typed(x.attrs["name"], x.tensor_type) for x in self.graph.inputs]
        out_names = {o.name for o in outputs}
        info = [self._typed(name, t) for name, t in self.types.items()
                if name not in out_names and isinstance(t, TensorType)]
        body = helper.make_graph(self.nodes, _NOT_NAME.sub("_", self.graph.name) or "main",
                                 inputs, outputs, initializer=self.initializers,
                                 value_info=info)
        opsets = [helper.make_opsetid("", self.opset)]
        from smelt import __version__

        return helper.make_model(body, opset_imports=opsets, producer_name="smelt",
                                 producer_version=__version__,
                                 ir_version=helper.find_min_ir_version_for(opsets))

    def _rename(self, names: dict[str, str], onnx_nodes: list[Any],
                holders: list[Node]) -> None:
        """Each value `old` of `names` is `names[old]` from now on: in `onnx_nodes` (all that
        read or write it), in the values of `holders`, and in the recorded types."""
        if not names:
            return
        for n in onnx_nodes:
            n.input[:] = [names.get(v, v) for v in n.input]
            n.output[:] = [names.get(v, v) for v in n.output]
        for node in holders:
            v = self.values[node]
            self.values[node] = names.get(v, v) if isinstance(v, str) else v
        for old, new in names.items():
            if old in self.types:
                self.types[new] = self.types.pop(old)
            self.taken.discard(old)  # read nowhere now: free for a later node's name
