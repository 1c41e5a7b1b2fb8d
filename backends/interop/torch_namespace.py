"""The array namespace `to_torch` computes in: torch under the Python array API standard, plus
the functions whose torch and JAX forms differ.

array_ops.py writes every entry once over a namespace `xp`; this module is `xp` for torch, and
jax_namespace.py defines the same names for JAX. The standard's functions the entries call
(array_ops.STANDARD) are array-api-compat's torch namespace's, bound here at import: torch's
own where they already follow the standard, thin wrappers where torch differs (`clip` for
`clamp`, `axis` for `dim`, `astype`, `concat`). Nothing looks a namespace up per array
(`array_namespace(x)` inside code Dynamo traces costs lru_cache warnings).

Defined here (array_ops.BACKEND), as torch computes them:
- `dtype(name)`: the torch dtype of a smelt dtype; int4/uint4 live in int8/uint8, bfloat16
  is torch.bfloat16.
- functions the standard lacks, torch's own: relu, sigmoid, silu, erf, rsqrt, reciprocal,
  softmax, log_softmax; `trunc_divide` (integer division truncating toward zero, as the reference).
- math: torch.fmod, torch.cumsum, torch.cumprod, and `sort` (torch.sort, stable=True).
- contractions: conv2d (NCHW x OIHW; an asymmetric padding by F.pad first), linear, matmul.
- normalization: F.batch_norm and F.layer_norm in one kernel each (half inputs accumulate
  in float32 there; the fused kernels also keep `aten.batch_norm` visible to torch.export).
- pooling: F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, whose window and divisor rules
  the reference follows.
- `take` (index_select of non-negative indices; out of range raises), `row_scatter_add`
  (Tensor.scatter_add), `pad` (constant in one F.pad; reflect and edge axis by axis, since
  torch pads those only on the trailing axes of a 2-D or 3-D view).
"""

from __future__ import annotations

import array_api_compat.torch
import torch
import torch.nn.functional as F

from smelt.backends.interop.array_ops import STANDARD, pair
from smelt.ir.ops.nn import _pads

# the standard's functions, as module attributes (so Dynamo reads them as constants); abs,
# max, min, pow, round and sum shadow Python's here
globals().update((name, getattr(array_api_compat.torch, name)) for name in STANDARD)

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32,
    "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "int4": torch.int8,
    "uint4": torch.uint8, "bool": torch.bool,
}

relu = torch.relu
sigmoid = torch.sigmoid
silu = F.silu
erf = torch.erf
rsqrt = torch.rsqrt
reciprocal = torch.reciprocal
softmax = torch.softmax
log_softmax = torch.log_softmax
matmul = torch.matmul


def dtype(name: str) -> torch.dtype:
    """The torch dtype of smelt dtype `name`."""
    return TORCH_DTYPES[name]


fmod = torch.fmod


def cumsum(x: torch.Tensor, *, axis: int) -> torch.Tensor:
    return torch.cumsum(x, dim=axis)


def cumprod(x: torch.Tensor, *, axis: int) -> torch.Tensor:
    return torch.cumprod(x, dim=axis)


