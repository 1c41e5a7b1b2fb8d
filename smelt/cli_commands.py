"""What the `smelt` command runs (smelt/cli.py parses the command line and reports errors).

A MODEL on the command line is a graph saved by `smelt.save` (`model.smelt`) or a factory in
a Python file (`model.py:build`): `build()` returns `(model, example_inputs)`, a model with an
`example_inputs` attribute, or a smelt Graph. Torch models are traced with torch.export.
"""

from __future__ import annotations

import importlib.util
import json
import re
import reprlib
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from smelt.ir import Graph, SmeltError, load, save


class UsageError(SmeltError):
    """What the command line names is missing or malformed (exit status 2)."""


class CommandFailure(SmeltError):
    """The user's code, or a step of the command, failed (exit status 1)."""


# -- models --------------------------------------------------------------------------------------
_FACTORY = re.compile(r"(?P<file>.+\.py):(?P<name>[A-Za-z_]\w*)")


@dataclass(frozen=True)
class LoadedModel:
    graph: Graph
    inputs: tuple[np.ndarray, ...] | None  # None: a saved graph, which has no example inputs
    source: str

    def example_inputs(self) -> tuple[np.ndarray, ...]:
        """The factory's example inputs, or seeded random ones for a saved graph."""
        if self.inputs is not None:
            return self.inputs
        from smelt.rewrite.equivalence import sample_inputs

        return sample_inputs(self.graph, 1, seed=0)[0]


def load_model(spec: str) -> LoadedModel:
    """A MODEL argument: `FILE.smelt`, or `FILE.py:FACTORY`."""
    m = _FACTORY.fullmatch(spec)
    if m:
        module = _import_file(Path(m["file"]))
        graph, inputs = _call_factory(module, m["name"], spec)
    elif spec.endswith(".py"):
        raise UsageError(f"{spec}: name the factory function too, as {spec}:FACTORY (a "
                         "function returning (model, example_inputs))")
    elif not Path(spec).is_file():
        raise UsageError(f"no such file: {spec} (give a .smelt file written by smelt.save, "
                         "or FILE.py:FACTORY)")
    else:
        graph, inputs = load(spec), None
    graph.verify()
    return LoadedModel(graph, inputs, spec)


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"smelt_model_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise CommandFailure(f"importing {path} failed: {one_line(e)}") from e
    return module


def _call_factory(module: ModuleType, name: str, where: str
                  ) -> tuple[Graph, tuple[np.ndarray, ...] | None]:
    factory = getattr(module, name, None)
    if not callable(factory):
        defined = sorted(k for k, v in vars(module).items() if callable(v)
                         and getattr(v, "__module__", None) == module.__name__)
        also = f" (it defines {', '.join(defined)})" if defined else ""
        raise UsageError(f"{where.rpartition(':')[0]} has no function {name!r}{also}; define "
                         f"{name}() returning (model, example_inputs)")
    try:
        result = factory()
    except Exception as e:
        raise CommandFailure(f"{where}: {name}() raised {one_line(e)}") from e
    if isinstance(result, Graph):
        return result, None
    if isinstance(result, tuple) and len(result) == 2:
        model, inputs = result
    elif hasattr(result, "example_inputs"):
        model, inputs = result, result.example_inputs
    else:
        raise UsageError(f"{where} returned {reprlib.repr(result)}; return (model, "
                         "example_inputs), a model with an example_inputs attribute, or a "
                         "smelt Graph")
    inputs = tuple(inputs) if isinstance(inputs, tuple | list) else (inputs,)
    graph = model if isinstance(model, Graph) else _trace(model, inputs, where)
    return graph, tuple(_numpy(x) for x in inputs)


