"""A press-fit cycle family the shipped model never saw, for the envelope's tests and bench.

One machine's cycle: approach at a rest level, force build-up (an exponential approach
to the press-in force, with a slow ripple), hold, and a fast release. Between cycles the
force varies by ±2 %, the timing by ±0.5 % of the cycle and the length by 240..300
samples; the sensor noise is 0.4 % of the force. Defects are relative to the cycle:

* ``spike`` -- a two-sample impulse of 8-20 % of the press force;
* ``step`` -- a level shift of 5-12 % of the force from part-way to the end;
* ``drift`` -- a linear trend reaching 5-12 % of the force at the end;
* ``noise`` -- 4-8 times the usual noise.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["PRESS_KINDS", "press_cycle"]

PRESS_KINDS: tuple[str, ...] = ("ok", "spike", "step", "drift", "noise")


def press_cycle(
    kind: str, rng: np.random.Generator, *, length: int | None = None
) -> npt.NDArray[np.float32]:
    """One press-fit cycle of ``kind`` (one of :data:`PRESS_KINDS`).

    Raises:
        ValueError: an unknown kind.
    """
    if kind not in PRESS_KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {PRESS_KINDS}")
    n = length or int(rng.integers(240, 301))
    t = np.linspace(0.0, 1.0, n) + rng.normal(0.0, 0.005)
    force = 800.0 * rng.uniform(0.98, 1.02)
    build = np.where(t < 0.2, 0.0, 1.0 - np.exp(-np.clip(t - 0.2, 0.0, None) / 0.12))
    held = 1.0 - np.exp(-0.6 / 0.12)
    release = held * np.exp(-np.clip(t - 0.8, 0.0, None) / 0.03)
    y = 20.0 + force * np.where(t < 0.8, build, release)
    y = y + 5.0 * np.sin(2.0 * np.pi * 3.0 * t) * (t > 0.2)
    sigma = 3.0
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if kind == "spike":
        at = int(rng.integers(int(0.05 * n), int(0.95 * n)))
        y[at : at + 2] += force * rng.uniform(0.08, 0.2) * sign
    elif kind == "step":
        at = int(rng.uniform(0.4, 0.7) * n)
        y[at:] += force * rng.uniform(0.05, 0.12) * sign
    elif kind == "drift":
        y = y + force * rng.uniform(0.05, 0.12) * sign * np.linspace(0.0, 1.0, n)
    elif kind == "noise":
        sigma *= rng.uniform(4.0, 8.0)
    out: npt.NDArray[np.float32] = (y + rng.normal(0.0, sigma, n)).astype(np.float32)
    return out
