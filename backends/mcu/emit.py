"""Writes the C project: one directory that builds with `make` and needs nothing else.

    include/           the five TVM / DLPack headers the kernels include (from the wheel)
    kernels.c          TVM's C for every kernel (packed-API functions `__tvm_ffi_<name>`)
    weights.c, .h      every constant as a `const` array (flash), 16-byte aligned
    model.c, model.h   the entry function `smelt_model_run`, the call sequence, the arena
    runtime.c          the kernels' workspace pool (LIFO bump allocator)
    main.c             a test harness: inputs from input<i>.bin, outputs to output<i>.bin
    startup.c, mps2.ld Cortex-M boards only: vector table, reset, linker script
    Makefile           `make` builds app (host) or app.elf (boards); host also `make asan`

A kernel is called with one DLTensor per argument, passed as TVMFFIAny values of type
index 7 (a DLTensor pointer) whose 64-bit payload is zeroed before the pointer is stored.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tvm
import tvm_ffi

from .aot import CallSequence, Step, View
from .boards import SANITIZE, Board
from .build import CBuildError
from .c_sources import (
    CHECKS_C,
    HARNESS_IO_HOST,
    HARNESS_IO_SEMIHOST,
    LINKER_SCRIPT,
    RUNTIME_C,
    STARTUP_C,
)
from .kernels_c import Kernels
from .memory_plan import MemoryPlan

HEADERS = {  # project path -> (package, path inside the wheel)
    "tvm/runtime/c_backend_api.h": (tvm, "include/tvm/runtime/c_backend_api.h"),
    "tvm/runtime/base.h": (tvm, "include/tvm/runtime/base.h"),
    "tvm/ffi/c_api.h": (tvm_ffi, "include/tvm/ffi/c_api.h"),
    "tvm/ffi/extra/c_env_api.h": (tvm_ffi, "include/tvm/ffi/extra/c_env_api.h"),
    "dlpack/dlpack.h": (tvm_ffi, "include/dlpack/dlpack.h"),
}
C_TYPES = {"float32": "float", "float64": "double", "int8": "int8_t", "uint8": "uint8_t",
           "int16": "int16_t", "uint16": "uint16_t", "int32": "int32_t", "uint32": "uint32_t",
           "int64": "int64_t", "uint64": "uint64_t", "bool": "uint8_t"}
DL_CODES = {"int": "kDLInt", "uint": "kDLUInt", "float": "kDLFloat", "bool": "kDLBool"}
CFLAGS = "-std=c11 -Wall -Werror -ffp-contract=off -O2"


def c_type(dtype: str) -> str:
    return C_TYPES[dtype]


def write_project(out: Path, board: Board, kernels: Kernels, seq: CallSequence,
                  plan: MemoryPlan, checks: bool) -> None:
    """Write the project into `out` (created if missing), all or nothing as far as the file
    system allows: the files are written into a staging directory inside `out`, then renamed
    into place. A failure to write (a full disk, a read-only directory, `out` a file) removes
    the staging directory and every directory this call created, leaves the files that were
    in `out` before as they were, and raises CBuildError."""
    files = _project_files(board, kernels, seq, plan, checks)
    made = _first_missing(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".smelt-staging-", dir=out))
        try:
            for name, data in files.items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).write_bytes(data)
            for name in files:
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / name, out / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as e:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        left = ("nothing was left behind" if made is not None or not out.is_dir() else
                f"the files {out} held before are unchanged")
        raise CBuildError(f"cannot write the C project to {out}: {e.strerror or e} "
                          f"({e.filename or 'while writing'}); {left}. Free some space, make "
                          "the directory writable, or pass another out_dir") from None


def _first_missing(path: Path) -> Path | None:
    """The outermost of `path` and its parents that does not exist (what mkdir creates)."""
    missing = None
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            break
        missing = p
    return missing


def _project_files(board: Board, kernels: Kernels, seq: CallSequence, plan: MemoryPlan,
                   checks: bool) -> dict[str, bytes]:
    """Every file of the project: its path in the project -> its bytes."""
    files: dict[str, bytes] = {}
    for dst, (pkg, src) in HEADERS.items():
        header = Path(pkg.__file__).parent / src
        try:
            files[f"include/{dst}"] = header.read_bytes()
        except OSError as e:
            raise CBuildError(f"cannot read {header} ({e.strerror or e}): the installed "
                              f"{pkg.__name__} lacks a header the C project needs; reinstall "
                              "it (`make setup`)") from None
    texts = {
        "kernels.c": _kernels_c(kernels),
        "weights.h": _weights_h(seq),
        "weights.c": _weights_c(seq),
        "model.h": _model_h(seq, plan, kernels),
        "model.c": _model_c(seq, plan, kernels),
        "runtime.c": RUNTIME_C + (CHECKS_C if checks else ""),
        "main.c": _main_c(seq, board),
        "Makefile": _makefile(board),
    }
    if not board.is_host:
        texts["startup.c"] = STARTUP_C
        texts["mps2.ld"] = LINKER_SCRIPT.format(flash=board.flash, sram=board.sram)
    files.update((name, text.encode()) for name, text in texts.items())
    return files


def _kernels_c(kernels: Kernels) -> str:
    # TVM's C generator loads every argument's shape and strides pointers whether a kernel
    # reads them or not: the unused locals are its, and only this file waives the warning.
    return ("/* Generated by TVM's C code generator (smelt target c). */\n"
            "#pragma GCC diagnostic ignored \"-Wunused-variable\"\n" + kernels.source)


def _weights_h(seq: CallSequence) -> str:
    lines = ["#ifndef SMELT_WEIGHTS_H", "#define SMELT_WEIGHTS_H", "#include <stdint.h>"]
    for k, w in enumerate(seq.weights):
        lines.append(f"extern const {_word(w)} w{k}[{max(w.size, 1)}];")
    return "\n".join([*lines, "#endif", ""])


def _word(w: np.ndarray) -> str:
    return f"uint{max(w.dtype.itemsize, 1) * 8}_t"


def _weights_c(seq: CallSequence) -> str:
    """Each weight as its bit patterns in unsigned words of its element width (exact for
    floats, NaN and -0.0 included; both hosts and Cortex-M are little-endian)."""
    parts = ['#include "weights.h"', ""]
    for k, w in enumerate(seq.weights):
        words = np.ascontiguousarray(w).reshape(-1).view(f"uint{w.dtype.itemsize * 8}")
        body = ",".join(hex(int(v)) for v in words) if words.size else "0"
        parts.append(f"/* {w.dtype}{list(w.shape)} */\n_Alignas(16) const {_word(w)} "
                     f"w{k}[{max(w.size, 1)}] = {{{body}}};")
    return "\n".join(parts) + "\n"


def _signature(seq: CallSequence) -> str:
    args = [f"const {c_type(v.dtype)}* in{i}" for i, v in enumerate(seq.inputs)]
    args += [f"{c_type(v.dtype)}* out{i}" for i, v in enumerate(seq.outputs)]
    return f"int32_t smelt_model_run({', '.join(args) or 'void'})"


def _model_h(seq: CallSequence, plan: MemoryPlan, kernels: Kernels) -> str:
    lines = ["#ifndef SMELT_MODEL_H", "#define SMELT_MODEL_H", "#include <stdint.h>", ""]
    for kind, views in (("INPUT", seq.inputs), ("OUTPUT", seq.outputs)):
        lines.append(f"#define SMELT_NUM_{kind}S {len(views)}")
        for i, v in enumerate(views):
            n = int(np.prod(v.shape, dtype=np.int64))
            lines.append(f"#define SMELT_{kind}{i}_ELEMENTS {n} /* {v.dtype}{list(v.shape)} */")
    lines += [f"#define SMELT_ARENA_BYTES {plan.arena}",
              f"#define SMELT_WORKSPACE_BYTES {kernels.workspace_bytes}", "",
              "/* Runs the model on row-major C arrays. Returns 0, or the failing kernel's",
              " * nonzero status. Not reentrant: one static arena. */",
              f"{_signature(seq)};", "", "#endif", ""]
    return "\n".join(lines)


def _dtype(dtype: str) -> str:
    if dtype == "bool":
        return "{kDLBool, 8, 1}"
    code = dtype.rstrip("0123456789")
    return f"{{{DL_CODES[code]}, {dtype[len(code):]}, 1}}"


def _pointer(seq: CallSequence, plan: MemoryPlan, v: View) -> str:
    root = seq.roots[v.root]
    base = {"input": f"(const uint8_t*)in{root.index}", "output": f"(uint8_t*)out{root.index}",
            "weight": f"(const uint8_t*)w{root.index}"}.get(root.kind)
    if base is None:
        base, off = "smelt_arena", plan.offsets[v.root] + v.offset
    else:
        off = v.offset
    return f"(void*)({base} + {off})" if off else f"(void*)({base})"


def _model_c(seq: CallSequence, plan: MemoryPlan, kernels: Kernels) -> str:
    shapes: dict[tuple[int, ...], str] = {}
    calls = []
    for i, step in enumerate(seq.steps):
        calls.append(_step(seq, plan, step, i, shapes))
    used = sorted({s.kernel for s in seq.steps if s.kind == "call"})
    lines = ["/* The call sequence (ahead of time) and the activation arena. */",
             "#include <stddef.h>", "#include <string.h>", '#include "model.h"',
             '#include "weights.h"', '#include "tvm/ffi/c_api.h"', ""]
    lines += [f"int32_t __tvm_ffi_{k}(void* self, void* args, int32_t num_args, void* result);"
              for k in used]
    if any(r.kind == "arena" for r in seq.roots.values()):
        lines += ["", f"static _Alignas(16) uint8_t smelt_arena[{max(plan.arena, 16)}];"]
    lines.append("")
    lines += [f"static const int64_t {name}[{max(len(s), 1)}] = "
              f"{{{', '.join(map(str, s)) or '0'}}};" for s, name in shapes.items()]
    lines += ["", "typedef int32_t (*smelt_kernel)(void*, void*, int32_t, void*);", "",
              "static int32_t smelt_call(smelt_kernel kernel, DLTensor* tensors, int32_t n) {",
              f"  TVMFFIAny args[{max(_max_args(seq), 1)}];",
              "  for (int32_t i = 0; i < n; ++i) {",
              "    args[i].type_index = kTVMFFIDLTensorPtr;",
              "    args[i].zero_padding = 0;",
              "    args[i].v_int64 = 0; /* zero all 8 bytes: a pointer may be 4 */",
              "    args[i].v_ptr = &tensors[i];", "  }",
              "  TVMFFIAny result;", "  result.type_index = kTVMFFINone;",
              "  result.zero_padding = 0;", "  result.v_int64 = 0;",
              "  return kernel(NULL, args, n, &result);", "}", "",
              f"{_signature(seq)} {{", "  int32_t status;", *calls, "  return 0;", "}", ""]
    return "\n".join(lines)


def _max_args(seq: CallSequence) -> int:
    return max((len(s.args) for s in seq.steps if s.kind == "call"), default=1)


def _step(seq: CallSequence, plan: MemoryPlan, step: Step, i: int,
          shapes: dict[tuple[int, ...], str]) -> str:
    if step.kind == "copy":
        src, dst = step.args
        n = seq.roots[dst.root].nbytes
        return (f"  /* {i}: copy {src.root} -> {dst.root} */\n"
                f"  memcpy({_pointer(seq, plan, dst)}, {_pointer(seq, plan, src)}, {n});")
    tensors = []
    for v in step.args:
        shape = shapes.setdefault(v.shape, f"smelt_shape{len(shapes)}")
        tensors.append(f"    {{{_pointer(seq, plan, v)}, {{kDLCPU, 0}}, {len(v.shape)}, "
                       f"{_dtype(v.dtype)}, (int64_t*){shape}, NULL, 0}},")
    names = ", ".join(v.root for v in step.args)
    return "\n".join([f"  /* {i}: {step.kernel}({names}) */", "  {",
                      f"    DLTensor t[{len(tensors)}] = {{", *tensors, "    };",
                      f"    status = smelt_call(__tvm_ffi_{step.kernel}, t, {len(tensors)});",
                      "    if (status != 0) return status;", "  }"])


def _nbytes(v: View) -> int:
    """The tensor's bytes (0 for a zero-size one, whose buffer still holds one element)."""
    return int(np.prod(v.shape, dtype=np.int64)) * np.dtype(v.dtype).itemsize


