"""Interop: smelt graphs out to PyTorch and JAX, and smelt into torch.compile.

- `to_torch(graph)` (torch_fx.py): a torch.fx.GraphModule, one call per node;
  `with_weights` writes a fine-tuned module's weights back into the graph.
- `to_jax(graph)` (jax_function.py): a jittable JAX function.
- `backend()` (dynamo.py): smelt as a TorchDynamo backend,
  `torch.compile(model, backend=smelt.backend())`.
- `export_onnx(graph, path)` (onnx_export.py): an ONNX model, one table entry per op
  (`ONNX_OPS`: onnx_ops.py, onnx_shapes.py, onnx_layers.py); onnx is imported only when a
  graph is exported.

Both converters compute every op with the one table of array_ops.py, whose entries are
written once over an array namespace: torch_namespace.py for torch, jax_namespace.py for JAX
(the Python array API standard, plus the few functions whose torch and JAX forms differ).

Every public name is importable from here. A name is loaded with its module on first use, so
`to_torch` needs no JAX installed, `to_jax` no torch, and `export_onnx` neither.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "BACKEND": "array_ops", "FORMULAS": "array_ops", "LIBRARY": "array_ops",
    "STANDARD": "array_ops", "STRUCTURAL": "array_ops", "missing_ops": "array_ops",
    "TORCH_DTYPES": "torch_namespace", "JAX_DTYPES": "jax_namespace",
    "TORCH_OPS": "torch_fx", "TorchConversionError": "torch_fx", "constant_names": "torch_fx",
    "tensor_of": "torch_fx", "to_torch": "torch_fx", "trainable_weight": "torch_fx",
    "with_weights": "torch_fx",
    "JAX_OPS": "jax_function", "JaxConversionError": "jax_function",
    "NEEDS_X64": "jax_function", "to_jax": "jax_function",
    "CompiledGraph": "dynamo", "FallbackWarning": "dynamo", "GraphConversionError": "dynamo",
    "SmeltBackend": "dynamo", "backend": "dynamo", "convert_aten_graph": "dynamo",
    "DEFAULT_OPSET": "onnx_export", "NoOnnxForm": "onnx_export", "ONNX_DTYPES": "onnx_export",
    "OnnxExportError": "onnx_export", "OnnxNotInstalledError": "onnx_export",
    "export_onnx": "onnx_export", "NO_FORM": "onnx_ops", "ONNX_OPS": "onnx_ops",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


__all__ = sorted(_HOME)
