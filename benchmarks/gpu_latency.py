"""GPU latency: smelt's CUDA libraries, run by TVM's runtime alone, against torch CUDA eager.

Two steps, on two machines:
1. `--prepare DIR` (any machine with nvcc; no GPU needed): for each zoo model (smelt/zoo.py),
   trace, run the pipeline (default "canonicalize,fuse"), `smelt.compile(g, "cuda", arch=)`,
   export DIR/<model>.so + .json, and save the inputs and the reference interpreter's outputs
   in DIR/<model>.npz (`in0..`, `out0..`).
2. `--artifacts DIR` (the GPU host): load each library with `tvm.runtime.load_module` and run it
   in a Relax VM on `tvm.cuda(0)`: only TVM's runtime and the fatbin, no compiler. Checks the
   outputs against the saved reference (largest error / output scale), times the library with
   TVM's time evaluator, and times torch eager on CUDA (the zoo model rebuilt from its seed)
   in float32, float16 and bfloat16 (floating inputs cast; a dtype the model cannot run in is
   recorded with its error). Medians of `--repeats` runs of `--number` calls each.

Results: JSON (`--out`, default benchmarks/results/gpu_latency.json) and a markdown table
beside it. Where no CUDA device exists, the run checks every artifact (library, signature,
saved arrays agree), records "no CUDA device" and exits 0: `--artifacts DIR --dry-run` does
only that, anywhere.

    .venv/bin/python benchmarks/gpu_latency.py --prepare /tmp/gpu --arch sm_90
    python benchmarks/gpu_latency.py --artifacts /tmp/gpu            # on the GPU host
    .venv/bin/python benchmarks/gpu_latency.py --artifacts /tmp/gpu --dry-run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_latency.json"
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


def run_smelt(art: dict[str, Any], dev: Any, number: int, repeats: int) -> dict[str, Any]:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(art["lib"])), dev)
    args = [tvm.runtime.tensor(a, dev) for a in art["inputs"]]
    got = [r.numpy() for r in vm["main"](*args)]
    err = max(float(np.abs(g.astype(np.float64) - w).max() / max(1.0, np.abs(w).max()))
              for g, w in zip(got, art["want"], strict=True))
    timer = vm.time_evaluator("main", dev, number=number, repeat=repeats)
    return {"ms": timer(*args).median * 1e3, "rel_error": err}


def run_torch(name: str, inputs: list[np.ndarray], dtype: str, number: int,
              repeats: int) -> dict[str, Any]:
    import torch

    from smelt.zoo import ZOO

    tdt = getattr(torch, dtype)
    model = ZOO[name].build().to("cuda", tdt).eval()
    args = [torch.from_numpy(a).to("cuda") for a in inputs]
    args = [a.to(tdt) if a.is_floating_point() else a for a in args]
    with torch.inference_mode():
        for _ in range(3):
            model(*args)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(repeats):
            start.record()
            for _ in range(number):
                model(*args)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / number)
    return {"ms": statistics.median(times)}


def measure(art: dict[str, Any], dev: Any, number: int, repeats: int) -> dict[str, Any]:
    rec: dict[str, Any] = {"model": art["name"], "arch": art["signature"].get("arch"),
                           "kernels": len(art["signature"].get("cuda_kernels", []))}
    if dev is None:
        return {**rec, "status": "no CUDA device"}
    try:
        rec["smelt"] = run_smelt(art, dev, number, repeats)
    except Exception as e:  # noqa: BLE001 - recorded in the results instead
        rec["smelt"] = {"error": f"{type(e).__name__}: {e}"}
    for dtype in TORCH_DTYPES:
        try:
            rec[f"torch_{dtype}"] = run_torch(art["name"], art["inputs"], dtype, number, repeats)
        except Exception as e:  # noqa: BLE001
            rec[f"torch_{dtype}"] = {"error": f"{type(e).__name__}: {e}"}
    return {**rec, "status": "ran"}


def table(records: list[dict[str, Any]]) -> list[str]:
    cols = ["smelt", *(f"torch_{d}" for d in TORCH_DTYPES)]
    lines = ["| model | arch | kernels | status | " + " | ".join(f"{c} ms" for c in cols)
             + " | smelt rel. error | torch fp32 / smelt |",
             "|---" * (len(cols) + 6) + "|"]
    for r in records:
        ms = [r.get(c, {}).get("ms") for c in cols]
        cells = [f"{m:.3f}" if m is not None else "-" for m in ms]
        err = r.get("smelt", {}).get("rel_error")
        ratio = f"{ms[1] / ms[0]:.2f}x" if ms[0] and ms[1] else "-"
        lines.append(f"| {r['model']} | {r['arch']} | {r['kernels']} | {r['status']} | "
                     + " | ".join(cells) + f" | {'-' if err is None else f'{err:.1e}'} | "
                     f"{ratio} |")
    return lines


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
    records = [measure(a, dev, args.number, args.repeats) for a in arts]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": str(dev) if dev else None, "results": records},
                                   indent=1))
    md = ["# GPU latency (ms, median)", "", *table(records), ""]
    args.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
