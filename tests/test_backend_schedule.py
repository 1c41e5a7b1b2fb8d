"""No kernel runs unscheduled: every kernel of every compiled zoo model got a schedule rule,
and each contraction kernel got its own register-tile rule rather than a generic fallback."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import smelt
from smelt.backends.cpu.schedule import RULES, kernel_rules
from smelt.zoo import ZOO

# a kernel whose name carries one of these got that contraction: it must use its tile rule
TILE_RULE_BY_KERNEL = {"dense": "dense", "matmul": "matmul", "conv2d": "conv2d",
                       "dwconv": "depthwise", "gconv": "grouped-conv"}


def _kernel_kind(name: str) -> str | None:
    for key in ("dwconv", "gconv", "conv2d", "dense", "matmul"):
        if key in name:
            return key
    return None


@pytest.mark.xdist_group("zoo_compile")
@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_kernel_is_scheduled(name: str) -> None:
    entry = ZOO[name]
    graph = smelt.trace(entry.build(), entry.inputs())
    module = smelt.compile(graph, "cpu")
    assert module.kernels, "a compiled model lists its kernels"
    unscheduled = [k for k, rule in module.kernels.items() if rule is None]
    assert not unscheduled, f"kernels left unscheduled: {unscheduled}"
    for kernel, rule in module.kernels.items():
        kind = _kernel_kind(kernel)
        if kind is not None:
            assert rule == TILE_RULE_BY_KERNEL[kind], f"{kernel} fell back to rule {rule!r}"


def test_unscheduled_kernel_is_reported() -> None:
    """The check above can fail: a module built without smelt's schedules reports None."""
    from smelt.backends.cpu.build import fused_kernels
    from smelt.backends.targets import make_target

    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU()).eval()
    graph = smelt.trace(model, (torch.randn(2, 8),))
    mod = fused_kernels(graph, make_target("cpu"))
    rules = kernel_rules(mod)
    assert rules and all(r is None for r in rules.values())


def test_rule_names_are_unique() -> None:
    names = [n for n, _ in RULES]
    assert len(names) == len(set(names))


def test_a_fused_node_is_one_kernel() -> None:
    """conv + bias + residual + relu, fused by the fuse pass, compiles to one conv kernel
    (plus its padding stage) with the epilogue inside; likewise linear + gelu + residual."""
    import numpy as np

    from smelt.ir.node import Node

    rng = np.random.default_rng(0)
    x = Node.input("x", (1, 8, 10, 10))
    w = Node.constant(rng.standard_normal((8, 8, 3, 3)).astype(np.float32))
    b = Node.constant(rng.standard_normal(8).astype(np.float32))
    conv = Node.make("fused_conv2d", (x, w, b, x), padding=(1, 1), residual=True,
                     activation="relu")
    module = smelt.compile(smelt.ir.Graph([x], [conv]), "cpu")
    assert sorted(module.kernels.values()) == ["conv2d", "elementwise"]  # conv, padding
    xv = rng.standard_normal((1, 8, 10, 10)).astype(np.float32)
    (ref,) = smelt.interpret(smelt.ir.Graph([x], [conv]), xv)
    np.testing.assert_allclose(module(xv)[0], ref, rtol=1e-5, atol=1e-5)

    t = Node.input("t", (4, 16))
    wl = Node.constant(rng.standard_normal((16, 16)).astype(np.float32))
    lin = Node.make("fused_linear", (t, wl, t), residual=True, activation="gelu")
    module = smelt.compile(smelt.ir.Graph([t], [lin]), "cpu")
    assert list(module.kernels.values()) == ["dense"]
