"""The JAX frontend against jax itself: each model is traced with smelt.trace_jax, run in the
reference interpreter, and compared with the jax function run by XLA on the same seeded inputs.

Tolerances: both sides compute in float32, in different summation orders, so the error of a
result grows with the length of the reductions behind it (about eps32 = 1.2e-7 per term in the
worst case, far less on average); each test states its bound and why.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import smelt

RNG = 20240601


def _rand(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _check(fn, args, constants=(), rtol=1e-5, atol=1e-5) -> smelt.Graph:
    """Trace fn, run the graph on the non-constant leaves, compare with jax; return the graph."""
    graph = smelt.trace_jax(fn, *args, constants=constants)
    graph.verify()
    feeds = [leaf for i, a in enumerate(args) if i not in constants
             for leaf in jax.tree_util.tree_leaves(a)]
    got = smelt.interpret(graph, *feeds)
    want = [np.asarray(w) for w in jax.tree_util.tree_leaves(fn(*args))]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return graph


# -- models ------------------------------------------------------------------------------------
def mlp(params, x):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    h = jnp.tanh(jnp.dot(h, params["w2"]) + params["b2"])
    return jax.nn.log_softmax(h @ params["w3"], axis=-1)


def test_mlp_params_become_constants():
    rng = np.random.default_rng(RNG)
    params = {"w1": _rand(rng, 16, 64, scale=0.25), "b1": _rand(rng, 64),
              "w2": _rand(rng, 64, 32, scale=0.125), "b2": _rand(rng, 32),
              "w3": _rand(rng, 32, 10, scale=0.2)}
    x = _rand(rng, 8, 16)
    # reductions of length <= 64 with O(1) terms: 64 * eps32 ~ 1e-5 absolute is the bound
    graph = _check(mlp, (params, x), constants=(0,), rtol=1e-5, atol=1e-5)
    assert graph.input_names() == ["x"]
    ops = graph.summary().ops
    assert ops["linear"] == 3 and "matmul" not in ops
    assert {graph.names[c] for c in graph.constants() if c in graph.names} >= {"params_w1"}
    assert all(n in graph.sources for n in graph)  # every node knows its source line
    (linear,) = [n for n in graph if n.op == "linear" and n.inputs[0].op == "input"]
    assert 'x @ params["w1"]' in graph.sources[linear]


def test_pytree_inputs_are_named_from_their_path():
    rng = np.random.default_rng(RNG)
    params = {"w": _rand(rng, 4, 3), "b": _rand(rng, 3)}
    x = _rand(rng, 2, 4)
    # one length-4 dot product per output: 1e-6 covers the rounding
    graph = _check(lambda p, x: x @ p["w"] + p["b"], (params, x), atol=1e-6)
    assert graph.input_names() == ["p_b", "p_w", "x"]


def cnn(params, x):
    nhwc = ("NHWC", "HWIO", "NHWC")
    y = lax.conv_general_dilated(x, params["c1"], (1, 1), "SAME", dimension_numbers=nhwc)
    y = jax.nn.relu(y + params["b1"])
    # depthwise: one 3x3 filter per channel (feature_group_count = channels), stride 2
    y = lax.conv_general_dilated(y, params["dw"], (2, 2), ((1, 1), (1, 1)),
                                 dimension_numbers=nhwc, feature_group_count=8)
    y = jax.nn.relu(y)
    y = lax.conv_general_dilated(y, params["c2"], (1, 1), ((2, 2), (2, 2)), rhs_dilation=(2, 2),
                                 dimension_numbers=nhwc)
    y = lax.reduce_window(y, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    y = lax.reduce_window(y, 0.0, lax.add, (1, 2, 2, 1), (1, 1, 1, 1), "SAME") / 4.0
    y = jnp.mean(y, axis=(1, 2))
    return y @ params["fc"]


def test_cnn_nhwc_depthwise_and_pooling():
    rng = np.random.default_rng(RNG)
    params = {"c1": _rand(rng, 3, 3, 3, 8, scale=0.3), "b1": _rand(rng, 8),
              "dw": _rand(rng, 3, 3, 1, 8, scale=0.3), "c2": _rand(rng, 3, 3, 8, 16, scale=0.2),
              "fc": _rand(rng, 16, 5, scale=0.3)}
    x = _rand(rng, 2, 16, 16, 3)
    # longest reduction: a 3x3x8 = 72-term conv; 1e-5 absolute on O(1) activations
    graph = _check(cnn, (params, x), constants=(0,), rtol=1e-5, atol=1e-5)
    ops = graph.summary().ops
    assert ops["conv2d"] == 3 and ops["max_pool2d"] == 1 and ops["avg_pool2d"] == 1
    groups = sorted(n.attrs["groups"] for n in graph if n.op == "conv2d")
    assert groups == [1, 1, 8]


def test_conv_nchw_oihw_strided_asymmetric_padding():
    rng = np.random.default_rng(RNG + 1)
    x, w = _rand(rng, 1, 4, 9, 9), _rand(rng, 6, 2, 3, 3, scale=0.3)

    def conv(x, w):
        y = lax.conv_general_dilated(x, w, (2, 1), ((0, 1), (2, 1)),
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                     feature_group_count=2)
        return lax.reduce_window(y, -jnp.inf, lax.max, (1, 1, 3, 2), (1, 1, 2, 2),
                                 ((0, 0), (0, 0), (0, 1), (1, 0)))

    # 2x3x3 = 18-term dot products: 1e-5 absolute is generous
    graph = _check(conv, (x, w), rtol=1e-5, atol=1e-5)
    assert "transpose" not in graph.summary().ops  # NCHW / OIHW needs no layout change


def layer_norm(x, g, b, eps=1e-5):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * g + b


def test_layer_norm():
    rng = np.random.default_rng(RNG)
    x, g, b = _rand(rng, 4, 7, 96, scale=3.0) + 1.0, _rand(rng, 96), _rand(rng, 96)
    # 96-term mean and variance, outputs O(3): 96 * eps32 * 3 ~ 3e-5 absolute bound
    _check(lambda x: layer_norm(x, g, b), (x,), rtol=1e-5, atol=3e-5)


def encoder_block(p, x, heads=4):
    bsz, t, d = x.shape
    hd = d // heads

    def split_heads(y):
        return y.reshape(bsz, t, heads, hd).transpose(0, 2, 1, 3)

    q, k, v = (split_heads(x @ p[n] + p["b" + n]) for n in ("wq", "wk", "wv"))
    scores = jnp.einsum("bhqd,bhkd->bhqk", q, k) / jnp.sqrt(jnp.float32(hd))
    att = jax.nn.softmax(scores, axis=-1) @ v
    att = att.transpose(0, 2, 1, 3).reshape(bsz, t, d) @ p["wo"]
    x = layer_norm(x + att, p["g1"], p["n1"])
    h = jax.nn.gelu(x @ p["w1"] + p["c1"], approximate=False) @ p["w2"]
    return layer_norm(x + h, p["g2"], p["n2"])


def _encoder_params(rng: np.random.Generator, d: int = 32, ff: int = 64) -> dict:
    p = {n: _rand(rng, d, d, scale=d ** -0.5) for n in ("wq", "wk", "wv", "wo")}
    p |= {"b" + n: _rand(rng, d, scale=0.1) for n in ("wq", "wk", "wv")}
    p |= {"w1": _rand(rng, d, ff, scale=d ** -0.5), "c1": _rand(rng, ff, scale=0.1),
          "w2": _rand(rng, ff, d, scale=ff ** -0.5)}
    p |= {"g1": 1 + _rand(rng, d, scale=0.1), "n1": _rand(rng, d, scale=0.1),
          "g2": 1 + _rand(rng, d, scale=0.1), "n2": _rand(rng, d, scale=0.1)}
    return p


def test_transformer_encoder_block():
    rng = np.random.default_rng(RNG)
    p, x = _encoder_params(rng), _rand(rng, 2, 8, 32)
    # chains of 32- and 64-term dot products through softmax and two layer norms (which
    # rescale errors by 1/std ~ 1): 5e-5 absolute on unit-variance outputs
    graph = _check(encoder_block, (p, x), constants=(0,), rtol=1e-5, atol=5e-5)
    ops = graph.summary().ops
    assert ops["matmul"] == 2 and ops["linear"] == 6 and ops["erf"] == 1
    text, weights = smelt.ir.print_graph(graph)
    again = smelt.parse_graph(text, weights)
    assert _without_comments(again.to_text()) == _without_comments(text)  # sources are comments
    np.testing.assert_array_equal(smelt.interpret(again, x)[0], smelt.interpret(graph, x)[0])
    assert any("encoder_block" in s for s in graph.sources.values())


def _without_comments(text: str) -> str:
    return "\n".join(line.split("  # ")[0] for line in text.splitlines())


def rms_norm(x, w, eps=1e-6):
    return x * lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotary(x, base=10000.0):
    """Rotary position embedding over (batch, heads, seq, dim), rotate-half convention."""
    t, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / base ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d)
    ang = jnp.arange(t, dtype=jnp.float32)[:, None] * inv[None, :]
    cos, sin = jnp.cos(jnp.concatenate([ang, ang], -1)), jnp.sin(jnp.concatenate([ang, ang], -1))
    rot = jnp.concatenate([-x[..., d // 2:], x[..., : d // 2]], axis=-1)
    return x * cos + rot * sin


def llama_block(p, x, heads=4):
    bsz, t, d = x.shape
    hd = d // heads
    h = rms_norm(x, p["attn_norm"])
    q, k, v = (
        (h @ p[n]).reshape(bsz, t, heads, hd).transpose(0, 2, 1, 3) for n in ("wq", "wk", "wv")
    )
    q, k = rotary(q), rotary(k)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd).astype(np.float32)
    causal = jnp.arange(t)[:, None] >= jnp.arange(t)[None, :]
    scores = jnp.where(causal, scores, jnp.finfo(jnp.float32).min)
    att = (jax.nn.softmax(scores, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(bsz, t, d)
    x = x + att @ p["wo"]
    h = rms_norm(x, p["mlp_norm"])
    return x + (jax.nn.silu(h @ p["gate"]) * (h @ p["up"])) @ p["down"]


def test_llama_block():
    rng = np.random.default_rng(RNG)
    d, ff = 32, 48
    p = {n: _rand(rng, d, d, scale=d ** -0.5) for n in ("wq", "wk", "wv", "wo")}
    p |= {"gate": _rand(rng, d, ff, scale=d ** -0.5), "up": _rand(rng, d, ff, scale=d ** -0.5),
          "down": _rand(rng, ff, d, scale=ff ** -0.5),
          "attn_norm": 1 + _rand(rng, d, scale=0.1), "mlp_norm": 1 + _rand(rng, d, scale=0.1)}
    x = _rand(rng, 2, 6, d)
    # 32/48-term dot products, sin/cos of angles <= 5 (numpy and XLA differ by ~1 ulp),
    # softmax, two residuals: 5e-5 absolute on O(1) outputs
    graph = _check(llama_block, (p, x), constants=(0,), rtol=1e-5, atol=5e-5)
    ops = graph.summary().ops
    assert ops["sigmoid"] == 1 and ops["rsqrt"] == 2 and ops["where"] == 1


def test_embedding_lookup():
    rng = np.random.default_rng(RNG)
    table = _rand(rng, 50, 16)
    ids = rng.integers(0, 50, size=(3, 7)).astype(np.int32)

    def embed(table, ids):
        return table[ids] * 2.0, jnp.take(table, ids, axis=0), jnp.take(table.T, ids, axis=1)

    # a gather copies values: exact up to the final * 2.0, which is exact too
    graph = _check(embed, (table, ids), constants=(0,), rtol=0, atol=0)
    assert graph.input_names() == ["ids"] and graph.inputs[0].dtype == "int32"
    assert graph.summary().ops["take"] == 3


def test_misc_primitives():
    rng = np.random.default_rng(RNG)
    x, y = _rand(rng, 3, 8), _rand(rng, 3, 8)

    @jax.custom_vjp
    def double(x):
        return 2.0 * x

    double.defvjp(lambda x: (double(x), None), lambda _, g: (2.0 * g,))

    def misc(x, y):
        both = (x > 0) & ~(y <= 0) | (x == y)
        out = [jnp.where(both, x, y), jnp.clip(x, -0.5, 0.5), x ** 3, x ** -2, jnp.abs(x)]
        out += [jnp.maximum(x, y), jnp.minimum(x, y), jnp.argmax(x, -1), jnp.argmin(y, 0)]
        out += [jnp.pad(x, ((1, 0), (0, 2)), constant_values=1.5), x[1:, ::3]]
        out += [lax.dynamic_slice(x, (1, 2), (2, 4)), jnp.concatenate([x, y], axis=0)]
        out += [jax.checkpoint(lambda t: jnp.exp(t) - jnp.log(jnp.abs(t) + 1))(x)]
        out += [double(y), jax.nn.sigmoid(x), jnp.sqrt(jnp.abs(y)), jnp.max(x), jnp.min(y, 1)]
        out += [jnp.sum(x.astype(jnp.int32), axis=1), x.reshape(4, 6).T, lax.erf(y)]
        out += [jnp.squeeze(x[:1], 0), jnp.power(jnp.abs(x) + 1, y), jnp.cos(x) * jnp.sin(y)]
        out += list(jnp.split(x, 2, axis=1)) + [jnp.floor(x), jnp.ceil(y), jnp.round(x)]
        return out

    # elementwise ops and reductions of <= 24 terms on O(1) values: 1e-5 absolute
    _check(misc, (x, y), rtol=1e-5, atol=1e-5)


def test_closure_constants_and_float64_inputs():
    rng = np.random.default_rng(RNG)
    w = jnp.asarray(_rand(rng, 5, 4))
    x = rng.standard_normal((2, 5))  # float64: with x64 off jax traces it as float32

    # five-term dot products: 1e-6 absolute
    graph = _check(lambda x: jnp.tanh(x @ w), (x,), rtol=1e-5, atol=1e-6)
    assert graph.inputs[0].dtype == "float32" and graph.summary().ops["linear"] == 1


def test_unsupported_primitive_names_it_and_the_source_line():
    def spectrum(x):  # smelt has no FFT (no complex dtypes)
        return jnp.abs(jnp.fft.rfft(x, axis=1)) + 1.0

    with pytest.raises(smelt.UnsupportedOpError) as info:
        smelt.trace_jax(spectrum, np.ones((2, 3), np.float32))
    _, first = inspect.getsourcelines(spectrum)
    line_no = first + 1  # the `return jnp.abs(jnp.fft.rfft(...))` line
    message = str(info.value)
    assert info.value.op == "fft" and info.value.frontend == "jax"
    assert "'fft'" in message
    assert f"test_frontend_jax.py:{line_no}" in message
    assert "return jnp.abs(jnp.fft.rfft(x, axis=1)) + 1.0" in message
