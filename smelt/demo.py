"""`make demo`: a bundled model traced into smelt's IR, run by the reference interpreter,
and compiled for the CPU through TVM.

    python -m smelt.demo [--model NAME] [--frontend export|fx]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import smelt
from smelt.zoo import ZOO


def median_time(fn, repeats: int = 7) -> float:
    """Median wall time of `fn()` over `repeats` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _kernel_summary(kernels: dict[str, str | None]) -> str:
    rules = [str(r) for r in kernels.values()]
    counts = ", ".join(f"{r} x{rules.count(r)}" for r in sorted(set(rules)))
    unscheduled = rules.count("None")
    return f"{len(rules)}: {counts}; unscheduled: {unscheduled}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smelt.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2", choices=sorted(ZOO))
    ap.add_argument("--frontend", default="export", choices=("export", "fx"))
    ap.add_argument("--pipeline", default="fold-bn,equalize,canonicalize,fuse",
                    help="passes to run before compiling (default: %(default)s)")
    opts = ap.parse_args(argv)

    entry = ZOO[opts.model]
    model, args = entry.build(), entry.inputs()
    t0 = time.perf_counter()
    trace = smelt.trace if opts.frontend == "export" else smelt.trace_fx
    graph = trace(model, args)
    t_trace = time.perf_counter() - t0
    graph.verify()
    print(graph.to_text())

    pipeline = smelt.Pipeline.parse(opts.pipeline, verify_each=True)
    traced, graph = graph, pipeline(graph, calibration=[args])
    print(pipeline.report)

    with torch.no_grad():
        ref = model(*args).numpy()
        t_eager = median_time(lambda: model(*args))
    (out,) = smelt.interpret(graph, *args)
    t_interp = median_time(lambda: smelt.interpret(graph, *args))
    err = float(np.abs(out - ref).max())

    t0 = time.perf_counter()
    module = smelt.compile(graph, target="cpu")
    t_compile = time.perf_counter() - t0
    (compiled_out,) = module(*args)
    t_compiled = median_time(lambda: module(*args))
    err_compiled = float(np.abs(compiled_out - out).max())

    s = graph.summary()
    rows = [
        ("model", f"{opts.model} (traced with torch.{opts.frontend})"),
        ("pipeline", f"{pipeline} (verify-each: every pass's contract checked)"),
        ("nodes", f"{len(traced)} traced, {s.nodes} after the pipeline"),
        ("ops", ", ".join(f"{k} x{v}" for k, v in s.ops.items() if k not in ("input",))),
        ("MACs", f"{s.macs:,}"),
        ("parameters", f"{s.params:,} ({s.param_bytes / 1024:.1f} KiB)"),
        ("trace time", f"{t_trace * 1e3:.0f} ms"),
        ("eager torch (median of 7)", f"{t_eager * 1e3:.1f} ms"),
        ("reference interpreter (median of 7)", f"{t_interp * 1e3:.1f} ms"),
        ("max |interpreter - eager|", f"{err:.3g} (output scale {np.abs(ref).max():.3g})"),
        ("TVM compile (cpu)", f"{t_compile:.1f} s"),
        ("TVM compiled (median of 7)",
         f"{t_compiled * 1e3:.1f} ms ({t_eager / t_compiled:.2f}x eager torch's speed)"),
        ("max |compiled - interpreter|", f"{err_compiled:.3g}"),
        ("kernels (schedule rule x count)", _kernel_summary(module.kernels)),
    ]
    width = max(len(k) for k, _ in rows)
    print("smelt report")
    print("-" * 72)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    scale = max(1.0, float(np.abs(ref).max()))
    ok = (err <= 1e-4 * scale and err_compiled <= 1e-4 * scale
          and None not in module.kernels.values())
    print("-" * 72)
    print("PASS: the IR means what the model means" if ok else "FAIL: outputs differ")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
