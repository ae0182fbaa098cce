"""Training curves from many families, each defect defined relative to the curve it sits on.

The shipped ``curve-quality`` model has to judge any smooth process curve, not one machine
cycle shape, so the training script (``tools/model/train.py``) draws its curves here:

* families: the simulator's machine cycle (:mod:`linewatch_dev.curves`), sums of sines, damped
  oscillations, exponential charge / decay, ramps and trapezoids with rounded or sharp
  corners, sawtooth with rounded edges, random smooth curves (Gaussian-process samples
  through random Fourier features, smoothed random walks), multi-scale rough curves with a
  power-law spectrum, and sums of two of them;
* raw lengths from :data:`RAW_MIN` to :data:`RAW_MAX`, any offset and scale, sampling
  jitter (samples taken at uneven times), white or coloured noise of its own level, and
  sometimes a quantised sensor;
* defects sized by the curve itself (``spread`` = the clean curve's standard deviation,
  ``local`` = its own noise and roughness together, see :func:`add_defect`): a ``spike`` is
  one to three impulses, one to three samples wide, 4 to 10 spreads (3.5 to 10 on the press
  cycle; and 8 to 14 local scales) high; a ``step`` is a level shift of 1.2 to 4 spreads
  (8 to 14 local scales) over one or two samples that persists to the end; ``noise`` is a
  burst over 10 to 60 % of the curve with a standard deviation of 0.25 to 0.8 spreads (0.3
  to 0.8 on the press cycle; 3.5 to 6 local scales); ``drift`` is a trend that starts
  part-way and grows to 1.5 to 4 spreads by the end (used for the press cycle, whose shape
  is known; the training script takes the machine cycle's own drift for ``curve-quality``).

A good curve is therefore anything smooth with its own steady noise; what the model must
find is what does not belong to it. numpy only: torch is not needed to make the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from linewatch_dev.curves import CURVE_KINDS, make_curve

__all__ = [
    "CURVE_SIZES",
    "FAMILIES",
    "PRESS_SIZES",
    "RAW_MAX",
    "RAW_MIN",
    "DefectSizes",
    "add_defect",
    "clean_family_curve",
    "family_curve",
    "press_cycle",
    "roughness",
]

F64 = npt.NDArray[np.float64]

RAW_MIN, RAW_MAX = 96, 640
"""Raw curve lengths drawn for training (the server resamples every curve to 256)."""


def _smoothstep(x: F64) -> F64:
    c = np.clip(x, 0.0, 1.0)
    return c * c * (3.0 - 2.0 * c)


def _sign(rng: np.random.Generator, p_positive: float = 0.5) -> float:
    return 1.0 if rng.random() < p_positive else -1.0


def _times(length: int, rng: np.random.Generator) -> F64:
    """Sample times 0..1, sometimes jittered (uneven sampling), always increasing."""
    t = np.linspace(0.0, 1.0, length)
    if rng.random() < 0.5:
        step = 1.0 / (length - 1)
        t = t + rng.uniform(-0.35, 0.35, size=length) * step * rng.uniform(0.2, 1.0)
        t = np.sort(np.clip(t, 0.0, 1.0))
    return t


def _gauss_smooth(x: F64, width: float) -> F64:
    """Gaussian smoothing with a width in samples (edges padded with the edge value)."""
    if width < 0.5:
        return x
    half = int(3 * width) + 1
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / width) ** 2)
    k /= k.sum()
    padded = np.concatenate([np.full(half, x[0]), x, np.full(half, x[-1])])
    out: F64 = np.convolve(padded, k, mode="valid")
    return out


# --------------------------------------------------------------------------- families


def _sines(t: F64, rng: np.random.Generator) -> F64:
    out = np.zeros_like(t)
    base = rng.uniform(0.3, 6.0)
    for k in range(int(rng.integers(1, 4))):
        freq = base * (k + 1) if rng.random() < 0.5 else rng.uniform(0.3, 8.0)
        amp = rng.uniform(0.2, 1.0) / (k + 1)
        out += amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return out


def _damped(t: F64, rng: np.random.Generator) -> F64:
    t0 = rng.uniform(0.0, 0.4) if rng.random() < 0.6 else 0.0
    after = np.clip(t - t0, 0.0, None)
    freq = rng.uniform(1.0, 12.0)
    tau = rng.uniform(0.05, 0.8)
    level = rng.uniform(-1.0, 1.0)
    osc = np.exp(-after / tau) * np.sin(2 * np.pi * freq * after + rng.uniform(0, np.pi))
    # Before t0 the signal rests; from t0 it settles to a new level while it rings.
    out: F64 = np.where(t >= t0, level * (1 - np.exp(-after / tau)) + osc, 0.0)
    return _gauss_smooth(out, 1.5)


def _exponential(t: F64, rng: np.random.Generator) -> F64:
    t0 = rng.uniform(0.0, 0.5)
    tau = rng.uniform(0.02, 0.5)
    after = np.clip(t - t0, 0.0, None)
    charge = 1.0 - np.exp(-after / tau)
    if rng.random() < 0.5:  # charge then discharge
        t1 = rng.uniform(t0 + 0.1, 1.0)
        tau2 = rng.uniform(0.02, 0.5)
        top = 1.0 - np.exp(-(t1 - t0) / tau)
        charge = np.where(t < t1, charge, top * np.exp(-np.clip(t - t1, 0.0, None) / tau2))
    out: F64 = charge * _sign(rng)
    return _gauss_smooth(out, float(rng.uniform(0.0, 3.0)))


def _trapezoid(t: F64, rng: np.random.Generator) -> F64:
    """Piecewise linear through 2 to 7 knots (segments at least 3 % long), rounded."""
    n = int(rng.integers(2, 8))
    knots = np.sort(rng.uniform(0.0, 1.0, size=n))
    knots = np.concatenate([[0.0], knots, [1.0]])
    gaps = np.maximum(np.diff(knots), 0.03)
    knots = np.concatenate([[0.0], np.cumsum(gaps)]) / np.sum(gaps)
    values = rng.uniform(-1.0, 1.0, size=len(knots))
    if rng.random() < 0.5:  # plateaus: hold the level on every other segment
        values[1::2] = values[0::2][: len(values[1::2])]
    out: F64 = np.interp(t, knots, values)
    # Rounded corners, or sharp ones (outlines, piecewise-linear set points).
    width = float(rng.uniform(0.8, 4.0)) if rng.random() < 0.7 else 0.0
    return _gauss_smooth(out, width * len(t) / 256)


def _sawtooth(t: F64, rng: np.random.Generator) -> F64:
    periods = rng.uniform(1.5, 8.0)
    fall = rng.uniform(0.08, 0.4)  # part of each period spent falling back
    phase = (t * periods + rng.uniform(0, 1)) % 1.0
    rise = phase / (1.0 - fall)
    out: F64 = np.where(phase < 1.0 - fall, rise, 1.0 - (phase - (1.0 - fall)) / fall)
    if rng.random() < 0.5:
        out = -out
    return _gauss_smooth(out, float(rng.uniform(1.0, 4.0)) * len(t) / 256)


def _gp(t: F64, rng: np.random.Generator) -> F64:
    """A Gaussian-process sample (squared-exponential kernel) by random Fourier features."""
    scale = float(np.exp(rng.uniform(np.log(0.02), np.log(0.5))))
    n = 96
    omega = rng.normal(0.0, 1.0 / scale, size=n)
    phase = rng.uniform(0, 2 * np.pi, size=n)
    out: F64 = np.sqrt(2.0 / n) * np.cos(np.outer(t, omega) + phase).sum(axis=1)
    return out


def _walk(t: F64, rng: np.random.Generator) -> F64:
    """A smoothed random walk: rough, trending curves such as terrain or prices."""
    steps = rng.normal(0.0, 1.0, size=len(t))
    if rng.random() < 0.5:  # heavier tails now and then, never a jump
        steps = steps * rng.uniform(0.5, 1.5, size=len(t))
    walk = np.cumsum(steps)
    return _gauss_smooth(walk, float(rng.uniform(0.8, 6.0)) * len(t) / 256)


def _fractal(t: F64, rng: np.random.Generator) -> F64:
    """A multi-scale rough curve with a power-law spectrum (terrain, turbulent flow): its
    fine structure is everywhere alike, which is what tells it from a burst of noise."""
    n = len(t)
    beta = rng.uniform(1.5, 3.5)
    k = np.arange(1, n // 2 + 1, dtype=np.float64)
    spectrum = np.zeros(n // 2 + 1, dtype=np.complex128)
    spectrum[1:] = k ** (-beta / 2) * np.exp(2j * np.pi * rng.uniform(0, 1, size=len(k)))
    spectrum[1:] *= rng.rayleigh(1.0, size=len(k))
    # Synthesised on twice the length and cut, so the curve is not periodic.
    long = np.fft.irfft(np.concatenate([spectrum, np.zeros(n // 2 + 1)]), n=2 * n)
    start = int(rng.integers(0, n))
    out: F64 = long[start : start + n]
    if rng.random() < 0.6:
        # Intermittent roughness: the fine structure is stronger in some stretches (a rocky
        # slope, a turbulent spell), so sample-to-sample changes are heavy-tailed.
        coarse = _gauss_smooth(out, 3.0 * n / 256)
        envelope = np.exp(rng.uniform(0.3, 1.2) * _gp(t, rng))
        out = coarse + (out - coarse) * envelope
    return out


def _cycle(t: F64, rng: np.random.Generator) -> F64:
    """The simulator's machine cycle (its own small process noise included)."""
    return make_curve("ok", length=len(t), rng=rng)


