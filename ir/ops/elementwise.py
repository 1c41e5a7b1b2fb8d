"""Elementwise ops: arithmetic with numpy broadcasting, comparisons, activations, casts.

Binary arithmetic requires equal dtypes (frontends insert casts); comparisons give bool.
Activations follow PyTorch's definitions, cited beside each.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ..errors import TypeInferenceError
from ..op_table import AttrSpec, defop
from ..types import TensorType, is_float
from .common import broadcast, float_unary, same_as_first, same_dtype


def _binary_infer(types: list[TensorType], attrs: dict) -> TensorType:
    return TensorType(broadcast([t.shape for t in types]), same_dtype(types))


def _numeric_binary_infer(types: list[TensorType], attrs: dict) -> TensorType:
    """sub, div, pow: no meaning on bool (as torch); add and mul are `or` and `and` there."""
    out = _binary_infer(types, attrs)
    if out.dtype == "bool":
        raise TypeInferenceError("needs numeric inputs, got bool; use the logical ops, or cast")
    return out


def _compare_infer(types: list[TensorType], attrs: dict) -> TensorType:
    same_dtype(types)
    return TensorType(broadcast([t.shape for t in types]), "bool")


def _binary(name: str, fn, commutative: bool = False, doc: str = "",
            infer=_binary_infer) -> None:
    def ref(a, b):
        return fn(a, b)

    ref.__doc__ = doc
    defop(name, ("a", "b"), infer, category="elementwise", commutative=commutative)(ref)


def _int_safe_div(a, b):
    if np.issubdtype(a.dtype, np.integer):  # torch's default rounding for int // is trunc
        return np.trunc(a / b).astype(a.dtype)
    return np.divide(a, b)


def _pow(a, b):
    return np.power(a, b)


_binary("add", np.add, commutative=True, doc="a + b")
_binary("sub", np.subtract, doc="a - b", infer=_numeric_binary_infer)
_binary("mul", np.multiply, commutative=True, doc="a * b")
_binary("div", _int_safe_div, doc="a / b (integers: truncated)", infer=_numeric_binary_infer)
_binary("pow", _pow, doc="a ** b", infer=_numeric_binary_infer)
_binary("maximum", np.maximum, commutative=True, doc="max(a, b), NaN-propagating")
_binary("minimum", np.minimum, commutative=True, doc="min(a, b), NaN-propagating")

for _name, _fn, _comm in [
    ("equal", np.equal, True), ("not_equal", np.not_equal, True), ("less", np.less, False),
    ("less_equal", np.less_equal, False), ("greater", np.greater, False),
    ("greater_equal", np.greater_equal, False),
]:
    defop(_name, ("a", "b"), _compare_infer, category="elementwise", commutative=_comm)(
        lambda a, b, _f=_fn: _f(a, b)
    )


def _logical_infer(types, attrs):
    for t in types:
        if t.dtype != "bool":
            raise TypeInferenceError(f"logical ops take bool inputs, got {t.dtype}")
    return TensorType(broadcast([t.shape for t in types]), "bool")


defop("logical_and", ("a", "b"), _logical_infer, category="elementwise", commutative=True)(
    lambda a, b: np.logical_and(a, b))
defop("logical_or", ("a", "b"), _logical_infer, category="elementwise", commutative=True)(
    lambda a, b: np.logical_or(a, b))
defop("logical_not", ("x",), _logical_infer, category="elementwise")(np.logical_not)


def _unary(name: str, fn, infer=float_unary, homogeneous: bool = False, attrs=None,
           doc: str = "") -> None:
    fn.__doc__ = doc or fn.__doc__
    defop(name, ("x",), infer, attrs=attrs, category="elementwise",
          homogeneous=homogeneous)(fn)


def _f(x, v):
    """A python scalar as an array of x's dtype, so float32 math stays float32."""
    return np.asarray(v, dtype=x.dtype)


def neg(x):
    return np.negative(x)


def abs_(x):
    return np.abs(x)


def relu(x):
    return np.maximum(x, _f(x, 0))


def relu6(x):
    return np.minimum(np.maximum(x, _f(x, 0)), _f(x, 6))


def leaky_relu(x, *, alpha: float):
    return np.where(x >= 0, x, x * _f(x, alpha))


def gelu(x, *, approximate: str):
    if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        inner = _f(x, np.sqrt(2.0 / np.pi)) * (x + _f(x, 0.044715) * x * x * x)
        return _f(x, 0.5) * x * (_f(x, 1) + np.tanh(inner))
    return _f(x, 0.5) * x * (_f(x, 1) + special.erf(x * _f(x, 1 / np.sqrt(2.0))).astype(x.dtype))


def sigmoid(x):
    return special.expit(x).astype(x.dtype)


