"""What the torch.export and torch.fx frontends share: dtypes, constants, scalars and
broadcasting with torch's promotion, source lines, and the builder context."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy
import torch
from torch.utils._sympy.functions import CleanDiv, FloorDiv

from .dims import Dim, SymDim, as_dim
from .errors import SmeltError, TypeInferenceError
from .node import Node
from .types import is_float

TORCH_TO_DTYPE: dict[torch.dtype, str] = {
    torch.float64: "float64", torch.float32: "float32", torch.float16: "float16",
    torch.bfloat16: "bfloat16", torch.int64: "int64", torch.int32: "int32",
    torch.int16: "int16", torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool",
}


class TraceError(SmeltError):
    """The model could not be traced (before smelt saw any op); the message says why."""


def smelt_dtype(dtype: torch.dtype) -> str:
    if dtype not in TORCH_TO_DTYPE:
        raise TypeInferenceError(f"torch dtype {dtype} has no smelt dtype")
    return TORCH_TO_DTYPE[dtype]


def tensor_constant(t: torch.Tensor) -> Node:
    """A constant node holding a copy of a torch tensor's values."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return Node.constant(t.float().numpy(), "bfloat16")
    return Node.constant(t.numpy().copy(), smelt_dtype(t.dtype))


_TORCH_DIR = os.path.dirname(torch.__file__)
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<fn>\S+)\n\s*(?P<code>.*)')


def source_line(stack_trace: str | None) -> str | None:
    """'file.py:12 in forward: x = self.conv(x)' for the innermost frame of a stack trace."""
    if not stack_trace:
        return None
    frames = list(_FRAME.finditer(stack_trace))
    if not frames:
        return stack_trace.strip().splitlines()[-1]
    user = [f for f in frames if not f["file"].startswith(_TORCH_DIR)]
    m = (user or frames)[-1]
    return f"{m['file']}:{m['line']} in {m['fn']}: {m['code'].strip()}"


@dataclass
class Builder:
    """Accumulates side tables while a frontend builds nodes."""

    frontend: str
    names: dict[Node, str] = field(default_factory=dict)
    sources: dict[Node, str] = field(default_factory=dict)
    source: str | None = None  # the source line of the op being converted
    #: torch's values (fake tensors) of the operands of the op being converted, where the
    #: frontend has them (torch.export): strides and storage offsets a converter may need
    operand_values: tuple[Any, ...] = ()
    #: torch's size symbols (s0, s77: torch.export's dynamic dimensions) -> smelt's
    dims: dict[Any, SymDim] = field(default_factory=dict)

    def dim(self, d: Any) -> Dim:
        """A size torch gives (an int, or a SymInt of a dynamic dimension) as a smelt Dim."""
        if not isinstance(d, torch.SymInt):
            return int(d)
        expr = d.node.expr
        if expr.is_Integer:
            return int(expr)
        unknown = sorted(str(s) for s in expr.free_symbols if s not in self.dims)
        if unknown:
            raise TypeInferenceError(f"size {expr} uses {', '.join(unknown)}, which no input "
                                     "dimension declares")
        expr = expr.replace(FloorDiv, lambda a, c: sympy.floor(a / c))
        expr = expr.replace(CleanDiv, lambda a, c: a / c)
        return as_dim(expr.xreplace(self.dims))

    def shape(self, value: Any) -> tuple[Dim, ...]:
        """The shape of a torch (fake) tensor in smelt's Dims."""
        return tuple(self.dim(d) for d in value.shape)

    def note(self, node: Node, name: str | None = None) -> Node:
        if name and node not in self.names and node.op not in ("input",):
            self.names[node] = name
        if self.source and node not in self.sources and node.op not in ("input", "constant"):
            self.sources[node] = self.source
        return node

    def make(self, op: str, *inputs: Node, **attrs: Any) -> Node:
        return self.note(Node.make(op, inputs, **attrs))


def scalar(value: Any, like: Node) -> Node:
    """A python number as a 0-d constant of `like`'s dtype (torch's scalar promotion: a
    python float with an integer tensor gives a float32 result)."""
    dtype = like.dtype
    if isinstance(value, float) and not is_float(dtype):
        dtype = "float32"
    if isinstance(value, bool) and dtype != "bool":
        value = int(value)
    from .types import numpy_dtype

    return Node.constant(np.asarray(value, dtype=numpy_dtype(dtype)))


def cast(b: Builder, x: Node, dtype: str) -> Node:
    return x if x.dtype == dtype else b.make("cast", x, dtype=dtype)


def binary(b: Builder, op: str, x: Any, y: Any, out_dtype: str | None = None) -> Node:
    """op(x, y) where either may be a python number; both cast to the result dtype."""
    if not isinstance(x, Node) and not isinstance(y, Node):
        raise TypeInferenceError(f"{op} of two python numbers should have been folded")
    if not isinstance(x, Node):
        x = scalar(x, y)
    if not isinstance(y, Node):
        y = scalar(y, x)
    if out_dtype is None:
        out_dtype = x.dtype if x.dtype == y.dtype else _promote(x, y)
    compare = op in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")
    operand_dtype = _promote(x, y) if compare else out_dtype
    return b.make(op, cast(b, x, operand_dtype), cast(b, y, operand_dtype))


_RANK = ["bool", "uint8", "int8", "int16", "int32", "int64", "bfloat16", "float16", "float32",
         "float64"]


def _promote(x: Node, y: Node) -> str:
    # a 0-d operand does not promote a tensor of the same kind (torch's rule)
    if x.shape == () and y.shape != () and is_float(x.dtype) == is_float(y.dtype):
        return y.dtype
    if y.shape == () and x.shape != () and is_float(x.dtype) == is_float(y.dtype):
        return x.dtype
    return max(x.dtype, y.dtype, key=_RANK.index)


def pad_pairs(pad: Sequence[int], rank: int) -> tuple[int, ...]:
    """torch's F.pad list (last axis first, (before, after) pairs) as smelt's per-axis pads."""
    if len(pad) % 2 or len(pad) // 2 > rank:
        raise TypeInferenceError(f"pad list {list(pad)} does not fit a rank-{rank} tensor")
    pads = [0] * (2 * rank)
    for i in range(len(pad) // 2):
        axis = rank - 1 - i
        pads[2 * axis], pads[2 * axis + 1] = pad[2 * i], pad[2 * i + 1]
    return tuple(pads)


def norm_dim(d: int, rank: int) -> int:
    return d % rank if rank else 0
