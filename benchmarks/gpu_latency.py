"""GPU latency: smelt's CUDA libraries, run by TVM's runtime alone, against torch CUDA eager.

Two steps, on two machines:
1. `--prepare DIR` (any machine with nvcc; no GPU needed): for each zoo model (smelt/zoo.py),
   trace, run the pipeline (default "canonicalize,fuse"), `smelt.compile(g, "cuda", arch=)`,
   export DIR/<model>.so + .json, and save the inputs and the reference interpreter's outputs
   in DIR/<model>.npz (`in0..`, `out0..`).
2. `--artifacts DIR` (the GPU host): load each library with `tvm.runtime.load_module` and run it
   in a Relax VM on `tvm.cuda(0)`: only TVM's runtime and the fatbin, no compiler. Checks the
   outputs against the saved reference (largest error / output scale), and times the library
   and torch eager on CUDA (the zoo model rebuilt from its seed) in float32, float16 and
   bfloat16 (floating inputs cast; a dtype the model cannot run in is recorded with its
   error), interleaved by benchmarks/harness.py's `measure`: medians of `--repeats` samples
   of `--number` calls each, a sample ending when the device has finished its work.

Results: JSON (`--out`, default benchmarks/results/gpu_latency.json), a markdown table and a
plot of smelt's speed against each torch dtype (.png) beside it. Where no CUDA device exists,
the run checks every artifact (library, signature, saved arrays agree), records "no CUDA
device" and exits 0: `--artifacts DIR --dry-run` does only that, anywhere.

    .venv/bin/python -m benchmarks.gpu_latency --prepare /tmp/gpu --arch sm_90
    python -m benchmarks.gpu_latency --artifacts /tmp/gpu            # on the GPU host
    .venv/bin/python -m benchmarks.gpu_latency --artifacts /tmp/gpu --dry-run
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    bar_chart,
    failure,
    figure,
    markdown_table,
    measure,
    results_path,
    write_report,
)
from benchmarks.runtimes import Runtime

RESULTS = results_path("gpu_latency")
WARMUP = 3  # untimed calls of each runtime before the first repeat
DEFAULT_PIPELINE = "canonicalize,fuse"
TORCH_DTYPES = ("float32", "float16", "bfloat16")


def prepare(out: Path, models: list[str], arch: str, pipeline: str) -> list[Path]:
    """Compile and export each model for CUDA, with its inputs and reference outputs."""
    import smelt
    from smelt.rewrite import Pipeline
    from smelt.zoo import ZOO

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in models:
        entry = ZOO[name]
        args = [a.numpy() for a in entry.inputs()]
        graph = Pipeline.parse(pipeline)(smelt.trace(entry.build(), entry.inputs()))
        module = smelt.compile(graph, "cuda", arch=arch)
        written.append(module.export(out / f"{name}.so"))
        want = smelt.interpret(graph, *args)
        np.savez(out / f"{name}.npz", **{f"in{i}": a for i, a in enumerate(args)},
                 **{f"out{i}": w for i, w in enumerate(want)})
    return written


def load_artifact(lib: Path) -> dict[str, Any]:
    """The signature and arrays of one exported model, checked against each other."""
    meta, arrays = lib.with_suffix(".json"), lib.with_suffix(".npz")
    for p in (meta, arrays):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: write artifacts with --prepare")
    sig = json.loads(meta.read_text())
    if sig.get("target") != "cuda":
        raise ValueError(f"{meta} is not a CUDA library (target={sig.get('target')!r})")
    with np.load(arrays) as z:
        inputs = [z[f"in{i}"] for i in range(len(sig["inputs"]))]
        outputs = [z[f"out{i}"] for i in range(len(sig["outputs"]))]
    for spec, a in zip(sig["inputs"] + sig["outputs"], inputs + outputs, strict=True):
        if list(a.shape) != spec["shape"] or str(a.dtype) != spec["dtype"]:
            raise ValueError(f"{arrays}: an array is {a.dtype}{list(a.shape)}, the signature "
                             f"says {spec['dtype']}{spec['shape']}")
    return {"name": lib.stem, "lib": lib, "signature": sig, "inputs": inputs, "want": outputs}


def cuda_device() -> Any:
    """tvm.cuda(0) if TVM's runtime reaches a CUDA device, else None."""
    import tvm

    try:
        return tvm.cuda(0) if tvm.cuda(0).exist else None
    except Exception:  # noqa: BLE001 - a TVM build without its CUDA runtime
        return None


def smelt_runtime(art: dict[str, Any], dev: Any) -> Runtime:
    """The library in a Relax VM on `dev`, its outputs checked against the saved reference
    (`info["rel_error"]`: largest error / max(1, output scale))."""
    import tvm
    from tvm import relax

    try:
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(art["lib"])), dev)
        args = [tvm.runtime.tensor(a, dev) for a in art["inputs"]]
        got = [r.numpy() for r in vm["main"](*args)]
    except Exception as e:  # noqa: BLE001 - recorded in the results instead
        return Runtime("smelt", error=failure(e))
    err = max(float(np.abs(g.astype(np.float64) - w).max() / max(1.0, np.abs(w).max()))
              for g, w in zip(got, art["want"], strict=True))
    return Runtime("smelt", lambda: vm["main"](*args), info={"rel_error": err})


