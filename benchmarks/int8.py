"""Int8 inference on the CPU: smelt W8A8 compiled vs torch fp32 eager vs onnxruntime int8, and
the accuracy of W8A8 on a trained CNN.

Latency (batch 1, the CNNs of benchmarks/cpu_models.py: MobileNetV2 1.0 @160, ResNet-18
@128; same thread count for every runtime, interleaved repeats, median):
- torch: fp32 eager;
- onnxruntime: fp32, the model exported to ONNX;
- onnxruntime_int8: the same ONNX model quantized by onnxruntime.quantization.quantize_static
  (QDQ format, per-channel int8 weights, uint8 activations, min/max calibration on the same
  calibration batches smelt uses), run by onnxruntime with all graph optimizations, which
  fuses the Q/DQ pairs into its integer kernels;
- smelt_int8: `fold-bn,canonicalize,quantize(w8a8),fold-qdq` then `smelt.compile(.., "cpu")`.
Errors are against torch fp32 (max |diff| / max |reference|) and, for the int8 runtimes, the
agreement of the argmax.

Accuracy (scikit-learn's digits, 1,797 8x8 images, 80/20 split; a MobileNetV2-style net
trained here, seeded; smelt/digits.py; 360 test images in batches of 40, the first
n * 40): test accuracy of fp32, W8A8 (per-channel
weights), W8A8-tensor (per-tensor weights), each with and without `equalize` before
quantizing, and onnxruntime int8 of the same net. Calibration: 240 training images.

The runtimes are benchmarks/runtimes.py's, timed by benchmarks/harness.py's `measure`.

    .venv/bin/python -m benchmarks.int8            # results/int8.{json,md,png}
    .venv/bin/python -m benchmarks.int8 --quick    # tiny shapes, a smoke test
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cpu_models import bench_models
from benchmarks.harness import (
    bar_chart,
    failure,
    figure,
    geomean,
    machine_facts,
    markdown_table,
    relative_error,
    results_path,
    set_threads,
    write_report,
)
from benchmarks.runtimes import (
    Runtime,
    export_onnx,
    onnxruntime_session,
    prepare_onnxruntime,
    prepare_smelt,
    prepare_torch,
    quiet_exporters,
    quiet_trace,
    runtime_record,
    session_runtime,
    speedups,
    time_runtimes,
)
from smelt.digits import digits, mobilenet_v2_digits, train

RESULTS = results_path("int8")
INT8_PIPELINE = "fold-bn,canonicalize,quantize(w8a8),fold-qdq"
MODELS = ("mobilenet_v2", "resnet18")


# -- runtimes -----------------------------------------------------------------------------------
def calibration_batches(inputs: tuple[Any, ...], n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = inputs[0].shape
    return [rng.normal(size=shape).astype(np.float32) for _ in range(n)]


def prepare_smelt_int8(model: Any, inputs: tuple[Any, ...], cal: list[np.ndarray],
                       threads: int, pipeline: str = INT8_PIPELINE) -> Runtime:
    """cpu_latency's smelt runtime on the quantized pipeline, with its kernel rules and any
    float ops left between quantized tensors."""
    from smelt.passes.qdq_legality import legality

    rt = prepare_smelt(model, inputs, pipeline, threads, "smelt_int8", calibration=cal)
    if rt.call is not None:
        rules: dict[str, int] = {}
        for r in rt.info["module"].kernels.values():
            rules[str(r)] = rules.get(str(r), 0) + 1
        rt.info.update(kernel_rules=rules,
                       float_islands=[str(i) for i in legality(rt.info["graph"])])
    return rt


class _Reader:
    """onnxruntime's CalibrationDataReader over in-memory batches."""

    def __init__(self, name: str, batches: list[np.ndarray]) -> None:
        self.items = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self.items, None)

    def rewind(self) -> None:  # pragma: no cover - not used by min/max calibration
        pass


def onnx_int8_session(model: Any, inputs: tuple[Any, ...], cal: list[np.ndarray],
                      threads: int):
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    data, _, _ = export_onnx(model, inputs)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
        proto = onnx.load_from_string(data)
        onnx.save(proto, str(src))
        name = proto.graph.input[0].name
        logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process, per call
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(src), str(dst), _Reader(name, cal), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8)
        quantized = dst.read_bytes()
    return onnxruntime_session(quantized, threads)


