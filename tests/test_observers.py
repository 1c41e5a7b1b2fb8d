"""Calibration observers, qparams, calibrate and the progress bar: min/max exact, the moving
average formula, percentiles against numpy (exactly while kept, within one bin from the
histogram), mse never wider and never worse than min/max, qparams' representability
guarantees, degenerate data, the typed errors, and calibration over a small graph."""

from __future__ import annotations

import io
import math
import re
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from smelt.ir import Graph, Node, SmeltError
from smelt.ir.interpreter import interpret
from smelt.passes.calibration import CalibrationError, calibrate
from smelt.passes.observers import (
    DEGENERATE_SCALE,
    OBSERVERS,
    ObserverError,
    Range,
    make_observer,
    qparams,
    qrange,
)

KINDS = sorted(OBSERVERS)
FINITE = st.floats(-1e3, 1e3, width=32, allow_subnormal=False)


def batches(min_size: int = 1, max_size: int = 60, max_batches: int = 4):
    return st.lists(hnp.arrays(np.float32, st.integers(min_size, max_size), elements=FINITE),
                    min_size=1, max_size=max_batches)


def observe(kind: str, data, **options):
    obs = make_observer(kind, **options)
    for x in data:
        obs.update(x)
    return obs


def quant_mse(x, r: Range, bits=8, symmetric=False) -> np.ndarray:
    """Mean squared error of quantizing x (rows = channels) with qparams(r): rhe, clamp."""
    signed = symmetric
    scale, zp = qparams(r.lo, r.hi, bits=bits, signed=signed, symmetric=symmetric)
    qmin, qmax = qrange(bits, signed=signed)
    s, z = np.reshape(scale, (-1, 1)), np.reshape(zp, (-1, 1))
    x = np.asarray(x, np.float64).reshape(len(s), -1)
    q = np.clip(np.rint(x / s) + z, qmin, qmax)
    return np.mean(((q - z) * s - x) ** 2, axis=1)


# -- minmax and moving average -------------------------------------------------------------------
@given(batches())
def test_minmax_is_the_exact_running_extremes(data):
    r = observe("minmax", data).range()
    allx = np.concatenate(data).astype(np.float64)
    assert r.lo.shape == () and r.lo == allx.min() and r.hi == allx.max()
    assert r.seen_lo == allx.min() and r.seen_hi == allx.max() and r.clipped() == 0.0


@given(st.integers(1, 4), st.integers(1, 3), st.data())
def test_minmax_per_channel_along_axis_1(channels, n_batches, data):
    shape = st.tuples(st.integers(1, 3), st.just(channels), st.integers(1, 4))
    xs = [data.draw(hnp.arrays(np.float32, shape, elements=FINITE)) for _ in range(n_batches)]
    r = observe("minmax", xs, axis=1).range()
    allx = np.concatenate([np.moveaxis(x, 1, 0).reshape(channels, -1) for x in xs], axis=1)
    assert r.lo.shape == (channels,)
    np.testing.assert_array_equal(r.lo, allx.min(axis=1))
    np.testing.assert_array_equal(r.hi, allx.max(axis=1))
    scale, zp = qparams(r.lo, r.hi)  # every calibration value within half a step
    assert scale.shape == zp.shape == (channels,)
    q = np.clip(np.rint(allx / scale[:, None]) + zp[:, None], 0, 255)
    assert np.all(np.abs((q - zp[:, None]) * scale[:, None] - allx) <= scale[:, None] * 0.5001)


def test_moving_average_follows_the_formula():
    xs = [np.array([0.0, 1.0]), np.array([-2.0, 3.0]), np.array([1.0, 1.0])]
    r = observe("moving-average", xs, momentum=0.5).range()
    # lo: 0 -> 0.5*0 + 0.5*(-2) = -1 -> 0.5*(-1) + 0.5*1 = 0; hi: 1 -> 2 -> 1.5
    assert (r.lo, r.hi, r.seen_lo, r.seen_hi) == (0.0, 1.5, -2.0, 3.0)
    assert r.clipped() == 2.0  # -2 lies 2 below lo
    default = observe("moving-average", xs).range()
    assert default.hi == pytest.approx(0.9 * (0.9 * 1 + 0.1 * 3) + 0.1 * 1)


