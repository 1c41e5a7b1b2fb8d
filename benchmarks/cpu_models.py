"""The models the CPU latency benchmark runs, at two size presets.

`full` is benchmark scale (batch 1, float32); `quick` keeps each model's structure at tiny
shapes, so a smoke test compiles and runs it in seconds. The building blocks come from
smelt.zoo (ConvBNAct, InvertedResidual, BasicBlock, LlamaBlock) and transformers (BertModel);
this file only arranges them in the published layouts:

- mobilenet_v2: MobileNetV2 (Sandler et al., 2018, table 2): the inverted-residual table
  below, width multiplier with channels rounded to multiples of 8, 1280-wide last conv.
- resnet18: ResNet-18 (He et al., 2016, table 1): 7x7/2 stem, 3x3/2 max pool, four stages
  of two basic blocks (64, 128, 256, 512 channels), global pool, classifier.
- bert: transformers' BertModel (eager attention), last hidden state of the token ids.
- llama_block: smelt.zoo.LlamaBlock (RMSNorm, rotary, grouped-query causal attention, SiLU MLP).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from smelt.zoo import BasicBlock, ConvBNAct, InvertedResidual, LlamaBlock, MainOutput, seeded

# MobileNetV2 inverted-residual table: (expansion t, output channels c, repeats n, stride s).
MOBILENET_V2_TABLE: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
MOBILENET_V2_STEM = 32
MOBILENET_V2_LAST = 1280

# ResNet-18: (output channels, blocks, stride of the first block) per stage.
RESNET18_STAGES: tuple[tuple[int, int, int], ...] = ((64, 2, 1), (128, 2, 2), (256, 2, 2),
                                                      (512, 2, 2))


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never below 90% of v (MobileNet's rule)."""
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * v else out


def _inverted_residual(cin: int, cout: int, stride: int, expand: int) -> nn.Module:
    if expand == 1:  # t=1: no 1x1 expansion, depthwise then projection (no residual here)
        return nn.Sequential(ConvBNAct(cin, cin, 3, stride, groups=cin, act=nn.ReLU6),
                             ConvBNAct(cin, cout, 1, act=None))
    return InvertedResidual(cin, cout, stride, expand)


class MobileNetV2(nn.Module):
    def __init__(self, width: float = 1.0, num_classes: int = 1000,
                 table: tuple[tuple[int, int, int, int], ...] = MOBILENET_V2_TABLE) -> None:
        super().__init__()
        cin = make_divisible(MOBILENET_V2_STEM * width)
        layers: list[nn.Module] = [ConvBNAct(3, cin, 3, 2, act=nn.ReLU6)]
        for t, c, n, s in table:
            cout = make_divisible(c * width)
            for i in range(n):
                layers.append(_inverted_residual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        last = make_divisible(MOBILENET_V2_LAST * max(1.0, width))
        layers.append(ConvBNAct(cin, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class ResNet(nn.Module):
    def __init__(self, stages: tuple[tuple[int, int, int], ...] = RESNET18_STAGES,
                 num_classes: int = 1000) -> None:
        super().__init__()
        cin = stages[0][0]
        layers: list[nn.Module] = [ConvBNAct(3, cin, 7, 2), nn.MaxPool2d(3, 2, 1)]
        for cout, blocks, stride in stages:
            for i in range(blocks):
                layers.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.fc(torch.flatten(x, 1))


def bert(hidden: int, layers: int, heads: int, intermediate: int, vocab: int,
         seq: int) -> nn.Module:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=intermediate,
                     max_position_embeddings=max(512, seq), attn_implementation="eager")
    return MainOutput(BertModel(cfg, add_pooling_layer=False))


@dataclass(frozen=True)
class BenchModel:
    """A model to time: how to build it (seeded, eval mode) and its example inputs."""

    name: str
    description: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], tuple[torch.Tensor, ...]]


def _image(size: int) -> Callable[[], tuple[torch.Tensor, ...]]:
    def inputs() -> tuple[torch.Tensor, ...]:
        return (torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1)),)

    return inputs


def _tokens(seq: int, dim: int) -> Callable[[], tuple[torch.Tensor, ...]]:
    def inputs() -> tuple[torch.Tensor, ...]:
        return (torch.randn(1, seq, dim, generator=torch.Generator().manual_seed(2)),)

    return inputs


def _ids(seq: int, vocab: int) -> Callable[[], tuple[torch.Tensor, ...]]:
    def inputs() -> tuple[torch.Tensor, ...]:
        return (torch.randint(0, vocab, (1, seq), generator=torch.Generator().manual_seed(4)),)

    return inputs


def _full() -> list[BenchModel]:
    return [
        BenchModel("mobilenet_v2", "MobileNetV2 width 1.0, 1x3x160x160",
                   seeded(MobileNetV2), _image(160)),
        BenchModel("resnet18", "ResNet-18, 1x3x128x128", seeded(ResNet), _image(128)),
        BenchModel("bert", "BertModel hidden 256, 4 layers, 4 heads, ffn 1024, seq 128",
                   seeded(partial(bert, 256, 4, 4, 1024, 30522, 128)), _ids(128, 30522)),
        BenchModel("llama_block", "LlamaBlock dim 512, 8 heads, 4 kv heads, mlp 1376, seq 128",
                   seeded(partial(LlamaBlock, 512, 8, 4, 1376, 128)), _tokens(128, 512)),
    ]


QUICK_MOBILENET = ((1, 8, 1, 1), (6, 16, 1, 2), (6, 24, 2, 2))
QUICK_RESNET = ((8, 1, 1), (16, 1, 2))


def _quick() -> list[BenchModel]:
    return [
        BenchModel("mobilenet_v2", "MobileNetV2 layout, 3 stages, width 0.25, 1x3x32x32",
                   seeded(partial(MobileNetV2, 0.25, 10, QUICK_MOBILENET)), _image(32)),
        BenchModel("resnet18", "ResNet layout, 2 stages of 1 block (8, 16), 1x3x32x32",
                   seeded(partial(ResNet, QUICK_RESNET, 10)), _image(32)),
        BenchModel("bert", "BertModel hidden 32, 1 layer, 2 heads, ffn 64, seq 16",
                   seeded(partial(bert, 32, 1, 2, 64, 100, 16)), _ids(16, 100)),
        BenchModel("llama_block", "LlamaBlock dim 32, 4 heads, 2 kv heads, mlp 64, seq 16",
                   seeded(partial(LlamaBlock, 32, 4, 2, 64, 16)), _tokens(16, 32)),
    ]


PRESETS: dict[str, Callable[[], list[BenchModel]]] = {"full": _full, "quick": _quick}
MODEL_NAMES = ("mobilenet_v2", "resnet18", "bert", "llama_block")


def bench_models(preset: str = "full") -> dict[str, BenchModel]:
    """name -> BenchModel at the given size preset ('full' or 'quick')."""
    return {m.name: m for m in PRESETS[preset]()}