def _trace(model: Any, inputs: tuple[Any, ...], where: str) -> Graph:
    import torch

    import smelt

    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{where}: the model is a {type(model).__name__}; smelt traces a "
                         "torch.nn.Module (or take a smelt Graph)")
    try:
        return smelt.trace(model, inputs)
    except SmeltError:
        raise
    except Exception as e:
        raise CommandFailure(f"{where}: torch.export could not trace the model: "
                             f"{one_line(e)}") from e


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def one_line(e: BaseException) -> str:
    """`Type: first line of the message`, for errors raised by code that is not smelt's."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


# -- compile -------------------------------------------------------------------------------------
def compile_model(args: Any) -> int:
    """`smelt compile`: trace, run the pipeline with verify-each, compile, write DIR."""
    import smelt

    pipeline = parse_pipeline(args.pipeline)  # bad usage fails before the slow steps
    _check_target(args.target)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory to write into")
    model = load_model(args.model)
    inputs = model.example_inputs()
    t0 = time.perf_counter()
    batches = load_calibration(args.calibration, model.graph) if getattr(
        args, "calibration", None) else [inputs]
    result = pipeline.run(model.graph, calibration=batches)
    t1 = time.perf_counter()
    module = smelt.compile(result.graph, args.target, tune=args.tune, cache_dir=args.cache_dir)
    t2 = time.perf_counter()
    error = max_abs_diff(module(*inputs), smelt.interpret(result.graph, *inputs))
    report = {
        "model": model.source, "pipeline": pipeline.spec(), "target": args.target,
        "tune": args.tune, "contract": str(pipeline.contract),
        "passes": [_pass_json(p) for p in result.report.passes],
        "before": graph_costs(model.graph), "after": graph_costs(result.graph),
        "kernels": module.kernels, "tuning": module.tuning,
        "max_error_compiled_vs_interpreter": error,
        "pipeline_seconds": t1 - t0, "compile_seconds": t2 - t1, "build": module.cache,
        "example_inputs": "the factory's" if model.inputs is not None else "seeded random",
    }
    markdown = write_outputs(out, model.graph, result.graph, module, report)
    print(markdown)
    print(f"wrote {', '.join(report['files'])} to {out}")
    return 0


def load_calibration(path: str, graph: Graph) -> list[tuple[np.ndarray, ...]]:
    """Calibration batches from an .npz: per graph input an array (N, *input shape), keyed
    by the input's name or arr_0, arr_1, ... in input order."""
    try:
        with np.load(path, allow_pickle=False) as data:
            files = dict(data)
    except (OSError, ValueError) as e:
        raise UsageError(f"--calibration {path}: cannot read it as .npz ({e})") from None
    names = graph.input_names()
    arrays = []
    for i, (name, node) in enumerate(zip(names, graph.inputs, strict=True)):
        a = files.get(name, files.get(f"arr_{i}"))
        if a is None:
            raise UsageError(f"--calibration {path} has no array {name!r} (or arr_{i}) for "
                             f"graph input {i}; it has {sorted(files)}")
        if tuple(a.shape[1:]) != tuple(node.shape):
            raise UsageError(f"--calibration {path}: {name!r} has shape {list(a.shape)}; "
                             f"expected (N, {', '.join(map(str, node.shape))}): N batches "
                             "of the input's shape")
        arrays.append(a)
    counts = {len(a) for a in arrays}
    if len(counts) != 1 or 0 in counts:
        raise UsageError(f"--calibration {path}: every input needs the same, non-zero number "
                         f"of batches, got {sorted(counts)}")
    return [tuple(a[k] for a in arrays) for k in range(counts.pop())]


