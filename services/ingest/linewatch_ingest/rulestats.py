"""A rule's counters and rates (for ``GetIngestStatus``)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Counters", "RateMeter"]


class RateMeter:
    """Events per second over the last ``window`` seconds (1-second buckets)."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self._buckets: deque[list[float]] = deque()

    def add(self, n: int = 1) -> None:
        """Count ``n`` events now."""
        sec = float(int(time.monotonic()))
        if self._buckets and self._buckets[-1][0] == sec:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([sec, float(n)])
            while len(self._buckets) > self.window + 1:
                self._buckets.popleft()

    def rate(self) -> float:
        """The mean rate over the window (the current, partial second included)."""
        now = time.monotonic()
        total = sum(n for sec, n in self._buckets if now - sec <= self.window)
        return total / self.window


@dataclass
class Counters:
    """What one rule counted since it started."""

    received: int = 0
    verdicts: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    """Redeliveries: (device_id, msg_id, ts) equal to a message handled before."""
    dropped: int = 0
    """QoS 0 messages dropped because queue_size were already waiting."""
    in_rate: RateMeter = field(default_factory=RateMeter)
    out_rate: RateMeter = field(default_factory=RateMeter)
    lag_ms: float = 0.0