def prepare_onnxruntime_int8(model: Any, inputs: tuple[Any, ...], cal: list[np.ndarray],
                             threads: int) -> Runtime:
    try:
        session = onnx_int8_session(model, inputs, cal, threads)
    except Exception as e:  # noqa: BLE001
        return Runtime("onnxruntime_int8", error=failure(e))
    return session_runtime("onnxruntime_int8", session, inputs)


def errors(rts: dict[str, Runtime]) -> dict[str, Any]:
    """Each runtime's first output against torch fp32's: max |diff| / max |reference|, and
    the share of rows whose argmax agrees."""
    ref = rts["torch"].outputs[0]
    out = {}
    for name, rt in rts.items():
        if name == "torch" or rt.call is None:
            continue
        got = np.asarray(rt.outputs[0], np.float32)
        out[name] = {"rel_error": relative_error([got], [ref])["relative"],
                     "argmax_agrees": float(np.mean(got.argmax(-1) == ref.argmax(-1)))}
    return out


def bench_latency(entry, threads: int, repeats: int, warmup: int, n_cal: int) -> dict:
    model, inputs = entry.build(), entry.inputs()
    cal = calibration_batches(inputs, n_cal)
    rts = {"torch": prepare_torch(model, inputs),
           "onnxruntime": prepare_onnxruntime(model, inputs, threads),
           "onnxruntime_int8": prepare_onnxruntime_int8(model, inputs, cal, threads),
           "smelt_int8": prepare_smelt_int8(model, inputs, cal, threads)}
    timings = time_runtimes(list(rts.values()), repeats, warmup)
    runtimes = {name: runtime_record(rt, timings) for name, rt in rts.items()}
    return {"model": entry.name, "description": entry.description, "runtimes": runtimes,
            "speedup_vs_torch": speedups(runtimes), "errors": errors(rts)}


# -- accuracy on digits -------------------------------------------------------------------------
def bench_accuracy(epochs: int, seed: int, threads: int) -> dict[str, Any]:
    import torch

    import smelt

    x_tr, x_te, y_tr, y_te = digits(seed)
    torch.manual_seed(seed)
    net = mobilenet_v2_digits("relu")
    train_s = train(net, x_tr, y_tr, epochs, seed)
    batch = 40  # graphs have static shapes: the 360 test images in 9 batches
    example = (torch.from_numpy(x_te[:batch]),)
    graph = quiet_trace(net, example)
    cal = [x_tr[i:i + batch] for i in range(0, 240, batch)]

    def accuracy(g) -> float:
        n = len(x_te) // batch * batch
        logits = np.concatenate([smelt.interpret(g, x_te[i:i + batch])[0]
                                 for i in range(0, n, batch)])
        return float(np.mean(logits.argmax(1) == y_te[:n]))

    rows = {"fp32": accuracy(graph)}
    for eq in ("", "equalize,"):
        for scheme in ("w8a8", "w8a8-tensor"):
            spec = f"fold-bn,{eq}canonicalize,quantize({scheme}),fold-qdq"
            rows[("equalize + " if eq else "") + scheme] = accuracy(
                smelt.Pipeline.parse(spec)(graph, calibration=cal))
    try:
        session = onnx_int8_session(net, example, cal, threads)
        name = session.get_inputs()[0].name
        n = len(x_te) // batch * batch
        logits = np.concatenate([session.run(None, {name: x_te[i:i + batch]})[0]
                                 for i in range(0, n, batch)])
        rows["onnxruntime int8"] = float(np.mean(logits.argmax(1) == y_te[:n]))
    except Exception as e:  # noqa: BLE001
        rows["onnxruntime int8"] = failure(e)
    return {"epochs": epochs, "seed": seed, "train_s": train_s, "test_images": len(y_te),
            "accuracy": rows}


# -- report -------------------------------------------------------------------------------------
PEERS = ("onnxruntime", "onnxruntime_int8", "smelt_int8")  # each timed against torch fp32


def _latency_row(r: dict[str, Any]) -> list[str]:
    rt, sp, err = r["runtimes"], r["speedup_vs_torch"], r["errors"]
    vs_ort = (f"{sp['smelt_int8'] / sp['onnxruntime_int8']:.2f}x"
              if "smelt_int8" in sp and "onnxruntime_int8" in sp else "n/a")
    e_s = err.get("smelt_int8", {}).get("rel_error", float("nan"))
    e_o = err.get("onnxruntime_int8", {}).get("rel_error", float("nan"))
    agree = err.get("smelt_int8", {}).get("argmax_agrees", float("nan"))
    return [r["model"], *(f"{rt[n]['median_ms']:.2f}" if rt[n]["status"] == "ok" else "n/a"
                          for n in ("torch", *PEERS)),
            f"{sp.get('smelt_int8', float('nan')):.2f}x", vs_ort, f"{e_s:.3g} / {e_o:.3g}",
            f"{agree:.2f}"]


