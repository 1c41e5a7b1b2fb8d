"""A compiled graph: callable on numpy arrays or torch tensors, exportable as a shared
library that runs with TVM's runtime alone."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax

from smelt.ir.errors import FileFormatError, InterpretError
from smelt.ir.graph import Graph
from smelt.ir.inputs import input_array

from .targets import get_target
from .threads import size_thread_pool


def graph_signature(graph: Graph) -> dict[str, Any]:
    """The inputs (name, shape, dtype) and outputs (shape, dtype) a compiled module takes and
    gives, as it is written beside an exported library."""
    return {
        "inputs": [{"name": x.attrs["name"], "shape": list(x.shape), "dtype": x.dtype}
                   for x in graph.inputs],
        "outputs": [{"shape": list(o.shape), "dtype": o.dtype} for o in graph.outputs],
    }


class CompiledModule:
    """`module(*inputs) -> tuple[np.ndarray, ...]`, like `smelt.interpret`."""

    def __init__(self, executable: Any, signature: dict[str, Any], device: Any = None,
                 kernels: dict[str, str | None] | None = None,
                 tuning: dict[str, dict] | None = None) -> None:
        self.executable = executable
        self.signature = signature
        #: kernel name -> the schedule rule that scheduled it (None: unscheduled)
        self.kernels = dict(kernels or signature.get("kernels", {}))
        #: kernel name -> MetaSchedule's report (`compile(..., tune=N)`; empty if not tuned)
        self.tuning = dict(tuning or {})
        #: where this module came from: "built", "memory" or "disk" (the compile caches)
        self.cache = "built"
        self.device = device or tvm.cpu()
        #: worker threads of TVM's pool that run this module's parallel loops
        self.threads = size_thread_pool(int(signature.get("threads") or os.cpu_count() or 1))
        self._vm = relax.VirtualMachine(executable, self.device)
        self._staged: dict[int, Any] = {}  # input index -> the tensor inputs are copied into

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.signature["inputs"]]

    def __call__(self, *inputs: Any) -> tuple[np.ndarray, ...]:
        """Run on `inputs`, checked and converted by the interpreter's rule (ir/inputs.py):
        exact shapes, a dtype of the input's kind (float64 for a float32 input is rounded;
        ints for a float input, or ints that do not fit, raise InterpretError)."""
        args = [self._device_input(i, a) for i, a in enumerate(self.input_arrays(inputs))]
        result = self._vm["main"](*args)
        return tuple(r.numpy() for r in result)

    def input_arrays(self, inputs: tuple[Any, ...]) -> list[np.ndarray]:
        """The inputs as the C-ordered arrays of the signature's dtypes, or InterpretError."""
        specs = self.signature["inputs"]
        if len(inputs) != len(specs):
            raise InterpretError(f"the module takes {len(specs)} inputs "
                                 f"({', '.join(self.input_names)}), got {len(inputs)}")
        return [np.asarray(input_array(x, spec["name"], spec["shape"], spec["dtype"],
                                       "the module"), dtype=spec["dtype"], order="C")
                for spec, x in zip(specs, inputs, strict=True)]

    def prepared_call(self, *inputs: Any) -> Callable[[], Any]:
        """A call of the module's VM on `inputs` converted to device tensors once, returning
        device tensors: what to time for kernels of microseconds (no conversion per call)."""
        args = [tvm.runtime.tensor(a, self.device) for a in self.input_arrays(inputs)]
        main = self._vm["main"]
        return lambda: main(*args)

    def _device_input(self, index: int, a: np.ndarray) -> Any:
        """`a` as the kernels' input: on the CPU, the array itself when TVM can take it (64-byte
        aligned, writable); else copied into a tensor kept for this input. Copying every call
        into a new tensor (two copies and an allocation) cost MobileNetV2 int8 at 160x160 5%
        of its run on one thread, 11% on two (measured): the copies read and write 300 KB
        that the previous run evicted."""
        if self.device.dlpack_device_type() == 1 and a.ctypes.data % 64 == 0 and a.size:
            try:
                return tvm.runtime.from_dlpack(a)
            except (BufferError, RuntimeError, TypeError):  # read-only, or not aligned enough
                pass
        staged = self._staged.get(index)
        if staged is None:
            staged = self._staged[index] = tvm.runtime.empty(a.shape, a.dtype, self.device)
        return staged.copyfrom(a)

    def export(self, path: str | Path) -> Path:
        """Write a shared library (and its signature as JSON beside it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.executable.export_library(str(path))
        meta = {**self.signature, "kernels": self.kernels}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        return path


def load_compiled(path: str | Path) -> CompiledModule:
    """Load a library written by `CompiledModule.export`, by the target named in its JSON
    (libraries written before targets were named there are CPU ones)."""
    path = Path(path)
    meta = path.with_suffix(".json")
    if not path.is_file() or not meta.is_file():
        raise FileFormatError(f"need {path} and {meta.name} beside it (written by export)")
    try:
        signature = json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise FileFormatError(f"{meta} is not valid JSON: {e}") from None
    target = get_target(signature.get("target", "cpu"))
    if target.load is None:
        raise FileFormatError(f"{path}: target {target.name!r} exports no libraries to load")
    return target.load(path, signature)


def load_library(path: Path, signature: dict[str, Any]) -> CompiledModule:
    """A library TVM's runtime loads here and runs on the CPU (the `cpu` target's `load`)."""
    return CompiledModule(tvm.runtime.load_module(str(path)), signature)