@given(batches(), st.floats(0.0, 1.0))
def test_moving_average_matches_an_ema_of_batch_extremes(data, m):
    r = observe("moving-average", data, momentum=m).range()
    lo, hi = float(data[0].min()), float(data[0].max())
    for x in data[1:]:
        lo, hi = m * lo + (1 - m) * float(x.min()), m * hi + (1 - m) * float(x.max())
    assert r.lo == pytest.approx(lo, rel=1e-12, abs=1e-9)
    assert r.hi == pytest.approx(hi, rel=1e-12, abs=1e-9)


# -- percentile ----------------------------------------------------------------------------------
@given(batches(), st.floats(50.0, 100.0))
def test_percentile_is_numpys_while_the_data_is_kept(data, p):
    obs = observe("percentile", data, percentile=p)
    assert obs.exact
    r = obs.range()
    allx = np.concatenate(data).astype(np.float64)
    np.testing.assert_array_equal([r.lo, r.hi], np.percentile(allx, [100 - p, p]))


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(1, 400), st.floats(-3, 3), st.floats(-4, 4)),
                min_size=1, max_size=5), st.floats(50.0, 100.0), st.integers(0, 2**32 - 1))
def test_percentile_from_the_histogram_lies_within_one_bin(parts, p, seed):
    """Batches of different scales and offsets make the histogram re-bin; the estimate
    stays within one bin of the order statistic of rank ceil(q N)."""
    rng = np.random.default_rng(seed)
    data = [rng.standard_normal(n) * 10.0**e + c * 10.0**e for n, e, c in parts]
    obs = observe("percentile", data, percentile=p, exact_limit=0, bins=64)
    assert not obs.exact
    r, w = obs.range(), float(obs.bin_width)
    allx = np.sort(np.concatenate(data))
    assert obs._hist.counts.sum() == allx.size  # re-binning loses nothing
    assert w <= 2 * (allx[-1] - allx[0]) / 63 + 1e-300 or allx[0] == allx[-1]
    for q, got in (((100 - p) / 100, r.lo), (p / 100, r.hi)):
        j = max(math.ceil(q * allx.size), 1) - 1
        assert abs(got - allx[j]) <= w * (1 + 1e-6) + 1e-12 * np.abs(allx).max()


def test_percentile_from_the_histogram_is_near_numpys_on_dense_data():
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(20000) * s for s in (0.5, 1.0, 2.0, 1.5)]  # range grows
    obs = observe("percentile", data, percentile=99.0, exact_limit=0)
    r, w = obs.range(), float(obs.bin_width)
    want = np.percentile(np.concatenate(data), [1.0, 99.0])
    assert abs(r.lo - want[0]) <= w and abs(r.hi - want[1]) <= w
    assert r.clipped() > 0 and r.seen_hi > r.hi


# -- mse -----------------------------------------------------------------------------------------
@settings(max_examples=40)
@given(batches(min_size=2, max_size=200), st.booleans(), st.sampled_from([4, 8]),
       st.booleans())
def test_mse_is_never_wider_nor_worse_than_minmax(data, symmetric, bits, kept):
    options = {"bits": bits, "symmetric": symmetric, "exact_limit": 2**20 if kept else 0}
    r = observe("mse", data, **options).range()
    assert r.seen_lo <= r.lo <= r.hi <= r.seen_hi
    if kept:  # the true error is checked against minmax's on the kept values
        allx = np.concatenate(data)
        mm = observe("minmax", data).range()
        assert quant_mse(allx, r, bits, symmetric) <= quant_mse(allx, mm, bits, symmetric)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("kept", [True, False])
def test_mse_clips_outliers_per_channel(symmetric, kept):
    rng = np.random.default_rng(1)
    w = rng.laplace(size=(4, 4000)) * np.array([[0.1], [1.0], [3.0], [10.0]])
    w[:, 0] = 60 * np.array([0.1, 1.0, 3.0, 10.0])  # one outlier per channel
    obs = observe("mse", [w], axis=0, bits=4, symmetric=symmetric,
                  exact_limit=2**20 if kept else 0)
    r = obs.range()
    mm = observe("minmax", [w], axis=0).range()
    assert r.lo.shape == (4,) and np.all(r.hi < 0.5 * mm.hi)
    assert np.all(quant_mse(w, r, 4, symmetric) < 0.7 * quant_mse(w, mm, 4, symmetric))


