"""`make demo`: a digits classifier trained here, taken through smelt from trace to a
Cortex-M4, with a report of accuracy, size and speed at every step.

    python -m smelt.demo [--out build/demo] [--epochs 8] [--verbose]

The story (each step's accuracy is the reference interpreter's, on all 360 test images):
1. train a MobileNetV2-style CNN with a hidden layer on scikit-learn's bundled digits
   (smelt/digits.py; seconds), and trace it with torch.export into smelt's IR;
2. exact passes `fold-bn,equalize,canonicalize` in verify-each mode: every pass's contract is
   checked on sample inputs as it runs (the interpreter's accuracy equals torch's);
3. `prune-channels` (a quarter of the channels, Taylor importance, multiples of 8) and a short
   fine-tune through `to_torch` (lossy: accuracy measured);
4. `sparsify-24` on the linear layers (2:4 packed `linear24`) and a masked fine-tune;
5. W8A8: `quantize(w8a8)` calibrated on 64 training images, per-layer error against the float
   graph (`smelt.layer_errors`), then `fold-qdq`: integer kernels, bit-exact to the Q/DQ graph;
6. every step compiled for the CPU (TVM), checked against the interpreter, and timed at batch 1
   on one thread against torch eager and onnxruntime (running smelt's own ONNX export of the
   float graph and of the Q/DQ graph), interleaved, medians;
7. the int8 model as a C project for a Cortex-M4 (qemu's mps2-an386): flash, SRAM, the arena of
   the static memory plan against its lower bound, instructions per inference, and its outputs
   bit for bit against the interpreter on test images.
It writes report.md, report.html and three PNGs (smelt/demo_report.py) to --out, and the ONNX
files (open them in Netron), then prints a short summary; --verbose prints the graphs and the
pass reports as well.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import smelt
from smelt.digits import accuracy, digits, fine_tune, mobilenet_v2_digits, train

SEED = 0
HIDDEN = 128  # the hidden linear layer: 2:4 sparsity has a layer worth packing
CALIBRATION = 64  # training images calibrating the W8A8 scales (one per batch, as traced)
MCU_IMAGES = 20  # test images run under qemu
BOARD = "mps2-an386"  # Cortex-M4


@dataclass
class Step:
    """One step of the story: its graph, what it promised and what was measured."""

    name: str
    parent: str | None  # the step whose graph this one's pipeline started from
    pipeline: str
    contract: str
    measured: float | None  # the largest output error verify-each saw (random inputs)
    graph: Any
    accuracy: float = 0.0
    compiled: Any = None
    compiled_error: float = 0.0
    bit_exact: bool | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def weight_bytes(self) -> int:
        return self.graph.summary().param_bytes

    @property
    def macs(self) -> int:
        return self.graph.cost().macs


def interpreter_logits(graph: Any, images: np.ndarray) -> np.ndarray:
    """The interpreter's outputs for each image (the graph is traced at batch 1)."""
    return np.concatenate([smelt.interpret(graph, images[i:i + 1])[0]
                           for i in range(len(images))])


def run_pipeline(spec: str, graph: Any, calibration: list, verbose: bool
                 ) -> tuple[Any, str, float | None]:
    """`graph` through the pipeline `spec` in verify-each mode: the result, the contract its
    passes promised together, and the largest output error verify-each measured."""
    pipeline = smelt.Pipeline.parse(spec, verify_each=True)
    out = pipeline(graph, calibration=calibration)
    if verbose:
        print(pipeline.report)
    measured = [p.measured for p in pipeline.report.passes if p.measured is not None]
    return out, str(pipeline.report.contract), max(measured) if measured else None


def median_latencies(calls: dict[str, Any], repeats: int, per_visit: int = 20
                     ) -> dict[str, float]:
    """Median milliseconds per call of each callable: every repeat visits them all in a
    rotated order and times `per_visit` calls (after one untimed), so that drift in the
    machine's load falls on every runtime alike."""
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            calls[name]()
            t0 = time.perf_counter()
            for _ in range(per_visit):
                calls[name]()
            times[name].append((time.perf_counter() - t0) / per_visit * 1e3)
    return {n: float(np.median(t)) for n, t in times.items()}