FAMILIES: dict[str, Callable[[F64, np.random.Generator], F64]] = {
    "cycle": _cycle,
    "sines": _sines,
    "damped": _damped,
    "exponential": _exponential,
    "trapezoid": _trapezoid,
    "sawtooth": _sawtooth,
    "gp": _gp,
    "walk": _walk,
    "fractal": _fractal,
}
"""The clean curve families, by name."""


def clean_family_curve(length: int, rng: np.random.Generator) -> tuple[F64, float]:
    """One clean curve of a random family (or a sum of two) and its noise level to add.

    The curve is scaled and offset at random; the noise level is relative to its spread.
    """
    names = list(FAMILIES)
    t = _times(length, rng)
    name = names[int(rng.integers(0, len(names)))]
    x = FAMILIES[name](t, rng)
    x = x / max(float(x.std()), 1e-9)
    if rng.random() < 0.35:  # a second family on top, smaller
        other = names[int(rng.integers(1, len(names)))]
        y = FAMILIES[other](t, rng)
        x = x + rng.uniform(0.05, 0.5) * y / max(float(y.std()), 1e-9)
    if rng.random() < 0.3:  # a trend of its own (a clean curve may well slope)
        x = x + rng.uniform(-2.0, 2.0) * t
    x = x / max(float(x.std()), 1e-9)
    # Noise level relative to the spread: log-uniform, from a very clean sensor to a rough one.
    noise = float(np.exp(rng.uniform(np.log(0.002), np.log(0.1))))
    scale = float(np.exp(rng.uniform(np.log(0.01), np.log(1000.0))))
    offset = float(rng.uniform(-5.0, 5.0)) * scale * float(rng.uniform(0, 10))
    return offset + scale * x, noise * scale


