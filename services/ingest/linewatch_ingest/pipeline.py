"""The pipeline of one rule: receive → validate → queue → micro-batch → score → publish
→ archive → alarms → acknowledge.

The MQTT handler (:meth:`RuleWorker.handle`) validates a message and puts it on the
rule's queue; the message is acknowledged (PUBACK) only once a batch worker has published
its verdict and written its archive row. So a crash at any point leaves the message
unacknowledged and the broker redelivers it; a redelivered message whose ``msg_id`` was
already handled is acknowledged without being scored again (the recent ids in memory,
then the archive's unique ``(rule, msg_id)``).

Backpressure: the broker sends at most ``receive_maximum`` unacknowledged messages, and
every message in the queue is one of them (QoS 0 beyond ``queue_size`` is dropped and
counted), so when inference or the database is slow or down the queue stops growing, the
broker stops sending, and memory stays flat. Failed steps (inference, publish, archive)
are retried with capped backoff; nothing accepted is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import orjson
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.deadletter import dead_letter_body
from linewatch.runtime.errors import InvalidArgument, LinewatchError, Unavailable
from linewatch.runtime.fanout import FanOut
from linewatch.runtime.mqtt import DEFERRED, Ack, MqttClient, MqttMessage
from linewatch.runtime.telemetry import (
    current_traceparent,
    extract_user_properties,
    inject_user_properties,
)
from linewatch.v1 import common_pb2, ingest_pb2
from linewatch_ingest import metrics
from linewatch_ingest.alarms import AlarmEngine
from linewatch_ingest.archive import ArchiveWriter
from linewatch_ingest.batching import BatchQueue, RecentIds
from linewatch_ingest.config import IngestConfig, RuleConfig
from linewatch_ingest.envelope_store import EnvelopeStore
from linewatch_ingest.inference_client import BatchResult, InferenceClient
from linewatch_ingest.payload import BadPayload, Telemetry, parse_telemetry
from linewatch_ingest.rules import TopicTemplate
from linewatch_ingest.scorers import EnvelopeScorer, envelope_record, make_scorer
from linewatch_ingest.store import IngestStore, now_ms, scores_json

__all__ = ["PipelineDeps", "RuleWorker"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PipelineDeps:
    """What every rule's pipeline shares."""

    config: IngestConfig
    store: IngestStore
    inference: InferenceClient
    alarms: AlarmEngine
    archive: ArchiveWriter
    verdict_stream: FanOut[ingest_pb2.VerdictRecord]
    telemetry_stream: FanOut[ingest_pb2.TelemetryRecord]
    targets: Mapping[str, InferenceClient] = field(default_factory=dict)
    """Clients of the further inference servers rules may name (``RuleConfig.target``)."""


@dataclass(slots=True)
class _Item:
    tele: Telemetry
    topic: str
    received: float
    ack: Ack
    span: Span | None
    redelivered: bool
    also: list[Ack] | None = None
    """Redeliveries of the same ``msg_id`` that arrived while this one was in flight."""
    settled: bool = False


