"""The ATen math converters (ir/aten_math.py) against eager PyTorch: each tiny module is traced
with smelt.trace (torch.export, core decompositions), run in the interpreter, and compared
with the module run by torch on the same inputs.

Tolerance: both sides compute in float32 and call accurate library functions (numpy's and
torch's loops are within a few ulps), so elementwise results agree to 8 ulps of the result
(rtol 1e-6); reductions and norms of n terms to n ulps of their scale. Integer, bool, sort
and index results are exact. Inputs plant NaN, infinities, signed zeros and ties.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import smelt
from smelt.ir.errors import UnsupportedOpError

GEN = torch.Generator().manual_seed(21)
SPECIALS = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1.0, -1.0])


def floats(*shape: int, scale: float = 2.0, specials: bool = True) -> torch.Tensor:
    x = torch.randn(*shape, generator=GEN) * scale
    if specials:
        flat = x.reshape(-1)
        flat[: min(len(SPECIALS), flat.numel())] = SPECIALS[: flat.numel()]
    return x


def ints(*shape: int, low: int = -9, high: int = 10, dtype=torch.int64) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=GEN).to(dtype)


def bools(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=GEN) > 0.5


class Fn(torch.nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def traced_matches_eager(fn, *args: torch.Tensor, rtol: float = 1e-6,
                         atol: float = 0.0) -> smelt.Graph:
    """Trace fn, interpret, compare every output with eager torch; return the graph."""
    graph = smelt.trace(Fn(fn), args)
    graph.verify()
    with torch.no_grad():
        want = fn(*args)
    want = list(want) if isinstance(want, tuple | list) else [want]
    got = smelt.interpret(graph, *args)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        w = w.numpy()
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        if np.issubdtype(w.dtype, np.floating):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, w)
    return graph


def ops_of(graph: smelt.Graph) -> set[str]:
    return set(graph.summary().ops)


def each(*fns):
    """One module computing every fn of the same inputs (one export instead of many); the
    parts of a tuple result are outputs of their own."""
    def run(*xs):
        outs = [fn(*xs) for fn in fns]
        return tuple(p for o in outs for p in (o if isinstance(o, tuple | list) else (o,)))

    return run


UNIT = (torch.rand(3, 5, generator=GEN) * 2.2 - 1.1)  # partly outside [-1, 1]
UNARY = {
    "acos": (torch.acos, UNIT), "asin": (torch.asin, UNIT), "atanh": (torch.atanh, UNIT),
    "acosh": (torch.acosh, floats(3, 5).abs() + 0.5), "asinh": (torch.asinh, floats(3, 5)),
    "atan": (torch.atan, floats(3, 5)), "cosh": (torch.cosh, floats(3, 5)),
    "sinh": (torch.sinh, floats(3, 5)), "tan": (torch.tan, floats(3, 5)),
    "expm1": (torch.expm1, floats(3, 5, scale=1e-3)),
    "log1p": (torch.log1p, floats(3, 5, scale=1e-3) - 0.5),
    "log2": (torch.log2, floats(3, 5).abs()), "log10": (torch.log10, floats(3, 5).abs()),
    "exp2": (torch.exp2, floats(3, 5)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_float_functions(name: str) -> None:
    fn, x = UNARY[name]
    graph = traced_matches_eager(fn, x)
    assert name in ops_of(graph) or name == "exp2"


def test_unary_function_of_integers_is_float32() -> None:
    graph = traced_matches_eager(torch.acos, ints(4, low=-1, high=2))
    assert {"cast", "acos"} <= ops_of(graph)


ROUNDING = (torch.ceil, torch.trunc, torch.fix, torch.sign, torch.sgn, torch.isnan,
            torch.isinf, torch.isfinite)


@pytest.mark.parametrize("kind", ["float", "int", "bool"])
def test_rounding_sign_and_tests_keep_torch_dtypes(kind: str) -> None:
    x = {"float": floats(4, 5), "int": ints(4, 5), "bool": bools(4, 5)}[kind]
    fns = ROUNDING + ((torch.frac,) if kind == "float" else ())
    if kind == "bool":
        fns = (torch.sign, torch.isnan, torch.isinf)
    traced_matches_eager(each(*fns), x, rtol=0)


def test_sign_of_nan_and_negative_zero_is_positive_zero() -> None:
    (got,) = smelt.interpret(smelt.trace(Fn(torch.sign), (SPECIALS,)), SPECIALS)
    assert not np.signbit(got[[0, 4]]).any() and got[0] == 0  # torch: sign(NaN) = 0


@pytest.mark.parametrize("x", [ints(3, 4, dtype=torch.int8), bools(3, 4),
                               ints(3, 4, low=0, high=255, dtype=torch.uint8)])
def test_bitwise_not(x: torch.Tensor) -> None:
    assert "bitwise_not" in ops_of(traced_matches_eager(torch.bitwise_not, x))


ACTIVATIONS = (torch.nn.ELU(), torch.nn.ELU(0.3), torch.nn.SELU(), torch.nn.CELU(0.7),
               torch.nn.Softplus(), torch.nn.Softplus(2.0, 5.0), torch.nn.Mish(),
               torch.nn.LogSigmoid(), torch.nn.Hardshrink(0.7), torch.nn.Softshrink(0.4),
               torch.nn.Tanhshrink(), torch.nn.Softsign(), torch.nn.GLU(),
               torch.nn.Threshold(0.1, 2.0), torch.nn.RReLU(0.1, 0.3).eval())


def test_activations() -> None:
    """elu, selu and celu map to elu, RReLU (eval) to leaky_relu; the others torch's
    decompositions write in mapped ops."""
    graph = traced_matches_eager(each(*ACTIVATIONS), floats(4, 6, specials=False), rtol=2e-6,
                                 atol=1e-7)
    assert {"elu", "log1p"} <= ops_of(graph)


def test_logit_with_and_without_eps() -> None:
    p = torch.rand(3, 7, generator=GEN)
    traced_matches_eager(torch.logit, p, rtol=2e-6, atol=1e-7)
    traced_matches_eager(lambda q: torch.logit(q, 1e-3), p, rtol=2e-6, atol=1e-7)


# -- binary --------------------------------------------------------------------------------
def test_atan2_with_signed_zeros() -> None:
    a = torch.tensor([0.0, -0.0, 0.0, -0.0, 1.0, -1.0, float("inf"), float("nan")])
    b = torch.tensor([0.0, 0.0, -0.0, -0.0, -float("inf"), 2.0, float("inf"), 1.0])
    graph = traced_matches_eager(torch.atan2, a, b)
    (got,) = smelt.interpret(graph, a, b)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(torch.atan2(a, b).numpy()))


DIVISORS = torch.tensor([2.0, -2.0, 0.5, -0.0, float("inf"), -float("inf"), 3.0, -1.0])


@pytest.mark.parametrize("fn", [torch.fmod, torch.remainder])
def test_fmod_and_remainder_follow_torch_signs(fn) -> None:
    a = torch.tensor([5.5, 5.5, -5.5, 1.0, -1.0, 4.0, -0.0, 7.0])
    graph = traced_matches_eager(fn, a, DIVISORS)
    (got,) = smelt.interpret(graph, a, DIVISORS)
    want = fn(a, DIVISORS).numpy()
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))  # -0.0 stays -0.0
    ia, ib = ints(6, 7), ints(6, 7, low=1, high=6) * (1 - 2 * ints(6, 7, low=0, high=2))
    traced_matches_eager(fn, ia, ib)
    traced_matches_eager(lambda x: fn(x, 3), ia)  # a Python divisor
    traced_matches_eager(lambda x: fn(x, -2.5), floats(3, 4, specials=False))
    traced_matches_eager(lambda x: fn(x, 0.75), ia)  # an int tensor by a float: float32


@pytest.mark.parametrize("op", ["and", "or", "xor"])
@pytest.mark.parametrize("dtype", [torch.bool, torch.int32, torch.uint8])
def test_bitwise_binary(op: str, dtype) -> None:
    fn = {"and": torch.bitwise_and, "or": torch.bitwise_or, "xor": torch.bitwise_xor}[op]
    x = bools(3, 5) if dtype == torch.bool else ints(3, 5, low=0, high=100, dtype=dtype)
    y = bools(5) if dtype == torch.bool else ints(5, low=0, high=100, dtype=dtype)
    assert f"bitwise_{op}" in ops_of(traced_matches_eager(fn, x, y))
    scalar = True if dtype == torch.bool else 6
    traced_matches_eager(lambda t: fn(t, scalar), x)


def test_logical_xor_reads_nonzero_as_true() -> None:
    traced_matches_eager(torch.logical_xor, floats(3, 4), ints(3, 4, low=-1, high=2))
    traced_matches_eager(lambda a, b: (a > 0) ^ (b < 0), floats(3, 4), floats(4))


# -- reductions ----------------------------------------------------------------------------
def test_prod() -> None:
    """Integers and bool multiply in int64 (torch's promotion)."""
    calls = each(lambda x: x.prod(), lambda x: x.prod(1), lambda x: x.prod(-1, keepdim=True),
                 lambda x: x.to(torch.int32).prod(0), lambda x: (x > 0).prod(1),
                 lambda x: x.prod(0, dtype=torch.float64))
    graph = traced_matches_eager(calls, floats(3, 4, scale=1.0, specials=False), rtol=5e-6)
    assert "reduce_prod" in ops_of(graph)


ANY_ALL = [lambda x: x.any(), lambda x: x.any(-1), lambda x: x.any(1, keepdim=True),
           lambda x: x.any((0, 2)), lambda x: torch.ops.aten.any.dims(x, []),
           lambda x: x.all(), lambda x: x.all(0), lambda x: x.all((1, 2), keepdim=True)]


@pytest.mark.parametrize("kind", ["bool", "float", "uint8"])
def test_any_all(kind: str) -> None:
    x = bools(2, 3, 4)
    x = {"bool": x, "float": x.float() * floats(2, 3, 4), "uint8": x.to(torch.uint8)}[kind]
    graph = traced_matches_eager(each(*ANY_ALL), x)
    assert "reduce_any" in ops_of(graph)  # torch writes all(x) as not any(not x)


class AttentionMask(torch.nn.Module):
    """transformers' mask code: rows without any attended position are zeroed."""

    def forward(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.to(torch.bool)
        masked = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        attended = keep.any(dim=-1)[:, None, None, None]
        return torch.where(attended, masked.softmax(-1), 0.0)


def test_attention_mask_any_compiles_for_cpu() -> None:
    scores = floats(2, 2, 3, 5, specials=False)
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0]])
    graph = traced_matches_eager(AttentionMask(), scores, mask, atol=1e-7)
    assert "reduce_any" in ops_of(graph)
    got = smelt.compile(graph, "cpu")(scores.numpy(), mask.numpy())[0]
    np.testing.assert_allclose(got, AttentionMask()(scores, mask).numpy(), rtol=1e-6,
                               atol=1e-7)


