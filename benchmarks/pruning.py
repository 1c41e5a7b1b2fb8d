"""Structured channel pruning (`prune-channels`) on a ResNet-style and a MobileNetV2-style CNN:
accuracy, MACs, parameters and compiled latency at several pruning ratios.

Both networks are trained here, seeded, on scikit-learn's bundled digits (1,797 images, 1x8x8;
80/20 split; smelt/digits.py's data and MobileNetV2-style net, smelt.zoo's
BasicBlock for the ResNet-style one), traced into smelt and batch norms folded (`fold-bn`,
exact). Then, for each ratio:

1. `prune-channels(ratio=r, importance='taylor', round_to=8)` on the IR (the dependency groups
   tie the residual adds and depthwise convs; see passes/pruning_groups.py), Taylor scores
   taken on the first training images (one batch of the graph's batch size); `--importance
   l2` ranks by weight magnitude instead, `--scope global` ranks all channels together;
2. accuracy before fine-tuning;
3. a short fine-tune: `to_torch(graph, trainable=True)` is trained with Adam for a few epochs
   on the training split, and `with_weights` writes the weights back into the graph;
4. accuracy after, MACs and parameters per image, and latency of the whole test set in one
   batch: `smelt.compile(graph, "cpu")` and torch eager running the same pruned graph (its
   `to_torch` module), both on one thread, medians of interleaved repeats
   (benchmarks/harness.py's `measure`).

Latency should fall roughly with MACs; the table gives both ratios to ratio 0 so that a pruned
model that is not faster shows (and the JSON marks it: `faster` false). Depthwise convs and
elementwise ops are bound by memory traffic rather than MACs, so the bytes the graph moves
(`Graph.cost().bytes`) are given too. The compiled outputs are checked against smelt's
interpreter.

Published anchor (Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023, table
1): CIFAR-10 ResNet-56 at 2.1x fewer FLOPs keeps 93.64% top-1 against 93.53% unpruned, with a
long fine-tune; here the data set and the fine-tune are tiny, so the numbers show the
mechanism (groups, rounding, speed-up), not the same accuracy.

    .venv/bin/python -m benchmarks.pruning          # ~2 min; results/pruning.{json,md,png}
    .venv/bin/python -m benchmarks.pruning --importance l2 --scope global
    .venv/bin/python -m benchmarks.pruning --quick  # 1 epoch, ratios 0 and 0.5 (smoke test)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    figure,
    library_versions,
    line_chart,
    markdown_table,
    measure,
    results_path,
    write_report,
)
from benchmarks.runtimes import quiet_trace
from smelt.digits import accuracy, digits, fine_tune, mobilenet_v2_digits, train

RESULTS = results_path("pruning")
RATIOS = (0.0, 0.25, 0.5, 0.75)


def resnet_digits():
    """A ResNet-style CNN for 8x8 digits: a stem and three basic blocks (32, 64, 64)."""
    from torch import nn

    from smelt.zoo import BasicBlock, ConvBNAct

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(ConvBNAct(1, 32, 3), BasicBlock(32, 32),
                                          BasicBlock(32, 64, stride=2), BasicBlock(64, 64))
            self.classifier = nn.Linear(64, 10)

        def forward(self, x):  # noqa: ANN001, ANN202
            return self.classifier(self.features(x).mean(dim=(2, 3)))

    return Net()


MODELS = {"resnet": resnet_digits, "mobilenet_v2": lambda: mobilenet_v2_digits("relu6")}


# -- measurements --------------------------------------------------------------------------------
def latencies(compiled, module, x: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median seconds per call of the compiled module and of torch eager, interleaved."""
    import torch

    xt = torch.from_numpy(x)

    def eager():  # noqa: ANN202
        with torch.inference_mode():
            return module(xt)

    t = measure({"smelt": lambda: compiled(x), "torch": eager}, repeats, warmup=2)
    return t["smelt"].median, t["torch"].median


def run_model(name: str, data: tuple, epochs: int, tune_epochs: int, ratios: tuple[float, ...],
              repeats: int, seed: int, importance: str, scope: str) -> dict[str, Any]:
    import torch

    import smelt
    from smelt.backends.interop import to_torch

    xtr, xte, ytr, yte = data
    torch.manual_seed(seed)
    net = MODELS[name]()
    seconds = train(net, xtr, ytr, epochs, seed)
    with torch.no_grad():
        torch_acc = accuracy(net(torch.from_numpy(xte)).numpy(), yte)
    traced = quiet_trace(net, (torch.from_numpy(xte),))
    folded = smelt.Pipeline.parse("fold-bn", verify_each=True)(traced, calibration=[(xte,)])
    batch = len(xte)
    calibration = [(xtr[:batch],)] if len(xtr) >= batch else [(xte,)]
    rows = []
    for ratio in ratios:
        spec = (f"prune-channels(ratio={ratio}, importance={importance!r}, round_to=8, "
                f"scope={scope!r})")
        pipe = smelt.Pipeline.parse(spec)
        pruned = pipe(folded, calibration=calibration)
        before = accuracy(smelt.interpret(pruned, xte)[0], yte)
        tuned, tune_s = fine_tune(pruned, xtr, ytr, tune_epochs if ratio else 0, seed)
        compiled = smelt.compile(tuned, "cpu", num_cores=1)
        (logits,) = compiled(xte)
        (ref,) = smelt.interpret(tuned, xte)
        lat_smelt, lat_torch = latencies(compiled, to_torch(tuned).eval(), xte, repeats)
        rows.append({
            "ratio": ratio, "pipeline": spec,
            "macs_per_image": tuned.cost().macs // batch, "params": tuned.summary().params,
            "bytes_per_image": tuned.cost().bytes // batch,
            "accuracy_pruned": before, "accuracy_finetuned": accuracy(logits, yte),
            "finetune_seconds": round(tune_s, 2),
            "latency_smelt_ms": lat_smelt * 1e3, "latency_torch_ms": lat_torch * 1e3,
            "compiled_vs_interpreter": float(np.max(np.abs(logits - ref))),
            "measured_error": pipe.report.passes[0].notes[0] if ratio else "",
            "groups": [n for n in pipe.report.passes[0].notes[1:]] if ratio else [],
        })
    base = rows[0]
    for r in rows:
        r["macs_ratio"] = base["macs_per_image"] / r["macs_per_image"]
        r["bytes_ratio"] = base["bytes_per_image"] / r["bytes_per_image"]
        r["speedup_smelt"] = base["latency_smelt_ms"] / r["latency_smelt_ms"]
        r["speedup_torch"] = base["latency_torch_ms"] / r["latency_torch_ms"]
        r["faster"] = r["ratio"] == 0 or (r["speedup_smelt"] > 1 and r["speedup_torch"] > 1)
    return {"model": name, "train_epochs": epochs, "train_seconds": round(seconds, 2),
            "finetune_epochs": tune_epochs, "torch_accuracy": torch_acc, "batch": batch,
            "rows": rows}


