"""Per-channel histograms that re-bin as the range grows, for the percentile and MSE
observers (passes/observers.py).

C channels of `bins` equal bins each. When new data falls outside, the bin width doubles k
times and the origin moves left by whole bins, so each new bin is the union of old ones: no
count is lost or split, and the width stays within 2x of (seen range) / (bins - 1). Quantiles
interpolate inside their bin; `clip_errors` gives the squared error of clipping at given
points from prefix sums of each bin's moments (its count spread uniformly over the bin).
"""

from __future__ import annotations

import numpy as np


class Histogram:
    """C histograms of `bins` equal bins: bin i of channel c covers [origin_c + i width_c,
    origin_c + (i + 1) width_c). Counts are float64 (exact up to 2^53)."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, bins: int) -> None:
        width = (hi - lo) / bins
        flat = ~(width > 0)  # a constant channel: a tiny width, the value in the middle
        point = np.maximum(np.abs(lo), 1e-30) * 2.0**-30 / bins
        self.bins = bins
        self.width = np.where(flat, point, width)
        self.origin = np.where(flat, lo - self.width * (bins // 2), lo)
        self.counts = np.zeros((lo.size, bins))
        self._prefix: tuple[np.ndarray, ...] | None = None

    def add(self, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """Count `rows` (C, N); every value seen so far lies in [lo, hi] (per channel)."""
        self._grow(lo, hi)
        n = self.bins
        idx = np.floor((rows - self.origin[:, None]) / self.width[:, None])
        idx = np.clip(idx, 0, n - 1).astype(np.int64) + n * np.arange(len(rows))[:, None]
        self.counts += np.bincount(idx.ravel(), minlength=self.counts.size).reshape(
            self.counts.shape)
        self._prefix = None

    def _grow(self, m: np.ndarray, big: np.ndarray) -> None:
        """Widen each channel to cover [m, big]: width * 2^k, origin moved left by J new bins,
        old bin i going to new bin J + (i >> k)."""
        n, o, w = self.bins, self.origin, self.width
        fits = (m >= o) & (big <= o + n * w * (1 + 1e-9))
        if fits.all():
            return
        k = np.where(fits, 0, np.maximum(np.floor(np.log2((big - m) / (n * w))), 0))
        k = k.astype(np.int64)
        while True:
            wide = w * np.exp2(k)
            shift = np.where(fits, 0, np.maximum(np.ceil((o - m) / wide), 0)).astype(np.int64)
            ok = fits | (o + (n - shift) * wide >= big)
            if ok.all():
                break
            k += ~ok
        new = shift[:, None] + (np.arange(n)[None, :] >> np.minimum(k, 62)[:, None])
        new = np.minimum(new, n - 1) + n * np.arange(len(o))[:, None]
        self.counts = np.bincount(new.ravel(), weights=self.counts.ravel(),
                                  minlength=self.counts.size).reshape(self.counts.shape)
        self.origin, self.width = o - shift * wide, wide

    def quantile(self, q: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Per channel, the value with a fraction q of the count below it, interpolated
        linearly inside its bin and kept within [lo, hi]."""
        cum = np.cumsum(self.counts, axis=1)
        rank = q * cum[:, -1]
        b = np.minimum((cum < rank[:, None]).sum(axis=1), self.bins - 1)[:, None]
        here = np.take_along_axis(self.counts, b, 1)[:, 0]
        before = np.take_along_axis(cum, b, 1)[:, 0] - here
        f = np.clip((rank - before) / np.where(here > 0, here, 1.0), 0.0, 1.0)
        return np.clip(self.origin + (b[:, 0] + f) * self.width, lo, hi)

    def clip_errors(self, t: np.ndarray) -> tuple[np.ndarray, ...]:
        """For clip points t (C, K): the summed squared distance to t of the values below t,
        their count, and the same two for the values above t."""
        prefix = self._moments()
        s0, s1, s2 = self._below(t, prefix)
        t0, t1, t2 = (p[:, -1:] for p in prefix)
        tc = t - self.center[:, None]
        low = np.maximum(s2 - 2 * tc * s1 + tc**2 * s0, 0.0)
        high = np.maximum((t2 - s2) - 2 * tc * (t1 - s1) + tc**2 * (t0 - s0), 0.0)
        return low, s0, high, t0 - s0

    @property
    def center(self) -> np.ndarray:
        return self.origin + self.bins * self.width / 2

    def _moments(self) -> tuple[np.ndarray, ...]:
        """Prefix sums (C, bins + 1) of count, sum and sum of squares about `center`, each
        bin's count spread uniformly over it."""
        if self._prefix is None:
            left = (np.arange(self.bins)[None, :] - self.bins / 2) * self.width[:, None]
            right = left + self.width[:, None]
            n = self.counts
            per_bin = (n, n * (left + right) / 2, n * (left**2 + left * right + right**2) / 3)
            self._prefix = tuple(np.pad(np.cumsum(m, axis=1), ((0, 0), (1, 0)))
                                 for m in per_bin)
        return self._prefix

    def _below(self, t: np.ndarray, prefix: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        u = (t - self.origin[:, None]) / self.width[:, None]
        j = np.clip(np.floor(u), 0, self.bins - 1).astype(np.int64)
        f = np.clip(u - j, 0.0, 1.0)
        left = (j - self.bins / 2) * self.width[:, None]
        right = left + f * self.width[:, None]
        mass = np.take_along_axis(self.counts, j, 1) * f
        p0, p1, p2 = (np.take_along_axis(p, j, 1) for p in prefix)
        return (p0 + mass, p1 + mass * (left + right) / 2,
                p2 + mass * (left**2 + left * right + right**2) / 3)
