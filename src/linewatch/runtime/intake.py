"""One MQTT intake for every service: subscribe → parse → batch → commit → acknowledge.

A message is acknowledged (PUBACK) only once it is safe: its batch was committed by the
service (``commit``), or it was dead-lettered (published to the dead-letter topic and
recorded). So a crash at any point leaves it unacknowledged and the broker redelivers it.

- **Poison never stops intake.** ``parse`` runs in the MQTT handler; *any* exception it
  raises (a :class:`~linewatch.runtime.errors.LinewatchError` with its reason,
  RecursionError, MemoryError, UnicodeDecodeError, anything) turns the message into a
  dead letter, which is published, recorded and then acknowledged like any other entry.
  JSON nested deeper than :data:`~linewatch.runtime.jsonguard.MAX_DEPTH` is refused before
  ``parse`` runs.
- **One dead-letter policy** (:class:`DeadLetterPolicy`): the documented body on the dead-letter
  topic, an optional ``record`` of the batch's dead letters in the service's database.
- **One retry policy**: a failing commit or dead-letter step is retried with capped
  backoff (:func:`~linewatch.runtime.retry.retry`); nothing accepted is dropped.
- **Throughput independent of the broker's inflight window.** A broker sends a session at
  most its inflight window (Mosquitto's stock ``max_inflight_messages 20``) of
  unacknowledged messages, so one session carries at most window / ack delay messages
  per second, and a batch's ack delay (batch wait + commit) is milliseconds. With
  ``sessions`` > 1 the intake opens that many MQTT sessions on one shared subscription
  (``$share/<group>/<filter>``) and the broker spreads the topic over them: n windows in
  flight. A broker that only speaks MQTT 3.1.1 (which may lack shared subscriptions) gets
  one session on the plain filter; so does ``sessions=1`` unless ``share`` (several
  processes consuming one shared subscription) is set.
- **Duplicates in flight.** With ``key``, a message whose key equals one still in flight
  is acknowledged together with that one (never before it), and counted.
- **Backpressure**: what waits in the queue is what the brokers sent unacknowledged
  (their flow control bounds it); QoS 0 beyond ``qos0_limit`` waiting is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from linewatch.runtime.batchqueue import BatchQueue
from linewatch.runtime.config import MqttConfig
from linewatch.runtime.deadletter import dead_letter_body
from linewatch.runtime.errors import LinewatchError, Unavailable
from linewatch.runtime.jsonguard import json_depth_error
from linewatch.runtime.mqtt import DEFERRED, Ack, MqttClient, MqttMessage, Outgoing
from linewatch.runtime.retry import Backoff, retry

__all__ = ["DeadLetter", "DeadLetterPolicy", "Entry", "Intake", "describe_error"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def describe_error(exc: BaseException) -> str:
    """The dead-letter reason for an exception raised while parsing a payload."""
    if isinstance(exc, LinewatchError):
        return exc.message
    if isinstance(exc, RecursionError):
        return "payload nested too deeply"
    if isinstance(exc, MemoryError):
        return "payload too large to decode"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(slots=True)
class Entry(Generic[T]):
    """One received message on its way through the intake."""

    message: MqttMessage
    value: T | None
    """What ``parse`` made of it (``None`` for a dead letter)."""
    received: float
    """``time.perf_counter()`` when it arrived."""
    reason: str = ""
    """Why it is dead-lettered (empty: it is not)."""
    key: Hashable | None = None
    also: list[Ack] | None = None
    """Redeliveries with the same key that arrived while this one was in flight."""
    settled: bool = False

    @property
    def topic(self) -> str:
        """The topic it came on."""
        return self.message.topic


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A refused message, as :class:`DeadLetterPolicy` records it."""

    topic: str
    payload: bytes
    reason: str
    received_at_ms: int
    value: Any = None
    """What the service had parsed, when the refusal came after parsing (else ``None``)."""