def _main_c(seq: CallSequence, board: Board) -> str:
    lines = ["/* Test harness: reads input<i>.bin, runs the model, writes output<i>.bin and",
             " * ticks.bin (SysTick ticks of the run; 0 on the host). */",
             "#include <stdint.h>", '#include "model.h"',
             HARNESS_IO_HOST if board.is_host else HARNESS_IO_SEMIHOST]
    for kind, views in (("in", seq.inputs), ("out", seq.outputs)):
        for i, v in enumerate(views):
            n = max(int(np.prod(v.shape, dtype=np.int64)), 1)  # a zero-size one gets 1
            lines.append(f"static _Alignas(16) {c_type(v.dtype)} {kind}{i}[{n}];")
    args = [f"in{i}" for i in range(len(seq.inputs))]
    args += [f"out{i}" for i in range(len(seq.outputs))]
    lines += ["", "int main(void) {"]
    for i, v in enumerate(seq.inputs):
        lines += [f'  if (smelt_read("input{i}.bin", in{i}, {_nbytes(v)}u) != 0) {{',
                  f'    smelt_say("smelt: cannot read input{i}.bin\\n");', "    return 2;",
                  "  }"]
    lines += ["  smelt_timer_start();", f"  int32_t status = smelt_model_run({', '.join(args)});",
              "  uint64_t ticks = smelt_timer_ticks();", "  if (status != 0) {",
              '    smelt_say("smelt: a kernel failed\\n");', "    return 3;", "  }"]
    for i, v in enumerate(seq.outputs):
        lines += [f'  if (smelt_write("output{i}.bin", out{i}, {_nbytes(v)}u) != 0) return 4;']
    lines += ['  if (smelt_write("ticks.bin", &ticks, sizeof ticks) != 0) return 4;',
              "  return 0;", "}", ""]
    return "\n".join(lines)


