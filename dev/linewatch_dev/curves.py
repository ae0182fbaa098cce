"""Synthetic machine-cycle process curves (dev and training tooling, not shipped).

One generator serves both the training script (``tools/model/train.py``) and the live
simulator (``linewatch simulate``), so the model is trained on exactly what the simulated
line publishes. A curve is one machine cycle of a pressure / temperature / torque signal:
an idle baseline, a smooth ramp up, a plateau held with small process noise (a little
overshoot and ripple from the controller), a ramp down, and the idle baseline again.
Amplitude, offset, timing and noise are drawn afresh for every curve.

Defect kinds (``CURVE_KINDS[1:]``) are applied on top of such a cycle:

* ``spike`` -- one to three short, narrow impulses (a few samples wide).
* ``drift`` -- a slow trend over the whole cycle (sensor or process drift).
* ``noise`` -- markedly higher noise (a loose connector, a failing sensor).
* ``step`` -- a level shift part-way through the cycle that persists to the end.

The model's input transformation (:func:`preprocess`, :func:`resample`) ships in
:mod:`linewatch.model_input`; it is re-exported here for the training script and the
tests. numpy only: nothing here needs torch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from linewatch.model_input import preprocess, resample

__all__ = ["CURVE_KINDS", "MIN_LENGTH", "make_batch", "make_curve", "preprocess", "resample"]

CURVE_KINDS: tuple[str, ...] = ("ok", "spike", "drift", "noise", "step")
"""Curve kinds, in the model's label order; ``"ok"`` is first, the rest are defects."""

MIN_LENGTH = 8
"""The shortest curve :func:`make_curve` produces."""


