"""The `smelt` command.

    smelt ops                      the op table: name, inputs, attributes
    smelt inspect MODEL.smelt      a saved graph: its text, op counts, MACs, parameters
"""

from __future__ import annotations

import argparse
import sys

from smelt.ir import OPS, SmeltError, load
from smelt.ir.op_table import REQUIRED


def _ops(args: argparse.Namespace) -> int:
    for name in sorted(OPS):
        d = OPS[name]
        attrs = ", ".join(k if v.default is REQUIRED else f"{k}={v.default!r}"
                          for k, v in d.attrs.items())
        print(f"{name}({', '.join(d.inputs)}){' {' + attrs + '}' if attrs else ''}"
              f"  [{d.category}]  {d.doc.splitlines()[0] if d.doc else ''}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    graph = load(args.model)
    graph.verify()
    if not args.summary_only:
        print(graph.to_text())
    s = graph.summary()
    print(f"nodes {s.nodes}  MACs {s.macs:,}  parameters {s.params:,} "
          f"({s.param_bytes:,} bytes)  activations {s.activation_bytes:,} bytes")
    for op, n in s.ops.items():
        print(f"  {op:<24}{n}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="smelt", description="smelt: a verified DL compiler")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("ops", help="list the op table").set_defaults(fn=_ops)
    p = sub.add_parser("inspect", help="show a saved graph and its costs")
    p.add_argument("model", help="a .smelt file written by smelt.save")
    p.add_argument("--summary-only", action="store_true")
    p.set_defaults(fn=_inspect)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except SmeltError as e:
        print(f"smelt: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
