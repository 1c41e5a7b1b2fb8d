"""Per-layer speed of smelt's int8 kernels against torch float32 eager, batch 1.

Layers: every distinct convolution of MobileNetV2 1.0 at 1x3x160x160 and of ResNet-18 at
1x3x128x128 (benchmarks/cpu_models.py; shapes recorded by forward hooks on the models'
nn.Conv2d modules, duplicates counted), and a dense 128x768 -> 3072 layer.

- smelt: one graph per layer, qconv2d (or qlinear) on a uint8 input with a constant int8
  weight and int32 bias, then a per-channel requantize to uint8 with a relu6-style clamp: the
  int8 pipeline's layer after the quantize and fold-qdq passes. `smelt.compile(g, "cpu")`,
  called through the Relax VM on device tensors made once (no numpy conversion): the input
  pack and the fused conv + requantize kernel. Checked bit for bit against smelt.interpret.
- torch: `F.conv2d` (or `F.linear`) in float32 with bias, `torch.inference_mode()`.

Both use `--threads` threads (default 2). Timing is benchmarks/harness.py's `measure`,
interleaved: every repeat visits both runtimes, alternating which goes first; a visit runs
~5 ms of untimed calls (cores out of their idle states, thread pools awake), times a batch of
calls (~10 ms), then waits for the process to go quiet (TVM's pool spins for ~0.2 s after a
call). Reported: the median (and the best) per call, speed = torch / smelt, and per model the
sum over its layers weighted by how often each shape occurs. The machine is shared: the load
average is recorded.

Results: benchmarks/results/int8_layers.json, int8_layers.md and int8_layers.png (speed per
model and per layer) beside it.

    .venv/bin/python -m benchmarks.int8_layers                   # all layers, 11 repeats
    .venv/bin/python -m benchmarks.int8_layers --models resnet18 --repeats 5
    .venv/bin/python -m benchmarks.int8_layers --quick           # 3 small layers, smoke test
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.cpu_models import MobileNetV2, ResNet
from benchmarks.harness import (
    bar_chart,
    figure,
    machine_facts,
    machine_line,
    markdown_table,
    measure,
    results_path,
    set_threads,
    write_report,
)

RESULTS = results_path("int8_layers")
MODELS = {"mobilenet_v2": (MobileNetV2, 160), "resnet18": (ResNet, 128)}
DENSE = {"model": "dense", "kind": "dense", "m": 128, "k": 768, "n": 3072, "count": 1}
BATCH_S = 0.01  # seconds of timed calls per visit (after half as many untimed)
WARMUP = 8  # untimed calls of each runtime before the first repeat


# -- the layers ----------------------------------------------------------------------------
def conv_layers(model: str) -> list[dict[str, Any]]:
    """Distinct conv layers of a model (input shape, weight shape, attributes) with counts."""
    build, size = MODELS[model]
    net = build().eval()
    seen: Counter = Counter()

    def hook(mod: torch.nn.Conv2d, args, _out) -> None:
        seen[(tuple(args[0].shape), tuple(mod.weight.shape), mod.stride, mod.padding,
              mod.dilation, mod.groups)] += 1

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        net(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return [{"model": model, "kind": "conv", "x": list(x), "w": list(w), "stride": list(s),
             "padding": list(p), "dilation": list(d), "groups": g, "count": c}
            for (x, w, s, p, d, g), c in seen.items()]


def layer_name(layer: dict[str, Any]) -> str:
    if layer["kind"] == "dense":
        return f"dense {layer['m']}x{layer['k']}->{layer['n']}"
    _, cin, h, w = layer["x"]
    cout, _, kh, kw = layer["w"]
    dw = " dw" if layer["groups"] > 1 else ""
    return f"{kh}x{kw}/{layer['stride'][0]}{dw} {cin}->{cout} @{h}x{w}"


# -- the two runtimes ----------------------------------------------------------------------
def _requantize(acc, channels: int, axis: int, rng: np.random.Generator):
    from smelt.ir import Node
    from smelt.ir.ops.quant import quantize_multiplier

    pairs = [quantize_multiplier(float(s)) for s in rng.uniform(2e-4, 2e-3, channels)]
    return Node.make("requantize", [acc], multiplier=[m for m, _ in pairs],
                     shift=[s for _, s in pairs], out_zp=0, out_scale=0.05, axis=axis,
                     bits=8, signed=False, qmin=0, qmax=120)


def smelt_layer(layer: dict[str, Any], rng: np.random.Generator):
    """(graph, input array) of the layer's int8 form."""
    from smelt.ir import Graph, Node

    if layer["kind"] == "dense":
        shape, wshape = (layer["m"], layer["k"]), (layer["n"], layer["k"])
    else:
        shape, wshape = tuple(layer["x"]), tuple(layer["w"])
    x = rng.integers(0, 256, shape).astype(np.uint8)
    w = rng.integers(-127, 128, wshape).astype(np.int8)
    b = rng.integers(-(2**16), 2**16, wshape[0]).astype(np.int32)
    xin = Node.input("x", shape, "uint8")
    operands = [xin, Node.constant(w), Node.constant(b)]
    if layer["kind"] == "dense":
        acc = Node.make("qlinear", operands, x_zp=0, w_zp=[0])
    else:
        acc = Node.make("qconv2d", operands, x_zp=0, w_zp=[0], stride=layer["stride"],
                        padding=layer["padding"], dilation=layer["dilation"],
                        groups=layer["groups"])
    out = _requantize(acc, wshape[0], -1 if layer["kind"] == "dense" else 1, rng)
    return Graph([xin], [out]), x


