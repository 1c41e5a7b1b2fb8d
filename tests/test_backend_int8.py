"""smelt's int8 CPU kernels (backends/cpu/int8_kernels.py, sched_int8.py, vnni.py) against
the reference interpreter, bit for bit.

What is shown, and by which test:
- qconv2d (groups 1 and depthwise) and qlinear with a constant int8 weight, w_zp = 0, uint8
  or int8 activations with any zero point, with or without bias, followed by a per-channel
  requantize (multipliers from real scales, exact powers of two whose products tie, and
  arbitrary ones that saturate; 8- and 16-bit outputs; narrowed clamps) or by nothing, over
  drawn shapes, strides, asymmetric padding and dilation: the compiled module equals
  `smelt.interpret` exactly, and the contraction ran on its int8 rule (`test_conv_*`,
  `test_linear_*`). Shapes are drawn so that both conv layouts (pixel vectors when 16
  divides the output row or a 1x1 conv's flat image, channel vectors otherwise), both
  depthwise kernels (4-tap windows, rows rounded up to whole vectors; wider kernels),
  padded channel counts and every lane width occur.
- A conv requantized to uint8 and read by a padded depthwise conv writes the padded buffer
  itself, border included (no pad kernel left), unless its output is also read unpadded;
  exact either way (`test_producer_writes_the_padded_input_in_place`).
- qmatmul of two int8/uint8 activations (any zero points, batch broadcasting) the same way,
  on its int8 rule (`test_matmul_*`).
- requantize alone on each of its three rounding forms (float64, int32 halves, int64) at
  their edges: ties, shifts 0 and 62, the int32 extremes (`test_requantize_forms_*`).
- Without VNNI (a target whose CPU lacks it: AVX-512 or AVX2 only) the same kernels run as
  plain vector code, still exact, and no `vpdpbusd` is emitted; with VNNI but no `vpermb`
  the depthwise windows do; with VNNI the assembly has it (`test_other_cpus_*`,
  `test_vnni_assembly_*`).
- Operands the int8 kernels do not take (a non-zero w_zp, uint8 weights, grouped convs) keep
  the generic lowering, exact (`test_generic_route_*`).
- The zoo's CNNs, quantized by a small stand-in for the quantize pass (Q/DQ around every conv
  and linear, per-channel int8 weights): every kernel has a schedule rule, every contraction
  an int8 one, and the result matches the interpreter (`test_zoo_cnn_*`).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import relax
from tvm.target import codegen

import smelt
from smelt.backends.cpu.vnni import has_vbmi, has_vnni
from smelt.backends.targets import make_target
from smelt.ir import Graph, Node, make
from smelt.ir.ops.quant import quantize_multiplier
from smelt.zoo import ZOO

INT8_RULES = {"int8-dense", "int8-conv2d", "int8-conv2d-cv", "int8-depthwise",
              "int8-depthwise-window", "int8-pack"}
SIZES = [1, 2, 3, 4, 5, 7, 8, 12, 16]


# -- drawing layers ------------------------------------------------------------------------
@st.composite
def activations(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    dtype = draw(st.sampled_from(["uint8", "int8"]))
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    zp = draw(st.sampled_from([lo, hi, (lo + hi) // 2]) | st.integers(lo, hi))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.integers(lo, hi + 1, shape).astype(dtype), zp


def weights(draw: st.DrawFn, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.integers(-128, 128, shape).astype(np.int8)


@st.composite
def rescales(draw: st.DrawFn, channels: int) -> tuple[list[int], list[int]]:
    """(multipliers, shifts): from real scales (the float64 and int32 forms), exact powers of
    two (acc * m / 2^n ties for half the accumulators), or anything (saturating, int64)."""
    kind = draw(st.sampled_from(["scale", "tie", "any"]))
    if kind == "scale":
        pairs = [quantize_multiplier(2.0 ** draw(st.floats(-17, 0))) for _ in range(channels)]
    elif kind == "tie":
        pairs = [(draw(st.sampled_from([2**30, 3 << 28])), draw(st.integers(-2, 5)))
                 for _ in range(channels)]
    else:
        pairs = [(draw(st.integers(0, 2**31 - 1)), draw(st.integers(-31, 31)))
                 for _ in range(channels)]
    if draw(st.booleans()):
        pairs = pairs[:1] * channels  # one value shared by all channels: immediates
    return [m for m, _ in pairs], [s for _, s in pairs]


@st.composite
def epilogue(draw: st.DrawFn, acc: Node, axis: int) -> Node:
    """Nothing (the int32 accumulator), or a per-channel requantize."""
    if draw(st.integers(0, 4)) == 0:
        return acc
    channels = acc.shape[axis]
    m, shift = draw(rescales(channels))
    bits, signed = draw(st.sampled_from([(8, False), (8, True), (16, True)]))
    lo, hi = (0, 2**bits - 1) if not signed else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    attrs = {"out_zp": draw(st.integers(lo, hi)), "bits": bits, "signed": signed}
    if draw(st.booleans()):  # a folded relu / relu6
        attrs["qmin"], attrs["qmax"] = sorted(draw(st.integers(lo, hi)) for _ in range(2))
    return make("requantize", acc, multiplier=m, shift=shift, out_scale=0.5, axis=axis,
                **attrs)


@st.composite
def conv_layers(draw: st.DrawFn):
    depthwise = draw(st.integers(0, 3)) == 0
    cin = draw(st.sampled_from([1, 3, 4, 6, 16, 20]))
    cout = cin if depthwise else draw(st.sampled_from([1, 5, 8, 16, 24, 32, 40]))
    k = draw(st.sampled_from([1, 1, 2, 3, 3, 5]))
    stride = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    dilation = [draw(st.sampled_from([1, 1, 2])) for _ in range(2)]
    padding = [draw(st.integers(0, 2)) for _ in range(4)] if draw(st.booleans()) else [0] * 4
    span = [dilation[i] * (k - 1) + 1 - padding[i] - padding[i + 2] for i in range(2)]
    h, w = (draw(st.sampled_from([s for s in SIZES if s >= span[i]] or [span[i]]))
            for i in range(2))
    x, x_zp = draw(activations((draw(st.integers(1, 2)), cin, h, w)))
    wt = weights(draw, (cout, 1 if depthwise else cin, k, k))
    xin = Node.input("x", x.shape, str(x.dtype))
    operands = [xin, Node.constant(wt)]
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        operands.append(Node.constant(rng.integers(-(2**20), 2**20, cout).astype(np.int32)))
    acc = Node.make("qconv2d", operands, x_zp=x_zp, w_zp=[0], stride=stride, padding=padding,
                    dilation=dilation, groups=cin if depthwise else 1)
    return Graph([xin], [draw(epilogue(acc, 1))]), [x], depthwise and cin > 1


@st.composite
def linear_layers(draw: st.DrawFn):
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 4), (8,)]))
    k, n = draw(st.integers(1, 70)), draw(st.sampled_from([1, 3, 8, 10, 16, 24, 48]))
    x, x_zp = draw(activations((*lead, k)))
    xin = Node.input("x", x.shape, str(x.dtype))
    operands = [xin, Node.constant(weights(draw, (n, k)))]
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        operands.append(Node.constant(rng.integers(-(2**20), 2**20, n).astype(np.int32)))
    acc = Node.make("qlinear", operands, x_zp=x_zp, w_zp=[0])
    return Graph([xin], [draw(epilogue(acc, -1))]), [x]


@st.composite
def matmul_layers(draw: st.DrawFn):
    """Two activations, numpy batch broadcasting, any int8/uint8 pairing and zero points."""
    m, k, n = (draw(st.sampled_from(v)) for v in ([1, 3, 8, 12], [1, 5, 16, 37], [1, 7, 16, 20]))
    batch = draw(st.sampled_from([((), ()), ((2,), ()), ((3,), (3,)), ((2, 1), (3,)),
                                  ((1,), (4,))]))
    (a, a_zp), (b, b_zp) = (draw(activations((*bt, *mk))) for bt, mk in
                            zip(batch, ((m, k), (k, n)), strict=True))
    ai, bi = Node.input("a", a.shape, str(a.dtype)), Node.input("b", b.shape, str(b.dtype))
    acc = Node.make("qmatmul", [ai, bi], a_zp=a_zp, b_zp=b_zp)
    return Graph([ai, bi], [draw(epilogue(acc, -1))]), [a, b]


# -- running -------------------------------------------------------------------------------
def compiled_exact(graph: Graph, feed: list[np.ndarray], **options):
    module = smelt.compile(graph, "cpu", **options)
    unscheduled = sorted(k for k, rule in module.kernels.items() if rule is None)
    assert not unscheduled, f"kernels without a schedule rule: {unscheduled}"
    for got, want in zip(module(*feed), smelt.interpret(graph, *feed), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    return module


def rules_of(module, fragment: str) -> set[str]:
    return {str(r) for k, r in module.kernels.items() if fragment in k}


def assembly(module) -> str:
    return module.executable.mod.imports[0].inspect_source("asm")


# -- the kernels, drawn ----------------------------------------------------------------------
@settings(max_examples=60)
@given(layer=conv_layers())
def test_conv_matches_interpreter_bit_for_bit(layer) -> None:
    graph, feed, depthwise = layer
    module = compiled_exact(graph, feed)
    want = ({"int8-depthwise", "int8-depthwise-window"} if depthwise
            else {"int8-conv2d", "int8-conv2d-cv"})
    assert rules_of(module, "conv") <= want and rules_of(module, "conv"), module.kernels


@settings(max_examples=30)
@given(layer=linear_layers())
def test_linear_matches_interpreter_bit_for_bit(layer) -> None:
    graph, feed = layer
    module = compiled_exact(graph, feed)
    assert rules_of(module, "qdense") == {"int8-dense"}, module.kernels


@settings(max_examples=15)
@given(layer=matmul_layers())
def test_matmul_matches_interpreter_bit_for_bit(layer) -> None:
    graph, feed = layer
    module = compiled_exact(graph, feed)
    assert rules_of(module, "qbmm") == {"int8-matmul"}, module.kernels


# -- requantize's three forms --------------------------------------------------------------
EDGE_ACC = np.array([0, 1, -1, 3, -3, 5, -5, 2**31 - 1, -(2**31), 12345, -12345, 2**20,
                     -(2**20), 1 << 14, 3 << 13, -(3 << 13)], np.int32)


FORMS = pytest.mark.parametrize("form, multiplier, shift, bits", [
    ("float64", [2**30, 3 << 28, 1717986918, 2**31 - 1], [0, 5, 13, -20], 8),
    ("float64 bits, r <= 1/2", [2**30, 3 << 28, 1717986918, 2**31 - 1], [0, 5, 13, 1], 8),
    ("float64 r >= 1", [2**30, 2**31 - 1, 3 << 28, 1], [-31, -31, -30, -31], 8),
    ("int32 halves", [2**30, 3 << 28, 1717986918, 2**31 - 1], [2, 9, 20, 31], 16),
    ("int64", [2**30, 1, 0, 2**31 - 1], [-31, 0, 1, 31], 16),
])


def _requantize_edges(multiplier, shift, bits) -> tuple[Graph, np.ndarray]:
    """Extreme accumulators and ties (odd accumulators at r = 1/2, first channel), with even
    and odd zero points (an odd one must not move a tie's rounding)."""
    acc = Node.input("acc", (4, EDGE_ACC.size), "int32")
    feed = np.stack([EDGE_ACC, EDGE_ACC // 7, EDGE_ACC * 0 + 1, EDGE_ACC // 1000])
    feed = feed.astype(np.int32).reshape(4, -1)
    outs = [make("requantize", acc, multiplier=multiplier, shift=shift, out_zp=zp,
                 out_scale=1.0, axis=0, bits=bits, signed=signed, **clamp)
            for zp, signed, clamp in ((0, True, {}), (-7, True, {"qmin": -3, "qmax": 9}),
                                      (100, bits > 8, {}), (7, True, {}))]
    return Graph([acc], outs), feed


@FORMS
def test_requantize_forms_are_exact_at_edges(form, multiplier, shift, bits) -> None:
    """Each of the CPU's forms (the float64 ones where they apply) on the edges."""
    graph, feed = _requantize_edges(multiplier, shift, bits)
    compiled_exact(graph, [feed])


@FORMS
def test_generic_requantize_is_exact_at_the_same_edges(form, multiplier, shift, bits) -> None:
    """The generic lowering (every target but the CPU) rounds in integers only, also where the
    CPU takes a float64 form: built by TVM's own pipeline from `smelt.to_relax(graph)`."""
    graph, feed = _requantize_edges(multiplier, shift, bits)
    executable = tvm.compile(smelt.to_relax(graph), make_target("cpu"))
    got = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(feed))
    for g, want in zip(got, smelt.interpret(graph, feed), strict=True):
        np.testing.assert_array_equal(g.numpy(), want)


# -- a float input quantized inside the conv's input pack -------------------------------------
@st.composite
def quantized_images(draw: st.DrawFn):
    """A float image (exact ties, NaN and infinities among normal values) quantized and fed to
    a strided, padded conv: the quantize runs as its own stage inside the pack kernel, and a
    row of packed words no lane count divides is vectorized with its last vector masked."""
    c = draw(st.sampled_from([3, 4, 8]))
    h, w = (draw(st.sampled_from([7, 13, 20, 33, 64])) for _ in range(2))
    k, stride = draw(st.sampled_from([1, 3, 7])), draw(st.integers(1, 2))
    pad = draw(st.integers(0, k // 2))
    signed = draw(st.booleans())
    zp = draw(st.integers(-128, 127) if signed else st.integers(0, 255))
    scale = draw(st.sampled_from([2.0**-4, 0.1, 0.0237]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(0.0, 4.0, (1, c, h, w))
    ties = (rng.integers(-150, 150, x.shape) + 0.5) * 2.0**-4  # exact ties at 2^-4
    x = np.where(rng.random(x.shape) < 0.3, ties, x)
    x.flat[rng.integers(0, x.size, 3)] = [np.nan, np.inf, -np.inf]
    xin = Node.input("x", x.shape, "float32")
    q = make("quantize", xin, scale=[scale], zero_point=[zp], signed=signed)
    acc = make("qconv2d", q, Node.constant(weights(draw, (8, c, k, k))), x_zp=zp,
               stride=[stride, stride], padding=[pad])
    return Graph([xin], [acc]), [x.astype(np.float32)]


@settings(max_examples=20)
@given(case=quantized_images())
def test_quantize_in_the_input_pack_is_exact(case) -> None:
    graph, feed = case
    module = compiled_exact(graph, feed)
    assert rules_of(module, "quantize") == {"int8-pack"}, module.kernels


# -- producers writing their consumer's padded input (cpu/pad_in_producer.py) ---------------
@st.composite
def padded_pairs(draw: st.DrawFn):
    """A groups-1 conv requantized to uint8 (the producer), then a padded depthwise conv; when
    `shared`, the producer's output is also a graph output (so it must stay unpadded)."""
    cin, c = draw(st.sampled_from([3, 8, 16])), draw(st.sampled_from([4, 8, 24]))
    h, w = (draw(st.sampled_from([3, 5, 8, 10, 16, 20])) for _ in range(2))
    k1 = draw(st.sampled_from([1, 1, 3]))
    x, x_zp = draw(activations((1, cin, h, w)))
    xin = Node.input("x", x.shape, str(x.dtype))
    acc = make("qconv2d", xin, Node.constant(weights(draw, (c, cin, k1, k1))), x_zp=x_zp,
               padding=[k1 // 2])
    m, shift = draw(rescales(c))
    mid = make("requantize", acc, multiplier=m, shift=shift, out_scale=0.5, axis=1, bits=8,
               signed=False, out_zp=draw(st.integers(0, 255)))
    k, stride = draw(st.sampled_from([3, 5])), draw(st.integers(1, 2))
    pads = [draw(st.integers(0, k // 2)) for _ in range(4)]
    dw = make("qconv2d", mid, Node.constant(weights(draw, (c, 1, k, k))), x_zp=mid.attrs["out_zp"],
              stride=[stride, stride], padding=pads, groups=c)
    shared = draw(st.booleans())
    return Graph([xin], [dw, mid] if shared else [dw]), [x], shared


@settings(max_examples=20)
@given(pair=padded_pairs())
def test_producer_writes_the_padded_input_in_place(pair) -> None:
    graph, feed, shared = pair
    module = compiled_exact(graph, feed)
    pads = [k for k in module.kernels if k.startswith("i8pad")]
    into = [k for k in module.kernels if "_into_i8pad" in k]
    padded = any(graph.outputs[0].attrs["padding"]) or module.kernels.get("i8pad") is not None
    if shared:  # the producer's output is read unpadded too: the pad copy stays
        assert not into
    elif padded:  # no pad copy: the producer writes the padded buffer, border included
        assert into and not pads, module.kernels


# -- pointwise convs over a flat image padded to whole pixel vectors --------------------------
@st.composite
def padded_pixel_convs(draw: st.DrawFn):
    """A 1x1 conv whose flat image no vector divides but `padded_pixels` takes (10x10 into 7
    vectors, 3x10 into 2, 14x14 into 13), requantized or not, alone or read by a padded
    depthwise conv (written in place) or added to a residual."""
    h, w = draw(st.sampled_from([(10, 10), (3, 10), (6, 10), (14, 14), (5, 12)]))
    cin, cout = draw(st.sampled_from([3, 8, 24, 128])), draw(st.sampled_from([5, 16, 40]))
    x, x_zp = draw(activations((1, cin, h, w)))
    xin = Node.input("x", x.shape, str(x.dtype))
    acc = make("qconv2d", xin, Node.constant(weights(draw, (cout, cin, 1, 1))), x_zp=x_zp)
    then = draw(st.sampled_from(["none", "requantize", "depthwise"]))
    if then == "none":
        return Graph([xin], [acc]), [x]
    m, shift = draw(rescales(cout))
    mid = make("requantize", acc, multiplier=m, shift=shift, out_scale=0.5, axis=1, bits=8,
               signed=False, out_zp=draw(st.integers(0, 255)))
    if then == "requantize":
        return Graph([xin], [mid]), [x]
    dw = make("qconv2d", mid, Node.constant(weights(draw, (cout, 1, 3, 3))),
              x_zp=mid.attrs["out_zp"], padding=[1], groups=cout)
    return Graph([xin], [dw]), [x]


@settings(max_examples=20)
@given(layer=padded_pixel_convs())
def test_pointwise_conv_over_padded_pixels_is_exact(layer) -> None:
    graph, feed = layer
    module = compiled_exact(graph, feed)
    assert "int8-conv2d" in module.kernels.values(), module.kernels  # pixel vectors
    assert "int8-conv2d-cv" not in module.kernels.values(), module.kernels


# -- targets -------------------------------------------------------------------------------
def _small_layers() -> list[tuple[Graph, list[np.ndarray]]]:
    rng = np.random.default_rng(7)
    out = []
    for (cin, cout, hw, k, stride) in ((5, 16, 8, 3, 1), (4, 24, 5, 3, 2), (16, 8, 4, 1, 1)):
        x = rng.integers(0, 256, (1, cin, hw, hw)).astype(np.uint8)
        xin = Node.input("x", x.shape, "uint8")
        acc = make("qconv2d", xin, Node.constant(rng.integers(-128, 128, (cout, cin, k, k))
                                                  .astype(np.int8)),
                   x_zp=3, stride=[stride, stride], padding=[k // 2])
        m = [quantize_multiplier(s)[0] for s in rng.uniform(1e-3, 1e-2, cout)]
        shift = [quantize_multiplier(s)[1] for s in rng.uniform(1e-3, 1e-2, cout)]
        out.append((Graph([xin], [make("requantize", acc, multiplier=m, shift=shift, axis=1,
                                       out_scale=1.0, signed=False)]), [x]))
    x = rng.integers(-128, 128, (6, 30)).astype(np.int8)
    xin = Node.input("x", x.shape, "int8")
    out.append((Graph([xin], [make("qlinear", xin, Node.constant(
        rng.integers(-128, 128, (20, 30)).astype(np.int8)), x_zp=-4)]), [x]))
    x = rng.integers(0, 256, (1, 8, 12, 12)).astype(np.uint8)
    xin = Node.input("x", x.shape, "uint8")
    out.append((Graph([xin], [make("qconv2d", xin, Node.constant(
        rng.integers(-128, 128, (8, 1, 3, 3)).astype(np.int8)), x_zp=9, groups=8,
        stride=[2, 2], padding=[1])]), [x]))
    return out


X86_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx512vbmi")


def runs_here(target) -> bool:
    """Whether this machine's CPU has every x86 vector feature `target` may use."""
    host = make_target("cpu")
    return all(codegen.target_has_features([f], host) for f in X86_FEATURES
               if codegen.target_has_features([f], target))


# CPUs without VNNI (AVX-512 or AVX2 only), and one with VNNI but no vpermb (depthwise). Each
# build is checked for its kernels and instructions; it runs (bit-exact) where this machine
# can execute its instructions (an AVX-512 build cannot run on an AVX2-only host).
@pytest.mark.parametrize("mcpu", ["skylake-avx512", "haswell", "cascadelake"])
def test_other_cpus_run_the_same_kernels_exactly(mcpu: str) -> None:
    target = make_target("cpu", mcpu=mcpu)
    for graph, feed in _small_layers():
        if runs_here(target):
            module = compiled_exact(graph, feed, mcpu=mcpu)
        else:
            module = smelt.compile(graph, "cpu", mcpu=mcpu)
            assert all(rule is not None for rule in module.kernels.values()), module.kernels
        contraction = rules_of(module, "qconv") | rules_of(module, "qdwconv") | rules_of(
            module, "qdense")
        assert contraction and contraction <= INT8_RULES, module.kernels
        expect = has_vbmi(target) if rules_of(module, "qdwconv") else has_vnni(target)
        assert ("vpdpbusd" in assembly(module)) == expect


def test_vnni_assembly_has_vpdpbusd() -> None:
    if not has_vnni(make_target("cpu")):
        pytest.skip("this machine's CPU has no AVX-512 VNNI")
    for graph, feed in _small_layers():
        assert "vpdpbusd" in assembly(compiled_exact(graph, feed))


# -- operands the int8 kernels do not take ---------------------------------------------------
def test_generic_route_keeps_other_operands_exact() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (1, 4, 6, 6)).astype(np.uint8)
    xin = Node.input("x", x.shape, "uint8")
    w8 = Node.constant(rng.integers(-128, 128, (4, 4, 3, 3)).astype(np.int8))
    wu8 = Node.constant(rng.integers(0, 256, (4, 4, 3, 3)).astype(np.uint8))
    wg = Node.constant(rng.integers(-128, 128, (4, 2, 3, 3)).astype(np.int8))
    outs = [make("qconv2d", xin, w8, x_zp=5, w_zp=[0, 1, -2, 3], padding=[1]),
            make("qconv2d", xin, wu8, x_zp=5, w_zp=[7], padding=[1]),
            make("qconv2d", xin, wg, x_zp=5, groups=2)]
    module = compiled_exact(Graph([xin], outs), [x])
    assert not rules_of(module, "conv") & INT8_RULES, module.kernels


# -- the zoo's CNNs, quantized ---------------------------------------------------------------
def _quant_params(lo: float, hi: float) -> tuple[float, int]:
    """uint8 affine parameters covering [min(lo, 0), max(hi, 0)]."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-6) / 255
    return scale, int(np.clip(round(-lo / scale), 0, 255))


def quantize_contractions(graph: Graph, feed: list[np.ndarray]) -> Graph:
    """A stand-in for the quantize pass: every conv2d / linear with constant weights becomes
    dequantize(requantize(qconv2d / qlinear(quantize(x), int8 W, int32 b))), uint8
    activations calibrated on `feed`, symmetric per-channel int8 weights."""
    layers = [n for n in graph.nodes() if n.op in ("conv2d", "linear")
              and n.inputs[1].op == "constant"]
    probes = Graph(graph.inputs, [v for n in layers for v in (n.inputs[0], n)])
    seen = smelt.interpret(probes, *feed)
    ranges = {id(v): (float(a.min()), float(a.max()))
              for v, a in zip(probes.outputs, seen, strict=True)}
    new: dict[int, Node] = {}
    for n in graph.nodes():
        inputs = [new[id(i)] for i in n.inputs]
        if n not in layers:
            new[id(n)] = n if n.op in ("input", "constant") else Node.rebuild(n, inputs)
            continue
        (sx, zx), (sy, zy) = (_quant_params(*ranges[id(v)]) for v in (n.inputs[0], n))
        w = np.asarray(n.inputs[1].value, np.float64)
        sw = np.maximum(np.abs(w.reshape(w.shape[0], -1)).max(axis=1), 1e-8) / 127
        wq = np.clip(np.rint(w / sw.reshape(-1, *[1] * (w.ndim - 1))), -127, 127)
        ops = [make("quantize", inputs[0], scale=[sx], zero_point=[zx], signed=False),
               Node.constant(wq.astype(np.int8))]
        if len(n.inputs) == 3:
            ops.append(Node.constant(np.rint(np.asarray(n.inputs[2].value) / (sx * sw))
                                     .astype(np.int32)))
        acc = (Node.make("qconv2d", ops, x_zp=zx, w_zp=[0], **n.attrs) if n.op == "conv2d"
               else Node.make("qlinear", ops, x_zp=zx, w_zp=[0]))
        pairs = [quantize_multiplier(sx * s / sy) for s in sw]
        y = make("requantize", acc, multiplier=[m for m, _ in pairs],
                 shift=[s for _, s in pairs], out_zp=zy, out_scale=sy,
                 axis=1 if n.op == "conv2d" else -1, signed=False)
        new[id(n)] = make("dequantize", y, scale=[sy], zero_point=[zy])
    return Graph(graph.inputs, [new[id(o)] for o in graph.outputs])


@pytest.mark.parametrize("name", ["residual_cnn", "mobilenet_v2"])
def test_zoo_cnn_int8_kernels_all_have_int8_rules(name: str) -> None:
    entry = ZOO[name]
    inputs = entry.inputs()
    graph = smelt.Pipeline.parse("fold-bn,canonicalize").run(
        smelt.trace(entry.build(), inputs)).graph
    feed = [t.numpy() for t in inputs]
    qgraph = quantize_contractions(graph, feed)
    module = smelt.compile(qgraph, "cpu")
    assert all(rule is not None for rule in module.kernels.values()), module.kernels
    contractions = {k: r for k, r in module.kernels.items() if "qconv" in k or "qdense" in k}
    assert contractions and set(contractions.values()) <= INT8_RULES, module.kernels
    got = module(*feed)
    want = smelt.interpret(qgraph, *feed)
    scale = max(float(np.abs(w).max()) for w in want)
    for g, w in zip(got, want, strict=True):  # float ops between layers: a quantum or two
        np.testing.assert_allclose(g, w, atol=0.05 * scale)
