"""The torch frontend's indexing, scatter, shape and factory converters (ir/aten_indexing.py):
each ATen op traced from a tiny nn.Module through `smelt.trace` (torch.export), interpreted,
and compared with torch eager. Gathers, copies and index arithmetic are exact; sums and means
(scatter_add, embedding_bag) allow float32 rounding.

Also: the ops that stay out (a boolean mask computed from data, `.item()` on data) raise an
UnsupportedOpError naming the op, the user's line and the reason; factories fold to
constants; and the attention-mask indexing that transformers' BERT does runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import smelt
from smelt.ir import UnsupportedOpError

warnings.filterwarnings("ignore", category=FutureWarning)


class Fn(torch.nn.Module):
    def __init__(self, fn: Callable) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def traced(fn: Callable, *args: torch.Tensor):
    graph = smelt.trace(Fn(fn), args)
    got = smelt.interpret(graph, *(a.numpy() for a in args))
    with torch.no_grad():
        want = fn(*args)
    want = want if isinstance(want, tuple) else (want,)
    return graph, list(got), [w.detach().numpy() for w in want]


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _i(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def _slice_assign(x):
    y = x.clone()
    y[:, 1:3] = 0.5
    return y


def _strided_assign(x):
    y = x.clone()
    y[::2] = x[1::2] * 2
    return y


def _masked_fill(x):
    y = x.clone()
    y[x > 0] = 0.0
    return y


def _row_put(x, i):
    y = x.clone()
    y[i] = x[0] + 1
    return y


def _copy_into(x):
    y = torch.empty(4, 5)
    y.copy_(x[0])
    return y + 1


def _fill_tensor(x):
    return torch.ops.aten.fill(x, x[0, 0])


def _bag(mode: str, **kw):
    def fn(w, idx, off):
        return F.embedding_bag(idx, w, off, mode=mode, **kw)
    return fn


def _bag_const_offsets(w, idx):
    return F.embedding_bag(idx, w, torch.tensor([0, 2, 2]), mode="mean")


def _bag_weighted(w, idx, off, psw):
    return F.embedding_bag(idx, w, off, mode="sum", per_sample_weights=psw)


X = _x(4, 5)
IDX2 = torch.tensor([[0, 4], [2, 1], [3, 3], [1, 0]])
EXACT: dict[str, tuple[Callable, tuple]] = {
    "index two": (lambda x, i, j: x[i, j], (X, _i(0, 2, -1), _i(1, 1, -2))),
    "index column": (lambda x, i: x[:, i], (X, _i(3, -1))),
    "index broadcast": (lambda x, i, j: x[i[:, None], j], (X, _i(0, 3), _i(4, 0, 1))),
    "index apart": (lambda x, i, j: x[i, :, j], (_x(3, 4, 5), _i(0, -1), _i(2, 2))),
    "index_put accumulate": (lambda x, i, j: torch.index_put(x, (i, j), x[0, :3],
                                                             accumulate=True),
                             (X, _i(0, 0, -1), _i(1, 1, 2))),
    "index_put row": (_row_put, (X, _i(2))),
    "masked fill": (_masked_fill, (X,)),
    "gather": (lambda x, i: torch.gather(x, 1, i), (X, IDX2)),
    "scatter src": (lambda x, i: x.scatter(1, i[:, :1], x), (X, IDX2)),
    "scatter value": (lambda x, i: x.scatter(1, i[:, :1], 2.0), (X, IDX2)),
    "scatter amax": (lambda x, i: x.scatter_reduce(1, i, x[:, 1:3] * 3, "amax",
                                                   include_self=False), (X, IDX2)),
    "scatter int prod": (lambda x, i: x.scatter(1, i, x[:, :2], reduce="multiply"),
                         (torch.arange(20).reshape(4, 5), IDX2)),
    "slice_scatter": (_slice_assign, (X,)),
    "slice_scatter step": (_strided_assign, (X,)),
    "select_scatter": (lambda x: torch.select_scatter(x, x[1] * 2, 0, -1), (X,)),
    "masked_scatter": (lambda x: x.masked_scatter(x > 0, torch.arange(20.).reshape(4, 5)),
                       (X,)),
    "as_strided": (lambda x: x.as_strided((3, 3), (1, 2), 2) * 2, (X,)),
    "unfold": (lambda x: x.unfold(1, 2, 1) + 1, (X,)),
    "unfold step": (lambda x: x.unfold(0, 2, 2) + 1, (_x(5, 2, 3),)),
    "diagonal": (lambda x: torch.diagonal(x, 1) + 1, (X,)),
    "diagonal 3d": (lambda x: torch.diagonal(x, -1, 2, 0) + 1, (_x(3, 2, 4),)),
    "flip": (lambda x: torch.flip(x, (0, -1)), (X,)),
    "repeat": (lambda x: x.repeat(2, 1, 3), (X,)),
    "copy": (_copy_into, (X,)),
    "fill scalar": (lambda x: torch.ops.aten.fill(x, 3.0) + x, (X,)),
    "fill tensor": (_fill_tensor, (X,)),
    "factories": (lambda x: torch.full_like(x, 2.0) * x + torch.zeros_like(x)
                  + torch.ones_like(x, dtype=torch.int32) + x.new_full((5,), 7.0)
                  + x.new_zeros(5) + x.new_ones(5), (X,)),
    "arange float step": (lambda x: x + torch.arange(0.0, 1.0, 0.2), (X,)),
    "arange of size": (lambda x: x * torch.arange(x.shape[1]), (X,)),
    "scalar_tensor": (lambda x: x * torch.scalar_tensor(3.0), (X,)),
    "item of constant": (lambda x: x * torch.tensor([2.5])[0].item(), (X,)),
}
CLOSE: dict[str, tuple[Callable, tuple]] = {
    "scatter_add": (lambda x, i: x.scatter_add(1, i, x), (X, IDX2)),
    "scatter_reduce mean": (lambda x, i: x.scatter_reduce(1, i, x * 2, "mean"), (X, IDX2)),
    "embedding_bag sum": (_bag("sum"), (X, _i(0, 1, 3, 3, 2), _i(0, 2, 2))),
    "embedding_bag mean": (_bag("mean"), (X, _i(0, 1, 3, 3, 2), _i(0, 2, 2))),
    "embedding_bag max": (_bag("max"), (X, _i(0, 1, 3, 3, 2), _i(0, 1, 2))),
    "embedding_bag padding": (_bag("mean", padding_idx=3), (X, _i(0, 3, 3, 3, 2), _i(0, 1, 4))),
    "embedding_bag last offset": (_bag("sum", include_last_offset=True),
                                  (X, _i(0, 1, 3, 3, 2), _i(0, 2, 5))),
    "embedding_bag 2-d": (lambda w, idx: F.embedding_bag(idx, w, mode="max"),
                          (X, torch.tensor([[0, 1], [2, 3], [3, 3]]))),
    "embedding_bag constant offsets": (_bag_const_offsets, (X, _i(0, 1, 3, 3))),
    "embedding_bag weights": (_bag_weighted, (X, _i(0, 1, 3), _i(0, 1),
                                              torch.tensor([0.5, 2.0, -1.0]))),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_converter_matches_eager_exactly(name: str) -> None:
    fn, args = EXACT[name]
    _, got, want = traced(fn, *args)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("name", sorted(CLOSE))
def test_converter_matches_eager(name: str) -> None:
    fn, args = CLOSE[name]
    _, got, want = traced(fn, *args)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_ops_become_the_indexing_ops_or_take() -> None:
    graph, _, _ = traced(lambda x, i, j: x[i, j] + x[:, i].sum(), X, _i(0, 1), _i(2, 3))
    ops = {n.op for n in graph.nodes()}
    assert {"index", "take"} <= ops
    graph, _, _ = traced(lambda x, i: x.scatter_add(1, i, x), X, IDX2)
    (node,) = [n for n in graph.nodes() if n.op == "scatter"]
    assert node.attrs["reduce"] == "sum"


def test_factories_fold_to_constants() -> None:
    graph, _, _ = traced(lambda x: x + torch.full_like(x, 2.0) + torch.arange(5.0), X)
    assert sorted(n.op for n in graph.nodes() if n.op not in ("input", "constant")) == \
        ["add", "add"]


def test_uninitialized_factories_are_zero() -> None:
    """empty* is uninitialized in torch, so any value is torch's; smelt's is zero."""
    from smelt.ir.aten_indexing import UNINITIALIZED
    from smelt.ir.node import Node
    from smelt.ir.torch_aten import ATEN
    from smelt.ir.torch_common import Builder

    x = Node.input("x", (2, 3))
    for name in UNINITIALIZED:
        node = ATEN[name](Builder("test"), torch.empty(4, 2, dtype=torch.int32), x, (4, 2))
        assert node.is_constant and node.dtype == "int32"
        np.testing.assert_array_equal(node.value, np.zeros((4, 2), np.int32))


def test_data_mask_index_is_refused_as_data_dependent() -> None:
    with pytest.raises(UnsupportedOpError) as info:
        smelt.trace(Fn(lambda x: x[x > 0]), (X,))
    message = str(info.value)
    assert "aten.index" in message and "data" in message
    assert "test_aten_indexing.py" in message  # the user's line


def test_item_on_data_is_refused_as_data_dependent() -> None:
    with pytest.raises(UnsupportedOpError) as info:
        smelt.trace(Fn(lambda x: x * x[0, 0].item()), (X,))
    message = str(info.value)
    assert "_local_scalar_dense" in message and "depends on the data" in message
    assert "test_aten_indexing.py" in message


def test_sym_sizes_are_static_ints() -> None:
    from smelt.ir.node import Node
    from smelt.ir.torch_aten import ATEN
    from smelt.ir.torch_common import Builder

    b, x = Builder("test"), Node.input("x", (2, 3, 4))
    assert ATEN["sym_size"](b, None, x, 1) == 3
    assert ATEN["sym_numel"](b, None, x) == 24
    assert ATEN["sym_stride"](b, None, x, 0) == 12
    assert ATEN["sym_storage_offset"](b, None, x) == 0


def test_bert_attention_mask_indexing() -> None:
    """transformers builds BERT's mask as mask[batch_idx, kv_idx] with arange indices:
    aten.index with two constant index tensors on the data mask."""
    def fn(mask):
        b = torch.arange(mask.shape[0])[:, None, None, None]
        kv = torch.arange(mask.shape[1])[None, None, None, :]
        return (1.0 - mask[b, kv].to(torch.float32)) * -1e4

    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    graph, got, want = traced(fn, mask)
    assert "index" in {n.op for n in graph.nodes()}
    np.testing.assert_array_equal(got[0], want[0])


def test_factory_converters_compute_what_torch_computes() -> None:
    """arange, full, scalar_tensor... of Python numbers fold before their converter; called
    directly, the converter gives torch's values (float steps rounded as torch rounds them);
    an argument computed from data is refused."""
    from smelt.ir.node import Node
    from smelt.ir.torch_aten import ATEN
    from smelt.ir.torch_common import Builder

    b = Builder("test")
    got = ATEN["arange"](b, None, 0.0, 1.0, 0.1)
    np.testing.assert_array_equal(got.value, torch.arange(0.0, 1.0, 0.1).numpy())
    assert ATEN["full"](b, None, [2, 3], 7, dtype=torch.int32).dtype == "int32"
    assert float(ATEN["scalar_tensor"](b, None, 2.5).value) == 2.5
    with pytest.raises(Exception, match="computed from data"):
        ATEN["full"](b, None, [2], Node.input("v", ()))


def test_as_strided_reads_a_transposed_layout_as_torch_does() -> None:
    """as_strided reads storage: on a transpose (a view, or a compute op keeping its input's
    layout), torch reads the elements in the order before the transpose."""
    for fn in (lambda x: torch.as_strided((x * 2).t(), (2, 3), (1, 2), 1) + 1,
               lambda x: torch.as_strided(x.t(), (3, 2), (2, 1), 1)):
        graph = smelt.trace(Fn(fn), (X,))
        np.testing.assert_array_equal(smelt.interpret(graph, X)[0], fn(X).numpy())


def test_as_strided_of_a_slice_is_refused() -> None:
    """A slice does not fill its storage from the start: as_strided would read elements
    outside the tensor."""
    with pytest.raises(UnsupportedOpError, match="does not fill its storage"):
        smelt.trace(Fn(lambda x: torch.as_strided(x[1:], (2, 2), (1, 2)) + 1), (X,))