def _noise(length: int, sigma: float, rng: np.random.Generator) -> F64:
    """White or coloured (smoothed, then rescaled) noise of standard deviation ``sigma``."""
    e = rng.normal(0.0, 1.0, size=length)
    if rng.random() < 0.3:
        e = _gauss_smooth(e, float(rng.uniform(0.6, 2.0)))
        e = e / max(float(e.std()), 1e-9)
    noise: F64 = sigma * e
    return noise


def roughness(x: F64) -> float:
    """The sample-to-sample variation of a curve: std of its first difference / sqrt(2)."""
    return float(np.diff(x).std() / np.sqrt(2.0))


@dataclass(frozen=True)
class DefectSizes:
    """The smallest and largest spike height and noise-burst deviation, in spreads."""

    spike: tuple[float, float] = (3.5, 10.0)
    noise: tuple[float, float] = (0.3, 0.8)


PRESS_SIZES = DefectSizes()
"""The press cycle's defects (its example model was trained with these)."""
CURVE_SIZES = DefectSizes(spike=(4.0, 10.0), noise=(0.25, 0.8))
"""curve-quality's defects: no spike under 4 spreads (a recorded curve's own sharp corner
or tracking glitch of 3 to 4 spreads is not taught as a defect), and noise bursts down to a
quarter spread (a smooth curve's faint burst is)."""


