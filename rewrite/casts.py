"""Which casts lose nothing: `LOSSLESS_CASTS[src]` lists the dtypes that hold every value of
`src` exactly (int8 -> int32, float16 -> float32, ...).

The canonicalize rules drop a cast in a chain only when it is one of these
(passes/identities.py); the instance builder draws them so that those rules fire
(instances.py).
"""

from __future__ import annotations

LOSSLESS_CASTS: dict[str, tuple[str, ...]] = {
    "bool": ("int8", "uint8", "int16", "int32", "int64", "float16", "float32", "float64"),
    "int4": ("int8", "int16", "int32", "int64", "float16", "float32", "float64"),
    "uint4": ("uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"),
    "int8": ("int16", "int32", "int64", "float16", "float32", "float64"),
    "uint8": ("int16", "int32", "int64", "float16", "float32", "float64"),
    "int16": ("int32", "int64", "float32", "float64"),
    "int32": ("int64", "float64"),
    "float16": ("float32", "float64"),
    "bfloat16": ("float32", "float64"),
    "float32": ("float64",),
}
