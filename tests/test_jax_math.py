"""The JAX math converters (ir/jax_math.py) against jax itself: each function is traced with
smelt.trace_jax, run in the reference interpreter, and compared with the function run by XLA
on the same inputs.

Tolerances: elementwise functions agree to a few float32 ulps (XLA's CPU kernels and the C
library are both accurate to ~1-2 ulps: rtol 4e-6 allows 32 ulps of slack for XLA's own
approximations); reductions of n terms to n ulps of their scale. Integer, bool, sort and
index results are exact; signed zeros and NaN are compared as well where XLA defines them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import smelt

RNG = np.random.default_rng(20240621)
SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0], np.float32)


def floats(*shape: int, scale: float = 2.0, specials: bool = True) -> np.ndarray:
    x = (RNG.standard_normal(shape) * scale).astype(np.float32)
    if specials:
        flat = x.reshape(-1)
        flat[: min(len(SPECIALS), flat.size)] = SPECIALS[: flat.size]
    return x


def ints(*shape: int, low: int = -9, high: int = 10) -> np.ndarray:
    return RNG.integers(low, high, shape).astype(np.int32)


def check(fn, *args: np.ndarray, rtol: float = 4e-6, atol: float = 0.0) -> smelt.Graph:
    """Trace fn, interpret, compare with jax; return the graph."""
    graph = smelt.trace_jax(fn, *args)
    graph.verify()
    got = smelt.interpret(graph, *args)
    want = [np.asarray(w) for w in jax.tree_util.tree_leaves(fn(*args))]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        if np.issubdtype(w.dtype, np.floating):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, w)
    return graph


def ops_of(graph: smelt.Graph) -> set[str]:
    return set(graph.summary().ops)


# -- elementwise ---------------------------------------------------------------------------
UNIT = (RNG.uniform(-1.1, 1.1, (3, 5))).astype(np.float32)  # partly outside [-1, 1]
UNARY = {
    "asin": (jnp.arcsin, UNIT), "acos": (jnp.arccos, UNIT), "atanh": (jnp.arctanh, UNIT),
    "acosh": (jnp.arccosh, np.abs(floats(3, 5)) + 0.5), "asinh": (jnp.arcsinh, floats(3, 5)),
    "atan": (jnp.arctan, floats(3, 5)), "sinh": (jnp.sinh, floats(3, 5)),
    "cosh": (jnp.cosh, floats(3, 5)), "tan": (jnp.tan, floats(3, 5)),
    "log1p": (jnp.log1p, floats(3, 5, scale=1e-3) - 0.5),
    "expm1": (jnp.expm1, floats(3, 5, scale=1e-3)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_functions(name: str) -> None:
    fn, x = UNARY[name]
    assert name in ops_of(check(fn, x))


def test_exp2_and_is_finite() -> None:
    graph = check(lambda x: (jnp.exp2(x), jnp.isfinite(x)), floats(3, 5))
    assert {"pow", "isnan", "isinf"} <= ops_of(graph)


def test_sign_keeps_nan_and_negative_zero_as_xla() -> None:
    x = floats(3, 5)
    graph = check(jnp.sign, x)
    (got,) = smelt.interpret(graph, x)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(np.asarray(jnp.sign(x))))
    check(jnp.sign, ints(3, 5))


def test_atan2_and_float_remainders() -> None:
    a, b = floats(4, 6), floats(4, 6, specials=False)
    b[0, 0] = -0.0
    graph = check(lambda a, b: (jnp.arctan2(a, b), jnp.fmod(a, b), a % b), a, b)
    assert {"atan2", "fmod"} <= ops_of(graph)


def test_integer_remainders_and_floor_division() -> None:
    a = ints(4, 6)
    b = ints(4, 6, low=1, high=5) * np.where(ints(4, 6, low=0, high=2) > 0, 1, -1)
    check(lambda a, b: (a % b, jnp.fmod(a, b), a // b, lax.rem(a, b)), a, b.astype(np.int32))


@pytest.mark.parametrize("kind", ["int32", "bool"])
def test_bitwise_ops(kind: str) -> None:
    if kind == "bool":
        a, b = floats(3, 4) > 0, floats(3, 4) < 0.5
    else:
        a, b = ints(3, 4, low=-100, high=100), ints(3, 4, low=0, high=100)
    graph = check(lambda a, b: (a & b, a | b, a ^ b, ~a), a, b)
    want = {"logical_and", "logical_or", "logical_xor", "logical_not"} if kind == "bool" else {
        "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not"}
    assert want <= ops_of(graph)


# -- reductions ----------------------------------------------------------------------------
def test_prod_any_all() -> None:
    x = floats(3, 4, 5, scale=1.0, specials=False)
    graph = check(lambda x: (jnp.prod(x, 1), jnp.prod(x), jnp.any(x > 1, 0), jnp.all(x > -1),
                             jnp.any(x > 0, (0, 2), keepdims=True)), x, rtol=1e-5)
    assert {"reduce_prod", "reduce_any", "reduce_all"} <= ops_of(graph)


@pytest.mark.parametrize("kind", ["float32", "int32", "bool"])
def test_argmin_with_ties(kind: str) -> None:
    x = np.array([[3.0, 1.0, 1.0, 5.0], [2.0, np.nan, -4.0, -4.0], [-7.0, 7.0, -7.0, 0.0]],
                 np.float32)
    if kind == "int32":
        x = np.nan_to_num(x, nan=9.0).astype(np.int32)
        x[2, 0] = x[2, 2] = np.iinfo(np.int32).min  # ~x does not overflow where -x would
    elif kind == "bool":
        x = x > 0
    check(lambda x: (jnp.argmin(x, 1), jnp.argmin(x, 0)), x)


# -- scans and sorting ---------------------------------------------------------------------
def test_cumsum_and_cumprod_forward_and_reverse() -> None:
    x = np.round(floats(4, 6, scale=3.0, specials=False))
    graph = check(lambda x: (jnp.cumsum(x, 1), lax.cumsum(x, 0, reverse=True),
                             jnp.cumprod(x.astype(jnp.int32), 0),
                             lax.cumprod(x, 1, reverse=True)), x, rtol=1e-6)
    assert {"cumsum", "cumprod", "take"} <= ops_of(graph)


def test_running_maximum_is_named() -> None:
    with pytest.raises(smelt.UnsupportedOpError, match="cummax"):
        smelt.trace_jax(lambda x: lax.cummax(x, 1), floats(2, 3))


TIES = np.array([[3.0, 1.0, np.nan, 1.0, -7.0, 0.0, np.inf, 3.0],
                 [2.0, 2.0, 2.0, -np.inf, np.nan, np.nan, 5.0, -1.0]], np.float32)


@pytest.mark.parametrize("descending", [False, True])
def test_sort_and_argsort_with_ties_and_nan(descending: bool) -> None:
    graph = check(lambda x: (jnp.sort(x, 1, descending=descending), jnp.sort(x, 0),
                             jnp.argsort(x, 1, stable=True, descending=descending),
                             jnp.argsort(x.astype(jnp.int32), 0, stable=True)), TIES)
    assert "sort" in ops_of(graph)


def test_sort_carries_other_operands() -> None:
    """lax.sort with a key and a payload: the payload follows the key's order (gather)."""
    key, payload = TIES, np.arange(16, dtype=np.float32).reshape(2, 8) * 10
    graph = check(lambda k, v: lax.sort((k, v), dimension=1, num_keys=1), key, payload)
    assert "gather" in ops_of(graph)
    with pytest.raises(smelt.UnsupportedOpError, match="one key"):
        smelt.trace_jax(lambda k, v: lax.sort((k, v), num_keys=2), key, payload)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_top_k(k: int) -> None:
    x = RNG.permutation(16).reshape(2, 8).astype(np.float32) - 5.0  # distinct values
    graph = check(lambda x: lax.top_k(x, k), x)
    assert {"sort", "slice"} <= ops_of(graph) or k == 8


# -- activations and statistics models reach ---------------------------------------------
def test_activations_and_statistics() -> None:
    """flax / equinox code paths: softplus, log_sigmoid, mish (log1p), elu, selu, celu
    (expm1), logsumexp (is_finite, sign), var, std, norm."""
    x = floats(4, 6, specials=False)
    fns = (jax.nn.softplus, jax.nn.log_sigmoid, jax.nn.mish, jax.nn.elu, jax.nn.selu,
           jax.nn.celu, lambda t: jax.nn.logsumexp(t, 1), lambda t: jnp.var(t, 0),
           lambda t: jnp.std(t), lambda t: jnp.linalg.norm(t, axis=1))
    check(lambda t: tuple(f(t) for f in fns), x, rtol=1e-5, atol=1e-7)