ARGMIN = (lambda x: x.argmin(), lambda x: x.argmin(1), lambda x: x.argmin(0, keepdim=True),
          lambda x: x.argmin(keepdim=True))


@pytest.mark.parametrize("kind", ["float", "int8", "uint8", "int64"])
def test_argmin_with_ties_and_nan(kind: str) -> None:
    x = torch.tensor([[3.0, 1.0, 1.0, 5.0], [2.0, float("nan"), -4.0, -4.0],
                      [-128.0, 7.0, -128.0, 0.0]])
    if kind != "float":
        x = torch.nan_to_num(x, nan=9.0)
        x = (x + 128).to(torch.uint8) if kind == "uint8" else x.to(getattr(torch, kind))
    traced_matches_eager(each(*ARGMIN), x)


def test_var_and_std() -> None:
    """Over every axis, some, one; biased and not; a single term (0 / 0 is NaN, as torch)."""
    calls = each(lambda x: x.var(), lambda x: x.var(1), lambda x: x.var(0, unbiased=False),
                 lambda x: x.var((0, 2), keepdim=True), lambda x: torch.var(x, 2, correction=2),
                 lambda x: x.std(-1), lambda x: torch.var_mean(x, 1)[0],
                 lambda x: torch.var_mean(x, 1)[1], lambda x: torch.std_mean(x, (0, 1))[0],
                 lambda x: x[0, 0, :1].var(), lambda x: x[0, 0, 0].var(correction=0))
    traced_matches_eager(calls, floats(3, 4, 5, specials=False), rtol=1e-5, atol=1e-6)


