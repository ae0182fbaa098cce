"""Retry with capped exponential backoff: the one helper every service waits out a
failing database, broker or peer with.

``await retry(fn, stage="archive")`` runs ``fn`` until it returns; any exception counts
(drivers raise their own types), only cancellation stops it. ``on_error`` hears about
each failure (for a status line or a metric) before the wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Backoff", "retry"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Backoff:
    """Delays that double from ``initial`` up to ``cap`` (with up to ``jitter`` of each
    taken off at random, so many waiters do not retry in step)."""

    def __init__(self, initial: float = 0.05, cap: float = 2.0, *, jitter: float = 0.0) -> None:
        if initial <= 0 or cap < initial or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial <= cap and 0 <= jitter < 1")
        self.initial = initial
        self.cap = cap
        self.jitter = jitter
        self._next = initial

    def next(self) -> float:
        """The next delay (and double the one after)."""
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        if self.jitter:
            delay *= 1 - random.uniform(0, self.jitter)
        return delay

    def reset(self) -> None:
        """Start again from ``initial`` (after a success)."""
        self._next = self.initial


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    stage: str,
    on_error: Callable[[str, BaseException], None] | None = None,
    initial: float = 0.05,
    cap: float = 2.0,
) -> T:
    """Run ``fn`` until it succeeds, waiting out failures with capped backoff.

    Args:
        fn: makes the awaitable to try (called again for every attempt).
        stage: names the step in logs and in ``on_error``.
        on_error: called with ``stage`` and the exception after each failure.
    """
    backoff = Backoff(initial, cap)
    while True:
        try:
            return await fn()
        except Exception as exc:
            if on_error is not None:
                on_error(stage, exc)
            log.warning(
                "retrying", extra={"fields": {"stage": stage, "error": _describe(exc)[:500]}}
            )
            await asyncio.sleep(backoff.next())


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return str(message) if message else repr(exc)