def onnxruntime_call(graph: Any, path: Path, image: np.ndarray) -> Any:
    """smelt's ONNX export of `graph` written to `path`, run by onnxruntime on one thread."""
    import onnxruntime as ort

    model = smelt.export_onnx(graph, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: image})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smelt.demo",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/demo", help="report folder (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    ap.add_argument("--repeats", type=int, default=9, help="latency repeats (default: 9)")
    ap.add_argument("--verbose", action="store_true", help="print graphs and pass reports")
    opts = ap.parse_args(argv)
    import torch

    from smelt.demo_report import write_report

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    started = time.perf_counter()
    xtr, xte, ytr, yte = digits(SEED)
    calibration = [(xtr[i:i + 1],) for i in range(CALIBRATION)]

    print(f"1/7 training a MobileNetV2-style CNN on {len(ytr)} digits images ...", flush=True)
    net = mobilenet_v2_digits("relu", hidden=HIDDEN)
    train_s = train(net, xtr, ytr, opts.epochs, SEED)
    with torch.no_grad():
        torch_acc = accuracy(net(torch.from_numpy(xte)).numpy(), yte)
    image = xte[:1]
    traced = smelt.trace(net, (torch.from_numpy(image),))
    if opts.verbose:
        print(traced.to_text())

    steps: list[Step] = []

    def add(name: str, parent: str | None, spec: str, checked: tuple[Any, str, float | None],
            seconds: float) -> Step:
        graph, contract, measured = checked
        step = Step(name, parent, spec, contract, measured, graph, seconds=seconds)
        step.accuracy = accuracy(interpreter_logits(graph, xte), yte)
        steps.append(step)
        print(f"    {name:<10} accuracy {step.accuracy:.2%}, weights "
              f"{step.weight_bytes / 1024:.1f} KiB, contract {contract}", flush=True)
        return step

    print("2/7 exact passes, every contract verified as it runs ...", flush=True)
    t0 = time.perf_counter()
    spec = "fold-bn,equalize,canonicalize"
    exact = run_pipeline(spec, traced, calibration, opts.verbose)
    exact_graph = add("float32", None, spec, exact, time.perf_counter() - t0).graph

    def tuned(name: str, parent: Step, spec: str, epochs: int) -> Step:
        """A lossy pipeline from `parent`'s graph, then a fine-tune of `epochs` epochs."""
        t0 = time.perf_counter()
        graph, contract, measured = run_pipeline(spec, parent.graph, calibration, opts.verbose)
        graph, _ = fine_tune(graph, xtr, ytr, epochs, SEED)
        return add(name, parent.name, f"{spec} + {epochs} epoch{'s' * (epochs > 1)} fine-tune",
                   (graph, contract, measured), time.perf_counter() - t0)

    print("3/7 structured pruning and a fine-tune ...", flush=True)
    pruned_step = tuned("pruned", steps[0],
                        "prune-channels(ratio=0.25,importance='taylor',round_to=8)", 2)
    pruned = pruned_step.graph
    print("4/7 2:4 sparsity on the linear layers and a masked fine-tune ...", flush=True)
    tuned("2:4", pruned_step, "sparsify-24", 1)

    print("5/7 W8A8: calibrate, quantize, fold into integer kernels ...", flush=True)
    t0 = time.perf_counter()
    spec = "quantize(scheme=w8a8)"
    qdq, contract, measured = run_pipeline(spec, pruned, calibration, opts.verbose)
    layer_errors = smelt.layer_errors(pruned, qdq, [(xte[i:i + 1],) for i in range(40)])
    int8 = run_pipeline("fold-qdq", qdq, calibration, opts.verbose)[0]
    int8_step = add("W8A8", "pruned", spec + ",fold-qdq", (int8, contract, measured),
                    time.perf_counter() - t0)
    if opts.verbose:
        print(int8.to_text())

    print("6/7 compiling every step for the CPU and timing it ...", flush=True)
    for step in steps:
        t0 = time.perf_counter()
        fused = smelt.Pipeline.parse("fuse")(step.graph) if step.name != "W8A8" else step.graph
        step.compiled = smelt.compile(fused, "cpu", num_cores=1)
        got = np.concatenate([step.compiled(xte[i:i + 1])[0] for i in range(len(xte))])
        want = interpreter_logits(step.graph, xte)
        step.compiled_error = float(np.max(np.abs(got - want)) / max(1.0, np.abs(want).max()))
        if step is int8_step:
            step.bit_exact = bool(np.array_equal(got, want))
        print(f"    {step.name:<10} compiled in {time.perf_counter() - t0:.1f} s; |compiled - "
              f"interpreter| {step.compiled_error:.3g} of the output's scale", flush=True)
    calls = {f"smelt {s.name}": (lambda m=s.compiled: m(image)) for s in steps}
    x_torch = torch.from_numpy(image)

    def torch_eager() -> Any:
        with torch.inference_mode():
            return net(x_torch)

    calls["torch eager float32"] = torch_eager
    calls["onnxruntime float32"] = onnxruntime_call(exact_graph, out / "float32.onnx", image)
    calls["onnxruntime W8A8"] = onnxruntime_call(qdq, out / "w8a8_qdq.onnx", image)
    latency = median_latencies(calls, opts.repeats)

    print(f"7/7 the int8 model as C for a Cortex-M4 ({BOARD}, under qemu) ...", flush=True)
    mcu = smelt.compile(int8, "c", board=BOARD, out_dir=out / "mcu_m4")
    mcu_exact = all(np.array_equal(mcu(xte[i:i + 1])[0], smelt.interpret(int8, xte[i:i + 1])[0])
                    for i in range(MCU_IMAGES))
    mcu_logits = interpreter_logits(int8, xte[:MCU_IMAGES])

    facts = {
        "torch_accuracy": torch_acc, "train_seconds": train_s, "epochs": opts.epochs,
        "train_images": len(ytr), "test_images": len(yte), "latency_ms": latency,
        "mcu": dict(mcu.report), "mcu_bit_exact": mcu_exact, "mcu_images": MCU_IMAGES,
        "mcu_accuracy": accuracy(mcu_logits, yte[:MCU_IMAGES]),
        "seconds": time.perf_counter() - started,
    }
    ok = (abs(steps[0].accuracy - torch_acc) < 1e-9 and int8_step.bit_exact and mcu_exact
          and all(s.compiled_error <= 1e-4 for s in steps[:3]))
    report = write_report(out, steps, layer_errors, mcu.plan, facts, ok)
    print(report.summary)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