def smelt_runtime(layer: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    import smelt

    graph, x = smelt_layer(layer, rng)
    t0 = time.perf_counter()
    module = smelt.compile(graph, "cpu")
    compile_s = time.perf_counter() - t0
    exact = bool(np.array_equal(module(x)[0], smelt.interpret(graph, x)[0]))
    return {"call": module.prepared_call(x), "compile_s": compile_s, "exact": exact,
            "kernels": module.kernels}


def torch_runtime(layer: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    if layer["kind"] == "dense":
        x = torch.randn(layer["m"], layer["k"])
        w, b = torch.randn(layer["n"], layer["k"]), torch.randn(layer["n"])

        def call():
            with torch.inference_mode():
                return F.linear(x, w, b)
    else:
        x, w = torch.randn(*layer["x"]), torch.randn(*layer["w"])
        b = torch.randn(layer["w"][0])

        def call():
            with torch.inference_mode():
                return F.conv2d(x, w, b, layer["stride"], layer["padding"], layer["dilation"],
                                layer["groups"])
    return {"call": call}


def bench_layer(layer: dict[str, Any], repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    sm, tc = smelt_runtime(layer, rng), torch_runtime(layer, rng)
    t = measure({"smelt": sm["call"], "torch": tc["call"]}, repeats, warmup=WARMUP,
                batch_s=BATCH_S)
    return {**layer, "name": layer_name(layer), "smelt_us": t["smelt"].median * 1e6,
            "torch_us": t["torch"].median * 1e6,
            "speedup": t["torch"].median / t["smelt"].median,
            "smelt_best_us": t["smelt"].best * 1e6, "torch_best_us": t["torch"].best * 1e6,
            "speedup_best": t["torch"].best / t["smelt"].best,
            "exact": sm["exact"], "compile_s": sm["compile_s"], "kernels": sm["kernels"]}


# -- report --------------------------------------------------------------------------------
def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in dict.fromkeys(r["model"] for r in records):
        rs = [r for r in records if r["model"] == model]
        total = {k: sum(r[k] * r["count"] for r in rs)
                 for k in ("smelt_us", "torch_us", "smelt_best_us", "torch_best_us")}
        out[model] = {"layers": sum(r["count"] for r in rs), **total,
                      "speedup": total["torch_us"] / total["smelt_us"],
                      "speedup_best": total["torch_best_us"] / total["smelt_best_us"],
                      "all_exact": all(r["exact"] for r in rs)}
    return out


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = ["# int8 layers: smelt (uint8 x int8 -> requantized uint8) vs torch float32", "",
             f"{machine_line(m)} Median (and best) of {report['config']['repeats']} "
             "interleaved repeats; "
             "speed = torch / smelt; model rows sum the layers, each times its count.", "",
             *markdown_table(
                 ["model", "layers", "smelt ms", "torch fp32 ms", "speed", "speed (best)",
                  "bit-exact"],
                 [[model, str(s["layers"]), f"{s['smelt_us'] / 1e3:.3f}",
                   f"{s['torch_us'] / 1e3:.3f}", f"{s['speedup']:.2f}x",
                   f"{s['speedup_best']:.2f}x", str(s["all_exact"])]
                  for model, s in report["summary"].items()]), ""]
    lines += markdown_table(
        ["model", "layer", "count", "smelt us", "torch us", "speed", "speed (best)", "exact",
         "rules"],
        [[r["model"], r["name"], str(r["count"]), f"{r['smelt_us']:.1f}",
          f"{r['torch_us']:.1f}", f"{r['speedup']:.2f}x", f"{r['speedup_best']:.2f}x",
          str(r["exact"]), ", ".join(sorted({str(v) for v in r["kernels"].values()}))]
         for r in report["results"]])
    return "\n".join(lines)


def plot(report: dict[str, Any]) -> Any:
    """Speed against torch float32 of each model (its layers summed), then of each layer."""
    speed = {f"{m} (all layers)": {"smelt int8": s["speedup"]}
             for m, s in report["summary"].items()}
    speed.update({f"{r['model']} {r['name']}": {"smelt int8": r["speedup"]}
                  for r in report["results"]})
    fig, (ax,) = figure("int8 layers: smelt int8 vs torch float32, batch 1",
                        size=(max(6.4, 0.3 * len(speed)), 4.8))
    bar_chart(ax, speed, "torch time / smelt time (>1: faster)", reference=1.0,
              fmt="{:.2f}" if len(speed) <= 16 else "")
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,resnet18,dense")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="3 small layers (a smoke test)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    threads = set_threads(args.threads)
    layers: list[dict[str, Any]] = []
    for model in args.models.split(","):
        layers += [DENSE] if model == "dense" else conv_layers(model)
    if args.quick:
        layers = [{**DENSE, "m": 8, "k": 64, "n": 64}] + [
            la for la in conv_layers("resnet18") if la["x"][2] <= 8][:2]
    records = []
    for layer in layers:
        records.append(bench_layer(layer, args.repeats))
        r = records[-1]
        print(f"{r['model']:13s} {r['name']:28s} smelt {r['smelt_us']:8.1f} us  torch "
              f"{r['torch_us']:8.1f} us  {r['speedup']:5.2f}x  exact={r['exact']}",
              file=sys.stderr, flush=True)
    report = {"config": {"models": args.models, "repeats": args.repeats,
                         "threads": args.threads, "quick": args.quick},
              "machine": machine_facts(threads, load), "results": records,
              "summary": summarize(records)}
    print(write_report(Path(args.out), report, markdown(report), plot(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