class RateMeter:
    """Events per second over the last ``window`` seconds (1-second buckets)."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self._buckets: deque[list[float]] = deque()

    def add(self, n: int = 1) -> None:
        """Count ``n`` events now."""
        sec = float(int(time.monotonic()))
        if self._buckets and self._buckets[-1][0] == sec:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([sec, float(n)])
            while len(self._buckets) > self.window + 1:
                self._buckets.popleft()

    def rate(self) -> float:
        """The mean rate over the window (the current, partial second included)."""
        now = time.monotonic()
        total = sum(n for sec, n in self._buckets if now - sec <= self.window)
        return total / self.window


@dataclass
class _Counters:
    received: int = 0
    verdicts: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    dropped: int = 0
    """QoS 0 messages dropped because queue_size were already waiting."""
    in_rate: RateMeter = field(default_factory=RateMeter)
    out_rate: RateMeter = field(default_factory=RateMeter)
    lag_ms: float = 0.0


class RuleWorker:
    """Consumes one rule's topic on its own MQTT connection and runs its pipeline."""

    def __init__(
        self,
        rule: RuleConfig,
        template: TopicTemplate,
        *,
        broker: MqttConfig,
        client_id: str,
        deps: PipelineDeps,
        workers: int,
    ) -> None:
        self.rule = rule
        self.template = template
        self.deps = deps
        cfg = deps.config
        self.client = MqttClient(
            broker, client_id=client_id, clean_start=False, receive_maximum=cfg.receive_maximum
        )
        self.scorer: EnvelopeScorer | None = make_scorer(rule, EnvelopeStore(deps.store.db))
        """A built-in model scoring in ingest (None: the inference service scores)."""
        self._inference = deps.targets.get(rule.target, deps.inference)
        # Not bounded here for QoS 1/2: what waits is what the broker sent unacknowledged,
        # which its flow control (our receive maximum) bounds; a message is never turned
        # away or parked in a task of its own. QoS 0 has no flow control: beyond
        # queue_size waiting, a QoS 0 message is dropped (at most once) and counted.
        self._queue: BatchQueue[_Item] = BatchQueue()
        self._qos0_limit = cfg.queue_size
        self._m_dropped = metrics.DROPPED.labels(rule.name)
        self._inflight: dict[str, _Item] = {}
        self._done = RecentIds(deps.config.dedup_cache)
        self._warm = False
        self._gate = asyncio.Event()
        self._closed = False
        self._target_workers = workers
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._busy = 0
        self.counters = _Counters()
        self.state = ingest_pb2.WORKER_STATE_STOPPED
        self.last_error = ""
        self._connect_task: asyncio.Task[None] | None = None
        self._labels = {"rule": rule.name}
        self._m_received = metrics.RECEIVED.labels(rule.name)
        self._received_counted = 0
        self._m_pre_queue = metrics.PRE_QUEUE.labels(rule.name)
        self._m_post_queue = metrics.POST_QUEUE.labels(rule.name)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (retrying in the background if the broker is down) and subscribe."""
        self._gate.set()
        self.state = ingest_pb2.WORKER_STATE_RUNNING
        self.set_workers(self._target_workers)
        self._connect_task = asyncio.create_task(self._connect(), name=f"connect-{self.rule.name}")

    async def _connect(self) -> None:
        await self._load_handled_ids()
        delay = 0.5
        while True:
            try:
                await self.client.subscribe(self.rule.source_topic, self.handle, qos=self.rule.qos)
                await self.client.connect()
                self.last_error = ""
                return
            except Unavailable as exc:
                self.last_error = f"mqtt: {exc.message}"
                log.warning("rule cannot connect", extra={"fields": {"rule": self.rule.name}})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _load_handled_ids(self) -> None:
        """Fill the memory of handled ``msg_id`` from the archive's latest verdicts."""
        limit = self.deps.config.dedup_cache
        if not self.rule.archive or limit <= 0:
            self._warm = limit > 0
            return
        try:
            ids = await self.deps.store.recent_msg_ids(self.rule.name, limit)
        except Exception as exc:  # the database is down or refuses: never fatal here
            # stay cold: every batch asks the archive until the rule restarts
            log.warning(
                "cannot load handled msg_ids; checking the archive per batch",
                extra={"fields": {"rule": self.rule.name, "error": repr(exc)}},
            )
            return
        self._done.add_all(ids)
        self._warm = True

    def pause(self) -> None:
        """Stop taking messages: handlers wait, the broker holds the rest."""
        if self.state == ingest_pb2.WORKER_STATE_RUNNING:
            self._gate.clear()
            self.state = ingest_pb2.WORKER_STATE_PAUSED

    def resume(self) -> None:
        """Take messages again."""
        if self.state == ingest_pb2.WORKER_STATE_PAUSED:
            self._gate.set()
            self.state = ingest_pb2.WORKER_STATE_RUNNING

    async def stop(self, *, grace: float = 5.0, forget_session: bool = False) -> None:
        """Finish what is in flight (up to ``grace`` seconds), then disconnect.

        Messages not finished by then stay unacknowledged and are redelivered later.
        """
        self._gate.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while self._inflight and self.client.connected:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        self._closed = True
        self._gate.set()
        if self._connect_task is not None:
            self._connect_task.cancel()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for item in list(self._inflight.values()):
            self._abandon(item, Unavailable(f"rule {self.rule.name} stopped"))
        if forget_session:
            with contextlib.suppress(Exception):
                await self.client.unsubscribe(self.rule.source_topic)
        await self.client.disconnect()
        self.state = ingest_pb2.WORKER_STATE_STOPPED
        self._m_pre_queue.set(0)
        self._m_post_queue.set(0)

    def set_workers(self, workers: int) -> None:
        """Run ``workers`` batch workers (extra ones finish their batch and exit)."""
        self._target_workers = max(1, workers)
        if self._closed:
            return
        for index in range(self._target_workers):
            task = self._tasks.get(index)
            if task is None or task.done():
                self._tasks[index] = asyncio.create_task(
                    self._worker(index), name=f"rule-{self.rule.name}-{index}"
                )

    # --- status ----------------------------------------------------------------------

    def status(self) -> ingest_pb2.RuleStatus:
        """The rule's state, counters, rates and queue depths."""
        self._count_received()
        c = self.counters
        return ingest_pb2.RuleStatus(
            name=self.rule.name,
            state=self.state,
            messages_per_s=c.in_rate.rate(),
            verdicts_per_s=c.out_rate.rate(),
            received=c.received,
            verdicts=c.verdicts,
            dead_letters=c.dead_letters,
            pre_queue=len(self._queue),
            post_queue=max(0, len(self._inflight) - len(self._queue)),
            last_error=self.last_error,
            lag_ms=c.lag_ms,
        )

    # --- receive ---------------------------------------------------------------------

    def handle(self, msg: MqttMessage) -> Any:
        """The MQTT handler: validates and queues the message (no task per message).

        Returns ``DEFERRED``: the message is acknowledged (``msg.ack()``) once its
        verdict is published and archived; ``None`` for a message handled before (ack
        now); or, for a paused rule or a dead letter, what to await first.

        Raises:
            Unavailable: the rule stopped first; the message stays unacknowledged.
        """
        if not self._gate.is_set():
            return self._handle_later(msg)
        if msg.qos == 0 and len(self._queue) >= self._qos0_limit:
            self.counters.dropped += 1
            self._m_dropped.inc()
            return None
        return self._admit(msg)

    async def _handle_later(self, msg: MqttMessage) -> Any:
        while not self._gate.is_set():
            await self._gate.wait()
        admitted = self._admit(msg)
        if admitted is None or admitted is DEFERRED:
            return admitted
        await admitted
        return None

    def _admit(self, msg: MqttMessage) -> Any:
        """Validate and queue one message: ``DEFERRED``, ``None`` or what to await."""
        if self._closed:
            raise Unavailable(f"rule {self.rule.name} stopped")
        received = time.perf_counter()
        self.counters.received += 1
        try:
            tele = parse_telemetry(msg.payload)
        except BadPayload as exc:
            return self._dead_letter(msg.topic, msg.payload, exc.message)
        msg_id = tele.msg_id
        if msg_id in self._done:
            self._duplicate()
            return None
        running = self._inflight.get(msg_id)
        if running is not None:
            # acknowledged together with the one in flight (never if that one fails)
            self._duplicate()
            if running.also is None:
                running.also = [msg.ack]
            else:
                running.also.append(msg.ack)
            return DEFERRED
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
        item = _Item(tele, msg.topic, received, msg.ack, span, msg.dup)
        self._inflight[msg_id] = item
        self._queue.put(item)
        return DEFERRED

    def _duplicate(self) -> None:
        self.counters.duplicates += 1
        self._count_received()

    def _count_received(self) -> None:
        """Bring the received metric and rate up to date (once per batch, not per message)."""
        n = self.counters.received - self._received_counted
        if n:
            self._received_counted += n
            self._m_received.inc(n)
            self.counters.in_rate.add(n)

    def _settle(self, item: _Item) -> None:
        """The message is handled: acknowledge it (and its redeliveries)."""
        if item.settled:
            return
        item.settled = True
        item.ack()
        if item.also:
            for ack in item.also:
                ack()
        if item.span is not None:
            item.span.end()
        if self._inflight.get(item.tele.msg_id) is item:
            del self._inflight[item.tele.msg_id]

    def _abandon(self, item: _Item, exc: BaseException) -> None:
        """The message is given up (the rule stopped): no acknowledgement, redelivered."""
        if item.settled:
            return
        item.settled = True
        if item.span is not None:
            item.span.record_exception(exc)
            item.span.end()
        if self._inflight.get(item.tele.msg_id) is item:
            del self._inflight[item.tele.msg_id]

    async def _dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        self.counters.dead_letters += 1
        self._count_received()
        metrics.DEAD_LETTERS.labels(**self._labels).inc()
        row = {
            "rule": self.rule.name,
            "topic": topic,
            "reason": reason,
            "payload": payload,
            "received_at_ms": now_ms(),
        }
        await self._retry("deadletter-archive", lambda: self.deps.store.add_dead_letters([row]))
        body = dead_letter_body(
            source="ingest", topic=topic, payload=payload, reason=reason, rule=self.rule.name
        )
        await self.client.publish(self.deps.config.deadletter_topic, body, qos=1, timeout=None)

    # --- batches ---------------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        cfg = self.deps.config.batch
        while index < self._target_workers:
            items = await self._queue.get_batch(cfg.max_size, cfg.max_delay_ms / 1000)
            self._count_received()
            self._m_pre_queue.set(len(self._queue))
            self._busy += len(items)
            self._m_post_queue.set(self._busy)
            try:
                await self._process_until_done(items)
            except asyncio.CancelledError:
                for item in items:
                    self._abandon(item, Unavailable("rule stopped"))
                raise
            finally:
                self._busy -= len(items)
                self._m_post_queue.set(self._busy)

    async def _process_until_done(self, items: list[_Item]) -> None:
        """Process a batch; after an unexpected failure, process what is left again.

        Failing the messages instead would not bring them back: the broker redelivers
        unacknowledged messages only on a new connection, and meanwhile they would hold
        receive-maximum slots for good. A retried batch may publish a verdict twice
        (at least once), never archive it twice.
        """
        delay = 0.1
        while items:
            try:
                await self._process(items)
                return
            except Exception as exc:  # never lose the worker nor the messages
                self.last_error = f"batch failed: {exc!r}"
                metrics.ERRORS.labels("batch").inc()
                log.exception("batch failed; retrying", extra={"fields": {"rule": self.rule.name}})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                items = [item for item in items if not item.settled]

    async def _retry(self, stage: str, fn: Any) -> Any:
        """Run ``fn`` until it succeeds: a database or service failure is waited out.

        Any exception counts (drivers raise their own types, e.g. asyncpg's
        ConnectionDoesNotExistError on a raw connection), only cancellation stops it.
        """
        delay = 0.05
        while True:
            try:
                return await fn()
            except Exception as exc:
                self.last_error = f"{stage}: {getattr(exc, 'message', None) or exc!r}"
                metrics.ERRORS.labels(stage).inc()
                log.warning(
                    "retrying", extra={"fields": {"rule": self.rule.name, "error": self.last_error}}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _process(self, items: list[_Item]) -> None:
        rule = self.rule
        store = self.deps.store
        # A traced message's trace continues through its batch (and so into inference);
        # the batch links every other traced message it carries.
        spans = [it.span for it in items if it.span is not None]
        parent = trace.set_span_in_context(spans[0]) if spans else None
        links = [Link(sp.get_span_context()) for sp in spans[1:]]
        with tracer.start_as_current_span(
            "ingest batch", context=parent, links=links
        ) as batch_span:
            batch_span.set_attribute("linewatch.batch_size", len(items))
            metrics.BATCH_SIZE.observe(len(items))
            if rule.archive:
                # The in-memory memory of handled ids is warm (loaded from the archive at
                # start), so only a redelivery (DUP) may have been handled before and
                # forgotten by a crash; the archive is asked about those alone.
                ids = [
                    it.tele.msg_id
                    for it in items
                    if it.tele.has_msg_id and (it.redelivered or not self._warm)
                ]
                seen: set[str] = set()
                if ids:
                    seen = await self._retry(
                        "dedup", lambda: store.processed_msg_ids(rule.name, ids)
                    )
                if seen:
                    for it in items:
                        if it.tele.msg_id in seen:
                            self._remember(it.tele.msg_id)
                            self.counters.duplicates += 1
                            self._settle(it)
                    items = [it for it in items if it.tele.msg_id not in seen]
                    if not items:
                        return
            scored = await self._score(items, batch_span)
            if not scored:
                return
            await self._publish_and_archive(scored, batch_span)

    async def _score(
        self, items: list[_Item], batch_span: Span
    ) -> list[tuple[_Item, dict[str, Any]]]:
        """Scores for every item; a curve the model refuses is dead-lettered."""
        if self.scorer is not None:
            with tracer.start_as_current_span("built-in model"):
                verdicts = await self.scorer.score([it.tele for it in items])
            batch_trace_id = _trace_id(batch_span)
            for it, v in zip(items, verdicts, strict=True):
                v["trace_id"] = batch_trace_id if it.span is None else _trace_id(it.span)
            return list(zip(items, verdicts, strict=True))
        channels = items[0].tele.channel_names
        if any(it.tele.channel_names != channels for it in items):
            # one batch, one channel layout: score each layout on its own
            layouts: dict[tuple[str, ...], list[_Item]] = {}
            for it in items:
                layouts.setdefault(it.tele.channel_names, []).append(it)
            scored: list[tuple[_Item, dict[str, Any]]] = []
            for group in layouts.values():
                scored.extend(await self._score(group, batch_span))
            return scored
        with tracer.start_as_current_span("inference call") as span:
            span.set_attribute("linewatch.batch_size", len(items))
            samples = np.concatenate([it.tele.values for it in items]).tobytes()
            lengths = (
                [n for it in items for n in it.tele.channel_lengths]
                if channels
                else [len(it.tele.values) for it in items]
            )
            delay = 0.05
            while True:
                try:
                    result = await self._inference.predict(
                        model=self.rule.model,
                        version=self.rule.model_version,
                        samples_f32=samples,
                        lengths=lengths,
                        channels=channels,
                    )
                    break
                except InvalidArgument as exc:
                    if len(items) == 1:
                        it = items[0]
                        payload = json.dumps(
                            {"device_id": it.tele.device_id, "msg_id": it.tele.msg_id}
                        )
                        await self._dead_letter(it.topic, payload.encode(), f"model: {exc.message}")
                        self._remember(it.tele.msg_id)  # a redelivery is not refused twice
                        self._settle(it)
                        return []
                    out: list[tuple[_Item, dict[str, Any]]] = []
                    for it in items:
                        out.extend(await self._score([it], batch_span))
                    return out
                except LinewatchError as exc:
                    self.last_error = f"inference: {exc.message}"
                    metrics.ERRORS.labels("inference").inc()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
        return self._verdicts(items, result, batch_span)

    def _verdicts(
        self, items: list[_Item], result: BatchResult, batch_span: Span
    ) -> list[tuple[_Item, dict[str, Any]]]:
        labels = result.labels
        model, version = result.model, result.version
        batch_trace_id = _trace_id(batch_span)
        rows = np.round(result.probabilities.astype(np.float64), 6).tolist()
        out: list[tuple[_Item, dict[str, Any]]] = []
        for item, top, ok, row in zip(items, result.label_index, result.ok, rows, strict=True):
            tele = item.tele
            out.append(
                (
                    item,
                    {
                        "device_id": tele.device_id,
                        "point": tele.point,
                        "ts": tele.ts_ms,
                        "msg_id": tele.msg_id,
                        "model": model,
                        "model_version": version,
                        "label": labels[top],
                        "scores": dict(zip(labels, row, strict=True)),
                        "ok": ok,
                        "latency_ms": 0.0,
                        "trace_id": batch_trace_id if item.span is None else _trace_id(item.span),
                    },
                )
            )
        return out

    async def _publish_and_archive(
        self, scored: list[tuple[_Item, dict[str, Any]]], batch_span: Span
    ) -> None:
        """Publish the verdicts and archive the batch at once; both must succeed."""
        rule = self.rule
        now = time.perf_counter()
        batch_props = inject_user_properties(trace.set_span_in_context(batch_span))
        messages: list[tuple[str, bytes, list[tuple[str, str]]]] = []
        for item, verdict in scored:
            verdict["latency_ms"] = round((now - item.received) * 1000, 3)
            topic = self.template.render(
                item.topic, device_id=item.tele.device_id, point=item.tele.point
            )
            props = (
                inject_user_properties(trace.set_span_in_context(item.span))
                if item.span is not None
                else batch_props
            )
            messages.append((topic, orjson.dumps(verdict), props))
            verdict["_topic"] = topic
        if rule.archive:
            await asyncio.gather(self._publish_verdicts(messages), self._archive(scored))
        else:
            await self._publish_verdicts(messages)
        self._finish(scored, batch_span)

    async def _publish_verdicts(
        self, messages: list[tuple[str, bytes, list[tuple[str, str]]]]
    ) -> None:
        with tracer.start_as_current_span("publish verdicts", kind=SpanKind.PRODUCER) as span:
            span.set_attribute("messaging.batch.message_count", len(messages))
            # waits across reconnects until the broker acknowledged every verdict
            await self.client.publish_many(messages, qos=self.rule.qos, timeout=None)

    async def _archive(self, scored: list[tuple[_Item, dict[str, Any]]]) -> None:
        rule = self.rule
        with tracer.start_as_current_span("archive") as span:
            span.set_attribute("linewatch.rows", 2 * len(scored))
            tele_rows: list[tuple[Any, ...]] = []
            verdict_rows: list[tuple[Any, ...]] = []
            for item, v in scored:
                t = item.tele
                attrs = orjson.dumps(t.attrs).decode()
                tele_rows.append(
                    (
                        rule.name,
                        t.msg_id,
                        t.device_id,
                        t.point,
                        t.ts_ms,
                        item.topic,
                        t.values.tobytes(),
                        attrs,
                    )
                )
                verdict_rows.append(
                    (
                        rule.name,
                        t.msg_id,
                        t.device_id,
                        t.point,
                        t.ts_ms,
                        v["model"],
                        v["model_version"],
                        v["label"],
                        v["ok"],
                        scores_json(v["scores"]),
                        v["latency_ms"],
                        v["trace_id"],
                        v["_topic"],
                        attrs,
                    )
                )
            await self._retry("archive", lambda: self.deps.archive.write(tele_rows, verdict_rows))

    def _finish(self, scored: list[tuple[_Item, dict[str, Any]]], batch_span: Span) -> None:
        """The batch is published and archived: count it and acknowledge its messages."""
        rule = self.rule
        done = time.perf_counter()
        counters = self.counters
        alarm = rule.alarm
        for item, v in scored:
            if alarm.threshold:
                self.deps.alarms.observe(rule.name, alarm, item.tele.device_id, bool(v["ok"]))
            self._settle(item)
        self._remember_all([item.tele.msg_id for item, _ in scored])
        metrics.LATENCY.observe_many([done - item.received for item, _ in scored])
        counters.verdicts += len(scored)
        counters.out_rate.add(len(scored))
        counters.lag_ms = round((done - scored[0][0].received) * 1000, 3)
        labels: dict[str, int] = {}
        for _, v in scored:
            labels[v["label"]] = labels.get(v["label"], 0) + 1
        for label, n in labels.items():
            metrics.VERDICTS.labels(rule.name, label).inc(n)
        self._stream(scored, batch_span)

    def _stream(self, scored: list[tuple[_Item, dict[str, Any]]], batch_span: Span) -> None:
        vs = self.deps.verdict_stream
        ts = self.deps.telemetry_stream
        if not vs.subscribers and not ts.subscribers:
            return
        from linewatch_ingest.convert import stamp as make_stamp

        for item, v in scored:
            t = item.tele
            stamp = make_stamp(t.ts_ms)
            if vs.subscribers:
                vs.publish(
                    ingest_pb2.VerdictRecord(
                        msg_id=t.msg_id,
                        device_id=t.device_id,
                        point=t.point,
                        ts=stamp,
                        rule=self.rule.name,
                        model=v["model"],
                        model_version=v["model_version"],
                        label=v["label"],
                        ok=v["ok"],
                        scores=v["scores"],
                        latency_ms=v["latency_ms"],
                        trace_id=v["trace_id"],
                        traceparent=current_traceparent(
                            trace.set_span_in_context(item.span or batch_span)
                        ),
                        topic=v["_topic"],
                        attrs=t.attrs,
                        envelope=envelope_record(v.get("envelope")),
                    )
                )
            if ts.subscribers:
                ts.publish(
                    ingest_pb2.TelemetryRecord(
                        msg_id=t.msg_id,
                        device_id=t.device_id,
                        point=t.point,
                        ts=stamp,
                        topic=item.topic,
                        rule=self.rule.name,
                        curve=common_pb2.Curve(samples_f32=t.values.tobytes()),
                        attrs=t.attrs,
                    )
                )

    def _remember(self, msg_id: str) -> None:
        self._remember_all([msg_id])

    def _remember_all(self, msg_ids: list[str]) -> None:
        self._done.add_all(msg_ids)


def _trace_id(span: Span) -> str:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