def write_outputs(out: Path, before: Graph, after: Graph, module: Any,
                  report: dict[str, Any]) -> str:
    """The library, both graphs, report.json and report.md (returned) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    module.export(out / "model.so")
    save(before, out / "before.smelt")
    save(after, out / "after.smelt")
    graphs = [f"{g}.{ext}" for g in ("before", "after") for ext in ("smelt", "npz")
              if (out / f"{g}.{ext}").is_file()]
    report["files"] = ["model.so", "model.json", *graphs, "report.md", "report.json"]
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    markdown = report_markdown(report)
    (out / "report.md").write_text(markdown)
    return markdown


def parse_pipeline(spec: str) -> Any:
    from smelt.rewrite import Pipeline, PipelineParseError, UnknownPassError

    try:
        return Pipeline.parse(spec, verify_each=True)
    except (PipelineParseError, UnknownPassError) as e:
        raise UsageError(f"--pipeline: {e}") from None


def _check_target(target: str) -> None:
    from smelt.backends.targets import TargetError, make_target

    try:
        make_target(target)
    except TargetError as e:
        raise UsageError(str(e)) from None


def max_abs_diff(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x.size:
            worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y))))
    return worst


def graph_costs(graph: Graph) -> dict[str, Any]:
    s = graph.summary()
    return {"nodes": s.nodes, "macs": s.macs, "params": s.params, "param_bytes": s.param_bytes,
            "activation_bytes": s.activation_bytes, "bytes_moved": graph.cost().bytes,
            "ops": s.ops}


def _pass_json(p: Any) -> dict[str, Any]:
    return {"name": p.name, "seconds": p.seconds, "rewrites": p.rewrites,
            "nodes": list(p.nodes), "macs": list(p.macs), "contract": str(p.contract),
            "measured_error": p.measured, "fired": dict(p.fired), "notes": list(p.notes)}


def report_markdown(r: dict[str, Any]) -> str:
    """The compile report as markdown: costs, passes, kernels, errors, times."""
    before, after = r["before"], r["after"]
    lines = [f"# smelt compile: {r['model']}", "",
             f"pipeline `{r['pipeline'] or '(none)'}` (verify-each; contract {r['contract']}), "
             f"target `{r['target']}`, tune {r['tune']}", "",
             "| | before | after |", "|---|---:|---:|"]
    for key, label in [("nodes", "nodes"), ("macs", "MACs"), ("params", "parameters"),
                       ("param_bytes", "parameter bytes"),
                       ("activation_bytes", "activation bytes"), ("bytes_moved", "bytes moved")]:
        lines.append(f"| {label} | {before[key]:,} | {after[key]:,} |")
    lines += ["", "| pass | time ms | rewrites | nodes | MACs | contract | measured error |",
              "|---|---:|---:|---:|---:|---|---:|"]
    for p in r["passes"]:
        err = "-" if p["measured_error"] is None else f"{p['measured_error']:.3g}"
        lines.append(f"| {p['name']} | {p['seconds'] * 1e3:.2f} | {p['rewrites']} | "
                     f"{p['nodes'][0]} -> {p['nodes'][1]} | "
                     f"{p['macs'][0]:,} -> {p['macs'][1]:,} | {p['contract']} | {err} |")
    lines += ["", *_kernel_table(r["kernels"], r.get("tuning") or {})]
    lines += ["", f"- max abs difference, compiled vs interpreter, on {r['example_inputs']} "
                  f"example inputs: {r['max_error_compiled_vs_interpreter']:.3g}",
              f"- pipeline time: {r['pipeline_seconds'] * 1e3:.1f} ms",
              f"- compile time: {r['compile_seconds']:.2f} s ({r['build']})", ""]
    return "\n".join(lines)


def _kernel_table(kernels: dict[str, str | None], tuning: dict[str, dict]) -> list[str]:
    """Kernel -> schedule rule; with --tune, which schedule was kept and both timings."""
    if not tuning:
        return ["| kernel | schedule rule |", "|---|---|",
                *(f"| {k} | {v or 'unscheduled'} |" for k, v in kernels.items())]
    lines = ["| kernel | schedule rule | kept | smelt us | tuned us |", "|---|---|---|---:|---:|"]
    for k, v in kernels.items():
        t = tuning.get(k, {})
        lines.append(f"| {k} | {v or 'unscheduled'} | {t.get('kept', '-')} | "
                     f"{t.get('smelt_us', '-')} | {t.get('tuned_us', '-')} |")
    return lines


# -- draw ----------------------------------------------------------------------------------------
def draw_model(args: Any) -> int:
    """`smelt draw`: MODEL, or MODEL beside OTHER with differences highlighted, as SVG (drawn
    by Graphviz's `dot`) or as DOT text (-o FILE.dot, which needs no Graphviz)."""
    from smelt.draw import compare_dot, graph_dot, render

    out = Path(args.output)
    if out.suffix.lower() not in (".svg", ".dot", ".gv"):
        raise UsageError(f"{out}: smelt draws SVG or DOT; give -o FILE.svg or -o FILE.dot")
    graph = load_model(args.model).graph
    if args.compare:
        other = load_model(args.compare).graph
        dot = compare_dot(graph, other, titles=(args.model, args.compare))
    else:
        dot = graph_dot(graph, title=args.model)
    text = render(dot) if out.suffix.lower() == ".svg" else dot
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


# -- export-onnx ---------------------------------------------------------------------------------
def export_onnx_model(args: Any) -> int:
    """`smelt export-onnx`: MODEL's graph as an ONNX model (smelt.export_onnx)."""
    import smelt

    out = Path(args.output)
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"{out}: smelt writes ONNX models; give -o FILE.onnx")
    graph = load_model(args.model).graph
    out.parent.mkdir(parents=True, exist_ok=True)
    model = smelt.export_onnx(graph, out, opset=args.opset)
    print(f"wrote {out}: opset {args.opset}, {len(model.graph.node)} ONNX nodes for "
          f"{len(graph)} smelt nodes")
    return 0


