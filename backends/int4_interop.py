"""linear_w4 (ir/ops/int4.py) for smelt.to_torch and smelt.to_jax, as the reference computes
it: the nibbles sign-extended with integer ops (low nibble first), each times its group's
scale in float64 (exact) rounded once to x's dtype, then the backend's own linear entry.
`xp` is the array module (torch or jax.numpy; JAX needs 64-bit mode, as for dequantize)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _unpacked(xp: Any, packed: Any) -> Any:
    p = packed.astype(xp.int32) if hasattr(packed, "astype") else packed.to(xp.int32)
    lo = ((p & 15) ^ 8) - 8
    hi = ((p >> 4) ^ 8) - 8
    both = xp.stack([lo, hi], -1)
    return both.reshape(*p.shape[:-1], 2 * p.shape[-1])


def linear_w4(xp: Any, linear: Callable[..., Any], x: Any, packed: Any, scales: Any,
              bias: Any = None, *, group: int) -> Any:
    q = _unpacked(xp, packed)
    if hasattr(q, "astype"):  # jax
        s = xp.repeat(scales.astype(xp.float64), group, axis=1)
        w = (q.astype(xp.float64) * s).astype(x.dtype)
    else:
        s = scales.to(xp.float64).repeat_interleave(group, dim=1)
        w = (q.to(xp.float64) * s).to(x.dtype)
    return linear(x, w, bias)