def silu(x):
    return x * sigmoid(x)


def hardsigmoid(x):  # relu6(x + 3) / 6
    return relu6(x + _f(x, 3)) / _f(x, 6)


def hardswish(x):  # x * relu6(x + 3) / 6
    return x * relu6(x + _f(x, 3)) / _f(x, 6)


def rsqrt(x):
    return _f(x, 1) / np.sqrt(x)


def reciprocal(x):
    return _f(x, 1) / x


def erf(x):
    return special.erf(x).astype(x.dtype)


def _numeric_unary(types, attrs):
    t = types[0]
    if t.dtype == "bool":
        raise TypeInferenceError("needs a numeric input, got bool")
    return TensorType(t.shape, t.dtype)


_unary("neg", neg, infer=_numeric_unary, homogeneous=True, doc="-x")
_unary("abs", abs_, infer=_numeric_unary, doc="|x|")
_unary("relu", relu, infer=_numeric_unary, homogeneous=True, doc="max(x, 0)")
_unary("relu6", relu6, infer=_numeric_unary, doc="min(max(x, 0), 6)")
_unary("leaky_relu", leaky_relu, homogeneous=True, attrs={"alpha": AttrSpec("float", 0.01)},
       doc="x if x >= 0 else alpha * x")
_unary("gelu", gelu, attrs={"approximate": AttrSpec("str", "none", ("none", "tanh"))},
       doc="x * Phi(x); approximate='tanh' is the tanh form")
_unary("silu", silu, doc="x * sigmoid(x)")
_unary("sigmoid", sigmoid, doc="1 / (1 + exp(-x))")
_unary("tanh", np.tanh, doc="tanh(x)")
_unary("hardswish", hardswish, doc="x * relu6(x + 3) / 6")
_unary("hardsigmoid", hardsigmoid, doc="relu6(x + 3) / 6")
_unary("exp", np.exp, doc="e^x")
_unary("log", np.log, doc="ln x")
_unary("sqrt", np.sqrt, doc="sqrt(x)")
_unary("rsqrt", rsqrt, doc="1 / sqrt(x)")
_unary("reciprocal", reciprocal, doc="1 / x")
_unary("sin", np.sin, doc="sin(x)")
_unary("cos", np.cos, doc="cos(x)")
_unary("erf", erf, doc="the error function")
_unary("floor", np.floor, doc="floor(x)")
_unary("round", np.round, doc="round half to even")


def _clamp_infer(types, attrs):
    if attrs["min"] is None and attrs["max"] is None:
        raise TypeInferenceError("clamp needs min, max, or both")
    out = _numeric_unary(types, attrs)
    if not is_float(out.dtype):
        for name in ("min", "max"):
            v = attrs[name]
            if v is not None and not float(v).is_integer():
                raise TypeInferenceError(
                    f"clamp of an {out.dtype} tensor needs integral bounds, got {name}={v}; "
                    "round the bound (ceil for min, floor for max) or cast x to float"
                )
    return out


def _bound(x, v):
    """A bound as x's dtype; integer bounds beyond the dtype's range saturate."""
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        v = min(max(v, info.min), info.max)
    return _f(x, v)


@defop("clamp", ("x",), _clamp_infer, category="elementwise",
       attrs={"min": AttrSpec("float?", None), "max": AttrSpec("float?", None)})
def clamp(x, *, min, max):
    """min(max(x, min), max); either bound may be absent. Integer tensors take integral
    bounds; a bound past the dtype's range clamps nothing on that side."""
    if min is not None:
        x = np.maximum(x, _bound(x, min))
    if max is not None:
        x = np.minimum(x, _bound(x, max))
    return x


def _where_infer(types, attrs):
    cond, a, b = types
    if cond.dtype != "bool":
        raise TypeInferenceError(f"condition must be bool, got {cond.dtype}")
    return TensorType(broadcast([cond.shape, a.shape, b.shape]), same_dtype([a, b]))


@defop("where", ("cond", "a", "b"), _where_infer, category="elementwise")
def where(cond, a, b):
    """a where cond else b, broadcast."""
    return np.where(cond, a, b)


def _cast_infer(types, attrs):
    return TensorType(types[0].shape, attrs["dtype"])


@defop("cast", ("x",), _cast_infer, category="elementwise", attrs={"dtype": AttrSpec("dtype")})
def cast(x, *, dtype):
    """x converted to `dtype`; float to int truncates toward zero (as torch and C do)."""
    from ..types import numpy_dtype

    target = numpy_dtype(dtype)
    if np.issubdtype(x.dtype, np.floating) and np.issubdtype(target, np.integer):
        x = np.trunc(x)
    return x.astype(target)


__all__ = ["is_float", "same_as_first"]