def add_defect(
    kind: str,
    x: F64,
    spread: float,
    noise: float,
    rng: np.random.Generator,
    *,
    sizes: DefectSizes = PRESS_SIZES,
) -> F64:
    """``x`` with one defect of ``kind``, sized by the curve itself.

    ``spread`` is the clean curve's standard deviation, ``noise`` its own noise level; with
    its roughness (:func:`roughness`) that gives the local scale, ``sqrt(noise² + rough²)``.
    Every defect is at least a given number of spreads *and* of local scales, so it stands
    out of the curve it sits on whatever the curve's shape.
    """
    n = len(x)
    idx = np.arange(n, dtype=np.float64)
    local = float(np.hypot(noise, roughness(x)))
    out = x.copy()
    if kind == "spike":
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(int(0.02 * n), int(0.98 * n)))
            half = 0 if rng.random() < 0.6 else int(rng.integers(1, 3))
            height = max(spread * rng.uniform(*sizes.spike), local * rng.uniform(8.0, 14.0))
            out += (
                height * _sign(rng, 0.7) * np.clip(1.0 - np.abs(idx - at) / (half + 1.0), 0, None)
            )
    elif kind == "step":
        at = int(rng.integers(int(0.1 * n), int(0.9 * n)))
        shift = max(spread * rng.uniform(1.2, 4.0), local * rng.uniform(8.0, 14.0)) * _sign(rng)
        edge = int(rng.integers(0, 2))
        out += shift * np.clip((idx - at + 1) / (edge + 1.0), 0.0, 1.0)
    elif kind == "noise":
        width = int(n * rng.uniform(0.1, 0.6))
        start = int(rng.integers(0, n - width + 1))
        sigma = max(spread * rng.uniform(*sizes.noise), local * rng.uniform(3.5, 6.0))
        out[start : start + width] += rng.normal(0.0, sigma, size=width)
    elif kind == "drift":
        begin = float(rng.uniform(0.0, 0.6))
        u = np.clip((idx / (n - 1) - begin) / (1.0 - begin), 0.0, None)
        out += spread * rng.uniform(1.5, 4.0) * _sign(rng) * u ** rng.uniform(0.8, 1.8)
    elif kind != "ok":
        raise ValueError(f"unknown curve kind {kind!r}; expected one of {CURVE_KINDS}")
    return out


def _quantise(x: F64, spread: float, rng: np.random.Generator) -> F64:
    if rng.random() < 0.15:
        q = spread * rng.uniform(0.003, 0.03)
        out: F64 = np.round(x / q) * q
        return out
    return x


def family_curve(kind: str, length: int, rng: np.random.Generator) -> F64:
    """One training curve of ``kind`` (a label of :data:`CURVE_KINDS`) from any family."""
    x, noise = clean_family_curve(length, rng)
    spread = float(x.std())
    x = add_defect(kind, x, spread, noise, rng, sizes=CURVE_SIZES)
    return _quantise(x + _noise(length, noise, rng), spread, rng)


# --------------------------------------------------------------------------- press cycle


def press_cycle(kind: str, length: int, rng: np.random.Generator) -> F64:
    """One press-fit cycle, ``[2, length]``: hydraulic pressure (bar) and press force (kN).

    Approach (pressure at its idle level, no force), contact at ``t_contact``, press-in
    (force grows progressively with friction ripple; pressure follows it), end block (force
    and pressure rise steeply to their peak), hold, release. A defect of ``kind`` sits on one
    channel, sized by that channel's spread and noise; ``drift`` is a pressure-sensor drift.
    """
    t = _times(length, rng)
    contact = rng.uniform(0.12, 0.3)
    block = rng.uniform(0.55, 0.75)
    release = rng.uniform(block + 0.08, 0.92)
    press = np.clip((t - contact) / (block - contact), 0.0, 1.0)
    f_max = rng.uniform(8.0, 40.0)
    gamma = rng.uniform(0.8, 1.8)
    ripple = rng.uniform(0.0, 0.05) * np.sin(2 * np.pi * rng.uniform(4, 15) * press)
    force = f_max * (0.6 * press**gamma + ripple * (press > 0))
    peak = f_max * rng.uniform(1.1, 1.6)
    rise = _smoothstep((t - block) / rng.uniform(0.02, 0.06))
    force = force + (peak - force) * rise
    force = force * (1.0 - _smoothstep((t - release) / rng.uniform(0.03, 0.08)))
    force = _gauss_smooth(force, 1.0 * length / 256)
    idle = rng.uniform(2.0, 10.0)
    approach = _smoothstep(t / max(contact, 1e-3)) * rng.uniform(5.0, 20.0)
    pressure = idle + approach + force * rng.uniform(3.0, 8.0)
    pressure = idle + (pressure - idle) * (1.0 - _smoothstep((t - release) / 0.05))
    channels = np.stack([pressure, force])
    noises = [
        float(c.std()) * float(np.exp(rng.uniform(np.log(0.003), np.log(0.03)))) for c in channels
    ]
    if kind != "ok":
        ch = 0 if kind == "drift" or rng.random() < 0.5 else 1
        channels[ch] = add_defect(kind, channels[ch], float(channels[ch].std()), noises[ch], rng)
    out: F64 = np.stack([c + _noise(length, s, rng) for c, s in zip(channels, noises, strict=True)])
    return out
