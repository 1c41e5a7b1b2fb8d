"""The spatial ops' compiled kernels (backends/lowering/spatial.py) on the inputs where a
generic lowering would go wrong, against the interpreter, bit for bit:

- NaN and -inf through max pooling (TVM's max drops NaN and starts from the lowest finite
  value): a NaN in a window, a 3-d window wholly in padding, adaptive bins holding NaN;
- conv_transpose with an output_padding past the stride (below the dilation), which Relax's
  conv_transpose refuses: the uncropped result padded and cropped;
- grid_sample's nearest pixel at exact ties (round half to even) and reflection at the
  borders, whose coordinates the kernel computes in float64 as the reference does;
- resize's exact cases: nearest copies at out = in and halves at out = 2 in in 2-d only.
Random examples of every op run in test_backend_ops.py (CASES of tests/cases_spatial.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_backend_ops import compiled_and_oracle, one_op_graph


def _f32(a) -> np.ndarray:
    return np.asarray(a, np.float32)


def _windows() -> np.ndarray:
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 1, 3, 4)
    x[0, 0, 0, 1, 2] = np.nan
    x[0, 1, 0, 0, 0] = -np.inf
    return x


def _ties_grid() -> np.ndarray:
    # with W = H = 4 and align_corners=False, u = ((g + 1) 4 - 1) / 2 = 2 g + 1.5: the
    # halves g = -1 .. 1.5 land on u = -0.5 .. 4.5, every one a tie
    ticks = np.arange(-2, 4) / 2
    gx, gy = np.meshgrid(ticks, ticks[::-1])
    return _f32(np.stack([gx, gy], -1)[None])


EDGES = {
    "max_pool3d-nan": ("max_pool3d", (_windows(),), {"kernel": [1, 2, 2], "padding": [0, 1, 1],
                                                     "stride": [1], "ceil_mode": True}),
    "max_pool3d-window-in-padding": ("max_pool3d", (_f32(np.arange(4).reshape(1, 2, 1, 2, 1)),),
                                     {"kernel": [1, 1, 2], "padding": [0, 0, 1],
                                      "dilation": [1, 1, 2], "stride": []}),
    "adaptive_max_pool3d-nan": ("adaptive_max_pool3d", (_windows(),), {"output_size": [1, 2, 3]}),
    "adaptive_max_pool2d-nan": ("adaptive_max_pool2d", (_windows()[:, :, 0],),
                                {"output_size": [2, 2]}),
    "conv_transpose-output-padding": (
        "conv_transpose", (np.random.default_rng(0).standard_normal((1, 2, 3, 4), np.float32),
                           np.random.default_rng(1).standard_normal((2, 3, 2, 3), np.float32)),
        {"stride": [1, 2], "padding": [1, 0], "output_padding": [2, 1], "dilation": [3, 2]}),
    "resize-nearest-2d-exact-cases": ("resize", (np.arange(12, dtype=np.float32)
                                                 .reshape(1, 1, 3, 4),),
                                      {"size": [3, 8], "scales": [1.1, 2.1]}),
    "resize-nearest-1d-formula": ("resize", (np.arange(6, dtype=np.float32).reshape(1, 1, 6),),
                                  {"size": [6], "scales": [1.1]}),
}
for _mode in ("zeros", "border", "reflection"):
    EDGES[f"grid_sample-nearest-ties-{_mode}"] = (
        "grid_sample", (np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4), _ties_grid()),
        {"mode": "nearest", "padding_mode": _mode})


@pytest.mark.parametrize("name", sorted(EDGES))
def test_compiled_matches_the_interpreter_bit_for_bit(name: str) -> None:
    op, args, attrs = EDGES[name]
    graph, feed = one_op_graph(op, args, attrs)
    got, want = compiled_and_oracle(graph, feed, "float32")
    for g, w in zip(got, want, strict=True):
        if op == "conv_transpose":  # sums: the contract of test_backend_ops, K = 12 products
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-5)
        else:
            np.testing.assert_array_equal(g, w)


def test_the_2d_nearest_exact_cases_differ_from_1d() -> None:
    """torch's 2-d nearest kernel copies at out = in whatever the scale; its 1-d kernel
    applies floor(o / scale): the reference does both."""
    from smelt.ir.ops.resample import resize

    x2 = np.arange(6, dtype=np.float32).reshape(1, 1, 1, 6)
    x1 = x2[0]
    same = resize(x2, size=(1, 6), mode="nearest", align_corners=False, scales=(1.0, 1.1))
    shifted = resize(x1, size=(6,), mode="nearest", align_corners=False, scales=(1.1,))
    np.testing.assert_array_equal(same.reshape(-1), np.arange(6))
    np.testing.assert_array_equal(shifted.reshape(-1), [0, 0, 1, 2, 3, 4])