# -- qparams -------------------------------------------------------------------------------------
SCHEMES = st.sampled_from([  # (bits, signed, symmetric, narrow)
    (8, False, False, False), (8, True, False, False), (8, True, True, False),
    (8, True, True, True), (4, False, False, False), (4, True, True, True),
    (2, False, False, False), (16, True, True, False), (16, True, False, False)])
BOUND = st.floats(-1e6, 1e6, allow_subnormal=False)


@given(BOUND, BOUND, SCHEMES, st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_qparams_represent_zero_and_every_value_in_range(a, b, scheme, ts):
    bits, signed, symmetric, narrow = scheme
    lo, hi = min(a, b), max(a, b)
    scale, zp = qparams(lo, hi, bits=bits, signed=signed, symmetric=symmetric, narrow=narrow)
    qmin, qmax = qrange(bits, signed=signed, narrow=narrow)
    assert scale.dtype == np.float64 and zp.dtype == np.int64 and scale.shape == ()
    assert np.isfinite(scale) and scale > 0 and qmin <= zp <= qmax
    assert np.clip(np.rint(0.0 / scale) + zp, qmin, qmax) == zp  # 0 quantizes to zp exactly
    x = lo + (hi - lo) * np.array([0.0, 1.0, *ts])
    q = np.clip(np.rint(x / scale) + zp, qmin, qmax)
    assert np.all(np.abs((q - zp) * scale - x) <= scale * (0.5 + 1e-9))


def test_qparams_formulas_and_per_channel_shapes():
    scale, zp = qparams(-1.0, 3.0)  # uint8: scale 4/255, zp = 0 - rhe(-1 / scale) = 64
    assert scale == 4.0 / 255 and zp == 64
    scale, zp = qparams(0.5, 2.0)  # widened to [0, 2]
    assert scale == 2.0 / 255 and zp == 0
    scale, zp = qparams([-1.0, -4.0, 0.0], [2.0, 1.0, 0.0], signed=True, symmetric=True,
                        narrow=True)
    np.testing.assert_array_equal(scale, [2 / 127, 4 / 127, DEGENERATE_SCALE])
    assert scale.shape == zp.shape == (3,) and not zp.any()
    assert qrange(8, signed=True, narrow=True) == (-127, 127) and qrange(4) == (0, 15)


def test_degenerate_ranges_give_a_tiny_positive_scale():
    for kw in ({}, {"signed": True}, {"signed": True, "symmetric": True}):
        scale, zp = qparams(0.0, 0.0, **kw)
        assert scale == DEGENERATE_SCALE == 2.0**-23
        assert zp == qrange(8, signed=kw.get("signed", False))[0] or kw.get("symmetric")
    scale, _ = qparams(0.0, 1e-300)
    assert np.float32(scale) > 0 and np.isfinite(1 / np.float32(scale))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", [0.0, -2.5, 3.0])
@pytest.mark.parametrize("exact_limit", [2**20, 0])
def test_constant_data_gives_the_constant(kind, value, exact_limit):
    options = {"exact_limit": exact_limit} if kind in ("percentile", "mse") else {}
    r = observe(kind, [np.full(50, value), np.full((3, 7), value)], **options).range()
    assert r.lo == r.seen_lo == value and r.hi == r.seen_hi == value and r.clipped() == 0
    scale, _ = qparams(r.lo, r.hi)
    assert np.isfinite(scale) and scale > 0
    if kind == "mse":  # a symmetric range cannot clip below one-signed data either
        r = observe(kind, [np.full(2, value)], symmetric=True, bits=4, **options).range()
        assert r.lo == r.hi == value


def test_a_histogram_born_constant_grows():
    obs = observe("percentile", [np.zeros(100), np.linspace(-1, 1, 1001)], percentile=90,
                  exact_limit=0)
    r = obs.range()
    assert obs._hist.counts.sum() == 1101 and float(obs.bin_width) < 2 * 2 / (2048 - 1)
    allx = np.sort(np.concatenate([np.zeros(100), np.linspace(-1, 1, 1001)]))
    assert abs(r.hi - allx[math.ceil(0.9 * 1101) - 1]) <= float(obs.bin_width)


# -- errors --------------------------------------------------------------------------------------
def test_unknown_kinds_and_options_name_the_valid_ones():
    with pytest.raises(ObserverError, match="bogus.*minmax, moving-average, percentile, mse"):
        make_observer("bogus")
    with pytest.raises(ObserverError, match="'momentum'.*percentile, bins, exact_limit"):
        make_observer("percentile", momentum=0.5)
    with pytest.raises(ObserverError, match="no option 'bits'.*none"):
        make_observer("minmax", bits=8)
    assert issubclass(ObserverError, SmeltError) and issubclass(ObserverError, ValueError)


@pytest.mark.parametrize("kind, options", [
    ("moving-average", {"momentum": 1.5}), ("percentile", {"percentile": 10}),
    ("mse", {"bits": 1}), ("mse", {"symmetric": "yes"}), ("mse", {"bins": 3}),
    ("minmax", {"axis": 1.5})])
def test_bad_option_values_are_typed_errors(kind, options):
    with pytest.raises(ObserverError, match=kind if "axis" not in options else "axis"):
        make_observer(kind, **options)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_name_the_observer(kind, bad):
    obs = make_observer(kind, axis=0)
    with pytest.raises(ObserverError, match=f"{kind} observer.*NaN or infinite"):
        obs.update(np.array([[1.0, bad], [0.0, 1.0]]))


def test_channel_count_axis_and_empty_range_errors():
    obs = make_observer("minmax", axis=1)
    obs.update(np.zeros((2, 3)))
    with pytest.raises(ObserverError, match="4 channels.*after 3"):
        obs.update(np.zeros((2, 4)))
    with pytest.raises(ObserverError, match="axis 1 is out of range"):
        obs.update(np.zeros(3))
    with pytest.raises(ObserverError, match="observed no data"):
        make_observer("mse").range()
    with pytest.raises(ObserverError, match="empty"):
        make_observer("minmax").update(np.zeros((0, 3)))


def test_qparams_errors():
    with pytest.raises(ObserverError, match="signed=True"):
        qparams(-1.0, 1.0, symmetric=True)
    with pytest.raises(ObserverError, match="lo <= hi"):
        qparams(1.0, -1.0)
    with pytest.raises(ObserverError, match="finite"):
        qparams(0.0, np.inf)
    with pytest.raises(ObserverError, match="bits"):
        qparams(0.0, 1.0, bits=40)


# -- calibrate -----------------------------------------------------------------------------------
def mlp():
    rng = np.random.default_rng(3)
    x = Node.input("x", (4, 3))
    w1 = Node.constant(rng.standard_normal((5, 3)).astype(np.float32))
    h = Node.make("linear", (x, w1, Node.constant(np.zeros(5, np.float32))))
    r = Node.make("relu", (h,))
    y = Node.make("linear", (r, Node.constant(rng.standard_normal((2, 5)).astype(np.float32))))
    g = Graph([x], [y], names={h: "fc1", r: "act"})
    return g, x, w1, h, r, y


def make_batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(n)]


