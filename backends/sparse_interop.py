"""linear24 (ir/ops/sparse.py) for smelt.to_torch and smelt.to_jax: the compressed weight
scattered (with add, as the reference does) into a dense (N, K) weight, then the backend's
own linear entry. Slot r of row n lands in column 4 (r // 2) + ((meta[n, r // 4] >> 2 (r % 4))
& 3). With `to_torch(trainable=True)` the kept values are the parameters, so a fine-tune keeps
the 2:4 mask by construction. `xp` is the array module: torch or jax.numpy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _columns(xp: Any, meta: Any, slots: int) -> Any:
    r = np.arange(slots)
    shift, base = (r % 4) * 2, r // 2 * 4
    if hasattr(meta, "astype"):  # jax
        byte = meta[:, r // 4].astype(xp.int32)
        return base + ((byte >> shift) & 3)
    byte = meta[:, r // 4].to(xp.int64)
    return xp.from_numpy(base) + ((byte >> xp.from_numpy(shift)) & 3)


def linear24(xp: Any, linear: Callable[..., Any], x: Any, values: Any, meta: Any,
             bias: Any = None) -> Any:
    n, slots = values.shape
    k = x.shape[-1]
    cols = _columns(xp, meta, slots)
    if hasattr(values, "astype"):  # jax
        rows = np.repeat(np.arange(n), slots).reshape(n, slots)
        w = xp.zeros((n, k), values.dtype).at[rows, cols].add(values)
    else:
        w = xp.zeros((n, k), dtype=values.dtype).scatter_add(1, cols, values)
    return linear(x, w, bias)