# -- scans, sorting, norms -----------------------------------------------------------------
def test_cumsum_and_cumprod_promote_as_torch() -> None:
    """int8 and bool scan in int64, as torch promotes them."""
    calls = each(lambda x: x.cumsum(1), lambda x: x.cumsum(-1, dtype=torch.float64),
                 lambda x: x.to(torch.int8).cumsum(0), lambda x: (x > 0).cumsum(1),
                 lambda x: x.cumprod(0), lambda x: x.to(torch.int32).cumprod(1))
    x = torch.round(floats(4, 6, scale=3.0, specials=False))
    graph = traced_matches_eager(calls, x, rtol=1e-6, atol=1e-6)
    assert {"cumsum", "cumprod"} <= ops_of(graph)


TIES = torch.tensor([[3.0, 1.0, float("nan"), 1.0, -0.0, 0.0, float("inf"), 3.0],
                     [2.0, 2.0, 2.0, -float("inf"), float("nan"), float("nan"), 5.0, -1.0]])


@pytest.mark.parametrize("descending", [False, True])
def test_sort_is_stable_with_nan_last(descending: bool) -> None:
    sorts = [lambda x, d=d: torch.sort(x, dim=d, descending=descending, stable=True)
             for d in (0, 1, -1)]
    graph = traced_matches_eager(each(*sorts, lambda x: torch.argsort(
        x, dim=0, descending=descending, stable=True), lambda x: x.to(torch.int32).sort(
            1, descending)), TIES)
    assert "sort" in ops_of(graph)