def test_calibrate_collects_the_extremes_of_each_node():
    g, x, w1, h, r, _ = mlp()
    data = make_batches(3)
    obs = {x: make_observer("minmax"), h: make_observer("minmax", axis=1),
           r: make_observer("percentile", percentile=100), w1: make_observer("minmax", axis=0)}
    done = calibrate(g, data, obs)
    seen: dict = {}
    for b in data:
        interpret(g, b, observe=lambda n, v: seen.setdefault(n, []).append(v))
    assert done.keys() == obs.keys() and done[x] is obs[x]
    assert done[x].range().lo == min(v.min() for v in seen[x])
    np.testing.assert_array_equal(done[h].range().hi, np.max(np.concatenate(seen[h]), axis=0))
    assert done[r].range().hi == max(v.max() for v in seen[r])
    np.testing.assert_array_equal(done[w1].range().lo, w1.value.min(axis=1))
    assert [done[n].batches for n in (x, h, r, w1)] == [3, 3, 3, 1]  # weights once


def test_calibrate_computes_only_what_the_observers_need(monkeypatch):
    g, x, _, h, r, y = mlp()
    ran = []
    from smelt.passes import calibration as cal

    def spy(graph, *args, **kw):
        ran.extend(n.op for n in graph.nodes())
        return interpret(graph, *args, **kw)

    monkeypatch.setattr(cal, "interpret", spy)
    calibrate(g, make_batches(1), {h: make_observer("minmax"), r: make_observer("minmax")})
    assert ran.count("linear") == 1 and ran.count("relu") == 1  # not the second linear