def table(report: dict[str, Any]) -> str:
    m, cfg = report["machine"], report["config"]
    names = ("torch", *PEERS)
    lines = [f"# Int8 on the CPU ({cfg['preset']} sizes, batch 1)", "",
             f"{m['cpu']}, {cfg['threads']} threads for every runtime; median of "
             f"{cfg['repeats']} interleaved repeats; speed = torch fp32 time / runtime time. "
             f"smelt: `{INT8_PIPELINE}`.", "",
             *markdown_table(["model", *(f"{n} ms" for n in names), "smelt_int8 vs torch",
                              "smelt_int8 vs ort int8", "rel. error smelt / ort int8",
                              "argmax agrees"], map(_latency_row, report["results"]))]
    s = report["summary"]
    lines += ["", f"Geomean speed vs torch fp32: smelt_int8 {s['smelt_int8']:.2f}x, "
              f"onnxruntime_int8 {s['onnxruntime_int8']:.2f}x, onnxruntime fp32 "
              f"{s['onnxruntime']:.2f}x." if None not in s.values() else ""]
    for r in report["results"]:
        for name in names:
            if r["runtimes"][name]["status"] != "ok":
                lines.append(f"- {r['model']} {name}: {r['runtimes'][name]['reason']}")
        islands = r["runtimes"]["smelt_int8"].get("float_islands")
        if islands:
            lines.append(f"- {r['model']} float ops left: {'; '.join(islands)}")
    acc = report["accuracy"]
    lines += ["", f"## Digits accuracy ({acc['test_images']} test images, {acc['epochs']} "
              f"epochs, seed {acc['seed']})", "",
              *markdown_table(["graph", "accuracy"],
                              [[k, f"{v:.4f}" if isinstance(v, float) else str(v)]
                               for k, v in acc["accuracy"].items()])]
    return "\n".join(lines)


def plot(report: dict[str, Any]) -> Any:
    """Speed against torch fp32 per model (and the geometric mean), one bar per runtime; the
    digits accuracy of each graph."""
    speed = {r["model"]: {n: r["speedup_vs_torch"].get(n) for n in PEERS}
             for r in report["results"]}
    speed["geomean"] = dict(report["summary"])
    fig, (ax_speed, ax_acc) = figure(f"Int8 on the CPU ({report['config']['preset']} sizes, "
                                     "batch 1)", 2)
    bar_chart(ax_speed, speed, "torch fp32 time / runtime time (>1: faster)", reference=1.0)
    bar_chart(ax_acc, {k: {"accuracy": v} for k, v in report["accuracy"]["accuracy"].items()
                       if isinstance(v, float)}, "digits test accuracy", fmt="{:.3f}")
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes, two epochs")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--calibration", type=int, default=8, help="calibration batches")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    threads = set_threads(args.threads)
    quiet_exporters()
    preset = "quick" if args.quick else "full"
    entries = bench_models(preset)
    repeats = 3 if args.quick else args.repeats
    results = []
    models = [m for m in args.models.split(",") if m]
    if not set(models) <= set(MODELS):
        ap.error(f"unknown models {sorted(set(models) - set(MODELS))}; choose from {MODELS}")
    for name in models:
        t0 = time.perf_counter()
        results.append(bench_latency(entries[name], args.threads, repeats, args.warmup,
                                     2 if args.quick else args.calibration))
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    accuracy = bench_accuracy(min(2, args.epochs) if args.quick else args.epochs, args.seed,
                              args.threads)
    summary = {n: geomean(r["speedup_vs_torch"][n] for r in results
                          if n in r["speedup_vs_torch"]) for n in PEERS}
    report = {"config": {"preset": preset, "threads": args.threads, "repeats": repeats,
                         "warmup": args.warmup, "pipeline": INT8_PIPELINE},
              "machine": machine_facts(threads, load), "results": results,
              "summary": summary, "accuracy": accuracy}
    print(write_report(Path(args.out), report, table(report), plot(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