def run(epochs: int, tune_epochs: int, ratios: tuple[float, ...], repeats: int, seed: int,
        limit: int | None, train_limit: int | None, importance: str = "taylor",
        scope: str = "local") -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # seeded runs give the same numbers; latency on one core
    xtr, xte, ytr, yte = digits(seed, limit, train_limit)
    models = [run_model(name, (xtr, xte, ytr, yte), epochs, tune_epochs, ratios, repeats, seed,
                        importance, scope) for name in MODELS]
    return {
        "benchmark": "pruning", "seed": seed, "ratios": list(ratios), "repeats": repeats,
        "importance": importance, "scope": scope,
        "test_images": int(len(yte)), "train_images": int(len(ytr)), "threads": 1,
        "models": models,
        "anchor": "Fang et al. 2023 (DepGraph), CIFAR-10 ResNet-56, 2.1x fewer FLOPs: 93.64% "
                  "top-1 vs 93.53% unpruned",
        "versions": library_versions("numpy", "torch"),
    }


def table(res: dict[str, Any]) -> str:
    lines = [f"# Channel pruning (prune-channels, importance {res['importance']}, scope "
             f"{res['scope']}, round_to 8; digits, "
             f"{res['test_images']} test images in one batch, 1 thread, median of "
             f"{res['repeats']})", ""]
    for m in res["models"]:
        lines += [f"## {m['model']}: {m['train_epochs']} epochs training "
                  f"({m['train_seconds']} s), {m['finetune_epochs']} epochs fine-tune; "
                  f"torch accuracy {m['torch_accuracy']:.4f}", "",
                  *markdown_table(
                      ["ratio", "MACs / image", "params", "accuracy pruned", "fine-tuned",
                       "smelt ms", "torch ms", "MACs x fewer", "bytes x fewer", "smelt x faster",
                       "torch x faster"],
                      [[str(r["ratio"]), f"{r['macs_per_image']:,}", f"{r['params']:,}",
                        f"{r['accuracy_pruned']:.4f}", f"{r['accuracy_finetuned']:.4f}",
                        f"{r['latency_smelt_ms']:.2f}", f"{r['latency_torch_ms']:.2f}",
                        f"{r['macs_ratio']:.2f}", f"{r['bytes_ratio']:.2f}",
                        f"{r['speedup_smelt']:.2f}",
                        f"{r['speedup_torch']:.2f}" + ("" if r["faster"] else " NOT FASTER")]
                       for r in m["rows"]]), ""]
    lines += [f"Anchor: {res['anchor']}.", ""]
    return "\n".join(lines)


def plot(res: dict[str, Any]) -> Any:
    """Accuracy (pruned, fine-tuned) and speed-up against ratio 0 (MACs, smelt, torch) by
    pruning ratio, one line per model."""
    fig, (ax_acc, ax_speed) = figure(f"Channel pruning ({res['importance']}, {res['scope']}) "
                                     "on digits, by pruning ratio", 2)
    acc, speed = {}, {}
    for m in res["models"]:
        ratios = [r["ratio"] for r in m["rows"]]
        for key, label in (("accuracy_pruned", "pruned"), ("accuracy_finetuned", "fine-tuned")):
            acc[f"{m['model']} {label}"] = (ratios, [r[key] for r in m["rows"]])
        for key, label in (("macs_ratio", "MACs x fewer"), ("speedup_smelt", "smelt x faster"),
                           ("speedup_torch", "torch x faster")):
            speed[f"{m['model']} {label}"] = (ratios, [r[key] for r in m["rows"]])
    line_chart(ax_acc, acc, "pruning ratio", "test accuracy")
    line_chart(ax_speed, speed, "pruning ratio", "against ratio 0 (>1: fewer / faster)",
               reference=1.0)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--finetune", type=int, default=6)
    ap.add_argument("--importance", choices=("l1", "l2", "taylor"), default="taylor")
    ap.add_argument("--scope", choices=("local", "global"), default="local")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="1 epoch on 400 images, 1 fine-tune epoch, ratios 0 and 0.5, "
                         "64 test images")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        res = run(1, 1, (0.0, 0.5), 5, args.seed, 64, 400, args.importance, args.scope)
    else:
        res = run(args.epochs, args.finetune, RATIOS, args.repeats, args.seed, None, None,
                  args.importance, args.scope)
    print(write_report(Path(args.out), res, table(res), plot(res)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
