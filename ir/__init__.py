"""smelt.ir: the IR (nodes, types, the op table, graphs), its text form, the verifier, the
reference interpreter, and the frontends."""

from . import ops as _ops  # noqa: F401  (fills the op table)
from .errors import (
    FileFormatError,
    InterpretError,
    ParseError,
    SmeltError,
    TypeInferenceError,
    UnsupportedOpError,
    VerificationError,
)
from .graph import Graph, topo_order
from .interpreter import interpret
from .node import Node, const, make
from .op_table import OPS, Cost, OpDef, get_op
from .serialize import load, save
from .text_format import parse_graph, print_graph
from .types import QuantParams, TensorType, TupleType
from .verifier import verify

__all__ = [
    "Cost", "FileFormatError", "Graph", "InterpretError", "Node", "OPS", "OpDef", "ParseError",
    "QuantParams", "SmeltError", "TensorType", "TupleType", "TypeInferenceError",
    "UnsupportedOpError", "VerificationError", "const", "get_op", "interpret", "load", "make",
    "parse_graph", "print_graph", "save", "topo_order", "verify",
]
