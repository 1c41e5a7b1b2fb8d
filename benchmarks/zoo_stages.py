"""The stages the zoo sweep (benchmarks/model_zoo.py) takes one model through, in one process.

    build          build the model (random weights) and run it in torch eager: the reference
    trace          smelt.trace(model, inputs)                                     -> graph
    interpret      smelt.interpret(graph) against eager
    pipeline       Pipeline("fold-bn,canonicalize,fuse")(graph) against eager     -> optimized
    compile_cpu    smelt.compile(optimized, "cpu") against eager                  -> module
    speed          torch eager against the compiled module, interleaved repeats (harness);
                   passes when it ran; records torch median / smelt median (>1: smelt faster)
    torch_compile  torch.compile(model, backend=smelt.backend()) under torch.no_grad(),
                   against eager; a FallbackWarning (a graph torch ran instead) is a failure
    w8a8           Pipeline("fold-bn,canonicalize,quantize(w8a8),fold-qdq") on the traced
                   graph with calibration batches of the traced shape, compiled for "cpu",
                   equal bit for bit to smelt.interpret of the quantized graph
    compile_cuda   smelt.compile(optimized, "cuda", arch="sm_90"): nvcc builds it, no device

"Against eager": every output within `TOLERANCE` times max(1, max |eager output|), the
budget tests/test_backend_cpu.py gives float32 (relative to the output's scale), or within
`CONDITIONING` times torch's own float32 error, where that is larger: the build stage runs the
model in float64 too, and some random-weight models are so ill-conditioned that torch's
float32 is itself far from float64 (timm's efficientnetv2_s: 1.6e5 on an output of 2.2e5).

A stage that fails records the exception's type and first line (`ZooMismatch` when numbers
differ, naming the stage and the error; the frontend's UnsupportedOpError names the op and the
user's source line, and `op` holds the op); a stage whose input a failed stage should have
made is skipped with the reason. `run_stages` reports each stage as it starts and ends through
a callback, so that the parent process knows which stage was running when it had to stop a
model (a hung compile: "timeout").
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.harness import failure, measure, relative_error
from smelt.ir.errors import SmeltError

STAGES = ("build", "trace", "interpret", "pipeline", "compile_cpu", "speed", "torch_compile",
          "w8a8", "compile_cuda")
#: the stage whose result each stage needs
NEEDS = {"trace": "build", "interpret": "trace", "pipeline": "trace",
         "compile_cpu": "pipeline", "speed": "compile_cpu", "torch_compile": "build",
         "w8a8": "trace", "compile_cuda": "pipeline"}
PIPELINE = "fold-bn,canonicalize,fuse"
INT8_PIPELINE = "fold-bn,canonicalize,quantize(w8a8),fold-qdq"
TOLERANCE = 1e-4
CONDITIONING = 4  # |smelt - eager32| <= |smelt - eager64| + |eager64 - eager32|, both alike
CUDA_ARCH = "sm_90"


class ZooMismatch(SmeltError):
    """A stage ran, and its numbers differ from what it must equal."""


@dataclass
class Options:
    """How hard each stage works: timing repeats, calibration batches, threads."""

    repeats: int = 5
    warmup: int = 1
    calibration: int = 4
    threads: int = 1


@dataclass
class State:
    """What the stages made so far, for the stages after them."""

    make: Callable[[], Any]
    zm: Any = None
    model: Any = None
    inputs: tuple[Any, ...] = ()
    arrays: list[np.ndarray] = field(default_factory=list)
    eager: list[np.ndarray] = field(default_factory=list)
    eager_error: float = 0.0  # max |eager float32 - eager float64| (0: float64 did not run)
    graph: Any = None
    optimized: Any = None
    module: Any = None


Report = Callable[[str, dict[str, Any]], None]


def outputs(value: Any) -> list[np.ndarray]:
    """A torch call's result (a tensor, or a sequence of them) as numpy arrays."""
    if hasattr(value, "detach"):
        return [value.detach().cpu().numpy()]
    return [v.detach().cpu().numpy() for v in value]