@pytest.mark.parametrize("largest", [True, False])
def test_topk(largest: bool) -> None:
    """Distinct values (torch leaves the order of equal ones unspecified)."""
    x = torch.randperm(16, generator=GEN).reshape(2, 8).float() - 5.0
    topks = [lambda t, k=k: torch.topk(t, k, largest=largest) for k in (1, 3, 8)]
    graph = traced_matches_eager(each(*topks, lambda t: torch.topk(t, 2, dim=0,
                                                                   largest=largest)), x)
    assert {"sort", "slice"} <= ops_of(graph)


def test_topk_takes_the_lower_index_among_ties() -> None:
    x = torch.tensor([[1.0, 3.0, 3.0, 1.0, float("nan")]])
    graph = smelt.trace(Fn(lambda t: torch.topk(t, 3, largest=False)), (x,))
    values, indices = smelt.interpret(graph, x)
    np.testing.assert_array_equal(values, [[1.0, 1.0, 3.0]])
    np.testing.assert_array_equal(indices, [[0, 3, 1]])


@pytest.mark.parametrize("dim, keepdim", [(None, False), (1, False), ((0, 2), True)])
def test_linalg_vector_norm(dim, keepdim: bool) -> None:
    x = floats(3, 4, 5, specials=False)
    x[0, 0, 0] = 0.0
    norms = [lambda t, o=o: torch.linalg.vector_norm(t, o, dim, keepdim)
             for o in (2, 1, float("inf"), -float("inf"), 0, 3, 0.5)]
    traced_matches_eager(each(*norms), x, rtol=1e-5)


def test_normalize_and_norm() -> None:
    traced_matches_eager(lambda t: F.normalize(t, dim=-1), floats(3, 8, specials=False),
                         rtol=1e-5, atol=1e-7)
    traced_matches_eager(lambda t: t.norm(dim=1), floats(3, 8, specials=False), rtol=1e-5)


def test_sum_and_mean_of_bool_and_integers() -> None:
    """bool and integer sums are int64; an integer mean takes a float dtype (torch's rules)."""
    calls = each(lambda x: (x > 0).sum(), lambda x: (x > 0).sum(-1),
                 lambda x: x.to(torch.int8).sum(1),
                 lambda x: x.to(torch.int32).mean(0, dtype=torch.float32),
                 lambda x: (x > 0).float().mean(1), lambda x: x.half().sum(0, dtype=torch.float32))
    traced_matches_eager(calls, torch.round(floats(3, 6, scale=4.0, specials=False)), rtol=1e-6)


def test_an_op_left_out_is_still_named() -> None:
    with pytest.raises(UnsupportedOpError, match="special_bessel_j0"):
        smelt.trace(Fn(torch.special.bessel_j0), (floats(3),))
