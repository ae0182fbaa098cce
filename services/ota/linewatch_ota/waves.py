"""Splitting a rollout's devices into ordered waves (counts, percentages, the rest)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from linewatch.runtime.errors import InvalidArgument

__all__ = ["MAX_SOAK_S", "MAX_WAVES", "Wave", "split"]

MAX_WAVES = 20
MAX_SOAK_S = 30 * 86400


@dataclass(frozen=True, slots=True)
class Wave:
    """One wave as asked: ``count`` devices, else ``percent`` of all, else the rest."""

    count: int = 0
    percent: float = 0.0
    error_threshold: float | None = None
    soak_s: int = 0

    def validate(self, index: int) -> None:
        if self.count < 0:
            raise InvalidArgument(f"waves[{index}].count: must not be negative")
        if not 0.0 <= self.percent <= 100.0:
            raise InvalidArgument(f"waves[{index}].percent {self.percent}: must be within 0..100")
        if self.error_threshold is not None and not 0.0 <= self.error_threshold <= 1.0:
            raise InvalidArgument(
                f"waves[{index}].error_threshold {self.error_threshold}: must be within 0..1"
            )
        if not 0 <= self.soak_s <= MAX_SOAK_S:
            raise InvalidArgument(f"waves[{index}].soak_s: must be within 0..{MAX_SOAK_S}")


def split(devices: list[str], waves: list[Wave]) -> list[list[str]]:
    """The devices of each wave, in order; the last wave takes every device left.

    A wave that would be empty (the devices ran out) is dropped; a wave of "the rest"
    before the last is refused.

    Raises:
        InvalidArgument: too many waves, bad sizes, "the rest" before the last wave.
    """
    if not waves:
        return [list(devices)]
    if len(waves) > MAX_WAVES:
        raise InvalidArgument(f"at most {MAX_WAVES} waves")
    for i, wave in enumerate(waves):
        wave.validate(i)
        if i < len(waves) - 1 and wave.count == 0 and wave.percent == 0.0:
            raise InvalidArgument(f"waves[{i}]: only the last wave may be 'the rest'")
    out: list[list[str]] = []
    at = 0
    for i, wave in enumerate(waves):
        if i == len(waves) - 1:
            size = len(devices) - at
        elif wave.count:
            size = wave.count
        else:
            size = math.ceil(len(devices) * wave.percent / 100.0)
        size = max(0, min(size, len(devices) - at))
        out.append(devices[at : at + size])
        at += size
    return out
