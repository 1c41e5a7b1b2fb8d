"""qadd and qmean (ir/ops/qarith.py) for smelt.to_torch and smelt.to_jax, exactly as the
reference: int64 numerators from `rescale_plan`, divided with rounding to nearest, ties to
even (q = floor(n / d), r = n - q d; up when 2r > d, or 2r = d and q is odd), then the zero
point and the clamp. `xp` is the array module: torch or jax.numpy."""

from __future__ import annotations

from typing import Any

from smelt.ir.ops.qarith import rescale_plan
from smelt.ir.ops.quant import clamp_bounds


def _rounded(xp: Any, n: Any, d: int) -> Any:
    q = xp.floor_divide(n, d)
    r2 = (n - q * d) * 2
    up = (r2 > d) | ((r2 == d) & (q % 2 == 1))
    return q + up.astype(n.dtype) if hasattr(up, "astype") else q + up.to(n.dtype)


def _out(xp: Any, v: Any, dtype: Any, attrs: dict) -> Any:
    _, lo, hi = clamp_bounds(attrs)
    v = xp.clip(v + attrs["out_zp"], lo, hi)
    return v.astype(dtype) if hasattr(v, "astype") else v.to(dtype)


def _i64(xp: Any, x: Any) -> Any:
    return x.astype(xp.int64) if hasattr(x, "astype") else x.to(xp.int64)


def qadd(xp: Any, dtypes: dict, a: Any, b: Any, **attrs: Any) -> Any:
    (ca, cb), den = rescale_plan((attrs["a_scale"], attrs["b_scale"]), attrs["out_scale"])
    n = (_i64(xp, a) - attrs["a_zp"]) * ca + (_i64(xp, b) - attrs["b_zp"]) * cb
    dtype, _, _ = clamp_bounds(attrs)
    return _out(xp, _rounded(xp, n, den), dtypes[dtype], attrs)


def qmean(xp: Any, dtypes: dict, x: Any, **attrs: Any) -> Any:
    rank = len(x.shape)
    axes = tuple(sorted({a % rank for a in attrs["axes"]})) if attrs["axes"] else \
        tuple(range(rank))
    count = 1
    for a in axes:
        count *= x.shape[a]
    (c,), den = rescale_plan((attrs["x_scale"],), attrs["out_scale"], count)
    centered = _i64(xp, x) - attrs["x_zp"]
    s = centered.sum(axes, keepdims=attrs["keepdims"]) if hasattr(centered, "astype") else \
        centered.sum(dim=axes, keepdim=attrs["keepdims"])
    dtype, _, _ = clamp_bounds(attrs)
    return _out(xp, _rounded(xp, s * c, den), dtypes[dtype], attrs)
