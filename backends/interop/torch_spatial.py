"""The spatial ops' torch functions (torch_namespace.py imports them into the namespace):
conv3d (an asymmetric padding by F.pad first), conv_transpose (F.conv_transpose1d/2d/3d),
F.max_pool3d, F.avg_pool3d (the divisor is torch's divisor_override),
F.adaptive_avg_pool3d, F.adaptive_max_pool2d/3d, F.grid_sample (coordinates in the input's
dtype, as torch computes them; the reference computes them in float64)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smelt.ir.ops.spatial import axes_of, conv_pads

_TRANSPOSED = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def conv3d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, *,
           stride: tuple[int, ...], padding: tuple[int, ...], dilation: tuple[int, ...],
           groups: int) -> torch.Tensor:
    lo, hi = conv_pads(padding, 3)
    if lo != hi:
        x = F.pad(x, (lo[2], hi[2], lo[1], hi[1], lo[0], hi[0]))
        lo = (0, 0, 0)
    return F.conv3d(x, w, b, axes_of("stride", stride, 3), lo, axes_of("dilation", dilation, 3),
                    groups)


def conv_transpose(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, *,
                   stride: tuple[int, ...], padding: tuple[int, ...],
                   output_padding: tuple[int, ...], dilation: tuple[int, ...],
                   groups: int) -> torch.Tensor:
    n = x.dim() - 2
    return _TRANSPOSED[n](x, w, b, axes_of("stride", stride, n), axes_of("padding", padding, n),
                          axes_of("output_padding", output_padding, n), groups,
                          axes_of("dilation", dilation, n))


def max_pool3d(x: torch.Tensor, *, kernel, stride, padding, dilation, ceil_mode) -> torch.Tensor:
    return F.max_pool3d(x, axes_of("kernel", kernel, 3), axes_of("stride", stride or kernel, 3),
                        axes_of("padding", padding, 3), axes_of("dilation", dilation, 3),
                        ceil_mode=ceil_mode)


def avg_pool3d(x: torch.Tensor, *, kernel, stride, padding, ceil_mode, count_include_pad,
               divisor) -> torch.Tensor:
    return F.avg_pool3d(x, axes_of("kernel", kernel, 3), axes_of("stride", stride or kernel, 3),
                        axes_of("padding", padding, 3), ceil_mode=ceil_mode,
                        count_include_pad=count_include_pad, divisor_override=divisor)


def adaptive_avg_pool3d(x: torch.Tensor, *, output_size) -> torch.Tensor:
    return F.adaptive_avg_pool3d(x, axes_of("output_size", output_size, 3))


def adaptive_max_pool2d(x: torch.Tensor, *, output_size) -> torch.Tensor:
    return F.adaptive_max_pool2d(x, axes_of("output_size", output_size, 2))


def adaptive_max_pool3d(x: torch.Tensor, *, output_size) -> torch.Tensor:
    return F.adaptive_max_pool3d(x, axes_of("output_size", output_size, 3))


def grid_sample(x: torch.Tensor, grid: torch.Tensor, *, mode: str, padding_mode: str,
                align_corners: bool) -> torch.Tensor:
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode,
                         align_corners=align_corners)


NAMES = ("conv3d", "conv_transpose", "max_pool3d", "avg_pool3d", "adaptive_avg_pool3d",
         "adaptive_max_pool2d", "adaptive_max_pool3d", "grid_sample")
