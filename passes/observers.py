"""Calibration observers: the range of a tensor's values over calibration batches, and the
scale and zero point that quantize it.

An observer sees a tensor once per batch (`update`) and reports a `Range`: `lo`, `hi`, the
range the quantizer should represent, and `seen_lo`, `seen_hi`, the true extremes. Per tensor
(`axis=None`) they are 0-d; per channel (`axis=k`) one value per index of axis k, each channel
observed on its own. Kinds (`make_observer(kind, axis=..., **options)`):

- `minmax`: lo = min x, hi = max x over every batch (PyTorch MinMaxObserver).
- `moving-average`: lo_t = m lo_(t-1) + (1 - m) min(x_t), likewise hi; the first batch sets
  lo_1 = min(x_1) (PyTorch MovingAverageMinMaxObserver, with m = 1 - averaging_constant).
  Option `momentum` m = 0.9, in [0, 1].
- `percentile`: lo and hi at the (100 - p)th and pth percentiles (p = `percentile`, 99.99,
  in [50, 100]); NVIDIA pytorch-quantization's HistogramCalibrator(method="percentile") for
  TensorRT takes the same statistic of |x|.
- `mse`: the clipping range [lo, hi] that minimizes the expected squared error of quantizing
  x to `bits` bits (`symmetric`, `narrow` as in `qparams`). With step s and clip points a, b,
      E(a, b) = sum_{a<=x<=b} s^2/12 + sum_{x<a} (x - a)^2 + sum_{x>b} (x - b)^2,
  rounding noise plus clipping error (Banner, Nahshan, Soudry, "Post-training 4-bit
  quantization of convolutional networks for rapid deployment", NeurIPS 2019; PyTorch's
  HistogramObserver minimizes the same L2 norm). Asymmetric: a = min(lo, 0), b = max(hi, 0),
  s = (b - a) / (qmax - qmin); every pair lo_i = seen_lo 2^(-i/16), hi_j = seen_hi 2^(-j/16),
  i, j = 0..128, is evaluated (a side whose extreme has the sign of the other stays at it, and
  neither passes the other's data: hi_j >= seen_lo, lo_i <= seen_hi). Symmetric: s = t / qmax,
  a = qmin s, b = t, t = max(max|x| 2^(-i/16), distance from 0 to the data); lo =
  max(-t, seen_lo), hi = min(t, seen_hi). The grids start at the min/max range itself, so the
  range is never wider than minmax's and its modelled error never larger. Quantize the range
  with the same bits, symmetric and narrow (`MSEObserver.qparams(range)`; asymmetric with
  bits > 8 is signed).

Distributions (`percentile`, `mse`). While an observer has seen at most `exact_limit` values
(2^20 by default) it keeps them and is exact: `percentile` is np.percentile (linear
interpolation), and `mse` checks its five best modelled ranges and minmax's against the true
quantization error on the kept values, keeping the best (so its error on them is never above
minmax's). Past that the values are dropped for a histogram of `bins` (2048) equal bins per
channel, which re-bins losslessly when the range grows: the width doubles k times and the
origin moves left by whole new bins, so every new bin is a union of old ones. The width stays
within a factor 2 of (seen_hi - seen_lo) / (bins - 1). Histogram percentiles interpolate
linearly inside the bin holding the order statistic (so they lie within one bin of it), and
the MSE model spreads each bin's count uniformly over the bin. Memory: channels x bins float64.

`qparams(lo, hi, bits, signed, symmetric, narrow)`: real = scale (q - zero_point), the
quantize op's convention (ir/ops/quant.py). Asymmetric: the range is widened to hold 0,
scale = (hi - lo) / (qmax - qmin), zero_point = clamp(qmin - rhe(lo / scale), qmin, qmax), so
real 0 is the integer zero_point exactly. Symmetric (signed only): scale = max(|lo|, |hi|) /
qmax, zero_point = 0. qmin, qmax: [0, 2^b - 1] unsigned, [-2^(b-1), 2^(b-1) - 1] signed,
[-(2^(b-1) - 1), 2^(b-1) - 1] signed narrow. A degenerate range (all zero) gets scale 2^-23,
float32 epsilon, the eps floor of PyTorch's observers; any other scale is at least 2^-126, the
smallest normal float32, so no scale is zero or subnormal once stored as float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from smelt.ir.errors import SmeltError

from .observer_histogram import Histogram

DEGENERATE_SCALE = 2.0**-23  # float32 epsilon: the scale of an all-zero range
SMALLEST_SCALE = 2.0**-126  # the smallest normal float32
FRACTIONS = 2.0 ** (-np.arange(129) / 16)  # the mse candidate grid, 1 down to 2^-8


class ObserverError(SmeltError, ValueError):
    """An observer was asked for with a bad kind or option, or fed data it cannot use."""


class NonFiniteError(ObserverError):
    """An observer was fed NaN or infinite values (quantize leaves such a tensor float)."""


# -- ranges and quantization parameters ------------------------------------------------------
@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value; identity hashing
class Range:
    """lo, hi: the range to represent; seen_lo, seen_hi: the true extremes. float64, read-only,
    shape () per tensor or (C,) per channel. lo <= 0 <= hi is not required (qparams widens)."""

    lo: np.ndarray
    hi: np.ndarray
    seen_lo: np.ndarray
    seen_hi: np.ndarray

    def __post_init__(self) -> None:
        for name in ("lo", "hi", "seen_lo", "seen_hi"):
            a = np.array(getattr(self, name), dtype=np.float64)
            a.flags.writeable = False
            object.__setattr__(self, name, a)
        if len({self.lo.shape, self.hi.shape, self.seen_lo.shape, self.seen_hi.shape}) != 1:
            raise ObserverError("a Range's lo, hi, seen_lo and seen_hi need one shape")

    def clipped(self) -> float:
        """The largest distance of an observed value outside [lo, hi] (0 when none is)."""
        over = np.maximum(self.seen_hi - self.hi, self.lo - self.seen_lo)
        return float(max(np.max(over, initial=0.0), 0.0))


def qrange(bits: int = 8, *, signed: bool = False, narrow: bool = False) -> tuple[int, int]:
    """(qmin, qmax) of a bit width: the storage limits of ir/ops/quant.py `storage`."""
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 2 <= bits <= 32:
        raise ObserverError(f"bits must be an integer in [2, 32], got {bits!r}")
    if not signed:
        if narrow:
            raise ObserverError("narrow=True drops the most negative level of a signed range; "
                                "use signed=True with it")
        if bits > 8:
            raise ObserverError(f"unsigned quantization is at most 8 bits (uint8), got "
                                f"bits={bits}; use signed=True")
        return 0, 2**bits - 1
    qmax = 2 ** (int(bits) - 1) - 1
    return (-qmax if narrow else -qmax - 1), qmax


def qparams(lo: Any, hi: Any, *, bits: int = 8, signed: bool = False, symmetric: bool = False,
            narrow: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(scale float64, zero_point int64), broadcast over lo and hi; see the module docstring."""
    qmin, qmax = qrange(bits, signed=signed, narrow=narrow)
    lo, hi = np.broadcast_arrays(np.asarray(lo, np.float64), np.asarray(hi, np.float64))
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ObserverError(f"qparams needs a finite range, got lo={lo}, hi={hi}")
    if np.any(lo > hi):
        raise ObserverError(f"qparams needs lo <= hi, got lo={lo}, hi={hi}")
    if symmetric:
        if not signed:
            raise ObserverError("symmetric quantization has zero point 0 and a signed range; "
                                "pass signed=True, or symmetric=False for an unsigned range")
        scale = np.maximum(np.abs(lo), np.abs(hi)) / qmax
    else:
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        scale = (hi - lo) / (qmax - qmin)
    if not np.all(np.isfinite(scale)):
        raise ObserverError(f"the range [{lo}, {hi}] is too wide for a float64 scale")
    scale = np.where(scale == 0, DEGENERATE_SCALE, np.maximum(scale, SMALLEST_SCALE))
    if symmetric:
        return scale, np.zeros(scale.shape, np.int64)
    zero_point = np.clip(qmin - np.rint(lo / scale), qmin, qmax).astype(np.int64)
    return scale, zero_point