Recorder = Callable[[Sequence[DeadLetter]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeadLetterPolicy:
    """Where refused messages go: the documented dead-letter body on ``topic`` (every
    service's), and ``record`` (the service's own table, optional). A dead letter is
    acknowledged only once both are done."""

    source: str
    topic: str = "linewatch/deadletter"
    record: Recorder | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields added to every dead-letter body (e.g. ``{"rule": "demo"}``)."""

    async def handle(self, client: MqttClient, letters: Sequence[DeadLetter]) -> None:
        """Record and publish ``letters`` (raises on failure; the intake retries)."""
        if self.record is not None:
            await self.record(letters)
        if self.topic:
            bodies = [
                (
                    self.topic,
                    dead_letter_body(
                        source=self.source,
                        topic=letter.topic,
                        payload=letter.payload,
                        reason=letter.reason,
                        **self.extra,
                    ),
                    (),
                )
                for letter in letters
            ]
            await client.publish_many(bodies, qos=1, timeout=None)


Parse = Callable[[MqttMessage], T | None]
"""Turns a message into the service's value; ``None``: nothing to do, acknowledge now
(e.g. a duplicate it counted); raising: a dead letter."""
Commit = Callable[[list[Entry[T]]], Awaitable[None]]
"""Commits a batch (raising: retried with backoff). It may settle entries itself."""


class Intake(Generic[T]):
    """Subscribes ``topic_filters`` on ``sessions`` MQTT sessions and runs the batches."""

    def __init__(
        self,
        *,
        name: str,
        broker: MqttConfig,
        client_id: str,
        topic_filters: Sequence[str],
        parse: Parse[T],
        commit: Commit[T],
        dead_letters: DeadLetterPolicy,
        qos: int = 1,
        sessions: int = 1,
        share_group: str = "",
        share: bool = False,
        receive_maximum: int | None = None,
        clean_start: bool = False,
        batch_max: int = 256,
        batch_delay_s: float = 0.005,
        workers: int = 1,
        qos0_limit: int = 4096,
        key: Callable[[T], Hashable | None] | None = None,
        on_duplicate: Callable[[], None] | None = None,
        on_error: Callable[[str, BaseException], None] | None = None,
        on_dead_letter: Callable[[int], None] | None = None,
    ) -> None:
        if sessions < 1:
            raise ValueError("an intake needs at least one session")
        self.name = name
        self._parse = parse
        self._commit = commit
        self.dead_letters = dead_letters
        self.qos = qos
        self._plain_filters = list(topic_filters)
        self._group = share_group or name
        self._share = share
        """Subscribe the shared filter even with one session (several processes share it)."""
        self.filters = list(topic_filters)
        """What the sessions subscribe (decided once the first session is connected)."""
        self.clients = [
            MqttClient(
                broker,
                client_id=client_id if sessions == 1 else f"{client_id}-{i}",
                clean_start=clean_start,
                receive_maximum=receive_maximum,
            )
            for i in range(sessions)
        ]
        self._turn = 0
        self.batch_max = batch_max
        self.batch_delay_s = batch_delay_s
        self._queue: BatchQueue[Entry[T]] = BatchQueue()
        self._qos0_limit = qos0_limit
        self._key = key
        self._inflight: dict[Hashable, Entry[T]] = {}
        self._pending = 0
        """Entries accepted and not yet settled."""
        self._busy = 0
        self._on_duplicate = on_duplicate
        self._on_error = on_error
        self._on_dead_letter = on_dead_letter
        self._gate = asyncio.Event()
        self._closed = False
        self._target_workers = max(1, workers)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._connect_tasks: list[asyncio.Task[None]] = []
        self.dropped = 0
        """QoS 0 messages dropped because ``qos0_limit`` were already waiting."""
        self.last_error = ""

    # --- lifecycle -------------------------------------------------------------------

    @property
    def client(self) -> MqttClient:
        """The first session (for publishes that belong to no batch)."""
        return self.clients[0]

    def publisher(self) -> MqttClient:
        """A session to publish a batch's output on: the connected ones in turn (their
        windows add up); the first when none is connected (its publishes wait for it)."""
        clients = self.clients
        for _ in range(len(clients)):
            self._turn = (self._turn + 1) % len(clients)
            if clients[self._turn].connected:
                return clients[self._turn]
        return clients[0]

    async def publish_spread(self, messages: Sequence[Outgoing], *, qos: int = 1) -> None:
        """Publish a batch's output over every connected session at once (their windows
        add up; a broker's own inflight window per session, 20 on a stock Mosquitto, would
        otherwise pace the whole batch). One topic stays on one session, so messages of
        one topic keep their order. Waits across reconnects until all are acknowledged."""
        clients = [c for c in self.clients if c.connected] or [self.publisher()]
        if len(clients) == 1 or len(messages) <= _SPREAD_MIN:
            await self.publisher().publish_many(messages, qos=qos, timeout=None)
            return
        parts: list[list[Outgoing]] = [[] for _ in clients]
        n = len(clients)
        for message in messages:
            parts[hash(message[0]) % n].append(message)
        await asyncio.gather(
            *(
                client.publish_many(part, qos=qos, timeout=None)
                for client, part in zip(clients, parts, strict=True)
                if part
            )
        )

    @property
    def protocol_version(self) -> int:
        """The MQTT protocol version the (first) session speaks (5 or 4 for 3.1.1)."""
        return int(self.client.protocol_version)

    @property
    def connected(self) -> bool:
        """Whether every session is connected now."""
        return all(c.connected for c in self.clients)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until every session is connected.

        Raises:
            Unavailable: not all connected after ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                for client in self.clients:
                    await client.wait_connected()
        except TimeoutError as exc:
            raise Unavailable(f"intake {self.name}: not every session connected") from exc

    async def start(self, *, wait: bool = False, timeout: float = 10.0) -> None:
        """Start the workers and connect every session.

        The first session connects first: a broker that speaks MQTT 5 gets ``sessions``
        sessions on the shared subscription; one that only speaks 3.1.1 (which may not
        know shared subscriptions) gets one session on the plain filter.

        With ``wait`` the first connection must succeed (raises Unavailable); without,
        sessions that cannot connect keep trying in the background.
        """
        self._gate.set()
        self.set_workers(self._target_workers)
        if wait:
            await self._plan()
            await self.clients[0].connect(timeout=timeout)
            others = await self._subscribe_all()
            await asyncio.gather(*(c.connect(timeout=timeout) for c in others))
            return
        self._connect_tasks = [
            asyncio.create_task(self._connect_first(), name=f"intake-{self.name}-connect")
        ]

    async def _plan(self) -> None:
        """Register the handlers before the first connect, on the filters an MQTT 5 broker
        gets: a resumed persistent session's queued messages come right after CONNACK,
        and a message that no subscription of the client claims is acknowledged and gone."""
        shared = len(self.clients) > 1 or self._share
        self.filters = [_shared(f, shared, self._group) for f in self._plain_filters]
        for client in self.clients:
            for topic_filter in self.filters:
                await client.subscribe(topic_filter, self.handle, qos=self.qos)

    async def _subscribe_all(self) -> list[MqttClient]:
        """Subscribe every session (the first is connected); returns the others."""
        planned = list(self.filters)
        first = self.clients[0]
        if first.protocol_version != _MQTT5 and len(self.clients) > 1:
            log.info(
                "MQTT 3.1.1 broker: one session on the plain filter",
                extra={"fields": {"intake": self.name}},
            )
            self.clients = [first]
        shared = len(self.clients) > 1 or (self._share and first.protocol_version == _MQTT5)
        self.filters = [_shared(f, shared, self._group) for f in self._plain_filters]
        if self.filters != planned:  # an MQTT 3.1.1 broker: the plain filter after all
            for topic_filter in planned:
                with contextlib.suppress(Exception):
                    await first.unsubscribe(topic_filter)
            for client in self.clients:
                for topic_filter in self.filters:
                    await client.subscribe(topic_filter, self.handle, qos=self.qos)
        return self.clients[1:]

    async def _connect_first(self) -> None:
        await self._plan()
        await self._connect(self.clients[0])
        others = await self._subscribe_all()
        self._connect_tasks += [
            asyncio.create_task(self._connect(c), name=f"intake-{self.name}-connect")
            for c in others
        ]

    async def _connect(self, client: MqttClient) -> None:
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                await client.connect()
                self.last_error = ""
                return
            except Unavailable as exc:
                self.last_error = f"mqtt: {exc.message}"
                log.warning("intake cannot connect", extra={"fields": {"intake": self.name}})
                await asyncio.sleep(backoff.next())

    def pause(self) -> None:
        """Stop taking messages: handlers wait, the broker holds the rest."""
        self._gate.clear()

    def resume(self) -> None:
        """Take messages again."""
        self._gate.set()

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` holds messages back."""
        return not self._gate.is_set() and not self._closed

    async def stop(self, *, grace: float = 5.0, forget_session: bool = False) -> None:
        """Finish what is in flight (up to ``grace`` seconds), then disconnect.

        Messages not finished by then stay unacknowledged and are redelivered later.
        """
        self._gate.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while self._pending and any(c.connected for c in self.clients):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        self._closed = True
        self._gate.set()
        for task in self._connect_tasks:
            task.cancel()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._connect_tasks, return_exceptions=True)
        if forget_session:
            for client in self.clients:
                for topic_filter in self.filters:
                    with contextlib.suppress(Exception):
                        await client.unsubscribe(topic_filter)
        await asyncio.gather(*(c.disconnect() for c in self.clients), return_exceptions=True)

    def set_workers(self, workers: int) -> None:
        """Run ``workers`` batch workers (extra ones finish their batch and exit)."""
        self._target_workers = max(1, workers)
        if self._closed:
            return
        for index in range(self._target_workers):
            task = self._tasks.get(index)
            if task is None or task.done():
                self._tasks[index] = asyncio.create_task(
                    self._worker(index), name=f"intake-{self.name}-{index}"
                )

    # --- status ----------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Entries waiting for a batch."""
        return len(self._queue)

    @property
    def busy(self) -> int:
        """Entries in batches being committed."""
        return self._busy

    # --- receive ---------------------------------------------------------------------

    def handle(self, msg: MqttMessage) -> Any:
        """The MQTT handler: parses and queues the message (no task per message).

        Raises:
            Unavailable: the intake stopped; the message stays unacknowledged.
        """
        if not self._gate.is_set():
            return self._handle_later(msg)
        if msg.qos == 0 and len(self._queue) >= self._qos0_limit:
            self.dropped += 1
            return None
        return self._admit(msg)

    async def _handle_later(self, msg: MqttMessage) -> Any:
        while not self._gate.is_set():
            await self._gate.wait()
        return self._admit(msg)

    def _admit(self, msg: MqttMessage) -> Any:
        if self._closed:
            raise Unavailable(f"intake {self.name} stopped")
        received = time.perf_counter()
        reason = json_depth_error(msg.payload)
        value: T | None = None
        if reason is None:
            try:
                value = self._parse(msg)
            except Exception as exc:  # poison: whatever it raised, a dead letter
                reason = describe_error(exc)
            else:
                if value is None:
                    return None  # nothing to do (the parser counted why)
        if reason is not None:
            entry: Entry[T] = Entry(msg, None, received, reason=reason)
        else:
            key = self._key(value) if self._key is not None and value is not None else None
            if key is not None:
                running = self._inflight.get(key)
                if running is not None:
                    self._join(running, msg)
                    return DEFERRED
            entry = Entry(msg, value, received, "", key)
            if key is not None:
                self._inflight[key] = entry
        self._pending += 1
        self._queue.put(entry)
        return DEFERRED

    def _join(self, running: Entry[T], msg: MqttMessage) -> None:
        """A message whose key is in flight (``running``) is acknowledged together with
        that one (never if that one fails)."""
        if self._on_duplicate is not None:
            self._on_duplicate()
        if running.also is None:
            running.also = [msg.ack]
        else:
            running.also.append(msg.ack)

    def settle(self, entry: Entry[T]) -> None:
        """The entry is handled: acknowledge it (and its redeliveries)."""
        if entry.settled:
            return
        entry.settled = True
        self._pending -= 1
        entry.message.ack()
        if entry.also:
            for ack in entry.also:
                ack()
        key = entry.key
        if key is not None and self._inflight.get(key) is entry:
            del self._inflight[key]

    def _abandon(self, entry: Entry[T]) -> None:
        """Given up (stopped): no acknowledgement, so the broker redelivers it."""
        if entry.settled:
            return
        entry.settled = True
        self._pending -= 1
        if entry.key is not None and self._inflight.get(entry.key) is entry:
            del self._inflight[entry.key]

    async def dead_letter(self, entries: Sequence[Entry[T]], reason: str) -> None:
        """Dead-letter entries the service refuses after parsing, then settle them."""
        for entry in entries:
            entry.reason = reason
        await self._dead_letter(list(entries))

    async def _dead_letter(self, entries: list[Entry[T]]) -> None:
        now_ms = int(time.time() * 1000)
        letters = [
            DeadLetter(e.topic, e.message.payload, e.reason, now_ms, e.value) for e in entries
        ]
        for letter in letters:
            log.warning(
                "message dead-lettered",
                extra={"fields": {"intake": self.name, "topic": letter.topic,
                                  "reason": letter.reason[:500]}},
            )  # fmt: skip
        if self._on_dead_letter is not None:
            self._on_dead_letter(len(entries))  # counted when refused, settled once out
        client = self.publisher()
        await retry(
            lambda: self.dead_letters.handle(client, letters),
            stage="deadletter",
            on_error=self._failed,
        )
        for entry in entries:
            self.settle(entry)

    def _failed(self, stage: str, exc: BaseException) -> None:
        self.last_error = f"{stage}: {getattr(exc, 'message', None) or exc!r}"
        if self._on_error is not None:
            self._on_error(stage, exc)

    # --- batches ---------------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        while index < self._target_workers:
            batch = await self._queue.get_batch(self.batch_max, self.batch_delay_s)
            self._busy += len(batch)
            try:
                await self._process(batch)
            except asyncio.CancelledError:
                for entry in batch:
                    self._abandon(entry)
                raise
            finally:
                self._busy -= len(batch)

    async def _process(self, batch: list[Entry[T]]) -> None:
        """Dead letters first, then one commit of the rest; a failed commit is retried
        with what it left unsettled (a retried batch may publish twice, at least once).

        Failing the messages instead would not bring them back: a broker redelivers
        unacknowledged messages only on a new connection, and meanwhile they would hold
        inflight slots for good.
        """
        dead = [e for e in batch if e.reason]
        if dead:
            await self._dead_letter(dead)
        good = [e for e in batch if not e.settled]
        if not good:
            return
        backoff = Backoff(0.05, 5.0)
        while good:
            try:
                await self._commit(good)
            except Exception as exc:  # never lose the worker nor the messages
                self._failed("commit", exc)
                log.exception("batch failed; retrying", extra={"fields": {"intake": self.name}})
                await asyncio.sleep(backoff.next())
                good = [e for e in good if not e.settled]
                continue
            for entry in good:
                self.settle(entry)
            return


_MQTT5 = 5
_SPREAD_MIN = 16
"""Batches this small go out on one session."""


def _shared(topic_filter: str, shared: bool, group: str) -> str:
    """The filter each session subscribes: shared when there are several sessions."""
    if not shared or topic_filter.startswith("$share/"):
        return topic_filter
    return f"$share/{group}/{topic_filter}"
