"""Bundled models (the zoo): small models covering what real CNNs and transformers use.

Every model is built with a fixed seed and comes with example inputs. Used by the frontend,
interpreter and (later) backend tests, and by the demo.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with batch norm and a residual add."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(cin, cout, 3, stride)
        self.conv2 = ConvBNAct(cout, cout, 3, 1, act=None)
        self.down = None if stride == 1 and cin == cout else ConvBNAct(cin, cout, 1, stride,
                                                                       act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        return F.relu(self.conv2(self.conv1(x)) + identity)


class ResidualCNN(nn.Module):
    """A residual CNN with depthwise separable blocks, batch norm, pooling and a classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, 16, 3, 1)
        self.pool = nn.MaxPool2d(2)
        self.block1 = BasicBlock(16, 16)
        self.block2 = BasicBlock(16, 32, stride=2)
        self.dw = ConvBNAct(32, 32, 3, 1, groups=32)
        self.pw = ConvBNAct(32, 48, 1)
        self.head = nn.Linear(48, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        x = self.block2(self.block1(x))
        x = self.pw(self.dw(x)) + F.pad(x, (0, 0, 0, 0, 0, 16))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(x)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project, ReLU6, residual."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            ConvBNAct(cin, hidden, 1, act=nn.ReLU6),
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            ConvBNAct(hidden, cout, 1, act=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.use_res else y


class MobileNetV2ish(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            ConvBNAct(3, width, 3, 2, act=nn.ReLU6),
            InvertedResidual(width, width, 1, 1),
            InvertedResidual(width, 24, 2, 4),
            InvertedResidual(24, 24, 1, 4),
            InvertedResidual(24, 32, 2, 4),
            InvertedResidual(32, 32, 1, 4),
            ConvBNAct(32, 64, 1, act=nn.ReLU6),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


class EncoderBlock(nn.Module):
    """A pre-norm transformer encoder block with explicit multi-head attention."""

    def __init__(self, dim: int = 64, heads: int = 4, mlp: int = 128) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp)
        self.fc2 = nn.Linear(mlp, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = self.qkv(h).split(d, dim=-1)
        q = q.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        k = k.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        v = v.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        att = att.softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim) + 0.1 * torch.randn(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class LlamaBlock(nn.Module):
    """A Llama-style decoder block: RMSNorm, rotary embedding, causal attention with
    grouped-query heads, SiLU-gated MLP."""

    def __init__(self, dim: int = 64, heads: int = 4, kv_heads: int = 2, mlp: int = 160,
                 seq: int = 16) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, dim // heads
        self.norm1 = RMSNorm(dim)
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.wv = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        self.norm2 = RMSNorm(dim)
        self.gate = nn.Linear(dim, mlp, bias=False)
        self.up = nn.Linear(dim, mlp, bias=False)
        self.down = nn.Linear(mlp, dim, bias=False)
        inv = 1.0 / (10000 ** (torch.arange(0, self.hd, 2).float() / self.hd))
        freqs = torch.outer(torch.arange(seq).float(), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        self.register_buffer("mask", torch.full((seq, seq), float("-inf")).triu(1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.norm1(x)
        q = self.wq(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.wk(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = self.wv(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        cos, sin = self.cos, self.sin  # static sequence length, as deployed
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.heads // self.kv_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = q @ k.transpose(-2, -1) / math.sqrt(self.hd) + self.mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.wo(y)
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def plant_outliers(block: LlamaBlock, channels: tuple[int, ...] = (3, 17, 40),
                   factor: float = 40.0) -> LlamaBlock:
    """Give `channels` of both RMSNorm outputs of a LlamaBlock `factor` times the others'
    magnitude, its function unchanged: those channels' norm weights are multiplied by
    `factor` and the matching input columns of the linears reading the norm (wq, wk, wv;
    gate, up) divided by it. The outliers then live in the activations only, compensated by
    small weights, as the emergent outlier features of trained LLMs do (Dettmers et al.
    2022): the case SmoothQuant and AWQ are for."""
    ch = list(channels)
    with torch.no_grad():
        for norm, readers in ((block.norm1, (block.wq, block.wk, block.wv)),
                              (block.norm2, (block.gate, block.up))):
            norm.weight[ch] *= factor
            for lin in readers:
                lin.weight[:, ch] /= factor
    return block

class TinyActs(nn.Module):
    """Every activation and a few odd ops in one small model."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        acts = [F.relu(y), F.relu6(y), F.leaky_relu(y, 0.1), F.gelu(y),
                F.gelu(y, approximate="tanh"), F.silu(y), torch.sigmoid(y), torch.tanh(y),
                F.hardswish(y), F.hardsigmoid(y), torch.exp(-y.abs()), torch.sqrt(y.abs() + 1),
                y.clamp(-0.5, 0.5), torch.where(y > 0, y, y * 0.5)]
        return torch.stack(acts, 0).sum(0)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], tuple[torch.Tensor, ...]]


def _image(n: int = 2, size: int = 16) -> Callable[[], tuple[torch.Tensor, ...]]:
    return lambda: (torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1)),)


def _tokens(b: int = 2, t: int = 16, d: int = 64) -> Callable[[], tuple[torch.Tensor, ...]]:
    return lambda: (torch.randn(b, t, d, generator=torch.Generator().manual_seed(2)),)


def seeded(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """`factory` under seed 0, batch norms given non-trivial statistics, in eval mode."""
    def build() -> nn.Module:
        torch.manual_seed(0)
        model = factory()
        _randomize_bn(model)
        return model.eval()

    return build


def _randomize_bn(model: nn.Module) -> None:
    """Give batch norms non-trivial statistics, so folding and tracing bugs show."""
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def hf_bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=32,
                     attn_implementation="eager")
    return MainOutput(BertModel(cfg, add_pooling_layer=False))


def hf_resnet() -> nn.Module:
    from transformers import ResNetConfig, ResNetModel

    cfg = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                       layer_type="basic", num_channels=3)
    return MainOutput(ResNetModel(cfg))


class MainOutput(nn.Module):
    """Return the model's main tensor instead of a ModelOutput."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _ids() -> tuple[torch.Tensor, ...]:
    return (torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(4)),)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("residual_cnn", seeded(ResidualCNN), _image()),
        ZooEntry("mobilenet_v2", seeded(MobileNetV2ish), _image(size=32)),
        ZooEntry("encoder_block", seeded(EncoderBlock), _tokens()),
        ZooEntry("llama_block", seeded(LlamaBlock), _tokens()),
        ZooEntry("tiny_acts", seeded(TinyActs),
                 lambda: (torch.randn(3, 12, generator=torch.Generator().manual_seed(5)),)),
        ZooEntry("hf_bert", seeded(hf_bert), _ids),
        ZooEntry("hf_resnet", seeded(hf_resnet), _image(size=32)),
    ]
}
