"""Where URLs come in: MQTT messages and API requests, validated at the edge.

Every URL is canonicalised (:func:`~linewatch_sync.urls.canonicalise`); refused ones are
recorded (table ``sync_rejections``), logged with the reason and, for MQTT, published to
the dead-letter topic. A message is acknowledged only after its jobs are committed: if the
database is down, the handler raises, no PUBACK is sent, and the broker redelivers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from linewatch.runtime.deadletter import dead_letter_body
from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.runtime.telemetry import current_traceparent, extract_user_properties
from linewatch_sync import metrics
from linewatch_sync.store import JobRow, JobStore, NewJob
from linewatch_sync.urls import UrlRequest, canonicalise, parse_payload

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
        mqtt: MqttClient | None = None,
        deadletter_topic: str = "",
    ) -> None:
        self.store = store
        self.allowed_hosts = allowed_hosts
        self.max_urls = max_urls
        self.on_queued = on_queued
        self.mqtt = mqtt
        self.deadletter_topic = deadletter_topic

    async def enqueue(
        self, items: Sequence[UrlRequest], *, work_id: str = "", topic: str = ""
    ) -> tuple[list[JobRow], list[str]]:
        """Validate and queue URLs.

        Returns:
            The jobs (new or existing) and the refused URLs as ``"<url>: <reason>"``.
        """
        if len(items) > self.max_urls:
            raise InvalidArgument(f"{len(items)} URLs; at most {self.max_urls} at once")
        jobs: list[NewJob] = []
        refused: list[tuple[str, str]] = []
        traceparent = current_traceparent()
        for item in items:
            try:
                canon = canonicalise(item.url, allowed_hosts=self.allowed_hosts)
            except InvalidArgument as exc:
                refused.append((item.url, exc.message))
                continue
            jobs.append(NewJob(canon.url, canon.cache_path, work_id, item.sha256, traceparent))
        if refused:
            metrics.REJECTED.labels("url").inc(len(refused))
            await self.store.reject([(topic, url, reason, "") for url, reason in refused])
            for url, reason in refused:
                log.warning("url refused", extra={"fields": {"url": url[:512], "reason": reason}})
        rows = await self.store.enqueue(jobs)
        if rows:
            self.on_queued()
        return rows, [f"{url}: {reason}" for url, reason in refused]

    async def handle(self, message: MqttMessage) -> None:
        """MQTT handler: returns (→ PUBACK) only once the jobs are committed."""
        with tracer.start_as_current_span(
            f"{message.topic} process",
            context=extract_user_properties(message.user_properties),
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "mqtt", "messaging.destination.name": message.topic},
        ):
            try:
                parsed = parse_payload(message.payload, max_urls=self.max_urls)
            except InvalidArgument as exc:
                await self._dead_letter(message, exc.message)
                return
            _, refused = await self.enqueue(
                parsed.items, work_id=parsed.work_id, topic=message.topic
            )
            if refused:
                await self._publish_dead_letter(message, "; ".join(refused))

    async def _dead_letter(self, message: MqttMessage, reason: str) -> None:
        metrics.REJECTED.labels("message").inc()
        excerpt = message.payload[:4096].decode("utf-8", "replace")
        log.warning(
            "sync message refused",
            extra={"fields": {"topic": message.topic, "reason": reason}},
        )
        await self.store.reject([(message.topic, "", reason, excerpt)])
        await self._publish_dead_letter(message, reason)

    async def _publish_dead_letter(self, message: MqttMessage, reason: str) -> None:
        if self.mqtt is None or not self.deadletter_topic:
            return
        body = dead_letter_body(
            source="sync", topic=message.topic, payload=message.payload, reason=reason
        )
        try:
            await self.mqtt.publish(self.deadletter_topic, body, qos=1, timeout=5.0)
        except Exception:
            log.warning("dead-letter publish failed (refusal is recorded in the database)")