def fake_quantize(x: np.ndarray, scale: Any, zero_point: Any, qmin: int, qmax: int
                  ) -> np.ndarray:
    """(clamp(rhe(x / scale) + zero_point, qmin, qmax) - zero_point) * scale in float64; scale
    and zero_point broadcast against x."""
    q = np.clip(np.rint(np.asarray(x, np.float64) / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


# -- option checks -----------------------------------------------------------------------------
def _real(kind: str, name: str, value: Any, lo: float, hi: float) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not ok or not lo <= float(value) <= hi:
        raise ObserverError(f"the {kind} observer's {name} must be a number in [{lo}, {hi}], "
                            f"got {value!r}")
    return float(value)


def _int(kind: str, name: str, value: Any, lo: int, hi: int) -> int:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not ok or not lo <= value <= hi:
        raise ObserverError(f"the {kind} observer's {name} must be an integer in [{lo}, {hi}], "
                            f"got {value!r}")
    return int(value)


def _bool(kind: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ObserverError(f"the {kind} observer's {name} must be True or False, got {value!r}")
    return bool(value)


# -- the observers -----------------------------------------------------------------------------
class Observer:
    """Base: validation, channel bookkeeping and the seen extremes. Subclasses implement
    `_observe(x, lo, hi)` (x the checked array, lo/hi this batch's (C,) extremes) and
    `_range() -> (lo, hi)` as (C,) arrays; per tensor, C = 1."""

    kind: ClassVar[str] = "base"
    OPTIONS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, axis: int | None = None) -> None:
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int | np.integer)):
            raise ObserverError(f"the {self.kind} observer's axis must be None or an int, got "
                                f"{axis!r}")
        self.axis = None if axis is None else int(axis)
        self.channels: int | None = None
        self.batches = 0
        self.seen_lo = self.seen_hi = np.empty(0)

    def __repr__(self) -> str:
        where = "per tensor" if self.axis is None else f"per channel along axis {self.axis}"
        return f"the {self.kind} observer ({where})"

    def update(self, x: np.ndarray) -> None:
        """Observe one batch's value of the tensor."""
        a = np.asarray(x)
        if a.dtype.kind not in "fiu":
            raise ObserverError(f"{self!r} takes real numbers, got dtype {a.dtype}")
        if a.size == 0:
            raise ObserverError(f"{self!r} was given an empty tensor of shape {list(a.shape)}")
        axes, channels = self._reduced_axes(a)
        lo = np.atleast_1d(np.min(a, axis=axes)).astype(np.float64)
        hi = np.atleast_1d(np.max(a, axis=axes)).astype(np.float64)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise NonFiniteError(f"{self!r} was given NaN or infinite values; calibration "
                                 "needs finite activations (check the inputs and the model)")
        self.channels = channels
        first = self.batches == 0
        self.seen_lo = lo if first else np.minimum(self.seen_lo, lo)
        self.seen_hi = hi if first else np.maximum(self.seen_hi, hi)
        self._observe(a, lo, hi)
        self.batches += 1

    def range(self) -> Range:
        """The calibrated range so far; raises if no batch was observed."""
        if self.batches == 0:
            raise ObserverError(f"{self!r} has observed no data; call update() with at least "
                                "one batch (or run calibrate) before range()")
        lo, hi = self._range()
        shape = () if self.axis is None else (self.channels,)
        return Range(*(np.reshape(v, shape) for v in (lo, hi, self.seen_lo, self.seen_hi)))

    def _reduced_axes(self, a: np.ndarray) -> tuple[tuple[int, ...] | None, int]:
        """The axes a min/max reduces over, and the channel count (checked against earlier
        batches)."""
        if self.axis is None:
            return None, 1
        if not -a.ndim <= self.axis < a.ndim:
            raise ObserverError(f"{self!r}: axis {self.axis} is out of range for a tensor of "
                                f"shape {list(a.shape)}")
        axis = self.axis % a.ndim
        if self.channels is not None and a.shape[axis] != self.channels:
            raise ObserverError(f"{self!r} was given {a.shape[axis]} channels (shape "
                                f"{list(a.shape)}) after {self.channels} in earlier batches")
        return tuple(i for i in range(a.ndim) if i != axis), a.shape[axis]

    def _rows(self, a: np.ndarray) -> np.ndarray:
        """The values as a float64 (C, N) array, a copy."""
        if self.axis is None:
            return a.astype(np.float64).reshape(1, -1)
        return np.moveaxis(a, self.axis, 0).astype(np.float64).reshape(self.channels, -1)

    def _observe(self, a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        raise NotImplementedError

    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class MinMaxObserver(Observer):
    """Running minimum and maximum."""

    kind = "minmax"

    def _observe(self, a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        pass  # the base class keeps the extremes

    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        return self.seen_lo, self.seen_hi


class MovingAverageObserver(Observer):
    """lo <- m lo + (1 - m) min(x) (likewise hi); the first batch sets them."""

    kind = "moving-average"
    OPTIONS = ("momentum",)

    def __init__(self, *, axis: int | None = None, momentum: float = 0.9) -> None:
        super().__init__(axis=axis)
        self.momentum = _real(self.kind, "momentum", momentum, 0.0, 1.0)
        self._lo = self._hi = np.empty(0)

    def _observe(self, a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        if self.batches == 0:
            self._lo, self._hi = lo, hi
            return
        m = self.momentum
        self._lo = m * self._lo + (1 - m) * lo
        self._hi = m * self._hi + (1 - m) * hi

    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        return self._lo, self._hi

# -- distributions: kept values, then a re-binning histogram (observer_histogram.py) --
class _DistributionObserver(Observer):
    """Keeps the values while there are at most `exact_limit`, then a `Histogram`."""

    OPTIONS = ("bins", "exact_limit")

    def __init__(self, *, axis: int | None = None, bins: int = 2048,
                 exact_limit: int = 2**20) -> None:
        super().__init__(axis=axis)
        self.bins = _int(self.kind, "bins", bins, 16, 2**16)
        self.exact_limit = _int(self.kind, "exact_limit", exact_limit, 0, 2**40)
        self._kept: list[np.ndarray] = []
        self._count = 0
        self._hist: Histogram | None = None

    @property
    def exact(self) -> bool:
        """True while every observed value is kept (results are exact)."""
        return self._hist is None

    @property
    def bin_width(self) -> np.ndarray | None:
        """The histogram's bin width per channel (shape as Range.lo); None while exact."""
        if self._hist is None:
            return None
        return self._hist.width.reshape(() if self.axis is None else (self.channels,))

    def _observe(self, a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        rows = self._rows(a)
        if self._hist is None and self._count + rows.size <= self.exact_limit:
            self._kept.append(rows)
            self._count += rows.size
            return
        if self._hist is None:
            self._hist = self._histogram()
            self._kept, self._count = [], 0
        self._hist.add(rows, self.seen_lo, self.seen_hi)

    def _values(self) -> np.ndarray:
        return np.concatenate(self._kept, axis=1)

    def _histogram(self) -> Histogram:
        if self._hist is not None:
            return self._hist
        h = Histogram(self.seen_lo, self.seen_hi, self.bins)
        for rows in self._kept:
            h.add(rows, self.seen_lo, self.seen_hi)
        return h


class PercentileObserver(_DistributionObserver):
    """lo, hi at the (100 - p)th and pth percentiles of the values, per channel."""

    kind = "percentile"
    OPTIONS = ("percentile", "bins", "exact_limit")

    def __init__(self, *, axis: int | None = None, percentile: float = 99.99, bins: int = 2048,
                 exact_limit: int = 2**20) -> None:
        super().__init__(axis=axis, bins=bins, exact_limit=exact_limit)
        self.percentile = _real(self.kind, "percentile", percentile, 50.0, 100.0)

    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.percentile
        if self._hist is None:
            lo, hi = np.percentile(self._values(), [100.0 - p, p], axis=1)
            return lo, hi
        h, seen = self._hist, (self.seen_lo, self.seen_hi)
        return h.quantile((100.0 - p) / 100.0, *seen), h.quantile(p / 100.0, *seen)


class MSEObserver(_DistributionObserver):
    """The clipping range of least expected squared quantization error (module docstring)."""

    kind = "mse"
    OPTIONS = ("bits", "symmetric", "narrow", "bins", "exact_limit")
    KEEP = 5  # modelled candidates checked against the kept values

    def __init__(self, *, axis: int | None = None, bits: int = 8, symmetric: bool = False,
                 narrow: bool = False, bins: int = 2048, exact_limit: int = 2**20) -> None:
        super().__init__(axis=axis, bins=bins, exact_limit=exact_limit)
        self.bits = _int(self.kind, "bits", bits, 2, 16)
        self.symmetric = _bool(self.kind, "symmetric", symmetric)
        self.narrow = _bool(self.kind, "narrow", narrow)
        self.signed = self.symmetric or self.narrow or self.bits > 8
        self.qmin, self.qmax = qrange(self.bits, signed=self.signed, narrow=self.narrow)

    def qparams(self, r: Range) -> tuple[np.ndarray, np.ndarray]:
        """`qparams` of a range with this observer's bits, signedness and symmetry."""
        return qparams(r.lo, r.hi, bits=self.bits, signed=self.signed,
                       symmetric=self.symmetric, narrow=self.narrow)

    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        keep = 1 if self._hist is not None else self.KEEP
        search = self._symmetric if self.symmetric else self._asymmetric
        lo, hi = search(self._histogram(), keep)  # (keep, C), best first
        if self._hist is not None:
            return lo[0], hi[0]
        lo, hi = np.vstack([lo, self.seen_lo]), np.vstack([hi, self.seen_hi])
        x = self._values()
        errors = []
        for c_lo, c_hi in zip(lo, hi, strict=True):
            s, z = qparams(c_lo, c_hi, bits=self.bits, signed=self.signed,
                           symmetric=self.symmetric, narrow=self.narrow)
            q = fake_quantize(x, s[:, None], z[:, None], self.qmin, self.qmax)
            errors.append(np.mean((q - x) ** 2, axis=1))
        best = np.argmin(np.array(errors), axis=0)
        cols = np.arange(lo.shape[1])
        return lo[best, cols], hi[best, cols]

    def _symmetric(self, h: Histogram, keep: int) -> tuple[np.ndarray, np.ndarray]:
        gap = np.maximum(np.maximum(self.seen_lo, -self.seen_hi), 0.0)  # 0 to the data
        t = np.maximum(np.maximum(-self.seen_lo, self.seen_hi)[:, None] * FRACTIONS, gap[:, None])
        s = t / self.qmax
        low, n_low, _, _ = h.clip_errors(self.qmin * s)
        _, _, high, n_high = h.clip_errors(t)
        total = h.counts.sum(axis=1)[:, None]
        err = low + high + (total - n_low - n_high) * s**2 / 12
        best = np.take_along_axis(t, np.argsort(err, axis=1, kind="stable")[:, :keep], 1).T
        return np.maximum(-best, self.seen_lo), np.minimum(best, self.seen_hi)

    def _asymmetric(self, h: Histogram, keep: int) -> tuple[np.ndarray, np.ndarray]:
        seen_lo, seen_hi = self.seen_lo[:, None], self.seen_hi[:, None]
        lo = np.where(seen_lo < 0, np.minimum(seen_lo * FRACTIONS, np.minimum(seen_hi, 0)),
                      seen_lo)
        hi = np.where(seen_hi > 0, np.maximum(seen_hi * FRACTIONS, np.maximum(seen_lo, 0)),
                      seen_hi)
        a, b = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        low, n_low, _, _ = h.clip_errors(a)
        _, _, high, n_high = h.clip_errors(b)
        total = h.counts.sum(axis=1)
        k, levels = len(FRACTIONS), self.qmax - self.qmin
        picks = np.empty((len(a), keep), np.int64)
        step = max(1, 2**20 // (k * k))  # channels per chunk: ~2^20 grid points
        for c in range(0, len(a), step):
            sl = slice(c, c + step)
            s = (b[sl, None, :] - a[sl, :, None]) / levels
            inside = total[sl, None, None] - n_low[sl, :, None] - n_high[sl, None, :]
            err = low[sl, :, None] + high[sl, None, :] + inside * s**2 / 12
            picks[sl] = np.argsort(err.reshape(len(s), -1), axis=1, kind="stable")[:, :keep]
        i, j = np.divmod(picks, k)
        return np.take_along_axis(lo, i, 1).T, np.take_along_axis(hi, j, 1).T


# -- the registry ------------------------------------------------------------------------------
OBSERVERS: dict[str, type[Observer]] = {
    cls.kind: cls for cls in (MinMaxObserver, MovingAverageObserver, PercentileObserver,
                              MSEObserver)
}


def make_observer(kind: str, *, axis: int | None = None, **options: Any) -> Observer:
    """An observer of `kind` ('minmax', 'moving-average', 'percentile', 'mse'); `axis` None
    for one range per tensor, else one per index of that axis."""
    if not isinstance(kind, str) or kind not in OBSERVERS:
        raise ObserverError(f"unknown observer kind {kind!r}; choose one of "
                            f"{', '.join(OBSERVERS)}")
    cls = OBSERVERS[kind]
    unknown = sorted(set(options) - set(cls.OPTIONS))
    if unknown:
        valid = ", ".join(cls.OPTIONS) or "none"
        raise ObserverError(f"the {kind} observer has no option {unknown[0]!r}; its options: "
                            f"{valid} (and axis)")
    return cls(axis=axis, **options)
