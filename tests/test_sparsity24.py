"""2:4 structured sparsity: the policy (mask_24), the compressed layout (pack_24 / unpack_24,
the bit order of meta), the exact packing rule and its op (linear24 equals the dense linear on
the masked weight), the sparsify-24 pass and its report, and the CPU kernel: compiled results
within the float32 contraction bound, constants in the module compressed, a named schedule.
(The rule's contract is also verified on 200 random instances by test_rewrite_rules, and the
op against torch, compiled, through to_torch and to_jax by the per-op suites.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import relax
from tvm.ir.expr import Constant

import smelt
from smelt.backends.cpu.build import fused_kernels
from smelt.backends.interop import to_torch, with_weights
from smelt.backends.targets import make_target
from smelt.ir import Graph, Node, TypeInferenceError, interpret
from smelt.ir.ops.sparse import is_24_sparse, meta_bytes, pack_24, unpack_24
from smelt.passes.sparsity24 import PACK_24, SparsityError, mask_24, sparsify_24
from smelt.rewrite import rewrite
from smelt.rewrite.errors import PipelineParseError

EPS32 = float(np.finfo(np.float32).eps)


@st.composite
def weights(draw: st.DrawFn, k_groups: int = 8) -> np.ndarray:
    """(N, K) weights with ties (rounded values), zeros and a wide range of magnitudes."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, k = draw(st.integers(1, 7)), 4 * draw(st.integers(1, k_groups))
    w = rng.standard_normal((n, k)) * draw(st.sampled_from((1e-3, 1.0, 1e3)))
    if draw(st.booleans()):
        w = np.round(w * 2) / 2  # many equal magnitudes
    w[rng.random(w.shape) < draw(st.sampled_from((0.0, 0.2, 0.6)))] = 0.0
    return w.astype(draw(st.sampled_from((np.float32, np.float64))))


# -- the policy ---------------------------------------------------------------------------
@settings(max_examples=100)
@given(w=weights())
def test_mask_keeps_the_two_largest_of_each_group_ties_to_the_lower_position(w):
    m = mask_24(w)
    assert is_24_sparse(m) and m.dtype == w.dtype
    for row_w, row_m in zip(w.reshape(-1, 4), m.reshape(-1, 4), strict=True):
        kept = [i for i in range(4) if row_m[i] != 0 or row_w[i] == 0]
        assert all(row_m[i] in (0, row_w[i]) for i in range(4))
        want = sorted(range(4), key=lambda i: (-abs(row_w[i]), i))[:2]  # ties: lower first
        assert all(row_m[i] == row_w[i] for i in want)
        assert all(row_m[i] == 0 for i in range(4) if i not in want)
        assert len(kept) >= 2
    np.testing.assert_array_equal(mask_24(m), m)  # idempotent


def test_mask_rejects_a_reduction_not_divisible_by_four():
    with pytest.raises(SparsityError, match="multiple of 4"):
        mask_24(np.ones((3, 6)))


