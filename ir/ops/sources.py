"""Leaves and projections: graph inputs, constants, and reading one part of a tuple."""

from __future__ import annotations

import numpy as np

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, OpDef, register
from ..types import TupleType


def _never(types, attrs):  # inputs and constants get their type when built
    raise TypeInferenceError("inputs and constants are typed at construction")


def _input_ref(*args, **attrs):
    raise TypeInferenceError("graph inputs are bound by the interpreter, not evaluated")


def _constant_ref(*args, **attrs):
    raise TypeInferenceError("constants carry their value")


register(OpDef("input", (), {"name": AttrSpec("str")}, _never, _input_ref,
               doc="A named graph input.", category="source"))
register(OpDef("constant", (), {}, _never, _constant_ref,
               doc="A read-only array (a weight, a scalar).", category="source"))


def _project_infer(types, attrs):
    t = types[0]
    if not isinstance(t, TupleType):
        raise TypeInferenceError("project reads a part of a tuple, but its input is a tensor")
    i = attrs["index"]
    if not 0 <= i < len(t.elements):
        raise TypeInferenceError(f"index {i} is out of range for a {len(t.elements)}-tuple")
    return t.elements[i]


def _project_ref(x, *, index: int) -> np.ndarray:
    return x[index]


register(OpDef("project", ("x",), {"index": AttrSpec("int")}, _project_infer, _project_ref,
               doc="Part `index` of a multi-result op's tuple.", category="shape"))