def torch_runtime(name: str, inputs: list[np.ndarray], dtype: str) -> Runtime:
    """The zoo model in torch eager on CUDA in `dtype` (floating inputs cast)."""
    try:
        import torch

        from smelt.zoo import ZOO

        tdt = getattr(torch, dtype)
        model = ZOO[name].build().to("cuda", tdt).eval()
        args = [torch.from_numpy(a).to("cuda") for a in inputs]
        args = [a.to(tdt) if a.is_floating_point() else a for a in args]

        def call() -> Any:
            with torch.inference_mode():
                return model(*args)

        call()
    except Exception as e:  # noqa: BLE001 - a dtype the model cannot run in is a result
        return Runtime(f"torch_{dtype}", error=failure(e))
    return Runtime(f"torch_{dtype}", call)


def device_sync(dev: Any) -> Callable[[], None]:
    """Wait for the device's work, TVM's and torch's."""
    def sync() -> None:
        dev.sync()
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()

    return sync


def bench_artifact(art: dict[str, Any], dev: Any, number: int, repeats: int) -> dict[str, Any]:
    """One model's record: smelt and torch (each dtype) timed interleaved, in ms per call."""
    rec: dict[str, Any] = {"model": art["name"], "arch": art["signature"].get("arch"),
                           "kernels": len(art["signature"].get("cuda_kernels", []))}
    if dev is None:
        return {**rec, "status": "no CUDA device"}
    rts = [smelt_runtime(art, dev),
           *(torch_runtime(art["name"], art["inputs"], d) for d in TORCH_DTYPES)]
    timings = measure({r.name: r.call for r in rts if r.call is not None}, repeats,
                      warmup=WARMUP, number=number, sync=device_sync(dev))
    for rt in rts:
        rec[rt.name] = ({"error": rt.error} if rt.call is None else
                        {"ms": timings[rt.name].median * 1e3, **rt.info})
    return {**rec, "status": "ran"}


def table(records: list[dict[str, Any]]) -> list[str]:
    cols = ["smelt", *(f"torch_{d}" for d in TORCH_DTYPES)]
    rows = []
    for r in records:
        ms = [r.get(c, {}).get("ms") for c in cols]
        err = r.get("smelt", {}).get("rel_error")
        rows.append([r["model"], str(r["arch"]), str(r["kernels"]), r["status"],
                     *(f"{m:.3f}" if m is not None else "-" for m in ms),
                     "-" if err is None else f"{err:.1e}",
                     f"{ms[1] / ms[0]:.2f}x" if ms[0] and ms[1] else "-"])
    return markdown_table(["model", "arch", "kernels", "status", *(f"{c} ms" for c in cols),
                           "smelt rel. error", "torch fp32 / smelt"], rows)


def plot(records: list[dict[str, Any]], device: str | None) -> Any:
    """smelt's speed against torch eager in each dtype, per model."""
    speed = {}
    for r in records:
        smelt_ms = r.get("smelt", {}).get("ms")
        speed[r["model"]] = {f"vs torch {d}": r[f"torch_{d}"]["ms"] / smelt_ms
                             if smelt_ms and r.get(f"torch_{d}", {}).get("ms") else None
                             for d in TORCH_DTYPES}
    fig, (ax,) = figure(f"GPU latency on {device or 'no CUDA device'}: smelt vs torch eager")
    bar_chart(ax, speed, "torch time / smelt time (>1: smelt faster)", reference=1.0)
    return fig


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prepare", type=Path, help="compile + export the models into this folder")
    ap.add_argument("--artifacts", type=Path, help="run the libraries in this folder")
    ap.add_argument("--dry-run", action="store_true", help="check artifacts, run nothing")
    ap.add_argument("--models", default="", help="comma-separated zoo names (default: all)")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--pipeline", default=DEFAULT_PIPELINE)
    ap.add_argument("--number", type=int, default=20, help="calls per timed repeat")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if (args.prepare is None) == (args.artifacts is None):
        ap.error("give exactly one of --prepare DIR or --artifacts DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    models = [m for m in args.models.split(",") if m]
    if args.prepare is not None:
        from smelt.zoo import ZOO

        for p in prepare(args.prepare, models or list(ZOO), args.arch, args.pipeline):
            print(f"wrote {p}")
        return 0
    libs = sorted(args.artifacts.glob("*.so"))
    libs = [p for p in libs if not models or p.stem in models]
    if not libs:
        print(f"no libraries in {args.artifacts}: write them with --prepare", file=sys.stderr)
        return 2
    arts = [load_artifact(p) for p in libs]
    dev = None if args.dry_run else cuda_device()
    if dev is None:
        print("no CUDA device" + (" (dry run)" if args.dry_run else "") + f": checked "
              f"{len(arts)} artifacts ({', '.join(a['name'] for a in arts)}), ran nothing")
    records = [bench_artifact(a, dev, args.number, args.repeats) for a in arts]
    device = str(dev) if dev else None
    md = "\n".join(["# GPU latency (ms, median)", "", *table(records)])
    print(write_report(args.out, {"device": device, "results": records}, md,
                       plot(records, device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
