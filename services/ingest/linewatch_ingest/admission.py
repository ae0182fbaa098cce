"""Admission of a rule's messages: each MQTT message parsed into an :class:`Admitted`
value, and duplicates caught.

A message whose ``(device_id, msg_id, ts)`` equals one handled before is acknowledged
without being scored again and counted. The memory of handled messages
(:class:`~linewatch_ingest.dedup.RecentIds`) is loaded from the archive's latest verdicts
at start; while it is warm only a redelivery (DUP) may have been handled before and
forgotten by a crash, so the archive is asked about those alone. linewatch's own topics
(dead letters, …) are never ingested.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from linewatch.runtime.intake import DeadLetter, Entry
from linewatch.runtime.mqtt import MqttMessage
from linewatch.runtime.retry import retry
from linewatch.runtime.telemetry import extract_user_properties
from linewatch_ingest import metrics
from linewatch_ingest.config import RuleConfig
from linewatch_ingest.dedup import MsgKey, RecentIds, msg_key
from linewatch_ingest.payload import Telemetry, parse_telemetry
from linewatch_ingest.rulestats import Counters
from linewatch_ingest.store import IngestStore

__all__ = [
    "OWN_TOPICS",
    "Admission",
    "Admitted",
    "AdmittedEntry",
    "admitted",
    "admitted_key",
    "end_span",
]

log = logging.getLogger(__name__)
tracer = trace.get_tracer("linewatch_ingest.pipeline")

OWN_TOPICS = "linewatch/"
"""linewatch's own topics (dead letters, …): never ingested."""


@dataclass(slots=True)
class Admitted:
    """A validated curve and the span its device's trace continues in (``None``: the
    message was untraced and shares its batch's trace)."""

    tele: Telemetry
    span: Span | None
    key: MsgKey | None
    """Its ``(device_id, msg_id, ts_ms)`` (:func:`~linewatch_ingest.dedup.msg_key`;
    ``None``: it has no ``msg_id``), made once: the intake's in-flight map, dedup and
    settling all read it."""


AdmittedEntry = Entry[Admitted]


def admitted_key(value: Admitted) -> MsgKey | None:
    """The duplicate key of an admitted message (``None``: it has no ``msg_id``)."""
    return value.key


def admitted(entry: AdmittedEntry) -> Admitted:
    """The admitted value of an entry the intake hands to a batch."""
    value = entry.value
    assert value is not None
    return value


def end_span(entry: AdmittedEntry) -> None:
    """End the message's own span, if it has one."""
    if entry.value is not None and entry.value.span is not None:
        entry.value.span.end()


class Admission:
    """One rule's parsing and memory of handled messages."""

    def __init__(
        self,
        rule: RuleConfig,
        store: IngestStore,
        *,
        dedup_cache: int,
        deadletter_topic: str,
        counters: Counters,
        on_error: Callable[[str, BaseException], None],
    ) -> None:
        self.rule = rule
        self._store = store
        self._limit = dedup_cache
        self._done = RecentIds(dedup_cache)
        self._warm = False
        self._deadletter_topic = deadletter_topic
        self._counters = counters
        self._on_error = on_error
        self._m_duplicates = metrics.DUPLICATES.labels(rule.name)

    def parse(self, msg: MqttMessage) -> Admitted | None:
        """Validate one message (raises: a dead letter); ``None``: handled before."""
        self._counters.received += 1
        if msg.topic.startswith(OWN_TOPICS) or msg.topic == self._deadletter_topic:
            return None  # never re-ingest linewatch's own messages
        # the intake refused payloads nested too deep before calling this parser
        tele = parse_telemetry(msg.payload, depth_checked=True)
        key = msg_key(tele.device_id, tele.msg_id, tele.ts_ms) if tele.has_msg_id else None
        if key is not None and key in self._done:
            self.duplicate()
            return None
        span: Span | None = None
        if msg.user_properties and msg.user_property("traceparent"):
            # the device's trace continues through its own span; untraced messages
            # share their batch's trace (a span per message costs more than the rest)
            span = tracer.start_span(
                f"{self.rule.source_topic} process",
                context=extract_user_properties(msg.user_properties),
                kind=SpanKind.CONSUMER,
            )
            span.set_attribute("messaging.destination.name", msg.topic)
            span.set_attribute("linewatch.rule", self.rule.name)
        return Admitted(tele, span, key)

    def duplicate(self) -> None:
        """Count a duplicate."""
        self._counters.duplicates += 1
        self._m_duplicates.inc()

    def remember(self, keys: Iterable[MsgKey]) -> None:
        """These messages are handled: a later copy is a duplicate."""
        self._done.add_all(keys)

    async def load_handled(self) -> None:
        """Fill the memory of handled messages from the archive's latest verdicts."""
        limit = self._limit
        if not self.rule.archive or limit <= 0:
            self._warm = limit > 0
            return
        try:
            keys = await self._store.recent_keys(self.rule.name, limit)
        except Exception as exc:  # the database is down or refuses: never fatal here
            # stay cold: every batch asks the archive until the rule restarts
            log.warning(
                "cannot load handled messages; checking the archive per batch",
                extra={"fields": {"rule": self.rule.name, "error": repr(exc)}},
            )
            return
        self._done.add_all(msg_key(*k) for k in keys)
        self._warm = True

    async def skip_archived(
        self, entries: list[AdmittedEntry], settle: Callable[[AdmittedEntry], None]
    ) -> list[AdmittedEntry]:
        """Settle the entries the archive already holds (and return the others)."""
        asked = [
            admitted(e).tele
            for e in entries
            if (e.message.dup or not self._warm) and admitted(e).key is not None
        ]
        if not asked:
            return entries
        keys = [(t.device_id, t.msg_id, t.ts_ms) for t in asked]
        store, rule = self._store, self.rule.name
        archived = await retry(
            lambda: store.archived_keys(rule, keys), stage="dedup", on_error=self._on_error
        )
        if not archived:
            return entries
        seen = {msg_key(*k) for k in archived}
        rest: list[AdmittedEntry] = []
        for e in entries:
            key = admitted(e).key
            if key in seen:
                self._done.add_all([key])
                self.duplicate()
                end_span(e)
                settle(e)
            else:
                rest.append(e)
        return rest

    async def record_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Archive the rule's dead letters."""
        rows = [
            {
                "rule": self.rule.name,
                "topic": d.topic,
                "reason": d.reason,
                "payload": d.payload,
                "received_at_ms": d.received_at_ms,
            }
            for d in letters
        ]
        await self._store.add_dead_letters(rows)
