"""A module compiled for CUDA: exported as a library holding the nvcc fatbin, run on a GPU host.

This TVM build (the PyPI wheel) has no CUDA runtime in its compiler, so the CUDA module it
returns is a placeholder that keeps the generated CUDA C, and a library exported from it
would make the GPU host compile that source at load time. `export` therefore packs the
library itself: it serializes the module tree as TVM does (`ModulePackImportsToC`), finds the
CUDA module's record, and rewrites it the way TVM's CUDA module saves itself, with format
"fatbin" and the fatbin nvcc built (pipeline.py) in place of the source. The record is
`str fmt, map<str, FunctionInfo> fmap, str data` (strings as u64 length + bytes), preceded
by its own u64 length, in a blob preceded by the blob's u64 length; the function table is
kept byte for byte. On the GPU host `ffi.Module.load_from_bytes.cuda` reads it and calls
cuModuleLoadData on the fatbin: libtvm_runtime, libtvm_runtime_cuda and tvm_ffi suffice.

Calling a CUDA module where TVM sees no CUDA device raises `NoCUDADeviceError`, which says
how to run it on a GPU host. On a GPU host the first call exports to a temporary library and
loads it (the placeholder cannot launch kernels), then runs on `tvm.cuda(0)`.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax
from tvm.runtime import _ffi_api

from smelt.ir.errors import FileFormatError
from smelt.ir.graph import Graph

from ..compiled import CompiledModule, graph_signature
from ..lowering import to_relax
from .pipeline import CudaBuild, build_cuda
from .toolchain import find_nvcc, has_cuda_device, no_device_error

_ARRAY = re.compile(r"(const unsigned char \w+\[)(\d+)(\] = \{)(.*?)(\};)", re.DOTALL)


class CudaModule(CompiledModule):
    """`module(*inputs)` on a CUDA device; `export(path)` writes .so (with fatbin) + .json."""

    def __init__(self, build: CudaBuild | None, signature: dict[str, Any],
                 library: Path | None = None) -> None:  # no super(): no VM until a GPU is seen
        self.build = build
        self.library = library  # an exported .so this module was loaded from
        self.executable = build.executable if build else None
        self.signature = signature
        self.kernels = dict(build.kernels if build else signature.get("kernels", {}))
        #: kernel -> {rule: error} for the GPU rules that raised on it (another took it)
        self.rule_failures = dict(build.rule_failures if build else
                                  signature.get("rule_failures", {}))
        self.tuning = {}
        self.cache = "built"
        self.device = tvm.cuda(0)
        self.threads = 1
        self._runtime = None
        self._staged: dict[int, Any] = {}  # CompiledModule._device_input's

    @property
    def cuda_kernels(self) -> list[str]:
        """The __global__ functions in the fatbin."""
        return list(self.build.cuda_kernels if self.build else
                    self.signature.get("cuda_kernels", []))

    def __call__(self, *inputs: Any) -> tuple[np.ndarray, ...]:
        if not has_cuda_device():
            raise no_device_error()
        return super().__call__(*inputs)

    @property
    def _vm(self) -> Any:  # CompiledModule.__call__ runs through this
        if self._runtime is None:
            if self.library is None:
                tmp = Path(tempfile.mkdtemp(prefix="smelt-cuda-"))
                self.library = self.export(tmp / "module.so")
            lib = tvm.runtime.load_module(str(self.library))
            self._runtime = relax.VirtualMachine(lib, self.device)
        return self._runtime

    def export(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.build is None:  # loaded from a library: it already holds the fatbin
            shutil.copyfile(self.library, path)
        else:
            self.executable.export_library(str(path), fpack_imports=_pack_with_fatbin(
                self.build.source, self.build.fatbin))
        meta = {**self.signature, "kernels": self.kernels, "cuda_kernels": self.cuda_kernels,
                "rule_failures": self.rule_failures}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        return path


def load_cuda(path: Path, signature: dict[str, Any]) -> CudaModule:
    """A library exported by `CudaModule.export`; loaded by TVM at the first call."""
    return CudaModule(None, signature, library=path)


def _pack_with_fatbin(source: str, fatbin: bytes):
    def pack(mod: Any, is_system_lib: bool, prefix: str, workspace_dir: str) -> str:
        text = str(_ffi_api.ModulePackImportsToC(mod, is_system_lib, prefix))
        m = _ARRAY.search(text)
        if m is None:
            raise FileFormatError("TVM's packed-imports C has no byte array; this TVM version "
                                  "packs libraries differently (update backends/cuda/module.py)")
        blob = bytes.fromhex(m.group(4).replace("0x", "").replace(",", ""))
        if source:
            blob = swap_cuda_record(blob, source.encode(), fatbin)
        body = ",".join(f"0x{b:02x}" for b in blob)
        out = Path(workspace_dir) / f"{prefix}devc.c"
        out.write_text(f"{text[:m.start()]}{m.group(1)}{len(blob)}{m.group(3)}\n{body}\n"
                       f"{m.group(5)}{text[m.end():]}")
        return str(out)

    return pack


def _str(b: bytes) -> bytes:
    return struct.pack("<Q", len(b)) + b


def swap_cuda_record(blob: bytes, source: bytes, fatbin: bytes) -> bytes:
    """The library blob with its CUDA module's source record replaced by the fatbin."""
    (total,) = struct.unpack_from("<Q", blob)
    head = _str(b"cuda")  # the kind, then the record length, then the record's fmt "cuda"
    at = blob.find(head)
    while at >= 0 and blob[at + len(head) + 8:at + 2 * len(head) + 8] != head:
        at = blob.find(head, at + 1)
    rec = at + len(head) + 8
    if total != len(blob) - 8 or at < 0:
        raise FileFormatError("TVM's library blob is not laid out as expected (no CUDA source "
                              "record); cannot put the fatbin in. Update backends/cuda/module.py.")
    (size,) = struct.unpack_from("<Q", blob, at + len(head))
    record = blob[rec:rec + size]
    if not record.endswith(_str(source)):
        raise FileFormatError("the CUDA record in TVM's library blob does not end with the "
                              "kernel source; cannot put the fatbin in. Update "
                              "backends/cuda/module.py.")
    fmap = record[len(head):len(record) - len(source) - 8]
    new = _str(b"fatbin") + fmap + _str(fatbin)
    payload = blob[8:at + len(head)] + struct.pack("<Q", len(new)) + new + blob[rec + size:]
    return struct.pack("<Q", len(payload)) + payload


def build_module(graph: Graph, target: tvm.target.Target) -> CudaModule:
    """Relax for CUDA, GPU schedules, nvcc fatbin."""
    build = build_cuda(to_relax(graph, "cuda"), target, find_nvcc())
    meta = {**graph_signature(graph), "target": "cuda", "arch": build.arch,
            "nvcc_seconds": round(build.nvcc_seconds, 3)}
    return CudaModule(build, meta)