def _makefile(board: Board) -> str:
    flags = " ".join(board.cflags)
    srcs = "model.c kernels.c weights.c runtime.c main.c"
    if board.is_host:
        return (f"# smelt C project for the host (gcc)\nCC = gcc\n"
                f"CFLAGS = {' '.join([CFLAGS, *board.cflags])} -Iinclude\nSRCS = {srcs}\n\n"
                "app: $(SRCS) model.h weights.h\n\t$(CC) $(CFLAGS) $(SRCS) -lm -o $@\n\n"
                f"asan: app-asan\n\napp-asan: $(SRCS) model.h weights.h\n"
                f"\t$(CC) $(CFLAGS) {' '.join(SANITIZE)} $(SRCS) -lm -o $@\n\n"
                ".PHONY: asan\n")
    objs = " ".join(s.replace(".c", ".o") for s in f"{srcs} startup.c".split())
    return (f"# smelt C project for {board.name} ({board.core}), run under qemu-system-arm\n"
            f"CC = arm-none-eabi-gcc\n"
            f"CFLAGS = {CFLAGS} {flags} -ffunction-sections -fdata-sections -fstack-usage "
            f"-Iinclude\n"
            f"LDFLAGS = {flags} -T mps2.ld -nostartfiles --specs=nano.specs -Wl,--gc-sections\n"
            f"OBJS = {objs}\n\n"
            "app.elf: $(OBJS) mps2.ld\n\t$(CC) $(LDFLAGS) $(OBJS) -lm -o $@\n\n"
            "%.o: %.c model.h weights.h\n\t$(CC) $(CFLAGS) -c $< -o $@\n")

