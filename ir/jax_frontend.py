"""The JAX frontend: `jax.make_jaxpr` traces a function, and each lax primitive of the jaxpr
becomes smelt ops through one table, `CONVERTERS`, keyed by primitive name.

    graph = trace_jax(mlp, params, x, constants=(0,))   # params become constant nodes

Array arguments (pytrees are flattened) become graph inputs named from their argument name and
pytree path (`x`, `params_w`); arguments listed in `constants`, and arrays the function closes
over, become constants. Call-like primitives (jit, custom_jvp_call, remat, ...) are inlined.
A primitive without a converter raises `UnsupportedOpError` naming it and the user's source
line, taken from the equation's `source_info`; nothing is dropped or guessed. Every node built
is recorded in the graph's `sources` side table. Each converter's result is checked against
the shape and dtype jax inferred, so a converter bug fails at trace time, on its line.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .dims import MAX_SIZE, SymDim
from .errors import UnsupportedOpError
from .graph import Graph
from .jax_builder import _Builder, smelt_dtype, source_line  # noqa: F401
from .jax_converters import CONVERTERS  # noqa: F401
from .node import Node


# -- entry point -----------------------------------------------------------------------------
def trace_jax(fn: Callable[..., Any], *args: Any, constants: Sequence[int] = (),
              name: str = "main") -> Graph:
    """Trace `fn(*args)` with jax.make_jaxpr into a smelt Graph.

    Array leaves of `args` become graph inputs in flattening order, except those of the
    arguments whose positions are in `constants`, which become constant nodes. Outputs are
    the flattened leaves of fn's result.
    """
    import jax

    consts_at = {_position(i, len(args)) for i in constants}
    closed = jax.make_jaxpr(fn)(*args)
    b = _Builder()
    b.dims = declared_dims(closed.jaxpr.invars)
    nodes = _bind_arguments(b, fn, args, consts_at, closed.jaxpr.invars)
    outputs = b.run(closed.jaxpr, closed.consts, nodes, None)
    inputs = [n for n in nodes if n.op == "input"]
    return Graph(inputs, outputs, name, names=b.names, sources=b.sources)


_BOUND = re.compile(r"^\s*(?:(?P<a>[A-Za-z_]\w*)\s*(?P<op><=|>=)\s*(?P<k>\d+)"
                    r"|(?P<k2>\d+)\s*(?P<op2><=|>=)\s*(?P<a2>[A-Za-z_]\w*))\s*$")


def declared_dims(invars: Sequence[Any]) -> dict[str, SymDim]:
    """The symbolic dimensions of jax's inputs (`jax.export.symbolic_shape("b, t",
    constraints=["b <= 64"])`) as SymDims: jax's own range for a symbol is [1, inf), narrowed
    by the scope's constraints of the forms `b <= 64`, `t >= 2` (others: an error)."""
    names: dict[str, Any] = {}
    for var in invars:
        for d in var.aval.shape:
            if not isinstance(d, int | np.integer):
                for name in re.findall(r"[A-Za-z_]\w*", str(d)):
                    if name not in ("floordiv", "mod", "max", "min", "non_negative"):
                        names.setdefault(name, d)
    ranges = {name: [1, MAX_SIZE] for name in names}
    scopes = {id(d.scope): d.scope for d in names.values() if hasattr(d, "scope")}
    for scope in scopes.values():
        for c in getattr(scope, "_explicit_constraints", ()):
            text = str(getattr(c, "debug_str", c))
            m = _BOUND.match(text)
            if m is None:
                raise UnsupportedOpError("symbolic_shape", None, "jax",
                                         f"the constraint {text!r}: smelt reads bounds of "
                                         "the forms `b <= 64` and `t >= 2`")
            name, op, k = (m["a"], m["op"], int(m["k"])) if m["a"] else (
                m["a2"], {"<=": ">=", ">=": "<="}[m["op2"]], int(m["k2"]))
            if name in ranges:
                ranges[name][0 if op == ">=" else 1] = k
    return {name: SymDim(name, lo, hi) for name, (lo, hi) in ranges.items()}


def _bind_arguments(b: _Builder, fn: Callable[..., Any], args: Sequence[Any],
                    consts_at: set[int], invars: Sequence[Any]) -> list[Node]:
    """One node per flattened argument leaf: a named input, or a constant for the arguments
    at `consts_at`. jax flattens `args` in the same order to make the jaxpr's invars."""
    import jax

    leaves = [(arg_name, path, leaf, i in consts_at)
              for i, arg_name in enumerate(_arg_names(fn, len(args)))
              for path, leaf in jax.tree_util.tree_flatten_with_path(args[i])[0]]
    nodes, taken, site = [], set(), _definition_site(fn)
    for (arg_name, path, leaf, is_const), var in zip(leaves, invars, strict=True):
        label = _unique(_leaf_name(arg_name, path), taken)
        dtype = smelt_dtype(var.aval.dtype)
        if is_const:
            node = Node.constant(np.asarray(leaf), dtype)
            b.names[node] = label
        else:
            node = Node.input(label, b.shape(var.aval.shape), dtype)
        if site:
            b.sources.setdefault(node, f"{site}: argument {label}")
        nodes.append(node)
    return nodes


def _definition_site(fn: Callable[..., Any]) -> str | None:
    """`path/file.py:line in name` of fn's definition, where Python can find it."""
    try:
        target = inspect.unwrap(fn)
        _, line = inspect.getsourcelines(target)
        path = inspect.getsourcefile(target)
    except (TypeError, OSError):
        return None
    return f"{path}:{line} in {getattr(target, '__qualname__', 'fn')}" if path else None


def _position(i: int, n: int) -> int:
    if not -n <= i < n:
        raise ValueError(f"constants names argument {i}, but the function gets {n} arguments")
    return i % n


def _arg_names(fn: Callable[..., Any], n: int) -> list[str]:
    """Names of fn's first n positional parameters (`arg{i}` where unknown)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    names: list[str] = []
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            names += [f"{p.name}{j}" for j in range(n - len(names))]
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
    names = names[:n]
    return names + [f"arg{i}" for i in range(len(names), n)]


def _leaf_name(arg_name: str, path: Sequence[Any]) -> str:
    parts = [arg_name]
    for key in path:
        attr = next((a for a in ("key", "name", "idx") if hasattr(key, a)), None)
        parts.append(str(getattr(key, attr)) if attr else str(key))
    text = re.sub(r"_+", "_", re.sub(r"\W", "_", "_".join(parts))).strip("_") or "x"
    return text if text.isidentifier() else f"_{text}"


def _unique(label: str, taken: set[str]) -> str:
    out, k = label, 1
    while out in taken:
        out, k = f"{label}_{k}", k + 1
    taken.add(out)
    return out


__all__ = ["CONVERTERS", "source_line", "trace_jax"]