def sort(x: torch.Tensor, *, axis: int, descending: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.sort with stable=True: the reference's order (NaN above +inf, -0.0 = 0.0)."""
    values, indices = torch.sort(x, dim=axis, descending=descending, stable=True)
    return values, indices


def trunc_divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b; integers truncate toward zero."""
    if a.is_floating_point():
        return torch.div(a, b)
    return torch.div(a, b, rounding_mode="trunc")


# -- contractions, normalization -----------------------------------------------------------
def conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, *,
           stride: tuple[int, ...], padding: tuple[int, ...], dilation: tuple[int, ...],
           groups: int) -> torch.Tensor:
    """NCHW x OIHW; an asymmetric padding is applied by F.pad first."""
    top, left, bottom, right = _pads(padding)
    if (top, left) == (bottom, right):
        return F.conv2d(x, w, b, pair(stride), (top, left), pair(dilation), groups)
    x = F.pad(x, (left, right, top, bottom))
    return F.conv2d(x, w, b, pair(stride), 0, pair(dilation), groups)


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    return F.linear(x, w, b)


def batch_norm(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
               weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, *,
               eps: float) -> torch.Tensor:
    return F.batch_norm(x, mean, var, weight, bias, training=False, eps=eps)


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, *, axis: int, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[axis % x.dim():], weight, bias, eps)


# -- pooling -------------------------------------------------------------------------------
def max_pool2d(x: torch.Tensor, *, kernel: tuple[int, ...], stride: tuple[int, ...],
               padding: tuple[int, ...], dilation: tuple[int, ...],
               ceil_mode: bool) -> torch.Tensor:
    return F.max_pool2d(x, pair(kernel), pair(stride or kernel), pair(padding),
                        pair(dilation), ceil_mode=ceil_mode)


def avg_pool2d(x: torch.Tensor, *, kernel: tuple[int, ...], stride: tuple[int, ...],
               padding: tuple[int, ...], ceil_mode: bool,
               count_include_pad: bool) -> torch.Tensor:
    return F.avg_pool2d(x, pair(kernel), pair(stride or kernel), pair(padding),
                        ceil_mode=ceil_mode, count_include_pad=count_include_pad)


def adaptive_avg_pool2d(x: torch.Tensor, *, output_size: tuple[int, ...]) -> torch.Tensor:
    return F.adaptive_avg_pool2d(x, pair(output_size))


# -- gather, scatter, pad ------------------------------------------------------------------
def take(x: torch.Tensor, indices: torch.Tensor, /, *, axis: int) -> torch.Tensor:
    """x gathered along `axis` at 1-D non-negative int64 `indices`."""
    return torch.index_select(x, axis, indices)


def row_scatter_add(shape: tuple[int, int], cols: torch.Tensor,
                    values: torch.Tensor) -> torch.Tensor:
    """A zero (N, K) array with values[n, j] added at [n, cols[n, j]] (cols int64)."""
    zeros = torch.zeros(shape, dtype=values.dtype, device=values.device)
    return zeros.scatter_add(1, cols, values)


def pad(x: torch.Tensor, widths: tuple[tuple[int, int], ...], *, mode: str,
        value: float | int) -> torch.Tensor:
    """x padded by widths[i] = (before, after) on axis i; constant, reflect or edge."""
    if mode == "constant":
        flat = [p for before_after in reversed(widths) for p in before_after]
        return F.pad(x, flat, value=value)
    torch_mode = {"reflect": "reflect", "edge": "replicate"}[mode]
    for axis, (before, after) in enumerate(widths):
        if before or after:
            moved = x.movedim(axis, -1)
            lead = moved.shape[:-1]
            out = F.pad(moved.reshape(1, -1, moved.shape[-1]), (before, after), mode=torch_mode)
            x = out.reshape(*lead, out.shape[-1]).movedim(-1, axis)
    return x


def take_along_axis(x: torch.Tensor, indices: torch.Tensor, /, *, axis: int) -> torch.Tensor:
    """x gathered along `axis` at non-negative int64 `indices` (torch.gather)."""
    return torch.gather(x, axis, indices)


def scatter(x: torch.Tensor, indices: torch.Tensor, src: torch.Tensor, /, *, axis: int,
            reduce: str, include_self: bool) -> torch.Tensor:
    """Tensor.scatter (reduce "none") or Tensor.scatter_reduce at non-negative int64
    `indices`; src has indices' shape."""
    if reduce == "none":
        return x.scatter(axis, indices, src)
    return x.scatter_reduce(axis, indices, src, reduce, include_self=include_self)


def index_put(x: torch.Tensor, key: tuple, values: torch.Tensor, /, *,
              accumulate: bool) -> torch.Tensor:
    """aten.index_put: `key` holds index tensors and whole slices (None for aten)."""
    return torch.ops.aten.index_put(x, [None if isinstance(k, slice) else k for k in key],
                                    values, accumulate)


# conv3d, conv_transpose, 3-d and adaptive max pooling, grid_sample (torch_spatial.py)
from smelt.backends.interop.torch_spatial import (  # noqa: E402,F401,I001
    adaptive_avg_pool3d,
    adaptive_max_pool2d,
    adaptive_max_pool3d,
    avg_pool3d,
    conv3d,
    conv_transpose,
    grid_sample,
    max_pool3d,
)
