"""Server-Sent Events: one upstream gRPC stream per kind, fanned out to every client.

Each :class:`StreamHub` holds one server-streaming subscription to its backend (reconnected
with capped exponential backoff), numbers the events it receives with increasing ids
(starting from the gateway's start time in microseconds, so ids keep growing across
restarts), keeps the newest ``replay`` events for ``Last-Event-ID`` resume, and puts each
event in the bounded queue of every client whose filter matches. A client resuming from
an id this gateway can no longer replay (older than the buffer, or from before a gateway
restart) first gets a ``gap`` event saying so, so it can fill the hole from the archive
(``GET /v1/verdicts`` …) instead of missing events silently. A client whose queue is
full is dropped (its response ends; EventSource reconnects and resumes from the replay
buffer) so one slow browser never slows the others or the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Gauge

from linewatch.runtime.telemetry import context_from_traceparent

__all__ = ["Event", "StreamFilter", "StreamHub", "Subscriber", "encode_event"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

SSE_CLIENTS = Gauge("linewatch_gateway_sse_clients", "Connected SSE clients", ["stream"])
SSE_EVENTS = Counter("linewatch_gateway_sse_events_total", "Events received upstream", ["stream"])
SSE_DROPPED = Counter(
    "linewatch_gateway_sse_dropped_clients_total", "SSE clients dropped as too slow", ["stream"]
)
SSE_RECONNECTS = Counter(
    "linewatch_gateway_sse_upstream_reconnects_total", "Upstream stream reconnects", ["stream"]
)


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its id, SSE event name, JSON data and the keys filters look at."""

    id: int
    name: str
    data: dict[str, Any]
    devices: tuple[str, ...] = ()
    line: str = ""
    label: str = ""
    #: The event in the text/event-stream format, encoded once for every client.
    wire: bytes = b""


def encode_event(event: Event) -> bytes:
    """The event in the text/event-stream format."""
    if event.wire:
        return event.wire
    data = json.dumps(event.data, separators=(",", ":"), allow_nan=False)
    return f"id: {event.id}\nevent: {event.name}\ndata: {data}\n\n".encode()


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """What a client asked for; ``None`` means any."""

    device: str | None = None
    line: str | None = None
    label: str | None = None

    def matches(self, event: Event) -> bool:
        """Whether the event passes every filter given."""
        if self.device is not None and self.device not in event.devices:
            return False
        if self.line is not None and self.line != event.line:
            return False
        return self.label is None or self.label == event.label


@dataclass(eq=False)
class Subscriber:
    """One connected client."""

    filter: StreamFilter
    queue: asyncio.Queue[Event | None]
    backlog: list[Event] = field(default_factory=list)
    gap_after: int | None = None
    """The resume id events after which may be missing (``None``: nothing missing)."""
    dropped: bool = False
    closed: bool = False


#: Turns one upstream message into (event name, data, devices, line, label), or None.
Converter = Callable[[Any], tuple[str, dict[str, Any], tuple[str, ...], str, str] | None]


