"""2:4 structured sparsity (`sparsify-24`, `linear24`) on the CPU: bytes, latency, accuracy.

(a) Linear layers (M x K -> N, float32): a random weight 2:4-masked by magnitude; the dense
    linear on the masked weight and its packed `linear24` form, each compiled by
    `smelt.compile(g, "cpu")` and called through the Relax VM on a device tensor made once,
    and torch float32 `F.linear` (dense, the same masked weight) in the same run. Timing is
    benchmarks/harness.py's `measure` as int8_layers.py uses it: interleaved repeats, a
    warm-up and a ~10 ms batch of calls per visit, then a wait until the process is quiet;
    the median per call is reported.
    Bytes: the dense weight against values + meta. The packed result is checked against the
    interpreter's float64 run of the dense masked layer.
(b) The digits CNN: a conv stem (smelt.zoo's ConvBNAct and BasicBlock, as the pruning
    benchmark's) with an MLP head (64 -> 256 -> 256 -> 10), so that the linears hold most of
    the weights, trained here (seeded) on scikit-learn's digits (smelt/digits.py's
    data and training loop); traced, batch norms folded (`fold-bn`), then
    `sparsify-24` (every linear: K is a multiple of 4) with no fine-tune, and after a
    short masked fine-tune: `to_torch(graph, trainable=True)` makes the kept values the
    parameters, so the mask holds by construction (smelt/digits.py's `fine_tune`).
    Accuracy on the test split, weight bytes, and compiled latency of the whole test set in
    one batch (smelt dense vs smelt 2:4 vs torch eager dense).

Honest expectation: the 2:4 kernel does half the multiply-adds but loads one activation
vector per multiply-add (the gather index changes with every weight), where the dense
register tile reuses each load eight times; on x86 without sparse tensor cores it is not
expected to be faster than dense. The tables give the ratios either way.

    .venv/bin/python -m benchmarks.sparsity          # results/sparsity.{json,md,png}
    .venv/bin/python -m benchmarks.sparsity --quick  # small shapes, 1 epoch (smoke test)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

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
from benchmarks.runtimes import quiet_trace
from smelt.digits import accuracy, digits, fine_tune, train

RESULTS = results_path("sparsity")
BATCH_S = 0.01  # seconds of timed calls per visit (after half as many untimed)
WARMUP = 8  # untimed calls of each runtime before the first repeat
SHAPES = ((128, 768, 3072), (128, 3072, 768), (1, 768, 768), (16, 512, 512))
QUICK_SHAPES = ((8, 64, 64), (1, 128, 32))


# -- (a) linear layers ---------------------------------------------------------------------
def bench_shape(m: int, k: int, n: int, repeats: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    import smelt
    from smelt.ir import Graph, Node
    from smelt.passes.sparsity24 import PACK_24, mask_24
    from smelt.rewrite import rewrite

    rng = np.random.default_rng(0)
    w = mask_24(rng.standard_normal((n, k)).astype(np.float32))
    b = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    xin = Node.input("x", (m, k))
    dense = Graph([xin], [Node.make("linear", [xin, Node.constant(w), Node.constant(b)])])
    packed = rewrite(dense, PACK_24).graph
    modules = {}
    compile_s = {}
    for name, g in (("dense", dense), ("sparse", packed)):
        t0 = time.perf_counter()
        modules[name] = smelt.compile(g, "cpu")
        compile_s[name] = time.perf_counter() - t0
    (want,) = smelt.interpret(dense, x, precision="float64")
    err = float(np.abs(modules["sparse"](x)[0] - want).max())
    xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))

    def torch_call():
        with torch.inference_mode():
            return F.linear(xt, wt, bt)

    t = measure({"smelt_dense": modules["dense"].prepared_call(x),
                 "smelt_24": modules["sparse"].prepared_call(x), "torch_dense": torch_call},
                repeats, warmup=WARMUP, batch_s=BATCH_S)
    ms = {key: v.median * 1e3 for key, v in t.items()}
    values, meta = (c for c in packed.constants() if c.shape[0] == n and c.value.ndim == 2)
    dense_bytes, packed_bytes = w.nbytes, values.value.nbytes + meta.value.nbytes
    return {"m": m, "k": k, "n": n, "ms": ms,
            "sparse_vs_dense": ms["smelt_dense"] / ms["smelt_24"],
            "sparse_vs_torch": ms["torch_dense"] / ms["smelt_24"],
            "dense_vs_torch": ms["torch_dense"] / ms["smelt_dense"],
            "weight_bytes": {"dense": dense_bytes, "packed": packed_bytes},
            "bytes_saved": dense_bytes - packed_bytes,
            "max_abs_error_vs_float64": err, "compile_s": compile_s,
            "kernels": {"dense": modules["dense"].kernels, "sparse": modules["sparse"].kernels}}


# -- (b) the digits CNN --------------------------------------------------------------------
def digits_cnn():
    """Conv stem (32 then 64 channels, 8x8 -> 4x4), global average pool, and an MLP head
    64 -> 256 -> 256 -> 10 (the pool keeps the traced graph free of a batch-sized flatten,
    so the fine-tune can run on mini-batches)."""
    from torch import nn

    from smelt.zoo import BasicBlock, ConvBNAct

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(ConvBNAct(1, 32, 3), BasicBlock(32, 64, stride=2))
            self.head = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256),
                                      nn.ReLU(), nn.Linear(256, 10))

        def forward(self, x):  # noqa: ANN001, ANN202
            return self.head(self.features(x).mean(dim=(2, 3)))

    return Net()


def bench_digits(epochs: int, tune_epochs: int, repeats: int, seed: int, limit: int | None,
                 train_limit: int | None) -> dict[str, Any]:
    import torch

    import smelt
    from smelt.backends.interop import to_torch

    xtr, xte, ytr, yte = digits(seed, limit, train_limit)
    torch.manual_seed(seed)
    net = digits_cnn()
    train_s = train(net, xtr, ytr, epochs, seed)
    traced = quiet_trace(net, (torch.from_numpy(xte),))
    dense = smelt.Pipeline.parse("fold-bn")(traced)
    pipe = smelt.Pipeline.parse("sparsify-24")
    sparse = pipe(dense)
    report = pipe.passes[0].last
    tuned, tune_s = fine_tune(sparse, xtr, ytr, tune_epochs, seed)
    # the same extra epochs for the dense model, so the fine-tune's gain is not just training
    dense_more, _ = fine_tune(dense, xtr, ytr, tune_epochs, seed)
    rows = {}
    for name, g in (("dense", dense), ("dense + fine-tune", dense_more),
                    ("2:4", sparse), ("2:4 + fine-tune", tuned)):
        rows[name] = {"accuracy": accuracy(smelt.interpret(g, xte)[0], yte),
                      "weight_bytes": g.summary().param_bytes,
                      "linear24": sum(n.op == "linear24" for n in g.nodes())}
    compiled = {"dense": smelt.compile(dense, "cpu"), "2:4": smelt.compile(tuned, "cpu")}
    (got,) = compiled["2:4"](xte)
    (ref,) = smelt.interpret(tuned, xte)
    eager = to_torch(dense).eval()
    xt = torch.from_numpy(xte)

    def torch_call():
        with torch.inference_mode():
            return eager(xt)

    t = measure({"smelt_dense": compiled["dense"].prepared_call(xte),
                 "smelt_24": compiled["2:4"].prepared_call(xte), "torch_dense": torch_call},
                repeats, warmup=WARMUP, batch_s=BATCH_S)
    ms = {key: v.median * 1e3 for key, v in t.items()}
    return {"train_epochs": epochs, "train_seconds": round(train_s, 2),
            "finetune_epochs": tune_epochs, "finetune_seconds": round(tune_s, 2),
            "test_images": int(len(yte)), "train_images": int(len(ytr)), "rows": rows,
            "layers": [str(r) for r in report.layers],
            "linear_bytes": dict(zip(("dense", "packed"), report.bytes(), strict=True)),
            "measured_output_error": report.error, "ms": ms,
            "sparse_vs_dense": ms["smelt_dense"] / ms["smelt_24"],
            "compiled_vs_interpreter": float(np.abs(got - ref).max()),
            "kernels": compiled["2:4"].kernels}


# -- report --------------------------------------------------------------------------------
def shape_name(layer: dict[str, Any]) -> str:
    return f"{layer['m']}x{layer['k']} -> {layer['n']}"


def markdown(res: dict[str, Any]) -> str:
    mach = res["machine"]
    lines = ["# 2:4 sparsity on the CPU: smelt linear24 vs smelt dense vs torch fp32 dense", "",
             f"{machine_line(mach)} Median of {res['config']['repeats']} "
             "interleaved repeats. speed-up = other / smelt 2:4 (below 1: 2:4 is slower).", "",
             *markdown_table(
                 ["M x K -> N", "weight bytes dense", "2:4 packed", "saved", "smelt 2:4 ms",
                  "smelt dense ms", "torch dense ms", "2:4 vs smelt dense", "2:4 vs torch",
                  "max error"],
                 [[shape_name(r), f"{r['weight_bytes']['dense']:,}",
                   f"{r['weight_bytes']['packed']:,}",
                   f"{1 - r['weight_bytes']['packed'] / r['weight_bytes']['dense']:.1%}",
                   f"{r['ms']['smelt_24']:.3f}", f"{r['ms']['smelt_dense']:.3f}",
                   f"{r['ms']['torch_dense']:.3f}", f"{r['sparse_vs_dense']:.2f}x",
                   f"{r['sparse_vs_torch']:.2f}x", f"{r['max_abs_error_vs_float64']:.2g}"]
                  for r in res["layers"]])]
    d = res["digits"]
    lines += ["", f"## Digits CNN ({d['test_images']} test images in one batch; "
              f"{d['train_epochs']} epochs training, {d['finetune_epochs']} epochs masked "
              "fine-tune)", "",
              *markdown_table(["model", "accuracy", "weight bytes", "linear24 layers"],
                              [[name, f"{r['accuracy']:.4f}", f"{r['weight_bytes']:,}",
                                str(r["linear24"])] for name, r in d["rows"].items()])]
    lb = d["linear_bytes"]
    lines += ["", f"Linear weights {lb['dense']:,} -> {lb['packed']:,} bytes; measured output "
              f"error of the unfine-tuned mask {d['measured_output_error']:.3g}. Latency: "
              f"smelt 2:4 {d['ms']['smelt_24']:.3f} ms, smelt dense "
              f"{d['ms']['smelt_dense']:.3f} ms, torch dense {d['ms']['torch_dense']:.3f} ms "
              f"(2:4 vs smelt dense {d['sparse_vs_dense']:.2f}x).", "",
              *[f"- {line}" for line in d["layers"]]]
    return "\n".join(lines)


def plot(res: dict[str, Any]) -> Any:
    """Speed of smelt 2:4 against smelt dense and torch dense, per layer and for the digits
    CNN; weight bytes and accuracy of the digits CNN's variants."""
    d = res["digits"]
    speed = {shape_name(r): {"vs smelt dense": r["sparse_vs_dense"],
                             "vs torch dense": r["sparse_vs_torch"]} for r in res["layers"]}
    speed["digits CNN"] = {"vs smelt dense": d["sparse_vs_dense"],
                           "vs torch dense": d["ms"]["torch_dense"] / d["ms"]["smelt_24"]}
    fig, (ax_speed, ax_size, ax_acc) = figure("2:4 sparsity on the CPU: smelt linear24", 3)
    bar_chart(ax_speed, speed, "other time / smelt 2:4 time (>1: 2:4 faster)",
              reference=1.0)
    variants = d["rows"].items()
    bar_chart(ax_size, {name: {"weights": r["weight_bytes"] / 1024} for name, r in variants},
              "digits CNN: weight KiB", fmt="{:.0f}")
    bar_chart(ax_acc, {name: {"accuracy": r["accuracy"]} for name, r in variants},
              "digits CNN: test accuracy", fmt="{:.3f}")
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--finetune", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="two small layers, 1 epoch on 400 images, 64 test images")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    threads = set_threads(args.threads)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    repeats = 3 if args.quick else args.repeats
    layers = []
    for m, k, n in shapes:
        layers.append(bench_shape(m, k, n, repeats))
        r = layers[-1]
        print(f"{m}x{k}->{n}: 2:4 {r['ms']['smelt_24']:.3f} ms, dense "
              f"{r['ms']['smelt_dense']:.3f} ms, torch {r['ms']['torch_dense']:.3f} ms",
              file=sys.stderr, flush=True)
    if args.quick:
        dig = bench_digits(1, 1, repeats, args.seed, 64, 400)
    else:
        dig = bench_digits(args.epochs, args.finetune, repeats, args.seed, None, None)
    res = {"config": {"repeats": repeats, "threads": args.threads, "quick": args.quick,
                      "seed": args.seed},
           "machine": machine_facts(threads, load), "layers": layers, "digits": dig}
    print(write_report(Path(args.out), res, markdown(res), plot(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
