"""The quality gate's statistics: has a device's not-ok rate risen after its update?

Two methods, both one-sided (only a rise counts):

- ``z_test``: the two-proportion z test. With ``k1/n1`` not ok before and ``k2/n2`` after,
  the pooled rate ``p = (k1 + k2) / (n1 + n2)`` and
  ``z = (k2/n2 - k1/n1) / sqrt(p (1 - p) (1/n1 + 1/n2))``; a regression when ``z`` exceeds
  the standard normal quantile at the confidence (1.645 at 0.95).
- ``beta_binomial``: uniform priors give the posteriors ``Beta(1 + k, 1 + n - k)`` of
  both rates; a regression when ``P(rate after > rate before)`` exceeds the confidence
  (estimated from a fixed-seed sample of both posteriors, so a verdict is reproducible).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import NormalDist

from linewatch.runtime.errors import InvalidArgument

__all__ = ["METHODS", "Gate", "Judgement", "judge", "reason"]

METHODS = ("z_test", "beta_binomial")
_SAMPLES = 4000


@dataclass(frozen=True, slots=True)
class Gate:
    """The gate of a rollout (``cycles`` 0: none)."""

    cycles: int = 0
    confidence: float = 0.95
    method: str = "z_test"
    max_wait_s: int = 600

    def validate(self) -> Gate:
        if not 0 <= self.cycles <= 100_000:
            raise InvalidArgument("gate.cycles: must be within 0..100000")
        if not 0.5 <= self.confidence <= 0.9999:
            raise InvalidArgument(f"gate.confidence {self.confidence}: must be within 0.5..0.9999")
        if self.method not in METHODS:
            raise InvalidArgument(f"gate.method {self.method!r}: one of {', '.join(METHODS)}")
        if not 0 <= self.max_wait_s <= 7 * 86400:
            raise InvalidArgument("gate.max_wait_s: must be within 0..604800")
        return self


@dataclass(frozen=True, slots=True)
class Judgement:
    """One device's comparison."""

    device_id: str
    before_total: int
    before_not_ok: int
    after_total: int
    after_not_ok: int
    statistic: float
    regressed: bool
    note: str = ""

    @property
    def before_rate(self) -> float:
        return self.before_not_ok / self.before_total if self.before_total else 0.0

    @property
    def after_rate(self) -> float:
        return self.after_not_ok / self.after_total if self.after_total else 0.0


def _z(k1: int, n1: int, k2: int, n2: int) -> float:
    p = (k1 + k2) / (n1 + n2)
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return (k2 / n2 - k1 / n1) / math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))


def _p_worse(k1: int, n1: int, k2: int, n2: int, seed: str) -> float:
    rng = random.Random(seed)
    worse = sum(
        rng.betavariate(1 + k2, 1 + n2 - k2) > rng.betavariate(1 + k1, 1 + n1 - k1)
        for _ in range(_SAMPLES)
    )
    return worse / _SAMPLES


def judge(gate: Gate, device_id: str, before: tuple[int, int], after: tuple[int, int]) -> Judgement:
    """Compare ``(total, not_ok)`` before and after a device's update."""
    (n1, k1), (n2, k2) = before, after
    if n1 == 0 or n2 == 0:
        note = "no cycles before the update" if n1 == 0 else "no cycles after the update"
        return Judgement(device_id, n1, k1, n2, k2, 0.0, False, note)
    if gate.method == "beta_binomial":
        stat = _p_worse(k1, n1, k2, n2, device_id)
        regressed = stat > gate.confidence
    else:
        stat = _z(k1, n1, k2, n2)
        regressed = stat > NormalDist().inv_cdf(gate.confidence)
    return Judgement(device_id, n1, k1, n2, k2, round(stat, 4), regressed)


def reason(judgement: Judgement, version: str) -> str:
    """``press-07: 3.1 % → 9.8 % not ok after 1.3.0``."""
    return (
        f"{judgement.device_id}: {judgement.before_rate * 100:.1f} % → "
        f"{judgement.after_rate * 100:.1f} % not ok after {version}"
    )
