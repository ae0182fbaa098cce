"""MQTT session state of one client, independent of any connection: packet ids, the
window of unacknowledged publishes (the broker's receive maximum) and what must be sent
again after a reconnect.

Outgoing QoS 1/2 publishes stay in :attr:`Session.inflight` (in the order sent) until the
broker acknowledges them (PUBACK, or PUBCOMP for QoS 2); after a reconnect
:meth:`Session.resend` gives every one of them again, PUBLISH with the DUP flag (or PUBREL
for a QoS 2 publish the broker already received), whether or not the broker kept the
session: nothing accepted is lost. The inbound side needs no state here: the broker sends
at most our receive maximum unacknowledged, and we acknowledge after the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

__all__ = ["PublishBatch", "Session"]

_MAX_ID = 0xFFFF


class PublishBatch:
    """One ``publish_many`` call: its QoS and retain flag, and the acknowledgements it
    waits for; :attr:`future` resolves once every message was sent and acknowledged."""

    __slots__ = ("_sent", "future", "left", "qos", "retain")

    def __init__(self, loop: asyncio.AbstractEventLoop, qos: int, retain: bool) -> None:
        self.qos = qos
        self.retain = retain
        self.future: asyncio.Future[None] = loop.create_future()
        self.left = 0
        self._sent = False

    def acked(self) -> None:
        """One of its messages was acknowledged."""
        self.left -= 1
        if self._sent and self.left <= 0 and not self.future.done():
            self.future.set_result(None)

    def all_sent(self) -> None:
        """Every message of the call was handed to the session."""
        self._sent = True
        if self.left <= 0 and not self.future.done():
            self.future.set_result(None)


class _Inflight:
    __slots__ = ("batch", "packet", "released")

    def __init__(self, packet: bytes, batch: PublishBatch) -> None:
        self.packet = packet
        self.batch = batch
        self.released = False
        """QoS 2: the broker sent PUBREC and we sent PUBREL (PUBCOMP pending)."""


class Session:
    """Packet ids, the outgoing publish window and the resend queue."""

    def __init__(self, window: int = _MAX_ID) -> None:
        self.inflight: dict[int, _Inflight] = {}
        """Unacknowledged QoS 1/2 publishes by packet id, in the order sent."""
        self.control: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        """SUBSCRIBE/UNSUBSCRIBE waiting for SUBACK/UNSUBACK, by packet id."""
        self.window = window
        """The most unacknowledged publishes: the broker's receive maximum."""
        self._next = 1
        self._waiters: deque[asyncio.Future[None]] = deque()

    # --- packet ids ----------------------------------------------------------------

    def has_room(self) -> bool:
        """Whether one more QoS 1/2 publish fits in the broker's window."""
        return len(self.inflight) < self.window

    def next_id(self) -> int:
        """A packet id used by no unacknowledged packet.

        Raises:
            OverflowError: all 65,535 ids are in use.
        """
        if len(self.inflight) + len(self.control) >= _MAX_ID:
            raise OverflowError("every MQTT packet id is in use")
        mid = self._next
        inflight = self.inflight
        control = self.control
        while mid in inflight or mid in control:
            mid = mid + 1 if mid < _MAX_ID else 1
        self._next = mid + 1 if mid < _MAX_ID else 1
        return mid

    # --- outgoing publishes --------------------------------------------------------

    def track(self, mid: int, packet: bytes, batch: PublishBatch) -> None:
        """Remember a sent QoS 1/2 PUBLISH until it is acknowledged."""
        self.inflight[mid] = _Inflight(packet, batch)
        batch.left += 1

    def acknowledged(self, mid: int) -> bool:
        """PUBACK (QoS 1) or PUBCOMP (QoS 2) for ``mid``; whether it was ours."""
        entry = self.inflight.pop(mid, None)
        if entry is None:
            return False
        entry.batch.acked()
        self.wake(1)
        return True

    def received(self, mid: int) -> bool:
        """PUBREC for ``mid``: a PUBREL is to be sent (and resent after a reconnect)."""
        entry = self.inflight.get(mid)
        if entry is None:
            return False
        entry.released = True
        return True

    def resend(self) -> list[bytes]:
        """What to send again on a new connection, in the original order."""
        out = []
        for mid, entry in self.inflight.items():
            if entry.released:
                out.append(b"\x62\x02" + mid.to_bytes(2, "big"))
            else:
                packet = entry.packet
                out.append(bytes((packet[0] | 0x08,)) + packet[1:])  # DUP
        return out

    def fail_control(self, exc: BaseException) -> None:
        """A connection was lost: SUBSCRIBE/UNSUBSCRIBE waiting for their answer fail
        (subscriptions are sent again on the next connection anyway)."""
        for future in self.control.values():
            if not future.done():
                future.set_exception(exc)
        self.control.clear()

    # --- waiting for room in the window -------------------------------------------

    async def wait_for_room(self, *, first: bool = False) -> None:
        """Wait in line (FIFO; ``first`` to go to the front) until an acknowledgement
        frees room, a reconnect resets the window, or one second passed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        try:
            # the timeout only guards against a wake-up lost to a dropped connection
            async with asyncio.timeout(1.0):
                await waiter
        except TimeoutError:
            pass
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def wake(self, n: int | None = None) -> None:
        """Let ``n`` (default: all) publishers waiting for room try again."""
        waiters = self._waiters
        while waiters and (n is None or n > 0):
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if n is not None:
                    n -= 1
