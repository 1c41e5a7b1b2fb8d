"""The op table: one entry per op, holding everything every layer needs to know about it.

An `OpDef` has the op's input signature, its attributes (kinds and defaults), its type
inference, its reference semantics in numpy, and its cost (MACs and bytes moved). Per-op
tables in other layers (lowering, pruning propagation) are keyed by op name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from .dims import Dim, as_dim, at_smallest
from .errors import TypeInferenceError
from .types import TensorType, TupleType, Type, check_dtype

REQUIRED = object()


@dataclass(frozen=True, slots=True)
class Cost:
    """Multiply-accumulates and bytes moved. Where sizes are symbolic (a batch `n` in
    [1, 64]), at each symbol's smallest size: the cost of one sample or token, which is what
    ratios between graphs (before and after pruning) compare."""

    macs: int
    bytes: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.bytes + other.bytes)


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeInferenceError(f"attribute {name!r} must be an int, got {value!r}")
    return int(value)


def _as_ints(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return (int(value),)
    if not isinstance(value, Sequence | np.ndarray):
        raise TypeInferenceError(f"attribute {name!r} must be a list of ints, got {value!r}")
    return tuple(_as_int(name, v) for v in value)


def _as_dims(name: str, value: Any) -> tuple[Dim, ...]:
    """Sizes: ints, or expressions of symbolic dimensions (a reshape to [n, 12])."""
    if not isinstance(value, Sequence | np.ndarray):
        raise TypeInferenceError(f"attribute {name!r} must be a list of sizes, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, sympy.Expr):
            out.append(as_dim(v))
        else:
            out.append(_as_int(name, v))
    return tuple(out)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeInferenceError(f"attribute {name!r} must be a number, got {value!r}")
    return float(value)


_COERCE: dict[str, Callable[[str, Any], Any]] = {
    "int": _as_int,
    "ints": _as_ints,
    "dims": _as_dims,
    "dim": lambda n, v: as_dim(v) if isinstance(v, sympy.Expr) else _as_int(n, v),
    "float": _as_float,
    "floats": lambda n, v: tuple(_as_float(n, x) for x in v),
    "bool": lambda n, v: bool(v) if isinstance(v, bool | np.bool_) else _bad(n, "a bool", v),
    "str": lambda n, v: v if isinstance(v, str) else _bad(n, "a string", v),
    "dtype": lambda n, v: check_dtype(str(v)),
}


def _bad(name: str, what: str, value: Any) -> Any:
    raise TypeInferenceError(f"attribute {name!r} must be {what}, got {value!r}")


@dataclass(frozen=True, slots=True)
class AttrSpec:
    kind: str  # one of _COERCE's keys; a trailing '?' allows None
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None

    def coerce(self, name: str, value: Any) -> Any:
        kind = self.kind
        if kind.endswith("?"):
            if value is None:
                return None
            kind = kind[:-1]
        out = _COERCE[kind](name, value)
        if self.choices is not None and out not in self.choices:
            raise TypeInferenceError(
                f"attribute {name!r} must be one of {list(self.choices)}, got {out!r}"
            )
        return out


InferFn = Callable[[list[TensorType], dict[str, Any]], Type]
RefFn = Callable[..., Any]
CostFn = Callable[[list[TensorType], Type, dict[str, Any]], int]


@dataclass(frozen=True)
class OpDef:
    """Everything smelt knows about one op.

    `inputs` names the operands; a trailing `?` marks an optional operand (only at the end),
    a leading `*` a variadic one (only alone). `ref(*arrays, **attrs)` is the op's meaning.
    `macs(in_types, out_type, attrs)` counts multiply-accumulates (0 for data movement).
    """

    name: str
    inputs: tuple[str, ...]
    attrs: dict[str, AttrSpec]
    infer: InferFn
    ref: RefFn
    doc: str = ""
    category: str = "other"
    macs: CostFn | None = None
    commutative: bool = False
    homogeneous: bool = False  # f(a*x) = a*f(x) for a > 0 (relu, identity, leaky relu)
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def variadic(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0].startswith("*")

    def arity_range(self) -> tuple[int, int | None]:
        if self.variadic:
            return 1, None
        required = sum(1 for i in self.inputs if not i.endswith("?"))
        return required, len(self.inputs)

    def canonical_attrs(self, given: dict[str, Any]) -> dict[str, Any]:
        unknown = set(given) - set(self.attrs)
        if unknown:
            raise TypeInferenceError(
                f"{self.name}: unknown attribute(s) {sorted(unknown)}; "
                f"it takes {sorted(self.attrs) or 'none'}"
            )
        out: dict[str, Any] = {}
        for name, spec in self.attrs.items():
            if name in given:
                out[name] = spec.coerce(name, given[name])
            elif spec.default is REQUIRED:
                raise TypeInferenceError(f"{self.name}: attribute {name!r} is required")
            else:
                out[name] = spec.default
        return out

    def check_arity(self, n: int) -> None:
        lo, hi = self.arity_range()
        if n < lo or (hi is not None and n > hi):
            want = f"at least {lo}" if hi is None else (f"{lo}" if lo == hi else f"{lo} to {hi}")
            raise TypeInferenceError(
                f"{self.name} takes {want} input(s) ({', '.join(self.inputs)}), got {n}"
            )

    def cost(self, in_types: list[Type], out_type: Type, attrs: dict[str, Any]) -> Cost:
        macs = self.macs(in_types, out_type, attrs) if self.macs else 0
        moved = sum(t.nbytes for t in in_types if isinstance(t, TensorType))
        if isinstance(out_type, TupleType):
            moved += sum(t.nbytes for t in out_type.elements)
        else:
            moved += out_type.nbytes
        return Cost(at_smallest(macs), at_smallest(moved))


OPS: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.name in OPS:
        raise ValueError(f"op {opdef.name!r} is registered twice")
    OPS[opdef.name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise TypeInferenceError(
            f"unknown op {name!r}; the op table has: {', '.join(sorted(OPS))}"
        ) from None


def defop(
    name: str,
    inputs: tuple[str, ...],
    infer: InferFn,
    attrs: dict[str, AttrSpec] | None = None,
    **kw: Any,
) -> Callable[[RefFn], RefFn]:
    """Decorator: register the decorated numpy function as the reference of op `name`."""

    def wrap(ref: RefFn) -> RefFn:
        register(
            OpDef(name, inputs, attrs or {}, infer, ref, doc=(ref.__doc__ or "").strip(), **kw)
        )
        return ref

    return wrap
