"""In-process fan-out of live items (verdicts, telemetry, alarms) to stream subscribers.

Publishing never waits: each subscriber has its own bounded buffer, and a subscriber too
slow to keep up loses items (counted in ``dropped``) rather than slowing the pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

__all__ = ["FanOut"]

T = TypeVar("T")


class FanOut(Generic[T]):
    """One producer side, any number of bounded subscriber queues."""

    def __init__(self, *, buffer: int = 1000) -> None:
        self._buffer = buffer
        self._subscribers: set[asyncio.Queue[T]] = set()
        self.dropped = 0

    @property
    def subscribers(self) -> int:
        """How many subscribers are attached."""
        return len(self._subscribers)

    def publish(self, item: T) -> None:
        """Offer ``item`` to every subscriber (never blocks)."""
        for queue in self._subscribers:
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                self.dropped += 1

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[T]]:
        """A queue receiving every item published while the context is open."""
        queue: asyncio.Queue[T] = asyncio.Queue(maxsize=self._buffer)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
