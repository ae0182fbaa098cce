"""In-process fan-out of live items to stream subscribers (the services' Stream* RPCs).

Publishing never waits: each subscriber has its own bounded queue, and one too slow to
keep up loses its *oldest* items (counted in ``dropped`` and reported to ``on_drop``), so
a slow reader never slows the producer and always sees the most recent state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

__all__ = ["FanOut"]

T = TypeVar("T")


class FanOut(Generic[T]):
    """One producer side, any number of bounded subscriber queues."""

    def __init__(self, *, buffer: int = 1000, on_drop: Callable[[], object] | None = None) -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        self._buffer = buffer
        self._on_drop = on_drop
        self._subscribers: set[asyncio.Queue[T]] = set()
        self.dropped = 0

    @property
    def subscribers(self) -> int:
        """How many subscribers are attached."""
        return len(self._subscribers)

    def publish(self, item: T) -> None:
        """Offer ``item`` to every subscriber (never blocks; drops a full queue's oldest)."""
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                self.dropped += 1
                if self._on_drop is not None:
                    self._on_drop()
            queue.put_nowait(item)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[T]]:
        """A queue receiving every item published while the context is open."""
        queue: asyncio.Queue[T] = asyncio.Queue(maxsize=self._buffer)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