def test_calibrate_accepts_tuples_lists_and_single_arrays_and_generators():
    g, x, *_ = mlp()
    a, b = make_batches(2)
    for data in ([a, b], [(a,), [b]], (t for t in (a, b))):
        done = calibrate(g, data, {x: make_observer("minmax")})
        assert done[x].range().hi == max(a.max(), b.max())


def test_calibrate_errors_say_what_is_wrong():
    g, x, _, h, *_ = mlp()
    obs = {x: make_observer("minmax")}
    with pytest.raises(CalibrationError, match=r"input 'x' has shape \[2, 3\].*expects \[4, 3\]"):
        calibrate(g, [np.zeros((2, 3), np.float32)], obs)
    with pytest.raises(CalibrationError, match="no calibration batches"):
        calibrate(g, [], obs)
    with pytest.raises(CalibrationError, match="batches were empty"):
        calibrate(g, iter([]), obs)
    with pytest.raises(CalibrationError, match="2 arrays.*1 inputs"):
        calibrate(g, [(np.zeros((4, 3)), np.zeros((4, 3)))], obs)
    with pytest.raises(CalibrationError, match="not a node of graph"):
        calibrate(g, make_batches(1), {Node.input("z", (1,)): make_observer("minmax")})
    bad = make_batches(2)
    bad[1][0, 0] = np.nan
    with pytest.raises(ObserverError, match="linear node 'fc1', batch 1: the minmax observer"):
        calibrate(g, bad, {h: make_observer("minmax")})
    assert issubclass(CalibrationError, SmeltError) and issubclass(CalibrationError, ValueError)
    two = Graph([x, Node.input("y", (4, 3))], [Node.make("add", (x, Node.input("y", (4, 3))))])
    with pytest.raises(CalibrationError, match="single array but the graph has 2 inputs"):
        calibrate(two, make_batches(1), {x: make_observer("minmax")})


def test_calibrate_progress_bar(capsys):
    g, x, *_ = mlp()
    calibrate(g, make_batches(3), {x: make_observer("minmax")}, progress=True)
    err = capsys.readouterr().err
    assert re.search(r"calibrate: 100%\|[^|]+\| 3/3 \[", err), err  # tqdm's bar, on stderr
    calibrate(g, make_batches(3), {x: make_observer("minmax")})  # auto: short and fast
    calibrate(g, make_batches(12), {x: make_observer("minmax")}, progress=False)
    assert capsys.readouterr().err == ""
    calibrate(g, make_batches(12), {x: make_observer("minmax")})  # auto: > 8 batches
    assert "| 12/12 [" in capsys.readouterr().err


class Slow:
    """Batches that take `delay_s` each to arrive, with a length (so the bar has a total)."""

    def __init__(self, batches: list, delay_s: float) -> None:
        self.batches, self.delay_s = batches, delay_s

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for b in self.batches:
            time.sleep(self.delay_s)
            yield b


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_calibrate_progress_is_written_twice_off_a_terminal(capsys):
    # 40 batches over more than 0.4 s: a bar redrawn every 0.1 s (tqdm's default) would write
    # five or more times; a CI log gets the start and the end only
    g, x, *_ = mlp()
    calibrate(g, Slow(make_batches(40), 0.01), {x: make_observer("minmax")}, progress=True)
    err = capsys.readouterr().err
    assert err.count("calibrate: ") == 2, err
    assert "| 0/40 [" in err and "| 40/40 [" in err and err.endswith("\n")


def test_calibrate_progress_redraws_on_a_terminal(monkeypatch):
    g, x, *_ = mlp()
    out = Terminal()
    monkeypatch.setattr(sys, "stderr", out)
    calibrate(g, Slow(make_batches(40), 0.01), {x: make_observer("minmax")}, progress=True)
    text = out.getvalue()
    assert text.count("calibrate: ") > 3 and text.count("\n") == 1, text
    assert "| 40/40 [" in text.rsplit("\r", 1)[-1]
