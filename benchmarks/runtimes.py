"""Ways to run one torch model on the CPU, made ready to time: torch eager, smelt compiled,
onnxruntime.

Each `prepare_*` returns a `Runtime`: a no-argument call that runs the model on its example
inputs, the outputs of one call (for error checks), facts about how it was made (`info`:
seconds to trace, transform, compile or export), or, where it could not be made (an op smelt
does not cover, an exporter that fails, onnxruntime not installed), the reason instead of a
call: a benchmark records that reason and times the others.

- torch: `model(*inputs)` under `torch.inference_mode()`.
- smelt: `smelt.trace`, a pipeline, `smelt.compile(g, "cpu", num_cores=threads)`; called
  through the public call on numpy inputs (conversion included).
- onnxruntime: `torch.onnx.export` (the dynamo exporter, the TorchScript one if that fails),
  the CPU execution provider with `harness.onnxruntime_options(threads)`.

`time_runtimes` times those that have a call with `harness.measure`; `runtime_record` turns
one runtime and its timing into the JSON record the benchmarks write, `speedups` the ratios
of a peer's median to each other runtime's.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.harness import Timing, failure, measure, onnxruntime_options

EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")
UNRECORDED_INFO = ("graph", "module", "arrays")  # objects kept for checks, not for the JSON


@dataclass
class Runtime:
    """One way to run a model: a no-argument call to time, or the reason there is none."""

    name: str
    call: Callable[[], Any] | None = None
    outputs: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def outputs_of(value: Any) -> list[np.ndarray]:
    """A torch call's result (a tensor or a sequence of them) as numpy arrays."""
    if hasattr(value, "detach"):
        return [value.detach().numpy()]
    return [np.asarray(v.detach().numpy() if hasattr(v, "detach") else v) for v in value]


def quiet_trace(model: Any, inputs: tuple[Any, ...]) -> Any:
    """`smelt.trace(model, inputs)` without torch.export's warnings."""
    import smelt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smelt.trace(model, inputs)


def quiet_exporters() -> None:
    """Silence the ONNX exporters' progress logging."""
    for name in EXPORTER_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


# -- the three runtimes -------------------------------------------------------------------------
def prepare_torch(model: Any, inputs: tuple[Any, ...]) -> Runtime:
    import torch

    def call() -> Any:
        with torch.inference_mode():
            return model(*inputs)

    return Runtime("torch", call, outputs_of(call()))


def prepare_smelt(model: Any, inputs: tuple[Any, ...], pipeline: str, threads: int,
                  name: str = "smelt", calibration: list[Any] | None = None) -> Runtime:
    """smelt's runtime; `info` keeps the graph, the compiled module and the numpy inputs."""
    import smelt

    rt = Runtime(name)
    arrays = [x.numpy() for x in inputs]
    try:
        t0 = time.perf_counter()
        traced = quiet_trace(model, inputs)
        t1 = time.perf_counter()
        graph = smelt.Pipeline.parse(pipeline)(traced, calibration=calibration)
        t2 = time.perf_counter()
        module = smelt.compile(graph, "cpu", num_cores=threads)
        t3 = time.perf_counter()
    except Exception as e:  # noqa: BLE001 - an unsupported model is a result, not a crash
        rt.error = failure(e)
        return rt
    rt.call = lambda: module(*arrays)
    rt.outputs = list(rt.call())
    rt.info = {"graph": graph, "module": module, "arrays": arrays,
               "trace_s": t1 - t0, "pipeline_s": t2 - t1, "compile_s": t3 - t2}
    return rt


def export_onnx(model: Any, inputs: tuple[Any, ...]) -> tuple[bytes, str, list[str]]:
    """The model as ONNX bytes, the exporter that made them ('dynamo' first, then
    'torchscript') and why the ones tried before failed."""
    import torch

    failures = []
    for dynamo in (True, False):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if dynamo:
                    program = torch.onnx.export(model, inputs, dynamo=True, verbose=False,
                                                report=False)
                    return program.model_proto.SerializeToString(), "dynamo", failures
                buf = io.BytesIO()
                torch.onnx.export(model, inputs, buf, dynamo=False)
                return buf.getvalue(), "torchscript", failures
        except Exception as e:  # noqa: BLE001 - try the other exporter, then report
            failures.append(f"{'dynamo' if dynamo else 'torchscript'} exporter: {failure(e)}")
    raise RuntimeError("; ".join(failures))


def onnxruntime_session(model: bytes, threads: int) -> Any:
    """An onnxruntime CPU session of an ONNX model with `threads` intra-op threads."""
    import onnxruntime as ort

    return ort.InferenceSession(model, onnxruntime_options(threads),
                                providers=["CPUExecutionProvider"])


def session_runtime(name: str, session: Any, inputs: tuple[Any, ...]) -> Runtime:
    """A runtime calling an onnxruntime session on the torch inputs (as numpy arrays)."""
    feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs, strict=True)}
    rt = Runtime(name, lambda: session.run(None, feeds))
    rt.outputs = list(rt.call())
    return rt


def prepare_onnxruntime(model: Any, inputs: tuple[Any, ...], threads: int) -> Runtime:
    try:
        import onnxruntime  # noqa: F401 - only: is it installed
    except ImportError as e:
        return Runtime("onnxruntime",
                       error=f"onnxruntime not installed ({e}); install the 'bench' extra")
    try:
        t0 = time.perf_counter()
        data, exporter, failures = export_onnx(model, inputs)
        session = onnxruntime_session(data, threads)
    except Exception as e:  # noqa: BLE001 - recorded in the results instead
        return Runtime("onnxruntime", error=failure(e))
    rt = session_runtime("onnxruntime", session, inputs)
    rt.info = {"exporter": exporter, "export_s": time.perf_counter() - t0,
               "exporter_failures": failures}
    return rt


# -- timing and records -------------------------------------------------------------------------
def time_runtimes(runtimes: list[Runtime], repeats: int, warmup: int) -> dict[str, Timing]:
    """`harness.measure` over the runtimes that have a call, by name."""
    return measure({r.name: r.call for r in runtimes if r.call is not None}, repeats,
                   warmup=warmup)


def runtime_record(rt: Runtime, timings: Mapping[str, Timing]) -> dict[str, Any]:
    """The JSON record of a runtime: status, its `info` and timing summary (ms), or why it
    did not run."""
    if rt.call is None:
        return {"status": "unavailable", "reason": rt.error}
    info = {k: v for k, v in rt.info.items() if k not in UNRECORDED_INFO}
    return {"status": "ok", **info, **timings[rt.name].summary_ms()}


def speedups(records: Mapping[str, Mapping[str, Any]], peer: str = "torch") -> dict[str, float]:
    """peer median / runtime median for every other runtime that ran (>1: faster)."""
    base = records[peer]["median_ms"]
    return {name: base / r["median_ms"] for name, r in records.items()
            if name != peer and r["status"] == "ok"}
