"""Tensor types: shape, dtype, and optional quantization and layout annotations.

A type is computed when a node is built (from its op's inference rule) and is part of
what a node *is*: two nodes with equal op, inputs and attrs have equal types.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dims import Dim, as_dim, is_static
from .errors import TypeInferenceError

# Canonical dtype names and their short printed forms.
DTYPES: dict[str, str] = {
    "float64": "f64",
    "float32": "f32",
    "float16": "f16",
    "bfloat16": "bf16",
    "int64": "i64",
    "int32": "i32",
    "int16": "i16",
    "int8": "i8",
    "uint8": "u8",
    "int4": "i4",
    "uint4": "u4",
    "bool": "bool",
}
SHORT_TO_DTYPE = {short: long for long, short in DTYPES.items()}
FLOAT_DTYPES = frozenset({"float64", "float32", "float16", "bfloat16"})
INT_DTYPES = frozenset({"int64", "int32", "int16", "int8", "uint8", "int4", "uint4"})

# numpy storage for each dtype (bfloat16 and 4-bit types have no numpy dtype of their own:
# bfloat16 values are held in float32, 4-bit values in int8/uint8).
_NUMPY_STORAGE = {
    "float64": np.float64,
    "float32": np.float32,
    "float16": np.float16,
    "bfloat16": np.float32,
    "int64": np.int64,
    "int32": np.int32,
    "int16": np.int16,
    "int8": np.int8,
    "uint8": np.uint8,
    "int4": np.int8,
    "uint4": np.uint8,
    "bool": np.bool_,
}


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise TypeInferenceError(
            f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}"
        )
    return dtype


def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype that stores values of a smelt dtype."""
    return np.dtype(_NUMPY_STORAGE[check_dtype(dtype)])


def dtype_of_array(array: np.ndarray) -> str:
    """The smelt dtype of a numpy array; raises for dtypes smelt does not model."""
    name = np.dtype(array.dtype).name
    if name not in DTYPES:
        raise TypeInferenceError(
            f"numpy dtype {name} has no smelt dtype; cast to one of {', '.join(DTYPES)}"
        )
    return name


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    return dtype in INT_DTYPES


@dataclass(frozen=True, slots=True)
class QuantParams:
    """Affine quantization: real = scale * (q - zero_point).

    `axis` is None for per-tensor parameters (one scale), else the channel axis with one
    scale and zero point per channel. `group` > 0 means groups of `group` consecutive
    elements along `axis` share a scale (weight-only group quantization).
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    bits: int = 8
    axis: int | None = None
    group: int = 0

    def __post_init__(self) -> None:
        if len(self.scale) != len(self.zero_point):
            raise TypeInferenceError(
                f"quantization has {len(self.scale)} scales but "
                f"{len(self.zero_point)} zero points"
            )
        if self.axis is None and len(self.scale) != 1:
            raise TypeInferenceError("per-tensor quantization needs exactly one scale")
        if not 2 <= self.bits <= 32:
            raise TypeInferenceError(f"quantization bit width {self.bits} is not in [2, 32]")


@dataclass(frozen=True, slots=True)
class TensorType:
    """A tensor's shape and dtype, plus optional annotations. A dimension is an int or an
    integer expression of named sizes with ranges (ir/dims.py): `f32[n,3,224,224]`."""

    shape: tuple[Dim, ...]
    dtype: str
    quant: QuantParams | None = None
    layout: str | None = None

    def __post_init__(self) -> None:
        check_dtype(self.dtype)
        if all(type(d) is int and d >= 0 for d in self.shape):
            return
        dims = tuple(as_dim(d) for d in self.shape)
        if any(isinstance(d, int) and d < 0 for d in dims):
            raise TypeInferenceError(f"shape {list(self.shape)} must be non-negative")
        object.__setattr__(self, "shape", dims)

    @property
    def is_static(self) -> bool:
        """True when every dimension is an int (no symbol)."""
        return is_static(self.shape)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> Dim:
        n = 1
        for d in self.shape:
            n *= d
        return n if isinstance(n, int) else as_dim(n)

    @property
    def nbytes(self) -> int:
        bits = {"int4": 4, "uint4": 4, "bool": 8}.get(self.dtype)
        if bits is None:
            bits = 16 if self.dtype == "bfloat16" else numpy_dtype(self.dtype).itemsize * 8
        return as_dim((self.size * bits + 7) // 8)

    def with_shape(self, shape: tuple[int, ...]) -> TensorType:
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        from .text_format import format_type

        return format_type(self)


@dataclass(frozen=True, slots=True)
class TupleType:
    """The type of a multi-result op; read its parts through `project` nodes."""

    elements: tuple[TensorType, ...]

    def __str__(self) -> str:
        from .text_format import format_type

        return format_type(self)


Type = TensorType | TupleType