# -- the layout ---------------------------------------------------------------------------
@settings(max_examples=100)
@given(w=weights(k_groups=9))
def test_pack_unpack_round_trips_bit_for_bit(w):
    m = mask_24(w)
    values, meta = pack_24(m)
    n, k = m.shape
    assert values.shape == (n, k // 2) and values.dtype == m.dtype
    assert meta.shape == (n, meta_bytes(k)) and meta.dtype == np.uint8
    back = unpack_24(values, meta, k)
    assert back.dtype == m.dtype
    np.testing.assert_array_equal(back, m)  # -0.0 may come back as +0.0; non-zeros bit-exact
    np.testing.assert_array_equal(back[m != 0].tobytes(), m[m != 0].tobytes())


def test_meta_bit_order_is_two_bits_per_slot_least_significant_first():
    w = np.zeros((1, 8), np.float32)
    w[0, [1, 3]] = [5, 6]  # group 0: positions 1 and 3
    w[0, [4]] = [7]  # group 1: position 0 only; the spare slot takes position 1 (a zero)
    values, meta = pack_24(w)
    np.testing.assert_array_equal(values, [[5, 6, 7, 0]])
    assert meta.tolist() == [[1 | 3 << 2 | 0 << 4 | 1 << 6]]


def test_pack_refuses_a_dense_weight_and_the_op_checks_its_operands():
    with pytest.raises(TypeInferenceError, match="mask it first"):
        pack_24(np.ones((2, 8), np.float32))
    x = Node.input("x", (2, 6))
    v = Node.constant(np.ones((3, 3), np.float32))
    with pytest.raises(TypeInferenceError, match="multiple of 4"):
        Node.make("linear24", [x, v, Node.constant(np.zeros((3, 1), np.uint8))])
    x = Node.input("x", (2, 8))
    with pytest.raises(TypeInferenceError, match="values must have K/2 = 4"):
        Node.make("linear24", [x, v, Node.constant(np.zeros((3, 1), np.uint8))])
    v = Node.constant(np.ones((3, 4), np.float32))
    with pytest.raises(TypeInferenceError, match=r"meta must be uint8\[3, 1\]"):
        Node.make("linear24", [x, v, Node.constant(np.zeros((3, 2), np.uint8))])


# -- the exact step -----------------------------------------------------------------------
def _linear(w: np.ndarray, lead: tuple[int, ...], bias: bool) -> Graph:
    dtype = "float32" if w.dtype == np.float32 else "float64"
    x = Node.input("x", lead + (w.shape[1],), dtype)
    b = [Node.constant(np.linspace(-1, 1, w.shape[0]).astype(w.dtype))] if bias else []
    return Graph([x], [Node.make("linear", [x, Node.constant(w), *b])])


@settings(max_examples=60)
@given(w=weights(), lead=st.lists(st.integers(1, 3), max_size=2), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_packed_op_equals_the_dense_masked_op_bit_for_bit(w, lead, bias, seed):
    dense = _linear(mask_24(w), tuple(lead), bias)
    res = rewrite(dense, PACK_24)
    assert res.stats.fired() == {"pack_24_linear": 1}
    assert [n.op for n in res.graph.nodes() if n.op not in ("input", "constant")] == ["linear24"]
    x = np.random.default_rng(seed).standard_normal(dense.inputs[0].shape)
    for precision in ("float32", "float64"):
        (want,), (got,) = (interpret(g, x, precision=precision) for g in (dense, res.graph))
        np.testing.assert_array_equal(got, want)


def test_pack_rule_refuses_a_dense_weight_and_says_why():
    dense = _linear(np.ones((2, 8), np.float32), (3,), False)
    assert rewrite(dense, PACK_24).rewrites == 0
    why = smelt.explain(dense.outputs[0], PACK_24).nearest
    assert "not 2:4 sparse" in why.reason


# -- the pass -----------------------------------------------------------------------------
def _mlp() -> Graph:
    rng = np.random.default_rng(0)

    def c(*shape):
        return Node.constant(rng.standard_normal(shape).astype(np.float32))

    x = Node.input("x", (4, 32))
    h = Node.make("relu", [Node.make("linear", [x, c(64, 32), c(64)])])
    h = Node.make("linear", [h, c(30, 64)])  # packed
    h = Node.make("linear", [h, c(6, 30)])  # K = 30: kept dense
    y = Node.make("linear", [h, c(8, 6)])  # K = 6: kept dense
    small = Node.make("linear", [y, c(2, 8)])  # under min_size
    return Graph([x], [small])


def test_sparsify_pass_masks_packs_and_reports_every_linear():
    g = _mlp()
    pipe = smelt.Pipeline.parse("sparsify-24(min_size=100)")
    out = pipe(g)
    res = pipe.passes[0].last
    assert [r.packed for r in res.layers] == [True, True, False, False, False]
    assert "K = 30 is not a multiple of 4" in res.layers[2].reason
    assert "K = 6" in res.layers[3].reason
    assert "16 weights < min_size=100" in res.layers[4].reason
    assert res.layers[0].bytes == (64 * 32 * 4, 64 * 16 * 4 + 64 * 4)
    assert res.bytes() == (64 * 32 * 4 + 30 * 64 * 4, 64 * 16 * 4 + 64 * 4 + 30 * 32 * 4
                           + 30 * 8)
    ops = [n.op for n in out.nodes() if n.op not in ("input", "constant")]
    assert ops.count("linear24") == 2 and ops.count("linear") == 3
    assert 0 < res.layers[0].removed_l1 < 0.5  # the two smaller of four go
    notes = pipe.report.passes[0].notes
    assert notes[0].startswith("packed 2 of 5 linears 2:4") and len(notes) == 7
    assert notes[-1].startswith("contract: bounded(inf), no bound")  # no calibration given
    # exact against the masked dense graph (pack=False), lossy against the original
    masked = smelt.Pipeline.parse("sparsify-24(min_size=100, pack=False)")(g)
    assert not any(n.op == "linear24" for n in masked.nodes())
    x = np.random.default_rng(1).standard_normal((4, 32))
    (a,), (b,), (c,) = (interpret(h, x, precision="float64") for h in (masked, out, g))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    assert res.error > 0 and res.on == "seeded sample"


def test_sparsify_pass_scope_and_bad_options():
    g = _mlp()
    names = {g.outputs[0]: "head"}
    res = sparsify_24(g.replace(names=names), scope="head")
    assert [r.packed for r in res.layers] == [False, False, False, False, True]
    assert "outside scope='head'" in res.layers[0].reason and res.layers[4].name == "head"
    for spec in ("sparsify-24(min_size=-1)", "sparsify-24(pack=3)"):
        with pytest.raises(PipelineParseError):
            smelt.Pipeline.parse(spec)


def test_pack_pass_after_a_masked_fine_tune_keeps_the_mask_and_packs():
    """to_torch(trainable=True) on the packed graph trains the kept values only, so the
    fine-tuned weights are still 2:4 (and pack-24 on a masked dense graph packs them)."""
    g = smelt.Pipeline.parse("sparsify-24(min_size=100)")(_mlp())
    module = to_torch(g, trainable=True)
    x = torch.randn(4, 32)
    module(x)[0].square().sum().backward()
    with torch.no_grad():
        for p in module.parameters():
            p -= 0.01 * p.grad
    tuned = with_weights(g, module)
    assert sum(n.op == "linear24" for n in tuned.nodes()) == 2
    (got,) = interpret(tuned, x.numpy())
    np.testing.assert_allclose(got, module(x)[0].detach().numpy(), rtol=1e-4, atol=1e-4)
    again = smelt.Pipeline.parse("sparsify-24(min_size=100, pack=False),pack-24")(_mlp())
    assert sum(n.op == "linear24" for n in again.nodes()) == 2


# -- the CPU kernel -----------------------------------------------------------------------
@pytest.mark.parametrize("lead,k,n", [((1,), 768, 40), ((130,), 64, 33), ((2, 3), 12, 7)])
def test_compiled_linear24_within_the_float32_bound(lead, k, n):
    rng = np.random.default_rng(k)
    w = mask_24(rng.standard_normal((n, k)).astype(np.float32))
    dense = _linear(w, lead, True)
    packed = rewrite(dense, PACK_24).graph
    y = Node.make("relu", list(packed.outputs))  # an epilogue for the write-back to fold
    module = smelt.compile(Graph(packed.inputs, [y]), "cpu")
    rules = list(module.kernels.values())
    assert "sparse-24" in rules and None not in rules, module.kernels
    x = rng.standard_normal(lead + (k,)).astype(np.float32)
    (got,) = module(x)
    (want,) = interpret(Graph(dense.inputs, [Node.make("relu", list(dense.outputs))]), x,
                        precision="float64")
    # float32 sums of K/2 products (plus the bias): |err| <= 8 eps (K max|x w| + |y|)
    bound = 8 * EPS32 * (k * np.abs(x).max() * np.abs(w).max() + np.abs(want) + 1)
    assert np.all(np.abs(got - want) <= bound)


def test_compiled_module_binds_the_compressed_weight_not_a_dense_one():
    rng = np.random.default_rng(0)
    n, k = 48, 64
    w = mask_24(rng.standard_normal((n, k)).astype(np.float32))
    packed = rewrite(_linear(w, (16,), False), PACK_24).graph
    mod = fused_kernels(packed, make_target("cpu"))
    shapes = []

    def visit(expr):
        if isinstance(expr, Constant) and hasattr(expr.value, "numpy"):  # tensors only
            value = expr.value.numpy()
            shapes.append((value.shape, str(value.dtype)))

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    assert sorted(shapes) == sorted([((n, k // 2), "float32"), ((n, meta_bytes(k)), "uint8")])
