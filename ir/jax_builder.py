"""The JAX frontend's building context: evaluates jaxprs equation by equation, keeps the
side tables (names, sources), and holds the small node helpers converters share."""

from __future__ import annotations

import linecache
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .dims import Dim, SymDim, as_dim, parse_dim
from .errors import TypeInferenceError, UnsupportedOpError
from .node import Node
from .types import DTYPES, TensorType

Converter = Callable[["_Builder", Any, list[Node]], "Node | Sequence[Node]"]

# -- building context ------------------------------------------------------------------------
class _Builder:
    """Builds nodes for one trace: records sources and names, evaluates jaxprs."""

    def __init__(self) -> None:
        self.names: dict[Node, str] = {}
        self.sources: dict[Node, str] = {}
        self.source: str | None = None
        self._folded: dict[tuple, Node] = {}
        #: jax's symbolic dimensions (jax.export.symbolic_shape) by name, as smelt's
        self.dims: dict[str, SymDim] = {}

    def dim(self, d: Any) -> Dim:
        """A size jax gives (an int, or a symbolic dimension expression) as a smelt Dim."""
        if isinstance(d, int | np.integer):
            return int(d)
        try:
            return parse_dim(str(d).replace(" ", ""), self.dims)
        except TypeInferenceError as e:
            raise self.unsupported("shape", f"the symbolic size {d} has no smelt form ({e})") \
                from None

    def shape(self, shape: Sequence[Any]) -> tuple[Dim, ...]:
        return tuple(self.dim(d) for d in shape)

    def make(self, op: str, *inputs: Node, **attrs: Any) -> Node:
        node = Node.make(op, inputs, **attrs)
        if self.source:
            self.sources.setdefault(node, self.source)
        return node

    def const(self, value: Any, dtype: str) -> Node:
        node = Node.constant(np.asarray(value), smelt_dtype(dtype, self.source))
        if self.source:
            self.sources.setdefault(node, self.source)
        return node

    def unsupported(self, op: str, hint: str) -> UnsupportedOpError:
        return UnsupportedOpError(op, self.source, "jax", hint)

    def fold(self, x: Node, perm: Sequence[int], shape: Sequence[int]) -> Node:
        """A constant's value transposed and reshaped, memoized so a weight folds once."""
        key = (x, tuple(perm), tuple(shape))  # nodes hash by identity
        if key not in self._folded:
            value = np.ascontiguousarray(np.transpose(x.value, perm).reshape(shape))
            folded = self.const(value, x.dtype)
            if x in self.names:
                self.names[folded] = self.names[x]
            self._folded[key] = folded
        return self._folded[key]

    def run(self, jaxpr: Any, consts: Sequence[Any], args: Sequence[Node],
            call_source: str | None) -> list[Node]:
        """Evaluate `jaxpr` on nodes; equations without a user frame get `call_source`."""
        from jax.extend.core import DropVar

        env: dict[Any, Node] = {}
        for var, value in zip(jaxpr.constvars, consts, strict=True):
            self.source = call_source
            env[var] = self.const(np.asarray(value), var.aval.dtype)
        for var, node in zip(jaxpr.invars, args, strict=True):
            env[var] = node
        for eqn in jaxpr.eqns:
            self.source = source_line(eqn) or call_source
            xs = [self.read(env, v) for v in eqn.invars]
            outs = self.convert(eqn, xs)
            for var, node in zip(eqn.outvars, outs, strict=True):
                if not isinstance(var, DropVar):
                    env[var] = node
        self.source = call_source
        return [self.read(env, v) for v in jaxpr.outvars]

    def read(self, env: dict[Any, Node], v: Any) -> Node:
        from jax.extend.core import Literal

        if isinstance(v, Literal):
            return self.const(np.asarray(v.val), v.aval.dtype)
        return env[v]

    def convert(self, eqn: Any, xs: list[Node]) -> list[Node]:
        name = eqn.primitive.name
        from .jax_converters import CONVERTERS

        converter = CONVERTERS.get(name)
        if converter is None:
            raise self.unsupported(name, (
                f"smelt has no converter for the lax primitive {name!r}; rewrite that line "
                "with supported operations (the table is smelt.ir.jax_frontend.CONVERTERS), "
                "or add a converter for it there"))
        try:
            out = converter(self, eqn, xs)
        except TypeInferenceError as e:  # a smelt op refused this use (a dtype, a shape)
            raise self.unsupported(name, f"smelt's ops cannot express this use: {e}") from e
        outs = [out] if isinstance(out, Node) else list(out)
        for var, node in zip(eqn.outvars, outs, strict=True):
            want = TensorType(self.shape(var.aval.shape), smelt_dtype(var.aval.dtype, self.source))
            if node.type != want:
                raise TypeInferenceError(
                    f"jax frontend bug: {name} became {node.op} of type {node.type}, but jax "
                    f"says {want}\n  at: {self.source}")
        return outs


_SUMMARY = re.compile(r"^(?P<file>.+?):(?P<line>\d+)(?::\d+)? \((?P<fn>.*)\)$")


def source_line(eqn: Any) -> str | None:
    """`path/file.py:line in function: code` of the user frame that made `eqn`, or None.
    (The form smelt's printer shortens to `file.py:line`.) Read from jax's public
    `summarize`, which gives `path:line:column (function)` or "" when no user frame."""
    from jax.extend.source_info_util import summarize

    summary = summarize(eqn.source_info)
    found = _SUMMARY.match(summary)
    if not found:
        return summary or None
    path, line = found["file"], int(found["line"])
    code = linecache.getline(path, line).strip()
    where = f"{path}:{line} in {found['fn']}"
    return f"{where}: {code}" if code else where


def smelt_dtype(dtype: Any, source: str | None = None) -> str:
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if name not in DTYPES:
        raise UnsupportedOpError(f"dtype {name}", source, "jax",
                                 f"cast to one of {', '.join(DTYPES)} before this line")
    return name


def _out_dtype(eqn: Any) -> str:
    return smelt_dtype(eqn.outvars[0].aval.dtype)


# -- small node helpers (skip identities) -----------------------------------------------------
def _cast(b: _Builder, x: Node, dtype: str) -> Node:
    return x if x.dtype == dtype else b.make("cast", x, dtype=dtype)


def _reshape(b: _Builder, x: Node, shape: Sequence[Dim]) -> Node:
    """x in a new shape; a reshape of a reshape reads the original directly."""
    shape = tuple(as_dim(d) for d in shape)
    if x.op == "reshape":
        x = x.inputs[0]
    return x if x.shape == shape else b.make("reshape", x, shape=shape)


def _transpose(b: _Builder, x: Node, perm: Sequence[int]) -> Node:
    """x's axes permuted; a transpose of a transpose is composed into one (or none)."""
    perm = tuple(int(p) for p in perm)
    if x.op == "transpose":
        x, perm = x.inputs[0], tuple(x.attrs["perm"][p] for p in perm)
    return x if perm == tuple(range(len(perm))) else b.make("transpose", x, perm=perm)


def _slice(b: _Builder, x: Node, axis: int, start: int, stop: int, step: int = 1) -> Node:
    if (start, stop, step) == (0, x.shape[axis], 1):
        return x
    return b.make("slice", x, axis=axis, start=start, stop=stop, step=step)


def _scalar(x: Node) -> bool | int | float | None:
    """The value of a rank-0 constant, else None."""
    return x.value.item() if x.is_constant and x.value.ndim == 0 else None


