"""The queue between an MQTT intake's handler and its batch workers.

``asyncio.Queue`` wakes a waiting getter for every item put; a batch worker gathering
up to 256 messages would be woken up to 256 times per batch. :class:`BatchQueue` wakes a
worker when its batch is full or its wait is over, and another worker only when there is
more than the first one will take: at most two wake-ups per batch, a deque append per
message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["BatchQueue"]

T = TypeVar("T")


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class BatchQueue(Generic[T]):
    """A FIFO (unbounded: what enters is bounded by the broker's flow control) handed out
    in batches of up to ``max_size``, waiting at most ``max_delay`` s for a batch to fill."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._idle: deque[asyncio.Future[None]] = deque()
        """Workers waiting for a first item."""
        self._filling: tuple[int, asyncio.Future[None]] | None = None
        """The worker with a first item, waiting until ``size`` items are there."""

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Add one item (never waits)."""
        items = self._items
        items.append(item)
        filling = self._filling
        if filling is None:
            if self._idle:
                self._wake_idle()
        elif len(items) >= filling[0]:
            _wake(filling[1])
            if len(items) > filling[0] and self._idle:
                self._wake_idle()  # more than that batch: another worker can start

    def _wake_idle(self) -> None:
        while self._idle:
            fut = self._idle.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    async def get_batch(self, max_size: int, max_delay: float) -> list[T]:
        """The next batch: waits for a first item, then up to ``max_delay`` s for more
        (less once ``max_size`` are there, or when another worker is already waiting)."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._items:
                fut: asyncio.Future[None] = loop.create_future()
                self._idle.append(fut)
                try:
                    await fut
                finally:
                    if not fut.done():
                        fut.cancel()
            if len(self._items) < max_size and max_delay > 0 and self._filling is None:
                await self._fill(loop, max_size, max_delay)
            if self._items:
                break
        n = min(max_size, len(self._items))
        popleft = self._items.popleft
        batch = [popleft() for _ in range(n)]
        if self._items and self._idle:
            self._wake_idle()
        return batch

    async def _fill(self, loop: asyncio.AbstractEventLoop, size: int, delay: float) -> None:
        fut: asyncio.Future[None] = loop.create_future()
        self._filling = (size, fut)
        timer = loop.call_later(delay, _wake, fut)
        try:
            await fut
        finally:
            timer.cancel()
            if self._filling is not None and self._filling[1] is fut:
                self._filling = None