def check_close(stage: str, got: Sequence[Any], want: Sequence[np.ndarray],
                eager_error: float = 0.0) -> dict[str, float]:
    """`relative_error` of got against want; raises ZooMismatch beyond the tolerance
    (`TOLERANCE` of the output's scale, or `CONDITIONING` x torch's own float32 error)."""
    got = [np.asarray(g) for g in got]
    if len(got) != len(want):
        raise ZooMismatch(f"{stage}: {len(got)} outputs, eager gives {len(want)}")
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g.shape != w.shape:
            raise ZooMismatch(f"{stage}: output {i} has shape {list(g.shape)}, eager "
                              f"{list(w.shape)}")
    err = relative_error(got, want)
    bound = max(TOLERANCE * max(1.0, err["scale"]), CONDITIONING * eager_error)
    if not np.isfinite(err["max_abs"]) or err["max_abs"] > bound:
        raise ZooMismatch(f"{stage}: max |diff| {err['max_abs']:.3g} against eager, beyond "
                          f"{TOLERANCE:g} x max(1, {err['scale']:.3g}) and {CONDITIONING} x "
                          f"torch's float32 error {eager_error:.3g}")
    return {**err, "eager_float32_error": eager_error}


# -- the stages ---------------------------------------------------------------------------------
def stage_build(s: State, opts: Options) -> dict[str, Any]:
    import torch

    s.zm = s.make()
    s.model = s.zm.build()
    s.inputs = s.zm.inputs(0)
    s.arrays = [x.numpy() for x in s.inputs]
    with torch.no_grad():
        s.eager = outputs(s.model(*s.inputs))
    s.eager_error = float64_error(s.model, s.inputs, s.eager)
    return {"family": s.zm.family, **s.zm.notes, "eager_float32_error": s.eager_error,
            "parameters": sum(p.numel() for p in s.model.parameters()),
            "inputs": [list(x.shape) for x in s.inputs],
            "outputs": [list(y.shape) for y in s.eager]}


def float64_error(model: Any, inputs: tuple[Any, ...], eager: list[np.ndarray]) -> float:
    """max |eager float32 - eager float64| over the outputs (a float64 copy of the model on
    float64 inputs); 0.0 where the model does not run in float64."""
    import copy

    import torch

    try:
        with torch.no_grad():
            wide = copy.deepcopy(model).double()
            got = outputs(wide(*(x.double() if x.is_floating_point() else x for x in inputs)))
    except Exception:  # noqa: BLE001 - a float32-only model: the plain tolerance applies
        return 0.0
    return max((float(np.max(np.abs(np.asarray(w, np.float64) - g)))
                for w, g in zip(eager, got, strict=False) if w.shape == g.shape
                and w.dtype.kind == "f" and w.size), default=0.0)


def stage_trace(s: State, opts: Options) -> dict[str, Any]:
    import smelt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.graph = smelt.trace(s.model, s.inputs)
    return {"nodes": len(s.graph)}


def stage_interpret(s: State, opts: Options) -> dict[str, Any]:
    import smelt

    return {"error": check_close("interpret", smelt.interpret(s.graph, *s.arrays), s.eager,
                                 s.eager_error)}


def stage_pipeline(s: State, opts: Options) -> dict[str, Any]:
    import smelt

    s.optimized = smelt.Pipeline.parse(PIPELINE)(s.graph)
    err = check_close("pipeline", smelt.interpret(s.optimized, *s.arrays), s.eager, s.eager_error)
    return {"nodes": len(s.optimized), "error": err}


def stage_compile_cpu(s: State, opts: Options) -> dict[str, Any]:
    import smelt

    s.module = smelt.compile(s.optimized, "cpu", num_cores=opts.threads)
    return {"error": check_close("compile_cpu", s.module(*s.arrays), s.eager, s.eager_error)}


def stage_speed(s: State, opts: Options) -> dict[str, Any]:
    import torch

    def eager() -> Any:
        with torch.inference_mode():
            return s.model(*s.inputs)

    timings = measure({"torch": eager, "smelt": lambda: s.module(*s.arrays)}, opts.repeats,
                      warmup=opts.warmup)
    torch_ms, smelt_ms = (1e3 * timings[n].median for n in ("torch", "smelt"))
    return {"torch_ms": torch_ms, "smelt_ms": smelt_ms, "speedup": torch_ms / smelt_ms}