def _smoothstep(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Cubic smoothstep of ``x`` clipped to [0, 1] (0 → 0, 1 → 1, flat at both ends)."""
    c = np.clip(x, 0.0, 1.0)
    return c * c * (3.0 - 2.0 * c)


def _sign(rng: np.random.Generator, p_positive: float = 0.5) -> float:
    """+1.0 with probability ``p_positive``, else -1.0."""
    return 1.0 if rng.random() < p_positive else -1.0


class _Cycle(NamedTuple):
    """A defect-free cycle before noise is added."""

    t: npt.NDArray[np.float64]
    """Normalised time of each sample, 0 to 1."""
    curve: npt.NDArray[np.float64]
    amplitude: float
    noise_sigma: float
    """Process noise level (standard deviation) to add."""
    plateau_start: float
    """Normalised time the ramp up ends."""
    plateau_end: float
    """Normalised time the ramp down begins."""


def _cycle(length: int, rng: np.random.Generator) -> _Cycle:
    """One defect-free cycle without noise, with random amplitude, offset and timing."""
    t = np.linspace(0.0, 1.0, length)
    amplitude = float(rng.uniform(40.0, 160.0))
    offset = float(rng.uniform(-10.0, 25.0))
    start = float(rng.uniform(0.04, 0.16))
    rise = float(rng.uniform(0.08, 0.20))
    hold = float(rng.uniform(0.35, 0.55))
    fall = float(rng.uniform(0.08, 0.18))
    up_end = start + rise
    down_start = up_end + hold
    down_end = min(down_start + fall, 0.97)

    ramp_up = _smoothstep((t - start) / rise)
    shape = ramp_up - _smoothstep((t - down_start) / (down_end - down_start))
    # Controller behaviour on the plateau: a small damped overshoot after the ramp and a
    # slow, shallow ripple.  Both stay well below the defect magnitudes.
    overshoot = float(rng.uniform(0.0, 0.04))
    tau = float(rng.uniform(0.02, 0.05))
    after = np.clip(t - up_end, 0.0, None)
    shape = shape + overshoot * np.exp(-after / tau) * (t >= up_end) * (t < down_start)
    ripple_amp = float(rng.uniform(0.0, 0.01))
    ripple_freq = float(rng.uniform(2.0, 6.0))
    ripple_phase = float(rng.uniform(0.0, 2.0 * np.pi))
    plateau = ramp_up * (t < down_start)
    shape = shape + ripple_amp * np.sin(2.0 * np.pi * ripple_freq * t + ripple_phase) * plateau

    curve = offset + amplitude * shape
    noise_sigma = amplitude * float(rng.uniform(0.003, 0.010))
    return _Cycle(t, curve, amplitude, noise_sigma, up_end, down_start)


def _pulse(length: int, centre: int, half_width: int) -> npt.NDArray[np.float64]:
    """A triangular pulse of height 1 centred on sample ``centre``."""
    idx = np.arange(length, dtype=np.float64)
    return np.clip(1.0 - np.abs(idx - centre) / (half_width + 1.0), 0.0, None)


def make_curve(kind: str, *, length: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Generate one synthetic machine-cycle curve.

    Args:
        kind: One of :data:`CURVE_KINDS`; ``"ok"`` for a good cycle, otherwise the defect
            to apply.
        length: Number of samples (at least :data:`MIN_LENGTH`).
        rng: Source of randomness; the same generator state gives the same curve.

    Returns:
        A float64 array of ``length`` samples.

    Raises:
        ValueError: ``kind`` is unknown or ``length`` is below :data:`MIN_LENGTH`.
    """
    if kind not in CURVE_KINDS:
        raise ValueError(f"unknown curve kind {kind!r}; expected one of {CURVE_KINDS}")
    if length < MIN_LENGTH:
        raise ValueError(f"curve length must be at least {MIN_LENGTH}, got {length}")

    t, curve, amplitude, sigma, plateau_start, plateau_end = _cycle(length, rng)

    if kind == "spike":
        # 1-3 impulses, each a few samples wide (about 0.5-1.5 % of the cycle, at least
        # 3 samples so a later downsample keeps them), mostly upwards.
        for _ in range(int(rng.integers(1, 4))):
            centre = int(rng.integers(int(0.05 * length), max(int(0.95 * length), 1)))
            half_width = max(1, round(float(rng.uniform(0.002, 0.006)) * length))
            height = amplitude * float(rng.uniform(0.25, 0.7)) * _sign(rng, 0.8)
            curve = curve + height * _pulse(length, centre, half_width)
    elif kind == "drift":
        # A slow trend over the cycle: linear or slightly curved, either direction.
        magnitude = amplitude * float(rng.uniform(0.18, 0.40)) * _sign(rng)
        power = float(rng.uniform(0.8, 1.6))
        curve = curve + magnitude * t**power
    elif kind == "noise":
        sigma = amplitude * float(rng.uniform(0.035, 0.09))
    elif kind == "step":
        # A level shift while the plateau is held, persisting to the end of the cycle
        # (the ramp down and the idle level after it), over one or two samples.
        margin = 0.1 * (plateau_end - plateau_start)
        at = float(rng.uniform(plateau_start + margin, plateau_end - margin))
        shift = amplitude * float(rng.uniform(0.15, 0.40)) * _sign(rng)
        edge = max(1.0 / (length - 1), float(rng.uniform(0.0, 0.004)))
        curve = curve + shift * _smoothstep((t - at) / edge)

    noisy: npt.NDArray[np.float64] = curve + rng.normal(0.0, sigma, size=length)
    return noisy


def make_batch(
    n: int, *, length: int, rng: np.random.Generator, defect_rate: float = 0.5
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Generate ``n`` curves of one length with their labels.

    Each curve is ``"ok"`` with probability ``1 - defect_rate``; otherwise its defect is
    drawn uniformly from ``CURVE_KINDS[1:]``.

    Args:
        n: Number of curves (0 or more).
        length: Samples per curve (at least :data:`MIN_LENGTH`).
        rng: Source of randomness.
        defect_rate: Probability in [0, 1] that a curve carries a defect.

    Returns:
        ``(curves, labels)``: curves as float32 ``[n, length]`` and label indices into
        :data:`CURVE_KINDS` as int64 ``[n]``.

    Raises:
        ValueError: ``n`` is negative, ``defect_rate`` is outside [0, 1] or ``length`` is
            too short.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if not 0.0 <= defect_rate <= 1.0:
        raise ValueError(f"defect_rate must be in [0, 1], got {defect_rate}")
    if length < MIN_LENGTH:
        raise ValueError(f"curve length must be at least {MIN_LENGTH}, got {length}")
    curves = np.empty((n, length), dtype=np.float32)
    labels = np.zeros(n, dtype=np.int64)
    n_defects = len(CURVE_KINDS) - 1
    for i in range(n):
        if rng.random() < defect_rate:
            labels[i] = 1 + int(rng.integers(0, n_defects))
        curves[i] = make_curve(CURVE_KINDS[labels[i]], length=length, rng=rng)
    return curves, labels
