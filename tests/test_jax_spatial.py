"""The JAX spatial converters (ir/jax_spatial.py) against jax itself: convolutions in 1-d and
3-d, transposed convolutions (input dilation: lax.conv_transpose, and the general
conv_general_dilated form with paddings outside conv_transpose's range), and reduce_window
pooling in 1-d and 3-d, channels first and last. Each function is traced with
smelt.trace_jax, run in the reference interpreter and compared with XLA on the same inputs.

Tolerance: both sides compute in float32 with different summation orders; the longest
reduction here sums 54 products of O(1) terms, so 1e-5 absolute (about 80 eps32) bounds it.
Window maxima are exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import smelt

RNG = np.random.default_rng(20240621)
HIGHEST = lax.Precision.HIGHEST


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def check(fn, args, constants=(), ops=(), exact=False) -> smelt.Graph:
    graph = smelt.trace_jax(fn, *args, constants=constants)
    graph.verify()
    present = set(graph.summary().ops)
    assert set(ops) <= present, f"expected {sorted(ops)} in the graph, got {sorted(present)}"
    feeds = [a for i, a in enumerate(args) if i not in constants]
    got = smelt.interpret(graph, *feeds)
    want = [np.asarray(w) for w in jax.tree_util.tree_leaves(fn(*args))]
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape)
        if exact:
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)
    return graph


# -- convolution ---------------------------------------------------------------------------
@pytest.mark.parametrize("constant", [True, False], ids=["constant-kernel", "input-kernel"])
def test_conv1d_channels_last(constant: bool) -> None:
    def conv(x, w):
        return lax.conv_general_dilated(x, w, (2,), ((1, 2),), rhs_dilation=(2,),
                                        dimension_numbers=("NWC", "WIO", "NWC"),
                                        feature_group_count=2, precision=HIGHEST)

    graph = check(conv, (rand(2, 11, 4), rand(3, 2, 6)), constants=(1,) if constant else (),
                  ops={"conv2d"})
    conv2d = next(n for n in graph.nodes() if n.op == "conv2d")
    assert conv2d.inputs[1].op == ("constant" if constant else "reshape")


def test_conv3d() -> None:
    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 2, 1), ((1, 0), (0, 1), (1, 1)),
                                        rhs_dilation=(2, 1, 1), feature_group_count=2,
                                        dimension_numbers=("NCDHW", "OIDHW", "NCDHW"),
                                        precision=HIGHEST)

    check(conv, (rand(2, 4, 5, 6, 4), rand(6, 2, 2, 3, 3)), constants=(1,), ops={"conv3d"})


def test_conv3d_channels_last() -> None:
    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1, 1), "SAME",
                                        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
                                        precision=HIGHEST)

    check(conv, (rand(1, 3, 4, 5, 2), rand(3, 3, 3, 2, 4)), ops={"conv3d"})


@pytest.mark.parametrize("padding", ["SAME", "VALID", ((1, 2),)])
@pytest.mark.parametrize("constant", [True, False], ids=["constant-kernel", "input-kernel"])
def test_conv_transpose_1d(padding, constant: bool) -> None:
    def up(x, w):
        return lax.conv_transpose(x, w, (3,), padding, dimension_numbers=("NCH", "OIH", "NCH"),
                                  precision=HIGHEST)

    check(up, (rand(2, 4, 5), rand(3, 4, 4)), constants=(1,) if constant else (),
          ops={"conv_transpose"})


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv_transpose_2d_and_3d(padding) -> None:
    def up2(x, w):
        return lax.conv_transpose(x, w, (2, 2), padding, rhs_dilation=(1, 2),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST)

    def up3(x, w):
        return lax.conv_transpose(x, w, (2, 1, 2), padding,
                                  dimension_numbers=("NCDHW", "OIDHW", "NCDHW"),
                                  precision=HIGHEST)

    check(up2, (rand(1, 4, 5, 3), rand(3, 2, 3, 2)), constants=(1,), ops={"conv_transpose"})
    check(up3, (rand(1, 2, 3, 2, 3), rand(3, 2, 2, 2, 3)), constants=(1,),
          ops={"conv_transpose"})


@pytest.mark.parametrize("pads", [((4, 0),), ((0, 5),), ((-1, 1),)],
                         ids=["past-the-reach", "past-the-stride", "negative"])
def test_input_dilation_outside_conv_transposes_range(pads) -> None:
    """Paddings conv_transpose cannot take: the uncropped result padded and sliced."""
    def fn(x, w):
        return lax.conv_general_dilated(x, w, (1,), pads, lhs_dilation=(2,),
                                        feature_group_count=2,
                                        dimension_numbers=("NCH", "OIH", "NCH"),
                                        precision=HIGHEST)

    check(fn, (rand(2, 4, 5), rand(4, 2, 3)), constants=(1,), ops={"conv_transpose"})


def test_the_gradient_of_a_strided_conv_is_a_transposed_conv() -> None:
    w, seed = rand(4, 3, 3, 3), rand(1, 4, 4, 3)

    def grad_of_input(x):
        def loss(x):  # linear in the conv's output, so the gradient is one transposed conv
            y = lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), precision=HIGHEST)
            return jnp.sum(y * seed)

        return jax.grad(loss)(x)

    check(grad_of_input, (rand(1, 3, 7, 6),), ops={"conv_transpose"})


# -- pooling -------------------------------------------------------------------------------
def test_max_and_sum_windows_1d() -> None:
    def pools(x):
        m = lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 3), (1, 1, 2), ((0, 0), (0, 0),
                                                                          (1, 1)))
        s = lax.reduce_window(x, 0.0, lax.add, (1, 1, 2), (1, 1, 1), ((0, 0), (0, 0),
                                                                      (0, 1)))
        return m, s

    graph = check(pools, (rand(2, 3, 9),), ops={"max_pool2d", "avg_pool2d"})
    assert "pad" in set(graph.summary().ops)  # the uneven sum window's padding


def test_max_and_sum_windows_3d_channels_last() -> None:
    def pools(x):
        m = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 3, 1), (1, 1, 2, 2, 1), "SAME",
                              window_dilation=(1, 1, 2, 1, 1))
        s = lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 2, 1), (1, 2, 2, 2, 1), "VALID")
        return m, s

    x = rand(2, 4, 6, 5, 3)
    x.reshape(-1)[:2] = [np.nan, -np.inf]
    graph = smelt.trace_jax(pools, x)
    assert {"max_pool3d", "avg_pool3d"} <= set(graph.summary().ops)
    got = smelt.interpret(graph, x)
    want = pools(x)
    np.testing.assert_array_equal(got[0], np.asarray(want[0]))
    np.testing.assert_allclose(got[1], np.asarray(want[1]), rtol=0, atol=1e-5, equal_nan=True)


def test_integer_max_window_1d_pads_with_the_minimum() -> None:
    def pool(x):
        return lax.reduce_window(x, jnp.iinfo(jnp.int32).min, lax.max, (1, 2, 1), (1, 2, 1),
                                 ((0, 0), (1, 0), (0, 0)))

    x = RNG.integers(-50, 50, (2, 7, 3)).astype(np.int32)
    check(pool, (x,), ops={"max_pool2d"}, exact=True)
