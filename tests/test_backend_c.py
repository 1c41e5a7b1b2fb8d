"""The microcontroller C target (backends/mcu): generated projects build with -Wall -Werror,
run on emulated Cortex-M3/M4/M7 (qemu) and on the host, and match the interpreter.

What is shown, and by which test:
- int8 zoo CNNs (`fold-bn,canonicalize,quantize(w8a8),fold-qdq`) on mps2-an386 (M4) and
  mps2-an500 (M7), residual_cnn also on mps2-an385 (M3): bit-exact against `smelt.interpret`
  (`test_int8_cnn_*`).
- fp32 residual_cnn on M4 and M7 within the `exact` contract's float32 tolerance, derived
  from the graph's reduction lengths and magnitudes (`rewrite.contract.exact_tolerance`);
  built with -ffp-contract=off (`test_fp32_cnn_*`).
- The host build under AddressSanitizer + UndefinedBehaviorSanitizer (and the kernels' own
  argument checks) runs clean and gives the same outputs (`test_host_sanitizers_*`).
- Every build uses -std=c11 -Wall -Werror -ffp-contract=off, and a warning does fail it
  (`test_builds_with_wall_werror`).
- The integer core of an int8 CNN (integer_io) has no floating point: built for the M3
  (no FPU, soft-float ABI) it links no __aeabi_f*/__aeabi_d* helper, for the M4 its code has
  no VFP arithmetic, and it is bit-exact (`test_integer_core_*`).
- The report: sizes from arm-none-eabi-size, the arena between its lower bound and one buffer
  per tensor, no two live buffers overlapping, instructions after a board run
  (`test_report_*`); the project layout (`test_project_layout`).
- `schedule_c` cuts the kernels' workspace from tens of KiB to <= 8 KiB and the outputs
  stay exact (`test_scheduled_kernels_need_no_workspace`).
- Typed errors: unknown board, missing board, unknown option, wrong input shape or count.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

import smelt
from smelt.backends.mcu.build import CBuildError
from smelt.backends.mcu.integer_io import IntegerIOError, integer_io
from smelt.backends.mcu.kernels_c import lower_graph
from smelt.backends.mcu.memory_plan import plan_conflicts
from smelt.backends.targets import TargetError
from smelt.rewrite.contract import exact_tolerance, run64
from smelt.rewrite.pipeline import Pipeline
from smelt.zoo import ZOO

pytestmark = pytest.mark.xdist_group("c_target")  # the tools come with `make setup`
W8A8 = "fold-bn,canonicalize,quantize(w8a8),fold-qdq"


def _traced(name: str):
    entry = ZOO[name]
    x = entry.inputs()[0][:1]  # batch 1, as on a microcontroller
    return smelt.trace(entry.build(), (x,)), x.numpy()


@pytest.fixture(scope="module")
def models():
    """name -> (graph, input): the fp32 and int8 zoo CNNs, traced once."""
    out = {}
    rng = np.random.default_rng(7)
    for name in ("residual_cnn", "mobilenet_v2"):
        graph, x = _traced(name)
        cal = [rng.normal(size=x.shape).astype(np.float32) for _ in range(4)]
        out[f"{name}-int8"] = (Pipeline.parse(W8A8)(graph, calibration=cal), x)
        out[name] = (graph, x)
    return out


@pytest.fixture(scope="module")
def build(models, tmp_path_factory):
    """(model, board) -> the compiled CModule, built once per module."""
    cache = {}

    def get(model: str, board: str):
        if (model, board) not in cache:
            graph, _ = models[model]
            out = tmp_path_factory.mktemp(f"{model}-{board}")
            cache[model, board] = smelt.compile(graph, "c", board=board, out_dir=out)
        return cache[model, board]

    return get


# -- must show 1: int8 bit-exact on M4 and M7 (and M3), fp32 within tolerance ---------------
@pytest.mark.parametrize("board", ["mps2-an386", "mps2-an500"])
@pytest.mark.parametrize("model", ["residual_cnn-int8", "mobilenet_v2-int8"])
def test_int8_cnn_is_bit_exact_on_cortex_m(models, build, model, board) -> None:
    graph, x = models[model]
    (got,) = build(model, board)(x)
    (want,) = smelt.interpret(graph, x)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_int8_cnn_is_bit_exact_on_cortex_m3(models, build) -> None:
    graph, x = models["residual_cnn-int8"]
    (got,) = build("residual_cnn-int8", "mps2-an385")(x)
    np.testing.assert_array_equal(got, smelt.interpret(graph, x)[0])


@pytest.mark.parametrize("board", ["mps2-an386", "mps2-an500"])
def test_fp32_cnn_is_within_the_float32_contract(models, build, board) -> None:
    graph, x = models["residual_cnn"]
    (got,) = build("residual_cnn", board)(x)
    ref = run64(graph, [x])
    tol = exact_tolerance(ref, ref)  # 8 eps32 x (sum of reduction lengths) x magnitude
    err = np.abs(got.astype(np.float64) - ref.outputs[0]).max()
    assert err <= tol, f"{board}: error {err:.3g} > {tol:.3g}"
    assert err > 0 or np.array_equal(got, ref.outputs[0].astype(np.float32))


# -- must show 2: -Wall -Werror; the host build under ASan + UBSan ---------------------------
@pytest.mark.parametrize("model", ["residual_cnn-int8", "residual_cnn"])
def test_host_sanitizers_run_clean_with_the_same_outputs(models, build, model) -> None:
    graph, x = models[model]
    module = build(model, "host")
    (plain,) = module(x)
    (sanitized,) = module.run(x, sanitize=True)  # any ASan/UBSan report exits nonzero
    np.testing.assert_array_equal(plain, sanitized)
    (want,) = smelt.interpret(graph, x)
    if model.endswith("int8"):
        np.testing.assert_array_equal(plain, want)
    else:
        ref = run64(graph, [x])
        assert np.abs(plain - ref.outputs[0]).max() <= exact_tolerance(ref, ref)
    symbols = subprocess.run(["nm", str(module.project / "app-asan")], capture_output=True,
                             text=True, check=True, timeout=60).stdout
    assert "__asan_init" in symbols and "__ubsan_handle" in symbols  # instrumented


def test_the_host_asan_board_builds_only_the_sanitized_program(models, build) -> None:
    graph, x = models["residual_cnn-int8"]
    module = build("residual_cnn-int8", "host-asan")
    (got,) = module(x)
    np.testing.assert_array_equal(got, smelt.interpret(graph, x)[0])
    assert not (module.project / "app-asan").exists()  # `app` itself is instrumented
    symbols = subprocess.run(["nm", str(module.project / "app")], capture_output=True,
                             text=True, check=True, timeout=60).stdout
    assert "__asan_init" in symbols and "__ubsan_handle" in symbols


def test_builds_with_wall_werror(build, tmp_path) -> None:
    module = build("residual_cnn-int8", "mps2-an386")
    commands = subprocess.run(["make", "-B", "-n", "app.elf"], cwd=module.project, text=True,
                              capture_output=True, check=True, timeout=60).stdout
    compiles = [c for c in commands.splitlines() if " -c " in c]
    assert len(compiles) == 6  # model, kernels, weights, runtime, main, startup
    for flag in ("-std=c11", "-Wall", "-Werror", "-ffp-contract=off"):
        assert all(flag in c.split() for c in compiles), flag
    broken = tmp_path / "broken"
    shutil.copytree(module.project, broken)
    with open(broken / "model.c", "a") as f:
        f.write("static int smelt_unused;\n")  # -Wunused-variable: an error under -Werror
    with pytest.raises(CBuildError, match="unused"):
        from smelt.backends.mcu.build import build as make

        make(broken, module.board)


# -- integer-only ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def integer_core(models, tmp_path_factory):
    graph, x = models["residual_cnn-int8"]
    core = integer_io(graph)
    (q,) = core.quantize(x)
    assert q.dtype == core.graph.inputs[0].dtype and q.dtype.kind in "iu"
    modules = {b: smelt.compile(core.graph, "c", board=b,
                                out_dir=tmp_path_factory.mktemp(f"core-{b}"))
               for b in ("mps2-an385", "mps2-an386")}
    return core, q, modules


def test_integer_core_is_bit_exact(integer_core) -> None:
    core, q, modules = integer_core
    assert all(not n.dtype.startswith("float") for n in core.graph.nodes())
    (want,) = smelt.interpret(core.graph, q)
    for board, module in modules.items():
        (got,) = module(q)
        np.testing.assert_array_equal(got, want, err_msg=board)


def test_integer_core_links_no_soft_float_on_m3(integer_core) -> None:
    _, _, modules = integer_core
    elf = modules["mps2-an385"].program
    symbols = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    soft = re.findall(r"\b__aeabi_[fd]\w*|\b__(?:add|sub|mul|div)[sd]f3\b", symbols)
    assert soft == []
    assert "__tvm_ffi_" in symbols  # the kernels are there


VFP_ARITHMETIC = re.compile(r"\tv(?:add|sub|mul|div|cvt|mla|fma|sqrt)\S*\.f(?:32|64)")


def _disassembly(path) -> str:
    return subprocess.run(["arm-none-eabi-objdump", "-d", str(path)], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def test_integer_core_has_no_vfp_arithmetic_on_m4(integer_core, build) -> None:
    _, _, modules = integer_core
    project = modules["mps2-an386"].project
    for obj in ("kernels.o", "model.o"):
        assert VFP_ARITHMETIC.findall(_disassembly(project / obj)) == [], obj
    # the fp32 model's kernels do use the FPU: the check can fail
    fp32 = build("residual_cnn", "mps2-an386").project
    assert VFP_ARITHMETIC.findall(_disassembly(fp32 / "kernels.o"))


def test_integer_io_needs_a_quantized_graph(models) -> None:
    graph, _ = models["residual_cnn"]
    with pytest.raises(IntegerIOError, match="quantize"):
        integer_io(graph)


# -- the report and the project ----------------------------------------------------------------
def test_report_has_sizes_arena_and_instructions(models, build) -> None:
    graph, x = models["mobilenet_v2-int8"]
    module = build("mobilenet_v2-int8", "mps2-an386")
    module(x)
    r = module.report
    for key in ("board", "flash_bytes", "sram_bytes", "arena_bytes", "arena_lower_bound",
                "arena_naive", "workspace_bytes", "stack_bytes", "text", "data", "bss",
                "instructions"):
        assert key in r, key
    assert r["board"] == "mps2-an386"
    assert r["flash_bytes"] == r["text"] + r["data"] > r["weight_bytes"] > 0
    assert r["sram_bytes"] == r["data"] + r["bss"] >= r["arena_bytes"] + r["workspace_bytes"]
    assert 0 < r["arena_lower_bound"] <= r["arena_bytes"] <= r["arena_naive"]
    assert r["arena_bytes"] < r["arena_naive"]  # the planner reuses memory
    assert isinstance(r["instructions"], int) and r["instructions"] > 1000
    assert r["stack_bytes"] > 0 and "estimate" in r["stack_kind"]
    assert plan_conflicts(module.plan) == []
    text = module.describe()
    assert f"arena {r['arena_bytes']} B (lower bound {r['arena_lower_bound']} B" in text
    header = (module.project / "model.h").read_text()
    assert f"#define SMELT_ARENA_BYTES {r['arena_bytes']}" in header


@pytest.mark.parametrize("model", ["residual_cnn-int8", "mobilenet_v2-int8", "residual_cnn"])
def test_scheduled_kernels_need_no_workspace(models, build, model) -> None:
    """schedule_c moves each reduction's epilogue under its spatial loops: the unscheduled
    kernels take whole int32 accumulator tensors (tens of KiB) from the workspace, the
    scheduled ones at most 8 KiB (an fp32 conv's padded input copy stays) and under a
    third of it, and stay exact (int8) or within the float32 contract."""
    graph, x = models[model]
    module = build(model, "mps2-an386")
    plain = lower_graph(graph, schedule=False)
    assert plain.workspace_bytes >= 16 * 1024
    workspace = module.report["workspace_bytes"]
    assert workspace <= 8 * 1024 and 3 * workspace < plain.workspace_bytes
    rules = lower_graph(graph).rules
    assert any(r is not None and "epilogue-at-reduction" in r for r in rules.values())
    (got,) = module(x)
    if model.endswith("int8"):
        np.testing.assert_array_equal(got, smelt.interpret(graph, x)[0])
    else:
        ref = run64(graph, [x])
        assert np.abs(got - ref.outputs[0]).max() <= exact_tolerance(ref, ref)


def test_report_instructions_are_deterministic(models, build) -> None:
    _, x = models["residual_cnn-int8"]
    module = build("residual_cnn-int8", "mps2-an500")
    module(x)
    first = module.report["instructions"]
    module(x)
    assert module.report["instructions"] == first
    host = build("residual_cnn-int8", "host")
    assert host.report["instructions"] is None


def test_project_layout(build) -> None:
    module = build("residual_cnn-int8", "mps2-an386")
    files = {p.relative_to(module.project).as_posix() for p in module.project.rglob("*")
             if p.is_file()}
    assert {"Makefile", "model.c", "model.h", "kernels.c", "weights.c", "weights.h",
            "runtime.c", "main.c", "startup.c", "mps2.ld", "app.elf",
            "include/tvm/ffi/c_api.h", "include/dlpack/dlpack.h"} <= files
    header = (module.project / "model.h").read_text()
    assert len(re.findall(r"^int32_t smelt_\w+\(", header, re.MULTILINE)) == 1
    assert "int32_t smelt_model_run(const float* in0, float* out0);" in header
    weights = (module.project / "weights.c").read_text()
    assert "_Alignas(16) const" in weights
    model = (module.project / "model.c").read_text()
    assert "malloc" not in model + (module.project / "runtime.c").read_text()


# -- typed errors ------------------------------------------------------------------------------
def test_unknown_or_missing_board_is_a_target_error(models) -> None:
    graph, _ = models["residual_cnn-int8"]
    with pytest.raises(TargetError, match="unknown board 'stm32'.*mps2-an386"):
        smelt.compile(graph, "c", board="stm32")
    with pytest.raises(TargetError, match="needs board="):
        smelt.compile(graph, "c")
    with pytest.raises(TargetError, match="takes board= and out_dir="):
        smelt.compile(graph, "c", board="host", mcpu="cortex-m4")


def test_wrong_inputs_are_interpret_errors(models, build) -> None:
    _, x = models["residual_cnn-int8"]
    module = build("residual_cnn-int8", "host")
    with pytest.raises(smelt.InterpretError, match=r"input 'x' has shape \[1, 3, 8, 8\]"):
        module(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(smelt.InterpretError, match=r"takes 1 inputs \(x\), got 2"):
        module(x, x)
