"""The JAX frontend's gather/scatter family (ir/jax_indexing.py) against jax itself: each
function is traced with smelt.trace_jax, run in the reference interpreter, and compared with
XLA on the same inputs. Gathers, sets, reversals and padding copy values: exact. Sums over
duplicate indices add in a different order: float32 rounding (1e-6 on O(1) values).

Covered: jnp indexing by one or several index arrays (adjacent axes, axes apart, broadcast
index arrays, an index next to an integer), jnp.take in its modes, take_along_axis; x.at[...]
set/add/multiply/min/max and segment_sum; dynamic_update_slice; flip (rev); pad with
interior and negative widths; one_hot (iota), roll, select_n and concatenate, which were
mapped before.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import smelt

RNG = np.random.default_rng(20240611)
X = RNG.standard_normal((4, 5)).astype(np.float32)
X3 = RNG.standard_normal((3, 4, 5)).astype(np.float32)
I = np.array([0, 2, -1], np.int32)
J = np.array([1, 4, 3], np.int32)


def run(fn, *args):
    graph = smelt.trace_jax(fn, *args)
    graph.verify()
    got = smelt.interpret(graph, *args)
    want = [np.asarray(w) for w in jax.tree_util.tree_leaves(fn(*map(jnp.asarray, args)))]
    assert len(got) == len(want)
    return graph, got, want


EXACT = {
    "x[i]": (lambda x, i: x[i], (X, I)),
    "x[:, i]": (lambda x, i: x[:, i], (X, J)),
    "x[i, j]": (lambda x, i, j: x[i, j], (X, I, J)),
    "x[i, 1]": (lambda x, i: x[i, 1], (X, I)),
    "broadcast": (lambda x, i, j: x[i[:, None], j], (X, I, J)),
    "apart": (lambda x, i, j: x[i, :, j], (X3, I, J)),
    "adjacent inner": (lambda x, i, j: x[:, i, j], (X3, I, J)),
    "take clip": (lambda x, i: jnp.take(x, i + 5, axis=1, mode="clip"), (X, J)),
    "take fill": (lambda x, i: jnp.take(x, i * 2, axis=0, mode="fill"), (X, I)),
    "take_along_axis": (lambda x, i: jnp.take_along_axis(x, i, axis=1),
                        (X, np.array([[0, 4], [1, 1], [3, 2], [-1, 0]], np.int32))),
    "take_along_axis 3d": (lambda x, i: jnp.take_along_axis(x, i, axis=1),
                           (X3, RNG.integers(0, 4, (3, 2, 5)).astype(np.int32))),
    "at set": (lambda x, i: x.at[i, 2].set(7.0), (X, I)),
    "at set rows": (lambda x, i: x.at[i].set(x[0] + 1), (X, I)),
    "at max": (lambda x, i: x.at[:, i].max(0.5), (X, J)),
    "at min": (lambda x, i, j: x.at[i, j].min(-0.25), (X, I, J)),
    "dynamic_update_slice": (lambda x: lax.dynamic_update_slice(x, jnp.zeros((2, 2)), (1, 4)),
                             (X,)),
    "flip": (lambda x: jnp.flip(x, (0, 1)), (X,)),
    "pad interior": (lambda x: lax.pad(x, 0.5, ((1, -1, 1), (0, 2, 2))), (X,)),
    "one_hot roll select": (lambda x, i: jnp.where(jax.nn.one_hot(i, 5) > 0, 1.0,
                                                   jnp.roll(x[:3], 1, axis=1)), (X, J)),
}
CLOSE = {
    "at add duplicates": (lambda x, i: x.at[i].add(x[:3] * 2), (X, np.array([1, 1, 0], np.int32))),
    "at add pairs": (lambda x, i, j: x.at[i, j].add(1.5), (X, np.array([0, 0, 3], np.int32), J)),
    "at multiply": (lambda x, i: x.at[i].multiply(3.0), (X, np.array([1, 1], np.int32))),
    "segment_sum": (lambda x, i: jax.ops.segment_sum(x[:3], i, num_segments=3),
                    (X, np.array([2, 0, 2], np.int32))),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_matches_jax_exactly(name: str) -> None:
    fn, args = EXACT[name]
    _, got, want = run(fn, *args)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("name", sorted(CLOSE))
def test_matches_jax(name: str) -> None:
    fn, args = CLOSE[name]
    _, got, want = run(fn, *args)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_primitives_map_to_the_indexing_ops() -> None:
    graph, _, _ = run(lambda x, i, j: (x[i, j], x.at[i].add(1.0)), X, I, J)
    ops = graph.summary().ops
    assert ops["index"] == 1 and ops["scatter"] == 1
    graph, _, _ = run(EXACT["take_along_axis"][0], *EXACT["take_along_axis"][1])
    assert graph.summary().ops["gather"] == 1


def test_a_window_smaller_than_the_axis_is_named() -> None:
    def fn(x, i):
        return lax.scatter_add(x, i[:, None], jnp.ones((3, 2)), lax.ScatterDimensionNumbers(
            update_window_dims=(1,), inserted_window_dims=(0,),
            scatter_dims_to_operand_dims=(0,)))

    with pytest.raises(smelt.UnsupportedOpError, match="(?s)scatter-add.*whole slices"):
        smelt.trace_jax(fn, X, I)


def test_compiled_scatter_drops_what_jax_drops() -> None:
    """An update at an index out of range: JAX drops it; smelt's compiled kernel too (the
    reference raises, as it does for every index out of range)."""
    fn = EXACT["at set rows"][0]
    i = np.array([0, 9, 2], np.int32)
    graph = smelt.trace_jax(fn, X, i)
    with pytest.raises(smelt.InterpretError, match="out of range"):
        smelt.interpret(graph, X, i)
    got = smelt.compile(graph, "cpu")(X, i)[0]
    np.testing.assert_array_equal(got, np.asarray(fn(jnp.asarray(X), jnp.asarray(i))))
