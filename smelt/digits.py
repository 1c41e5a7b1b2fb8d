"""scikit-learn's digits for the demo and the accuracy benchmarks: the data, a MobileNetV2-style
network sized for it, seeded training, accuracy and a fine-tune of a smelt graph's weights.

The data: the 1,797 bundled 8x8 images, scaled to [0, 1] then standardized, as 1x8x8 float32
images; split 80/20, stratified, seeded. The network: smelt.zoo's ConvBNAct and
InvertedResidual blocks (1x1 expand, 3x3 depthwise, 1x1 project, ReLU6, residuals), one input
channel, ten classes; `hidden` > 0 puts a hidden linear layer (with ReLU) before the classifier
(the demo's, so that 2:4 sparsity has a layer worth packing). Training: Adam (lr 3e-3),
batches of 64, seeded; a few seconds on a CPU.
Used by `make demo` (smelt/demo.py) and benchmarks/equalization.py, int8.py, pruning.py and
sparsity.py.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def digits(seed: int, test_limit: int | None = None, train_limit: int | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardized 1x8x8 digits images, split 80/20 (seeded): x_train, x_test, y_train,
    y_test; the first `test_limit` test and `train_limit` training images where given."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = data.images.astype(np.float32)[:, None] / 16.0
    images = (images - images.mean()) / images.std()
    xtr, xte, ytr, yte = train_test_split(images, data.target.astype(np.int64), test_size=0.2,
                                          random_state=seed, stratify=data.target)
    return xtr[:train_limit], xte[:test_limit], ytr[:train_limit], yte[:test_limit]


def mobilenet_v2_digits(act: str, hidden: int = 0) -> Any:
    """MobileNetV2-style blocks sized for 8x8 digits (one input channel, 10 classes);
    `act='relu'` swaps every ReLU6 for ReLU; `hidden` > 0 adds a hidden layer of that width
    (linear + ReLU) before the classifier."""
    import torch
    from torch import nn

    from smelt.zoo import ConvBNAct, InvertedResidual

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                ConvBNAct(1, 16, 3, 1, act=nn.ReLU6),
                InvertedResidual(16, 16, 1, 1),
                InvertedResidual(16, 24, 2, 4),
                InvertedResidual(24, 24, 1, 4),
                InvertedResidual(24, 32, 2, 4),
                InvertedResidual(32, 32, 1, 4),
                ConvBNAct(32, 64, 1, act=nn.ReLU6),
            )
            self.classifier = (nn.Sequential(nn.Linear(64, hidden), nn.ReLU(),
                                             nn.Linear(hidden, 10))
                               if hidden else nn.Linear(64, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.features(x).mean(dim=(2, 3))
            return self.classifier(x)

    net = Net()
    if act == "relu":
        for m in list(net.modules()):
            for child_name, child in m.named_children():
                if isinstance(child, nn.ReLU6):
                    setattr(m, child_name, nn.ReLU())
    return net


def train(net: Any, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> float:
    """Train `net` (anything with parameters(), train(), eval() and a call returning logits)
    for `epochs` epochs; returns the seconds taken. Leaves it in eval mode."""
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    net.eval()
    return time.perf_counter() - t0


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(logits.argmax(axis=1) == y))


class _FirstOutput:
    """A `to_torch` module seen as `train` wants it: its call returns the logits alone."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def __call__(self, t: Any) -> Any:
        return self.module(t)[0]

    def parameters(self) -> Any:
        return self.module.parameters()

    def train(self) -> None:
        self.module.train()

    def eval(self) -> None:
        self.module.eval()


def fine_tune(graph: Any, x: np.ndarray, y: np.ndarray, epochs: int, seed: int
              ) -> tuple[Any, float]:
    """Train `graph`'s float weights (through to_torch) and write them back; returns the new
    graph and the seconds taken (0 for no epochs)."""
    from smelt.backends.interop import to_torch, with_weights

    module = to_torch(graph, trainable=True)
    seconds = train(_FirstOutput(module), x, y, epochs, seed) if epochs else 0.0
    return with_weights(graph, module), seconds
