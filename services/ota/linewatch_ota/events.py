"""In-process fan-out of OTA state changes to live subscribers (StreamOtaEvents).

Each subscriber has its own bounded queue; publishing never blocks. A subscriber that
falls behind loses its oldest events (counted in ``linewatch_ota_events_dropped_total``),
never the service's progress.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from linewatch.v1 import ota_pb2
from linewatch_ota.metrics import EVENTS_DROPPED

__all__ = ["EventHub"]

Event = ota_pb2.StreamOtaEventsResponse


class EventHub:
    """Publish state changes; subscribe to receive them."""

    def __init__(self, *, queue_size: int = 10000) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event]] = set()

    @property
    def subscriber_count(self) -> int:
        """How many live subscribers there are."""
        return len(self._subscribers)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber (drops a slow subscriber's oldest)."""
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                EVENTS_DROPPED.inc()
            queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue of the events published while the context is open."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
