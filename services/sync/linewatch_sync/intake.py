"""Where URLs come in: MQTT messages and API requests, validated at the edge.

MQTT messages go through the runtime's intake (:class:`linewatch.runtime.intake.Intake`):
each is parsed in the handler (:func:`~linewatch_sync.urls.parse_payload`; a payload that
is not a sync message, however malformed, is dead-lettered and acknowledged), and
batches of them are committed here in one ``enqueue``: a message is acknowledged only
after its jobs are committed; if the database is down the commit is retried and nothing
is acknowledged meanwhile.

Every URL is canonicalised (:func:`~linewatch_sync.urls.canonicalise`); refused ones are
recorded (table ``sync_rejections``), logged with the reason and, for MQTT, published to
the dead-letter topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.deadletter import dead_letter_body
from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.intake import DeadLetter, DeadLetterPolicy, Entry
from linewatch.runtime.intake import Intake as MqttIntake
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.runtime.telemetry import current_traceparent, extract_user_properties
from linewatch_sync import metrics
from linewatch_sync.store import JobRow, JobStore, NewJob
from linewatch_sync.urls import ParsedPayload, UrlRequest, canonicalise, parse_payload

__all__ = ["Intake"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


class Intake:
    """Validates URL batches and queues them durably."""

    def __init__(
        self,
        *,
        store: JobStore,
        allowed_hosts: tuple[str, ...],
        max_urls: int,
        on_queued: Callable[[], None] = lambda: None,
        deadletter_topic: str = "",
    ) -> None:
        self.store = store
        self.allowed_hosts = allowed_hosts
        self.max_urls = max_urls
        self.on_queued = on_queued
        self.deadletter_topic = deadletter_topic
        self.mqtt: MqttIntake[ParsedPayload] | None = None

    def attach_mqtt(
        self,
        broker: MqttConfig,
        *,
        client_id: str,
        topics: Sequence[str],
        shared_group: str = "",
    ) -> MqttIntake[ParsedPayload]:
        """The MQTT intake of ``topics`` (started by the caller)."""
        share = f"$share/{shared_group}/" if shared_group else ""
        self.mqtt = MqttIntake(
            name="sync",
            broker=broker,
            client_id=client_id,
            topic_filters=[f"{share}{topic}" for topic in topics],
            parse=self.parse,
            commit=self.commit,
            dead_letters=DeadLetterPolicy(
                source="sync", topic=self.deadletter_topic, record=self._record
            ),
            batch_max=256,
            batch_delay_s=0.002,
        )
        return self.mqtt

    def parse(self, message: MqttMessage) -> ParsedPayload:
        """Validate one MQTT message (raises: a dead letter)."""
        return parse_payload(message.payload, max_urls=self.max_urls)

    async def _record(self, letters: Sequence[DeadLetter]) -> None:
        metrics.REJECTED.labels("message").inc(len(letters))
        await self.store.reject(
            [(d.topic, "", d.reason, d.payload[:4096].decode("utf-8", "replace")) for d in letters]
        )

    async def commit(self, entries: list[Entry[ParsedPayload]]) -> None:
        """Queue the URLs of a batch of messages in one transaction."""
        jobs: list[NewJob] = []
        refused: list[tuple[str, str, str]] = []  # (topic, url, reason)
        refused_by: list[list[str]] = []
        for entry in entries:
            parsed = entry.value
            assert parsed is not None
            msg = entry.message
            # the device's trace (MQTT 5 traceparent) continues into the job
            span = tracer.start_span(
                f"{msg.topic} process",
                context=extract_user_properties(msg.user_properties),
                kind=SpanKind.CONSUMER,
                attributes={"messaging.system": "mqtt", "messaging.destination.name": msg.topic},
            )
            traceparent = current_traceparent(trace.set_span_in_context(span))
            span.end()
            mine: list[str] = []
            for item in parsed.items:
                try:
                    canon = canonicalise(item.url, allowed_hosts=self.allowed_hosts)
                except InvalidArgument as exc:
                    refused.append((msg.topic, item.url, exc.message))
                    mine.append(f"{item.url}: {exc.message}")
                    continue
                jobs.append(
                    NewJob(canon.url, canon.cache_path, parsed.work_id, item.sha256, traceparent)
                )
            refused_by.append(mine)
        await self._refuse(refused)
        rows = await self.store.enqueue(jobs)
        if rows:
            self.on_queued()
        out = [
            (
                self.deadletter_topic,
                dead_letter_body(
                    source="sync",
                    topic=entry.topic,
                    payload=entry.message.payload,
                    reason="; ".join(mine),
                ),
                (),
            )
            for entry, mine in zip(entries, refused_by, strict=True)
            if mine
        ]
        if out and self.deadletter_topic and self.mqtt is not None:
            client: MqttClient = self.mqtt.publisher()
            await client.publish_many(out, qos=1, timeout=None)

    async def _refuse(self, refused: Sequence[tuple[str, str, str]]) -> None:
        if not refused:
            return
        metrics.REJECTED.labels("url").inc(len(refused))
        await self.store.reject([(topic, url, reason, "") for topic, url, reason in refused])
        for _, url, reason in refused:
            log.warning("url refused", extra={"fields": {"url": url[:512], "reason": reason}})

    async def enqueue(
        self, items: Sequence[UrlRequest], *, work_id: str = "", topic: str = ""
    ) -> tuple[list[JobRow], list[str]]:
        """Validate and queue URLs (the API's way in).

        Returns:
            The jobs (new or existing) and the refused URLs as ``"<url>: <reason>"``.
        """
        if len(items) > self.max_urls:
            raise InvalidArgument(f"{len(items)} URLs; at most {self.max_urls} at once")
        jobs: list[NewJob] = []
        refused: list[tuple[str, str, str]] = []
        traceparent = current_traceparent()
        for item in items:
            try:
                canon = canonicalise(item.url, allowed_hosts=self.allowed_hosts)
            except InvalidArgument as exc:
                refused.append((topic, item.url, exc.message))
                continue
            jobs.append(NewJob(canon.url, canon.cache_path, work_id, item.sha256, traceparent))
        await self._refuse(refused)
        rows = await self.store.enqueue(jobs)
        if rows:
            self.on_queued()
        return rows, [f"{url}: {reason}" for _, url, reason in refused]
