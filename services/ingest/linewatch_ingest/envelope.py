"""The built-in ``envelope`` model: a reference band taught from a machine's own good cycles.

Per (rule, device, point) the first ``teach_in`` curves are resampled to ``length``
samples and kept; then a band is fitted:

1. the taught curves are aligned to their per-sample median for small timing shifts
   (the lag, within ``max_shift`` of the cycle, that minimises the squared distance —
   cross-correlation against the reference);
2. the centre is the per-sample median of the aligned curves, the spread the per-sample
   MAD (x 1.4826, a standard deviation for Gaussian noise), widened to the largest
   spread within the shift window (so a steep edge that moves a little stays inside),
   with a floor so flat stretches get no zero-width band;
3. the band is ``centre ± width x spread``.

After teach-in a curve is resampled, aligned to the band (the same lag search) and is
``out_of_envelope`` when any sample leaves it; the verdict names the stretch that left
(first and last sample index, in the curve's own samples) and the largest deviation in
band widths (1.0 = on the band's edge).

Everything is numpy over the whole batch: curves of one length are resampled together,
curves of one band are aligned with one matrix product; Python loops run over lengths
and bands in the batch, never over curves or samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAD_SCALE",
    "Band",
    "BandBank",
    "EnvelopeParams",
    "EnvelopeResult",
    "EnvelopeState",
    "fit_band",
    "resample_batch",
    "score_bands",
    "score_batch",
]

MAD_SCALE = 1.4826
"""MAD x this is the standard deviation of Gaussian noise."""

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class EnvelopeParams:
    """The parameters of an envelope rule (validated by the rule's config)."""

    teach_in: int = 50
    width: float = 4.0
    length: int = 256
    max_shift: float = 0.03

    @property
    def shift(self) -> int:
        """The largest lag searched, in resampled samples."""
        return round(self.max_shift * (self.length - 1))


@dataclass(slots=True)
class Band:
    """A fitted band, with its copies shifted by every lag searched (for alignment)."""

    centre: F32
    spread: F32
    width: float
    shift: int
    _centres: F32 = field(init=False, repr=False)
    _halves: F32 = field(init=False, repr=False)
    _norms: F32 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        length = len(self.centre)
        lags = np.arange(-self.shift, self.shift + 1)
        # row k: the reference delayed by lag k (sample j shows centre[j - lag])
        index = np.clip(np.arange(length)[None, :] - lags[:, None], 0, length - 1)
        self._centres = np.ascontiguousarray(self.centre[index])
        self._halves = np.ascontiguousarray((self.width * self.spread)[index])
        self._norms = np.einsum("ij,ij->i", self._centres, self._centres)

    @property
    def lower(self) -> F32:
        """The band's lower edge."""
        out: F32 = (self.centre - self.width * self.spread).astype(np.float32)
        return out

    @property
    def upper(self) -> F32:
        """The band's upper edge."""
        out: F32 = (self.centre + self.width * self.spread).astype(np.float32)
        return out

    def lags(self, x: F32) -> npt.NDArray[np.intp]:
        """Per curve (rows of ``x``) the index of the best lag (``shift`` = none)."""
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2: the first term is the same for every lag
        cost = self._norms[None, :] - 2.0 * (x @ self._centres.T)
        lag: npt.NDArray[np.intp] = cost.argmin(axis=1)
        return lag

    def deviation(self, x: F32) -> F32:
        """Per sample the distance from the aligned centre, in band widths."""
        lag = self.lags(x)
        dev: F32 = np.abs(x - self._centres[lag]) / self._halves[lag]
        return dev


@dataclass(slots=True)
class EnvelopeState:
    """One (rule, device, point): the curves taught so far, then the band."""

    params: EnvelopeParams
    taught: F32 = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    band: Band | None = None

    @property
    def learned(self) -> int:
        """Curves taught so far (``teach_in`` once the band is fitted)."""
        return self.params.teach_in if self.band is not None else len(self.taught)

    def teach(self, curves: F32) -> int:
        """Take up to what teach-in still needs of ``curves`` (resampled rows); returns
        how many were taken. Fits the band once ``teach_in`` are there."""
        need = self.params.teach_in - len(self.taught)
        taken = curves[: max(need, 0)]
        if len(taken):
            self.taught = np.concatenate([self.taught, taken]) if len(self.taught) else taken.copy()
        if self.band is None and len(self.taught) >= self.params.teach_in:
            self.band = fit_band(self.taught, self.params)
            self.taught = np.zeros((0, 0), np.float32)
        return len(taken)


@lru_cache(maxsize=256)
def _interp(n: int, length: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], F32]:
    pos = np.linspace(0.0, n - 1.0, length)
    lo = np.minimum(np.floor(pos).astype(np.intp), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def resample_batch(curves: Sequence[F32], length: int) -> F32:
    """Curves of any lengths linearly resampled to ``length`` samples, as rows (float32).

    One vectorised interpolation per distinct length in the batch.
    """
    out = np.empty((len(curves), length), np.float32)
    lengths = np.fromiter((len(c) for c in curves), np.intp, len(curves))
    for n in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == n)
        x = np.stack([curves[i] for i in rows.tolist()]).astype(np.float32, copy=False)
        if n == 1:
            out[rows] = x[:, :1]
        elif n == length:
            out[rows] = x
        else:
            lo, hi, w = _interp(n, length)
            out[rows] = x[:, lo] + (x[:, hi] - x[:, lo]) * w
    return out