# -- rules and their verification ----------------------------------------------------------------
def list_rules(args: Any) -> int:
    """`smelt rules`: the rule catalogue, as a table or as markdown."""
    import smelt

    registry = smelt.rules()
    print(rules_markdown(registry) if args.markdown else registry)
    return 0


def rules_markdown(registry: Any) -> str:
    lines = ["| rule | family | contract | rewrite |", "|---|---|---|---|"]
    for r in registry:
        lines.append(f"| `{r.name}` | {r.family} | {r.contract} | {_rewrite_cell(r.summary)} |")
    return "\n".join(lines)


def _rewrite_cell(summary: str) -> str:
    """`lhs -> rhs` as code, any note after it (two or more spaces) as text; pipes escaped."""
    rewrite, *note = re.split(r"\s{2,}", summary.strip(), maxsplit=1)
    cell = f"`{rewrite}`" if "`" not in rewrite else rewrite
    return (f"{cell} {note[0]}" if note else cell).replace("|", "\\|")


def verify_rules(args: Any) -> int:
    """`smelt verify`: hypothesis checks every registered rule's contract (or one rule's)."""
    from hypothesis import settings

    import smelt
    from smelt.rewrite.verify import verify_rule

    registry = smelt.rules()
    if args.rule is not None and args.rule not in registry:
        raise UsageError(f"no registered rule {args.rule!r}; `smelt rules` lists them")
    chosen = [registry[args.rule]] if args.rule else list(registry)
    profile = settings(derandomize=True, database=None, deadline=None)
    width = max(len(r.name) for r in chosen)
    failed = []
    for i, r in enumerate(chosen, 1):
        head = f"[{i}/{len(chosen)}] {r.name:<{width}}"
        t0 = time.perf_counter()
        try:
            report = verify_rule(r, args.examples, settings_=profile)
        except Exception as e:
            if args.debug:
                raise
            failed.append(r.name)
            print(f"{head}  FAIL  ({time.perf_counter() - t0:.1f} s)")
            print(textwrap.indent(_failure(e), "    "), flush=True)
            continue
        print(f"{head}  ok    {report.examples} examples, {report.rewrites} rewrites "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    passed = len(chosen) - len(failed)
    rules = f"{len(chosen)} rule{'s' if len(chosen) != 1 else ''}"
    print(f"{rules}: {passed} passed, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


def _failure(e: BaseException) -> str:
    """What went wrong: a smelt error's message (with its counterexample), or one line."""
    if isinstance(e, BaseExceptionGroup):  # hypothesis found several distinct failures
        return "\n".join(_failure(x) for x in e.exceptions)
    return str(e) if isinstance(e, SmeltError) else one_line(e)
