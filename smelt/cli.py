"""The `smelt` command.

    smelt ops                      the op table: name, inputs, attributes
    smelt inspect MODEL            a graph: its text, op counts, MACs, parameters, bytes
    smelt compile MODEL --pipeline SPEC --target cpu --out DIR [--tune N] [--calibration F]
                                   trace, rewrite (verify-each), compile; DIR gets the library,
                                   the graph before and after, report.md and report.json
    smelt draw MODEL -o graph.svg [--compare OTHER]
                                   a picture of the graph, drawn by Graphviz (differences with
                                   OTHER highlighted); -o graph.dot writes the DOT text
    smelt export-onnx MODEL -o model.onnx [--opset N]
                                   the graph as an ONNX model (float and Q/DQ graphs)
    smelt verify [--rule NAME] [--examples N]
                                   property-check every registered rule's contract
    smelt rules [--markdown]       the rule catalogue

MODEL is a graph saved by smelt.save (`model.smelt`) or `FILE.py:FACTORY`, where FACTORY()
returns (model, example_inputs), a model with an `example_inputs` attribute, or a smelt Graph.
A failure prints one `smelt: error:` message (exit status 2: bad usage, 1: a step failed);
`--debug` shows the Python traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from smelt.cli_commands import (
    CommandFailure,
    UsageError,
    compile_model,
    draw_model,
    export_onnx_model,
    list_rules,
    load_model,
    one_line,
    verify_rules,
)
from smelt.ir import OPS, FileFormatError, ParseError, SmeltError
from smelt.ir.op_table import REQUIRED
from smelt.rewrite.errors import PipelineParseError, UnknownPassError

#: errors in what the command line names: exit status 2; every other failure: 1
USAGE_ERRORS = (UsageError, PipelineParseError, UnknownPassError, ParseError, FileFormatError)


def _ops(args: argparse.Namespace) -> int:
    for name in sorted(OPS):
        d = OPS[name]
        attrs = ", ".join(k if v.default is REQUIRED else f"{k}={v.default!r}"
                          for k, v in d.attrs.items())
        print(f"{name}({', '.join(d.inputs)}){' {' + attrs + '}' if attrs else ''}"
              f"  [{d.category}]  {d.doc.splitlines()[0] if d.doc else ''}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    graph = load_model(args.model).graph
    if not args.summary_only:
        print(graph.to_text())
    s = graph.summary()
    print(f"nodes {s.nodes}  MACs {s.macs:,}  parameters {s.params:,} "
          f"({s.param_bytes:,} bytes)  activations {s.activation_bytes:,} bytes  "
          f"bytes moved {graph.cost().bytes:,}")
    for op, n in s.ops.items():
        print(f"  {op:<24}{n}")
    return 0


def _at_least(minimum: int):
    """An argparse type: a whole number >= minimum."""

    def whole_number(text: str) -> int:
        value = int(text) if text.lstrip("-").isdigit() else minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, "
                                             f"got {text!r}")
        return value

    return whole_number


MODEL_HELP = "a .smelt file written by smelt.save, or FILE.py:FACTORY"
EPILOG = """\
MODEL is a .smelt file written by smelt.save, or FILE.py:FACTORY, where FACTORY() returns
(model, example_inputs), a model with an `example_inputs` attribute, or a smelt Graph.
Exit status: 0 done, 1 a step failed, 2 bad usage (--debug shows tracebacks)."""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="smelt", description="smelt: a verified DL compiler",
                                 epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    common = argparse.ArgumentParser(add_help=False)  # --debug after the command, too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show Python tracebacks on errors")
    sub = ap.add_subparsers(dest="command", required=True)

    def command(name: str, fn, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(fn=fn)
        return p

    command("ops", _ops, "list the op table")
    p = command("inspect", _inspect, "show a graph and its costs")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--summary-only", action="store_true")

    p = command("compile", compile_model, "rewrite a model with a verified pipeline and "
                "compile it; write the library, graphs and a report to --out")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--pipeline", metavar="SPEC", default="fold-bn,equalize,canonicalize,fuse",
                   help="passes to run, e.g. 'fold-bn,fuse' (default: %(default)s)")
    p.add_argument("--target", metavar="NAME", default="cpu",
                   help="what to compile for (default: cpu)")
    p.add_argument("--out", metavar="DIR", required=True, help="the directory to write into")
    p.add_argument("--tune", metavar="N", type=_at_least(0), default=0,
                   help="MetaSchedule trials per kernel (default: 0, no tuning)")
    p.add_argument("--cache-dir", metavar="DIR", help="keep builds in this directory")
    p.add_argument("--calibration", metavar="FILE.npz",
                   help="calibration batches for quantize: one array per graph input (by "
                        "input name, or in order), each stacking the batches along a new "
                        "first axis (default: the example inputs)")

    p = command("draw", draw_model, "draw a graph with Graphviz (SVG), or write it as DOT")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("-o", "--output", metavar="FILE.svg", required=True,
                   help="the file to write: .svg (needs Graphviz's dot) or .dot (DOT text)")
    p.add_argument("--compare", metavar="OTHER",
                   help="a second model: draw both, nodes that differ highlighted")

    p = command("export-onnx", export_onnx_model, "write the graph as an ONNX model")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("-o", "--output", metavar="FILE.onnx", required=True,
                   help="the .onnx file to write")
    p.add_argument("--opset", metavar="N", type=_at_least(18), default=21,
                   help="the ONNX opset to write (default: %(default)s)")

    p = command("verify", verify_rules, "check registered rules' contracts with hypothesis")
    p.add_argument("--rule", metavar="NAME",
                   help="verify only this rule (default: every registered rule)")
    p.add_argument("--examples", metavar="N", type=_at_least(1), default=None,
                   help="random instances per rule (default: hypothesis's 100)")

    p = command("rules", list_rules, "list the registered rewrite rules")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.debug:  # torch.export's deprecation chatter is not the user's business
        warnings.simplefilter("ignore", FutureWarning)
    try:
        return args.fn(args)
    except BrokenPipeError:  # `smelt rules | head`: the reader has gone; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("smelt: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        print(f"smelt: error: {describe(e)}", file=sys.stderr)
        return 2 if isinstance(e, USAGE_ERRORS) else 1


def describe(e: Exception) -> str:
    """A smelt error's own message; anything else is a bug somewhere, so say how to see it."""
    if isinstance(e, CommandFailure) and e.__cause__ is not None:
        return f"{e} (run again with --debug for the traceback)"
    if isinstance(e, SmeltError):
        return str(e)
    return f"{one_line(e)} (unexpected; run again with --debug for the traceback)"


if __name__ == "__main__":
    raise SystemExit(main())