def _align(curves: F32, reference: F32, shift: int) -> F32:
    """``curves`` shifted (edges held) to best match ``reference``."""
    if shift == 0:
        return curves
    band = Band(reference, np.ones_like(reference), 1.0, shift)
    lag = band.lags(curves) - shift  # the curve is delayed by ``lag`` samples
    length = curves.shape[1]
    index = np.clip(np.arange(length)[None, :] + lag[:, None], 0, length - 1)
    out: F32 = np.take_along_axis(curves, index, axis=1)
    return out


def _window_max(x: F32, half: int) -> F32:
    if half == 0:
        return x
    padded = np.pad(x, half, mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    out: F32 = view.max(axis=1)
    return out


def fit_band(taught: F32, params: EnvelopeParams) -> Band:
    """The band of the taught curves (rows, already resampled to ``params.length``)."""
    taught = np.asarray(taught, np.float32)
    shift = params.shift
    centre = np.median(taught, axis=0)
    aligned = taught
    for _ in range(2):  # align to the median, then to the median of the aligned curves
        aligned = _align(taught, centre.astype(np.float32), shift)
        centre = np.median(aligned, axis=0)
    spread = MAD_SCALE * np.median(np.abs(aligned - centre), axis=0)
    spread = _window_max(spread.astype(np.float32), 2)
    scale = float(np.ptp(centre))
    floor = max(
        0.5 * float(np.median(spread)), 0.002 * scale, 1e-6 * (1.0 + float(np.abs(centre).max()))
    )
    spread = np.maximum(spread, floor)
    return Band(centre.astype(np.float32), spread.astype(np.float32), params.width, shift)


@dataclass(frozen=True, slots=True)
class EnvelopeResult:
    """Per curve of a batch scored against bands."""

    ok: npt.NDArray[np.bool_]
    max_deviation: F32
    first: npt.NDArray[np.intp]
    """First sample outside the band, in the curve's own samples (-1: none)."""
    last: npt.NDArray[np.intp]


def score_batch(resampled: F32, band: Band, lengths: npt.NDArray[np.intp]) -> EnvelopeResult:
    """Judge resampled curves (rows) against one band; ``lengths`` are their raw lengths."""
    return _result(band.deviation(resampled), lengths)


class BandBank:
    """Several bands stacked (their shifted copies too), to judge a batch whose curves
    come from many devices in one vectorised step, however many bands."""

    def __init__(self, bands: Sequence[Band]) -> None:
        self.bands = list(bands)
        self._centres = np.stack([b._centres for b in bands])  # [bands, lags, length]
        self._halves = np.stack([b._halves for b in bands])
        self._norms = np.stack([b._norms for b in bands])

    def score(
        self, resampled: F32, which: npt.NDArray[np.intp], lengths: npt.NDArray[np.intp]
    ) -> EnvelopeResult:
        """Judge resampled curves (rows), row ``i`` against band ``which[i]``."""
        first = int(which[0]) if len(which) else 0
        if (which == first).all():  # one band: one matrix product
            return score_batch(resampled, self.bands[first], lengths)
        centres = self._centres[which]  # [n, lags, length]
        cost = self._norms[which] - 2.0 * np.einsum("nl,nkl->nk", resampled, centres)
        lag = cost.argmin(axis=1)
        rows = np.arange(len(resampled))
        dev: F32 = np.abs(resampled - centres[rows, lag]) / self._halves[which, lag]
        return _result(dev, lengths)


def score_bands(
    resampled: F32,
    bands: Sequence[Band],
    which: npt.NDArray[np.intp],
    lengths: npt.NDArray[np.intp],
) -> EnvelopeResult:
    """Judge resampled curves (rows) each against its own band, ``bands[which[i]]``."""
    return BandBank(bands).score(resampled, which, lengths)


def _result(dev: F32, lengths: npt.NDArray[np.intp]) -> EnvelopeResult:
    outside = dev > 1.0
    any_out: npt.NDArray[np.bool_] = np.asarray(outside.any(axis=1))
    length = dev.shape[1]
    first = np.where(any_out, outside.argmax(axis=1), -1)
    last = np.where(any_out, length - 1 - outside[:, ::-1].argmax(axis=1), -1)
    # resampled index j is raw sample j * (n - 1) / (length - 1)
    factor = (lengths - 1) / max(length - 1, 1)
    first = np.where(any_out, np.rint(first * factor).astype(np.intp), -1)
    last = np.where(any_out, np.rint(last * factor).astype(np.intp), -1)
    return EnvelopeResult(~any_out, dev.max(axis=1), first, last)
