"""The CUDA target: every zoo model compiles for sm_90 and its kernels build with nvcc (here,
without a GPU); exported libraries hold the fatbin, not the source; bad targets, a missing
nvcc, an unscheduled kernel and a missing device raise typed errors; benchmarks/gpu_latency.py
checks its artifacts in dry mode. Tests that run kernels are marked `gpu` and skip where TVM
sees no CUDA device.

Tolerance on a GPU: float32 with reductions split across threads and no fast math; 1e-4 of
the output's scale, the CPU backend's budget.
"""

from __future__ import annotations

import json
import shutil
import struct
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import smelt
from smelt.backends import build_cache
from smelt.backends.cuda import toolchain
from smelt.backends.cuda.module import CudaModule, swap_cuda_record
from smelt.backends.cuda.pipeline import UnscheduledKernelError, schedule_cuda
from smelt.backends.cuda.toolchain import NoCUDADeviceError, has_cuda_device
from smelt.backends.lowering import to_relax
from smelt.backends.recent import Recent
from smelt.backends.relax_pipeline import fuse_kernels
from smelt.backends.targets import TargetError
from smelt.ir.errors import FileFormatError
from smelt.rewrite import Pipeline
from smelt.zoo import ZOO

FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
RULES = {"Matmul", "GEMV", "Reduction", "GeneralReduction", "Fallback"}
needs_nvcc = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("nvcc", *toolchain.NVCC_FALLBACKS)),
    reason="no nvcc on this machine")


@cache
def _graph(name: str) -> smelt.Graph:
    entry = ZOO[name]
    return Pipeline.parse("canonicalize,fuse")(smelt.trace(entry.build(), entry.inputs()))


def _inputs(name: str) -> list[np.ndarray]:
    return [a.numpy() for a in ZOO[name].inputs()]


@needs_nvcc
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_compiles_for_sm90_with_nvcc(name: str, tmp_path: Path) -> None:
    module = smelt.compile(_graph(name), "cuda", arch="sm_90")
    assert isinstance(module, CudaModule)
    build = module.build
    assert build.arch == "sm_90" and build.fatbin[:4] == FATBIN_MAGIC  # nvcc ran
    assert b"\x7fELF" in build.fatbin  # SASS for sm_90 (its PTX rides along, compressed)
    assert build.nvcc_seconds > 0 and module.cuda_kernels
    assert set(module.kernels.values()) <= RULES  # every kernel scheduled by a named rule
    path = module.export(tmp_path / f"{name}.so")
    data = path.read_bytes()
    assert FATBIN_MAGIC in data and struct.pack("<Q", 6) + b"fatbin" in data
    assert b"__global__" not in data  # the source was swapped for the binary
    assert all(k.encode() in data for k in module.cuda_kernels)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["target"] == "cuda" and meta["arch"] == "sm_90"
    assert meta["cuda_kernels"] == module.cuda_kernels
    if not has_cuda_device():
        with pytest.raises(NoCUDADeviceError, match="gpu_latency.py"):
            module(*_inputs(name))


@needs_nvcc
def test_compile_is_cached_and_keyed_by_arch() -> None:
    g = _graph("tiny_acts")
    a = smelt.compile(g, "cuda", arch="sm_90")
    assert smelt.compile(g, "cuda", arch="sm_90") is a and a.cache == "memory"
    b = smelt.compile(g, "cuda", arch="sm_80")
    assert b is not a and b.build.arch == "sm_80"


@needs_nvcc
def test_load_compiled_cuda_library_without_device(tmp_path: Path) -> None:
    path = smelt.compile(_graph("tiny_acts"), "cuda").export(tmp_path / "m.so")
    loaded = smelt.load_compiled(path)
    assert isinstance(loaded, CudaModule) and loaded.cuda_kernels
    copy = loaded.export(tmp_path / "copy.so")
    assert copy.read_bytes() == path.read_bytes()
    if not has_cuda_device():
        with pytest.raises(NoCUDADeviceError, match="no CUDA device"):
            loaded(*_inputs("tiny_acts"))