class StreamHub:
    """One upstream subscription fanned out to many clients."""

    def __init__(
        self,
        kind: str,
        open_upstream: Callable[[], AsyncIterable[Any]],
        convert: Converter,
        *,
        replay: int = 1000,
        queue_size: int = 256,
        traceparent_of: Callable[[Any], str] | None = None,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
    ) -> None:
        self.kind = kind
        self._open = open_upstream
        self._convert = convert
        self._traceparent_of = traceparent_of
        self._replay: deque[Event] = deque(maxlen=max(replay, 1) if replay else 1)
        self._keep_replay = replay > 0
        self._queue_size = queue_size
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._subscribers: set[Subscriber] = set()
        self._jitter = random.Random()
        self._next_id = time.time_ns() // 1000
        self.connected = False
        self.closed = False

    @property
    def clients(self) -> int:
        """How many clients are connected."""
        return len(self._subscribers)

    def publish(
        self,
        name: str,
        data: dict[str, Any],
        *,
        devices: tuple[str, ...] = (),
        line: str = "",
        label: str = "",
    ) -> Event:
        """Number an event, keep it for replay and queue it for every matching client."""
        self._next_id += 1
        event = Event(self._next_id, name, data, devices, line, label)
        event = Event(
            event.id, name, data, devices, line, label, encode_event(event)
        )  # encoded once here, not once per client
        if self._keep_replay:
            self._replay.append(event)
        SSE_EVENTS.labels(self.kind).inc()
        for sub in list(self._subscribers):
            if not sub.filter.matches(event):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.dropped = True
                self._subscribers.discard(sub)
                SSE_DROPPED.labels(self.kind).inc()
                SSE_CLIENTS.labels(self.kind).set(len(self._subscribers))
                log.info("slow SSE client dropped", extra={"fields": {"stream": self.kind}})
        return event

    def subscribe(self, flt: StreamFilter, last_event_id: int | None = None) -> Subscriber:
        """Register a client; with ``last_event_id`` its backlog is the newer kept events."""
        sub = Subscriber(flt, asyncio.Queue(maxsize=self._queue_size))
        if last_event_id is not None:
            sub.backlog = [e for e in self._replay if e.id > last_event_id and flt.matches(e)]
            # ids grow by one per event: the first one still known tells whether some
            # between the client's last and it are gone (buffer overrun or a restart)
            first_known = self._replay[0].id if self._replay else self._next_id + 1
            if last_event_id < first_known - 1:
                sub.gap_after = last_event_id
        if self.closed:
            sub.closed = True
        else:
            self._subscribers.add(sub)
        SSE_CLIENTS.labels(self.kind).set(len(self._subscribers))
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a client."""
        self._subscribers.discard(sub)
        SSE_CLIENTS.labels(self.kind).set(len(self._subscribers))

    def close(self) -> None:
        """End every client's stream (at shutdown)."""
        self.closed = True
        for sub in list(self._subscribers):
            sub.closed = True
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)
        self._subscribers.clear()
        SSE_CLIENTS.labels(self.kind).set(0)

    async def run(self) -> None:
        """Hold the upstream subscription until cancelled, reconnecting with backoff."""
        initial, cap = self._backoff
        delay = initial
        while True:
            call: Any = None
            try:
                call = self._open()
                self.connected = True
                async for message in call:
                    if delay != initial:
                        log.info(
                            "upstream stream restored", extra={"fields": {"stream": self.kind}}
                        )
                    delay = initial
                    converted = self._convert(message)
                    if converted is None:
                        continue
                    name, data, devices, line, label = converted
                    traceparent = self._traceparent_of(message) if self._traceparent_of else ""
                    if not traceparent:
                        self.publish(name, data, devices=devices, line=line, label=label)
                        continue
                    # the message's trace goes on through its push to the browsers
                    with tracer.start_as_current_span(
                        f"sse push {self.kind}",
                        context=context_from_traceparent(traceparent),
                        kind=SpanKind.PRODUCER,
                        attributes={"linewatch.sse.clients": len(self._subscribers)},
                    ):
                        self.publish(name, data, devices=devices, line=line, label=label)
                log.info("upstream stream ended", extra={"fields": {"stream": self.kind}})
            except grpc.aio.AioRpcError as exc:
                # Loud once, then quiet while the backend stays away.
                log.log(
                    logging.WARNING if delay == initial else logging.DEBUG,
                    "upstream stream failed; reconnecting with backoff",
                    extra={"fields": {"stream": self.kind, "code": exc.code().name}},
                )
            finally:
                self.connected = False
                if call is not None and hasattr(call, "cancel"):
                    call.cancel()
            SSE_RECONNECTS.labels(self.kind).inc()
            await asyncio.sleep(delay * (0.5 + self._jitter.random() / 2))
            delay = min(delay * 2, cap)

    async def stream(self, sub: Subscriber, *, heartbeat_s: float) -> AsyncIterator[bytes]:
        """The response body of one client: retry hint, backlog, live events, heartbeats."""
        getter: asyncio.Future[Event | None] | None = None
        try:
            yield b"retry: 2000\n: connected\n\n"
            if sub.gap_after is not None:
                # no id: the client's Last-Event-ID stays where it was
                gap = json.dumps({"after": sub.gap_after, "stream": self.kind})
                yield f"event: gap\ndata: {gap}\n\n".encode()
            for event in sub.backlog:
                yield encode_event(event)
            sub.backlog = []
            while not sub.closed:
                if getter is None:
                    getter = asyncio.ensure_future(sub.queue.get())
                done, _ = await asyncio.wait({getter}, timeout=heartbeat_s)
                if not done:
                    yield b": heartbeat\n\n"
                    continue
                item = getter.result()
                getter = None
                if item is None or sub.dropped:
                    break
                yield encode_event(item)
        finally:
            if getter is not None:
                getter.cancel()
            self.unsubscribe(sub)