def stage_torch_compile(s: State, opts: Options) -> dict[str, Any]:
    import torch

    import smelt
    from smelt.backends.interop import FallbackWarning

    torch._dynamo.reset()
    backend = smelt.backend()
    compiled = torch.compile(s.model, backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FallbackWarning)
        with torch.no_grad():
            got = outputs(compiled(*s.inputs))
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, FallbackWarning)]
    if fallbacks:
        raise FallbackWarning(fallbacks[0])
    return {"graphs": len(backend.graphs),
            "error": check_close("torch_compile", got, s.eager, s.eager_error)}


def stage_w8a8(s: State, opts: Options) -> dict[str, Any]:
    import smelt
    from smelt.passes.qdq_legality import legality

    batches = [tuple(x.numpy() for x in s.zm.inputs(seed))
               for seed in range(1, opts.calibration + 1)]
    quantized = smelt.Pipeline.parse(INT8_PIPELINE)(s.graph, calibration=batches)
    want = smelt.interpret(quantized, *s.arrays)
    got = smelt.compile(quantized, "cpu", num_cores=opts.threads)(*s.arrays)
    differ = [int(np.sum(np.asarray(g) != w)) for g, w in zip(got, want, strict=True)]
    if any(differ):
        worst = max(float(np.max(np.abs(np.asarray(g, np.float64) - w)))
                    for g, w in zip(got, want, strict=True))
        raise ZooMismatch(f"w8a8: the compiled quantized graph differs from the interpreter in "
                          f"{sum(differ)} of {sum(w.size for w in want)} elements (max |diff| "
                          f"{worst:.3g}); it must be bit-exact")
    return {"float_islands": len(legality(quantized)),
            "error_vs_float": relative_error(want, s.eager)["relative"]}


def stage_compile_cuda(s: State, opts: Options) -> dict[str, Any]:
    import smelt

    module = smelt.compile(s.optimized, "cuda", arch=CUDA_ARCH)
    return {"arch": CUDA_ARCH, "kernels": len(getattr(module, "cuda_kernels", ()) or ())}


RUNNERS: dict[str, Callable[[State, Options], dict[str, Any]]] = {
    "build": stage_build, "trace": stage_trace, "interpret": stage_interpret,
    "pipeline": stage_pipeline, "compile_cpu": stage_compile_cpu, "speed": stage_speed,
    "torch_compile": stage_torch_compile, "w8a8": stage_w8a8,
    "compile_cuda": stage_compile_cuda,
}


# -- running them -------------------------------------------------------------------------------
def error_record(e: BaseException) -> dict[str, Any]:
    """A failed stage: the exception's type and first line, and the op where one is named."""
    rec: dict[str, Any] = {"status": "fail", "error": failure(e), "error_type": type(e).__name__}
    op = getattr(e, "op", None)
    if isinstance(op, str):
        rec["op"] = op
    return rec


def needed(stage: str) -> list[str]:
    """The stages `stage` needs, first to last (build first)."""
    chain = []
    while (stage := NEEDS.get(stage, "")) and stage:
        chain.append(stage)
    return chain[::-1]


def run_stages(make: Callable[[], Any], stages: Sequence[str], opts: Options,
               report: Report | None = None) -> dict[str, dict[str, Any]]:
    """Run `stages` (with the stages they need) on the zoo model `make()` builds (a
    `zoo_models.ZooModel`; built in the build stage, so that failing to build is that
    stage's failure), in STAGES order.
    Returns {stage: record}; `report(stage, record)` is called as each starts (status
    "running") and ends. A failure is recorded, never raised."""
    wanted = set(stages)
    for stage in stages:
        wanted.update(needed(stage))
    state, results = State(make), {}
    for stage in (s for s in STAGES if s in wanted):
        missing = next((n for n in needed(stage)
                        if results.get(n, {}).get("status") != "ok"), None)
        if missing is not None:
            rec = {"status": "skip", "reason": f"needs {missing}"}
        else:
            if report is not None:
                report(stage, {"status": "running"})
            t0 = time.perf_counter()
            try:
                rec = {"status": "ok", **RUNNERS[stage](state, opts)}
            except Exception as e:  # noqa: BLE001 - a failing model is a result of the sweep
                rec = error_record(e)
            rec["seconds"] = round(time.perf_counter() - t0, 3)
        results[stage] = rec
        if report is not None:
            report(stage, rec)
    return results