@needs_nvcc
def test_disk_cache_keeps_cuda_libraries(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    g = _graph("tiny_acts")
    monkeypatch.setattr(build_cache, "MEMORY", Recent())  # an earlier test's build is not stored
    built = smelt.compile(g, "cuda", cache_dir=tmp_path)
    assert built.cache == "built"
    monkeypatch.setattr(build_cache, "MEMORY", Recent())  # as a new process would start
    again = smelt.compile(g, "cuda", cache_dir=tmp_path)
    assert again.cache == "disk" and again.cuda_kernels == built.cuda_kernels


@needs_nvcc
def test_bad_targets_raise_typed_errors() -> None:
    g = _graph("tiny_acts")
    with pytest.raises(TargetError, match="not a CUDA architecture"):
        smelt.compile(g, "cuda", arch="hopper")
    with pytest.raises(TargetError, match="cannot build for sm_10"):
        smelt.compile(g, "cuda", arch="sm_10")
    with pytest.raises(TargetError, match="schedule=False"):
        smelt.compile(g, "cuda", schedule=False)


def test_missing_nvcc_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    g = _graph("tiny_acts")
    monkeypatch.setattr(toolchain.shutil, "which", lambda _name: None)
    with pytest.raises(toolchain.NvccNotFoundError, match="Install the CUDA toolkit"):
        smelt.compile(g, "cuda")


def test_unscheduled_kernel_is_named() -> None:
    import tvm

    tgt = tvm.target.Target({"kind": "cuda", "arch": "sm_90"})
    with tgt:
        mod = fuse_kernels()(to_relax(_graph("tiny_acts"), "cuda"))
        with pytest.raises(UnscheduledKernelError, match="no GPU schedule rule accepts kernel"):
            schedule_cuda(mod, tgt, rules=())
        _, used, _ = schedule_cuda(mod, tgt)
    assert set(used.values()) <= RULES


class _Crashes:
    """A schedule rule with a bug: it raises on every kernel."""

    def apply(self, func, target, tunable):
        raise RuntimeError("rule bug\nlast line of the error")


def test_a_rule_that_raises_is_passed_over_and_reported() -> None:
    import tvm

    from smelt.backends.cuda.pipeline import GPU_RULES

    tgt = tvm.target.Target({"kind": "cuda", "arch": "sm_90"})
    with tgt:
        def kernels():  # schedule_cuda updates the module it is given
            return fuse_kernels()(to_relax(_graph("tiny_acts"), "cuda"))

        _, used, failed = schedule_cuda(kernels(), tgt, rules=(_Crashes(), *GPU_RULES))
        assert set(used.values()) <= RULES and used
        assert failed and all(f == {"_Crashes": "last line of the error"}
                              for f in failed.values())
        with pytest.raises(UnscheduledKernelError, match="_Crashes raised: last line"):
            schedule_cuda(kernels(), tgt, rules=(_Crashes(),))


class _Unbound:
    """A schedule rule with a bug: it accepts every kernel and binds no thread."""

    def apply(self, func, target, tunable):
        from tvm import s_tir

        return s_tir.Schedule(func)


def test_a_schedule_that_does_not_build_is_passed_over() -> None:
    """With check_build, a rule's schedule TVM cannot build counts as that rule failing;
    the last rule (LoopFallback) takes every kernel, the reductions with index-dependent
    windows dlight cannot normalize among them (adaptive pooling)."""
    import tvm

    from smelt.backends.cuda.loop_fallback import LoopFallback

    tgt = tvm.target.Target({"kind": "cuda", "arch": "sm_90"})
    x = smelt.ir.Node.input("x", (2, 3, 7, 5), "float32")
    pool = smelt.Graph([x], [smelt.ir.Node.make("adaptive_avg_pool2d", [x], output_size=[3, 2])])
    with tgt:
        mod = fuse_kernels()(to_relax(pool, "cuda"))
        _, used, failed = schedule_cuda(mod, tgt, rules=(_Unbound(), LoopFallback()),
                                        check_build=True)
    assert set(used.values()) == {"LoopFallback"}
    assert all(set(f) == {"_Unbound"} for f in failed.values()) and failed
    assert smelt.compile(pool, "cuda").kernels == {"adaptive_avg_pool2d": "LoopFallback"}


def _record(kind: bytes, body: bytes) -> bytes:
    return struct.pack("<Q", len(kind)) + kind + struct.pack("<Q", len(body)) + body


def _s(b: bytes) -> bytes:
    return struct.pack("<Q", len(b)) + b


def test_swap_cuda_record_rewrites_only_the_cuda_module() -> None:
    fmap, src, fat = b"FUNCTION-TABLE", b"__global__ void k() {}", FATBIN_MAGIC + b"sass"
    payload = b"TREE" + _s(b"_lib") + _record(b"cuda", _s(b"cuda") + fmap + _s(src))
    blob = struct.pack("<Q", len(payload)) + payload
    out = swap_cuda_record(blob, src, fat)
    want = b"TREE" + _s(b"_lib") + _record(b"cuda", _s(b"fatbin") + fmap + _s(fat))
    assert out == struct.pack("<Q", len(want)) + want
    with pytest.raises(FileFormatError, match="does not end with the kernel source"):
        swap_cuda_record(blob, b"other source", fat)
    with pytest.raises(FileFormatError, match="not laid out as expected"):
        swap_cuda_record(struct.pack("<Q", 3) + b"abc", src, fat)


@needs_nvcc
def test_gpu_latency_dry_run_checks_artifacts(tmp_path: Path) -> None:
    from benchmarks import gpu_latency as bench

    arts, out = tmp_path / "arts", tmp_path / "res" / "gpu.json"
    assert bench.main(["--prepare", str(arts), "--models", "tiny_acts"]) == 0
    assert bench.main(["--artifacts", str(arts), "--dry-run", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["device"] is None
    assert [(r["model"], r["status"]) for r in data["results"]] == [("tiny_acts",
                                                                     "no CUDA device")]
    assert "| tiny_acts | sm_90 |" in out.with_suffix(".md").read_text()
    (arts / "tiny_acts.npz").unlink()
    with pytest.raises(FileNotFoundError, match="--prepare"):
        bench.main(["--artifacts", str(arts), "--dry-run", "--out", str(out)])


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["tiny_acts", "residual_cnn", "llama_block"])
def test_gpu_runs_match_interpreter(name: str, tmp_path: Path) -> None:
    if not has_cuda_device():
        pytest.skip("no CUDA device (tvm.cuda(0).exist is false)")
    args = _inputs(name)
    module = smelt.compile(_graph(name), "cuda")
    (want,) = smelt.interpret(_graph(name), *args)
    for m in (module, smelt.load_compiled(module.export(tmp_path / "m.so"))):
        (got,) = m(*args)
        assert got.shape == want.shape and got.dtype == want.dtype
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))
