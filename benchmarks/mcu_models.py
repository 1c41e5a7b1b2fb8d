"""Models for the microcontroller benchmark: an MCUNet-class int8 CNN and the zoo's CNNs.

`MCUNetVWW` follows the shape of MCUNet's Visual-Wake-Words networks (Lin et al., "MCUNet:
Tiny Deep Learning on IoT Devices", NeurIPS 2020): a stride-2 stem, a first inverted residual
block without expansion, then MobileNetV2 blocks with small widths and small expansion ratios
at high resolution (where activations are largest) and larger ones deeper down, two classes.
It has 0.41M parameters and, at the 64x64 input of mcunet-vww0, 4.4M MACs; every
convolution has a batch norm, which `fold-bn` folds before `quantize(w8a8)`.

Each `McuModel` builds its torch module with a fixed seed, gives one batch-1 input and
calibration images (seeded, smooth random images in [0, 1] with a per-image contrast, so
the activation ranges look like a camera's rather than Gaussian noise), and turns into the
smelt graph the benchmark compiles: int8 through `fold-bn,canonicalize,quantize(w8a8),
fold-qdq`, or fp32 through `fold-bn,canonicalize`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import smelt
from benchmarks.runtimes import quiet_trace
from smelt import zoo

INT8_PIPELINE = "fold-bn,canonicalize,quantize(w8a8),fold-qdq"
FP32_PIPELINE = "fold-bn,canonicalize"


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (skipped at ratio 1), kxk depthwise, 1x1 project; ReLU6;
    a residual add when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, k: int = 3) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(zoo.ConvBNAct(cin, hidden, 1, act=nn.ReLU6))
        layers += [zoo.ConvBNAct(hidden, hidden, k, stride, groups=hidden, act=nn.ReLU6),
                   zoo.ConvBNAct(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


# (cout, stride, expand, kernel) per block, after a 3x3 stride-2 stem of 16 channels
VWW_BLOCKS = ((8, 1, 1, 3),
              (16, 2, 3, 3), (16, 1, 3, 3),
              (24, 2, 4, 3), (24, 1, 4, 3),
              (40, 2, 4, 3), (40, 1, 5, 3),
              (80, 2, 5, 3), (80, 1, 5, 3), (80, 1, 5, 3),
              (96, 1, 5, 3), (96, 1, 5, 3))


class MCUNetVWW(nn.Module):
    """An MCUNet-class Visual-Wake-Words CNN (see the module docstring)."""

    def __init__(self, num_classes: int = 2, stem: int = 16, head: int = 320) -> None:
        super().__init__()
        layers: list[nn.Module] = [zoo.ConvBNAct(3, stem, 3, 2, act=nn.ReLU6)]
        cin = stem
        for cout, stride, expand, k in VWW_BLOCKS:
            layers.append(MBConv(cin, cout, stride, expand, k))
            cin = cout
        layers.append(zoo.ConvBNAct(cin, head, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def images(n: int, size: int, seed: int) -> list[np.ndarray]:
    """`n` seeded 1x3xsize x size images: smooth random fields in [0, 1]."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.uniform(size=(1, 3, 6, 6)).astype(np.float32)
        x = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(size, size),
                                            mode="bilinear", align_corners=False)
        noise = rng.normal(scale=0.05, size=x.shape).astype(np.float32)
        contrast = rng.uniform(0.5, 1.0)
        out.append(np.clip(x.numpy() * contrast + noise, 0.0, 1.0).astype(np.float32))
    return out


@dataclass(frozen=True)
class McuModel:
    name: str
    description: str
    build: Callable[[], nn.Module]
    size: int  # input height and width
    int8: bool = True

    @property
    def pipeline(self) -> str:
        return INT8_PIPELINE if self.int8 else FP32_PIPELINE

    def inputs(self) -> tuple[np.ndarray, ...]:
        return (images(1, self.size, seed=1)[0],)

    def graph(self, calibration: int = 8) -> smelt.Graph:
        """The smelt graph after this model's pipeline (calibrated on seeded images)."""
        x = self.inputs()[0]
        graph = quiet_trace(self.build(), (torch.from_numpy(x),))
        pipeline = smelt.Pipeline.parse(self.pipeline)
        if not self.int8:
            return pipeline(graph)
        return pipeline(graph, calibration=images(calibration, self.size, seed=2))

    def params(self) -> int:
        return sum(p.numel() for p in self.build().parameters())


def mcu_models(preset: str = "full", size: int | None = None) -> dict[str, McuModel]:
    """The benchmark's models. The MCUNet-class input is 64x64 (mcunet-vww0's resolution),
    32x32 in the `quick` preset, or `size`."""
    if preset not in ("full", "quick"):
        raise ValueError(f"preset {preset!r}: choose 'full' or 'quick'")
    size = size or (64 if preset == "full" else 32)
    models = [
        McuModel("mcunet_vww_int8", f"MCUNet-class VWW CNN, 2 classes, {size}x{size}, W8A8",
                 zoo.seeded(MCUNetVWW), size),
        McuModel("residual_cnn_int8", "zoo residual_cnn, 32x32, W8A8",
                 zoo.seeded(zoo.ResidualCNN), 32),
        McuModel("mobilenet_v2_int8", "zoo mobilenet_v2 (width 16), 32x32, W8A8",
                 zoo.seeded(zoo.MobileNetV2ish), 32),
        McuModel("residual_cnn_fp32", "zoo residual_cnn, 32x32, fp32",
                 zoo.seeded(zoo.ResidualCNN), 32, int8=False),
    ]
    return {m.name: m for m in models}
