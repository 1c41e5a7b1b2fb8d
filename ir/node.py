"""The one node type: immutable, hash-consed, typed when built.

Structurally equal nodes are the same object (`a is b`), so common-subexpression elimination
is free and equality is identity. A node is an op, its inputs, its attributes and its type;
it changes only by building a new one.

Constants hold read-only numpy arrays. Large constants (weights) are identified by object
identity, small ones (at most `SMALL_CONSTANT` elements: scalars, epsilons, shapes) by value,
so that `x * 1.0` built twice is one node. A constant's content hash is computed lazily.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from .dims import Dim, symbols
from .errors import TypeInferenceError
from .op_table import get_op
from .types import TensorType, TupleType, Type, dtype_of_array

SMALL_CONSTANT = 16

_INTERN: weakref.WeakValueDictionary[tuple, Node] = weakref.WeakValueDictionary()


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _attr_key(attrs: Mapping[str, Any]) -> tuple:
    # floats are keyed by (type, repr) so that 0.0 and -0.0 stay distinct and NaN equals NaN
    def key(v: Any) -> Any:
        if isinstance(v, float):
            return ("f", repr(v))
        if isinstance(v, tuple):
            return tuple(key(x) for x in v)
        return v

    return tuple((k, key(v)) for k, v in sorted(attrs.items()))


_INFERRED: dict[tuple, tuple[dict[str, Any], Type, tuple]] = {}
_INFERRED_LIMIT = 1 << 16


def _infer(op: str, inputs: tuple[Node, ...], attrs: dict[str, Any]) -> tuple[dict, Type]:
    """Check a build and infer its type: (canonical attributes, type)."""
    opdef = get_op(op)
    if op in ("constant", "input"):
        raise TypeInferenceError(f"build {op} nodes with Node.{op}()")
    for i, x in enumerate(inputs):
        if not isinstance(x, Node):
            raise TypeInferenceError(
                f"{op}: input {i} is a {type(x).__name__}, not a Node; wrap arrays with "
                "Node.constant()"
            )
    opdef.check_arity(len(inputs))
    canon = opdef.canonical_attrs({k: _freeze(v) for k, v in attrs.items()})
    in_types = [x.type for x in inputs]
    if op != "project":
        for i, t in enumerate(in_types):
            if isinstance(t, TupleType):
                raise TypeInferenceError(
                    f"{op}: input {i} is a tuple ({t}); read one part with project()"
                )
    try:
        return canon, opdef.infer(in_types, canon)
    except TypeInferenceError as e:
        shapes = ", ".join(str(t) for t in in_types)
        raise TypeInferenceError(f"{op}({shapes}): {e}") from None


def _raw_key(attrs: Mapping[str, Any]) -> tuple:
    """Attributes as given, with their python types (True and 1 must not share a cache slot)."""
    return tuple((k, v.__class__.__name__, repr(v) if isinstance(v, float) else v)
                 for k, v in sorted(attrs.items()))


class Node:
    """One value in a graph. Build with `Node.make`, `Node.constant` or `Node.input`."""

    __slots__ = ("op", "inputs", "attrs", "type", "value", "_hash_cache", "__weakref__")

    op: str
    inputs: tuple[Node, ...]
    attrs: Mapping[str, Any]
    type: Type
    value: np.ndarray | None

    def __init__(self) -> None:  # pragma: no cover - guarded
        raise TypeError("build nodes with Node.make / Node.constant / Node.input")

    # -- construction ------------------------------------------------------------------
    @classmethod
    def _new(
        cls,
        key: tuple,
        op: str,
        inputs: tuple[Node, ...],
        attrs: dict[str, Any],
        type_: Type,
        value: np.ndarray | None = None,
    ) -> Node:
        found = _INTERN.get(key)
        if found is not None:
            return found
        node = object.__new__(cls)
        object.__setattr__(node, "op", op)
        object.__setattr__(node, "inputs", inputs)
        object.__setattr__(node, "attrs", MappingProxyType(attrs))
        object.__setattr__(node, "type", type_)
        object.__setattr__(node, "value", value)
        object.__setattr__(node, "_hash_cache", None)
        _INTERN[key] = node
        return node

    @classmethod
    def make(cls, op: str, inputs: Sequence[Node] = (), **attrs: Any) -> Node:
        """Build (or find) the node `op(inputs){attrs}`; its type is inferred now.

        A type depends only on the op, the operand types and the attributes, so inference is
        memoized on those: building the thousandth node of one signature only interns it."""
        inputs = tuple(inputs)
        try:
            sig = (op, tuple([x.type for x in inputs]), _raw_key(attrs) if attrs else ())
            hit = _INFERRED.get(sig)
        except (AttributeError, TypeError):  # not nodes, or unhashable attrs: the slow path
            sig, hit = None, None
        if hit is None:
            canon, out_type = _infer(op, inputs, attrs)
            hit = (canon, out_type, _attr_key(canon))
            if sig is not None:
                if len(_INFERRED) >= _INFERRED_LIMIT:
                    _INFERRED.clear()
                _INFERRED[sig] = hit
        canon, out_type, akey = hit
        key = (op, tuple([id(x) for x in inputs]), akey)
        return cls._new(key, op, inputs, canon, out_type)

    @classmethod
    def rebuild(cls, node: Node, inputs: Sequence[Node]) -> Node:
        """`node`'s op and attributes on new operands. When the operands have the old
        operands' types, the old type is reused without inference."""
        inputs = tuple(inputs)
        if node.op in ("input", "constant") or len(inputs) != len(node.inputs) or any(
            old.type != new.type for old, new in zip(node.inputs, inputs, strict=True)
        ):
            return cls.make(node.op, inputs, **node.attrs)
        canon = dict(node.attrs)
        key = (node.op, tuple([id(x) for x in inputs]), _attr_key(canon))
        return cls._new(key, node.op, inputs, canon, node.type)

    @classmethod
    def constant(cls, value: Any, dtype: str | None = None) -> Node:
        """A constant holding a read-only copy of `value` (no copy if already read-only)."""
        array = np.asarray(value)
        if dtype is not None:
            from .types import numpy_dtype

            array = array.astype(numpy_dtype(dtype), copy=False)
        smelt_dtype = dtype or dtype_of_array(array)
        if array.flags.writeable:
            array = np.array(array, copy=True)
            array.flags.writeable = False
        type_ = TensorType(tuple(int(d) for d in array.shape), smelt_dtype)
        if array.size <= SMALL_CONSTANT:
            key = ("constant", smelt_dtype, array.shape, np.ascontiguousarray(array).tobytes())
        else:
            key = ("constant", id(array))
        return cls._new(key, "constant", (), {}, type_, array)

    @classmethod
    def input(cls, name: str, shape: Sequence[Dim], dtype: str = "float32") -> Node:
        """A graph input. Inputs with the same name, shape and dtype are the same node. A
        dimension may be a `SymDim` (a named size with a range: ir/dims.py)."""
        if not name.isidentifier():
            raise TypeInferenceError(f"input name {name!r} must be an identifier")
        type_ = TensorType(tuple(shape), dtype)
        attrs = {"name": name}
        key = ("input", name, type_)
        return cls._new(key, "input", (), attrs, type_)

    @classmethod
    def unchecked(
        cls, op: str, inputs: Sequence[Node], attrs: dict[str, Any], type_: Type
    ) -> Node:
        """Build a node with a given type and no inference. For tests of the verifier and for
        parsers that must report a mismatch rather than fail at build time."""
        key = ("unchecked", op, tuple(id(x) for x in inputs), _attr_key(attrs), type_)
        return cls._new(key, op, tuple(inputs), dict(attrs), type_)

    # -- immutability ------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"nodes are immutable; build a new node instead of setting {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("nodes are immutable")

    def __reduce__(self) -> Any:
        raise TypeError("smelt nodes are not picklable; use smelt.save / smelt.load")

    def __copy__(self) -> Node:
        return self

    def __deepcopy__(self, memo: dict) -> Node:
        return self

    # -- queries -----------------------------------------------------------------------
    @property
    def tensor_type(self) -> TensorType:
        if not isinstance(self.type, TensorType):
            raise TypeInferenceError(f"{self.op} produces a tuple; read it with project()")
        return self.type

    @property
    def shape(self) -> tuple[int, ...]:
        return self.tensor_type.shape

    @property
    def dtype(self) -> str:
        return self.tensor_type.dtype

    @property
    def is_constant(self) -> bool:
        return self.op == "constant"

    @property
    def content_hash(self) -> str:
        """sha256 of a constant's dtype, shape and bytes, or of a node's structure."""
        cached = self._hash_cache
        if cached is None:
            h = hashlib.sha256()
            h.update(self.op.encode())
            if self.value is not None:
                h.update(str(self.type).encode())
                h.update(np.ascontiguousarray(self.value).tobytes())
            else:
                h.update(repr(_attr_key(self.attrs)).encode())
                h.update(str(self.type).encode())
                if self.op == "input" and not self.tensor_type.is_static:  # and the ranges
                    h.update(repr(sorted((d.name, d.lo, d.hi)
                                         for d in symbols(self.shape))).encode())
                for x in self.inputs:
                    h.update(x.content_hash.encode())
            cached = h.hexdigest()
            object.__setattr__(self, "_hash_cache", cached)
        return cached

    def attr(self, name: str) -> Any:
        return self.attrs[name]

    def __repr__(self) -> str:
        attrs = ", ".join(f"{k}={v!r}" for k, v in self.attrs.items())
        return f"<Node {self.op}({len(self.inputs)} inputs){{{attrs}}} : {self.type}>"


def make(op: str, *inputs: Node, **attrs: Any) -> Node:
    """Shorthand for `Node.make(op, inputs, **attrs)`."""
    return Node.make(op, inputs, **attrs)


def const(value: Any, dtype: str | None = None) -> Node:
    return Node.constant(value, dtype)


__all__ = ["Node", "make", "const", "SMALL_CONSTANT", "TupleType"]
