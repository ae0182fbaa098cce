"""The pipeline of one rule: the runtime's MQTT intake (receive → validate → batch →
acknowledge), and per batch: score → publish → archive → alarms.

The intake (:class:`linewatch.runtime.intake.Intake`) parses each message in the MQTT
handler (:func:`~linewatch_ingest.payload.parse_telemetry`; any failure, however
malformed the payload, is a dead letter) and hands batches to :meth:`RuleWorker._commit`;
a message is acknowledged (PUBACK) only once its verdict is published and its archive row
written, or once it is dead-lettered. So a crash at any point leaves it unacknowledged and
the broker redelivers it.

Duplicates: a message whose ``(device_id, msg_id, ts)`` equals one
handled before is acknowledged without being scored again and counted
(:mod:`linewatch_ingest.dedup`); one equal to a message still in flight is acknowledged
with it.

Throughput: the rule's intake opens ``sessions`` MQTT sessions on one shared subscription,
so the broker's inflight window per session (Mosquitto's stock 20) does not cap the rate.
Backpressure: what waits is what the broker sent unacknowledged (its flow control bounds
it); QoS 0 beyond ``queue_size`` waiting is dropped and counted. Failed steps (inference,
publish, archive) are retried with capped backoff; nothing accepted is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import orjson
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.errors import InvalidArgument, LinewatchError
from linewatch.runtime.fanout import FanOut
from linewatch.runtime.intake import DeadLetter, DeadLetterPolicy, Entry, Intake
from linewatch.runtime.mqtt import MqttMessage
from linewatch.runtime.retry import Backoff, retry
from linewatch.runtime.telemetry import extract_user_properties, inject_user_properties
from linewatch.v1 import ingest_pb2
from linewatch_ingest import metrics
from linewatch_ingest.alarms import AlarmEngine
from linewatch_ingest.archive import ArchiveWriter
from linewatch_ingest.config import IngestConfig, RuleConfig
from linewatch_ingest.dedup import MsgKey, RecentIds
from linewatch_ingest.envelope_store import EnvelopeStore
from linewatch_ingest.inference_client import InferenceClient
from linewatch_ingest.payload import Telemetry, parse_telemetry
from linewatch_ingest.rules import TopicTemplate
from linewatch_ingest.rulestats import Counters
from linewatch_ingest.scorers import EnvelopeScorer, make_scorer
from linewatch_ingest.store import IngestStore
from linewatch_ingest.verdicts import Verdict, archive_rows, stream_records, trace_id, verdicts

__all__ = ["PipelineDeps", "RuleWorker"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

T = TypeVar("T")

OWN_TOPICS = "linewatch/"
"""linewatch's own topics (dead letters, …): never ingested."""


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
class _Tele:
    tele: Telemetry
    span: Span | None

    @property
    def key(self) -> MsgKey | None:
        t = self.tele
        return (t.device_id, t.msg_id, t.ts_ms) if t.has_msg_id else None


_Entry = Entry[_Tele]


def _key(value: _Tele) -> MsgKey | None:
    return value.key


class RuleWorker:
    """Consumes one rule's topic through its intake and runs its pipeline."""

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
        self._labels = {"rule": rule.name}
        self.scorer: EnvelopeScorer | None = make_scorer(rule, EnvelopeStore(deps.store.db))
        """A built-in model scoring in ingest (None: the inference service scores)."""
        self._inference = deps.targets.get(rule.target, deps.inference)
        self.intake: Intake[_Tele] = Intake(
            name=rule.name,
            broker=broker,
            client_id=client_id,
            topic_filters=[rule.source_topic],
            parse=self._parse,
            commit=self._commit,
            dead_letters=DeadLetterPolicy(
                source="ingest",
                topic=cfg.deadletter_topic,
                record=self._record_dead_letters,
                extra={"rule": rule.name},
            ),
            qos=rule.qos,
            sessions=cfg.sessions,
            share_group=f"linewatch-ingest-{rule.name}",
            receive_maximum=cfg.receive_maximum,
            batch_max=cfg.batch.max_size,
            batch_delay_s=cfg.batch.max_delay_ms / 1000,
            workers=workers,
            qos0_limit=cfg.queue_size,
            key=_key,
            on_duplicate=self._duplicate,
            on_error=self._failed,
            on_dead_letter=self._dead_lettered,
        )
        self._done = RecentIds(cfg.dedup_cache)
        self._deadletter_topic = cfg.deadletter_topic
        self._warm = False
        self.counters = Counters()
        self.state = ingest_pb2.WORKER_STATE_STOPPED
        self._connect_task: asyncio.Task[None] | None = None
        self._m_received = metrics.RECEIVED.labels(rule.name)
        self._m_duplicates = metrics.DUPLICATES.labels(rule.name)
        self._m_dropped = metrics.DROPPED.labels(rule.name)
        self._received_counted = 0
        self._m_pre_queue = metrics.PRE_QUEUE.labels(rule.name)
        self._m_post_queue = metrics.POST_QUEUE.labels(rule.name)

    @property
    def client(self) -> Intake[_Tele]:
        """The rule's MQTT sessions (``connected``, ``wait_connected``)."""
        return self.intake

    @property
    def last_error(self) -> str:
        """The latest failure (empty once connected again)."""
        return self.intake.last_error

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the memory of handled messages, then connect (retrying in the background
        while the broker is down) and subscribe."""
        self.state = ingest_pb2.WORKER_STATE_RUNNING
        self._connect_task = asyncio.create_task(self._begin(), name=f"start-{self.rule.name}")

    async def _begin(self) -> None:
        await self._load_handled()
        await self.intake.start()

    async def _load_handled(self) -> None:
        """Fill the memory of handled messages from the archive's latest verdicts."""
        limit = self.deps.config.dedup_cache
        if not self.rule.archive or limit <= 0:
            self._warm = limit > 0
            return
        try:
            keys = await self.deps.store.recent_keys(self.rule.name, limit)
        except Exception as exc:  # the database is down or refuses: never fatal here
            # stay cold: every batch asks the archive until the rule restarts
            log.warning(
                "cannot load handled messages; checking the archive per batch",
                extra={"fields": {"rule": self.rule.name, "error": repr(exc)}},
            )
            return
        self._done.add_all(keys)
        self._warm = True

    def pause(self) -> None:
        """Stop taking messages: handlers wait, the broker holds the rest."""
        if self.state == ingest_pb2.WORKER_STATE_RUNNING:
            self.intake.pause()
            self.state = ingest_pb2.WORKER_STATE_PAUSED

    def resume(self) -> None:
        """Take messages again."""
        if self.state == ingest_pb2.WORKER_STATE_PAUSED:
            self.intake.resume()
            self.state = ingest_pb2.WORKER_STATE_RUNNING

    async def stop(self, *, grace: float = 5.0, forget_session: bool = False) -> None:
        """Finish what is in flight (up to ``grace`` seconds), then disconnect.

        Messages not finished by then stay unacknowledged and are redelivered later.
        """
        if self._connect_task is not None:
            self._connect_task.cancel()
            await asyncio.gather(self._connect_task, return_exceptions=True)
        await self.intake.stop(grace=grace, forget_session=forget_session)
        self.state = ingest_pb2.WORKER_STATE_STOPPED
        self._m_pre_queue.set(0)
        self._m_post_queue.set(0)

    def set_workers(self, workers: int) -> None:
        """Run ``workers`` batch workers (extra ones finish their batch and exit)."""
        self.intake.set_workers(workers)

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
            duplicates=c.duplicates,
            pre_queue=self.intake.queued,
            post_queue=self.intake.busy,
            last_error=self.last_error,
            lag_ms=c.lag_ms,
        )

    # --- receive ---------------------------------------------------------------------

    def _parse(self, msg: MqttMessage) -> _Tele | None:
        """Validate one message (raises: a dead letter); ``None``: handled before."""
        self.counters.received += 1
        if msg.topic.startswith(OWN_TOPICS) or msg.topic == self._deadletter_topic:
            return None  # never re-ingest linewatch's own messages
        tele = parse_telemetry(msg.payload)
        if tele.has_msg_id and (tele.device_id, tele.msg_id, tele.ts_ms) in self._done:
            self._duplicate()
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
        return _Tele(tele, span)

    def _duplicate(self) -> None:
        self.counters.duplicates += 1
        self._m_duplicates.inc()

    def _dead_lettered(self, n: int) -> None:
        self.counters.dead_letters += n
        metrics.DEAD_LETTERS.labels(**self._labels).inc(n)

    def _failed(self, stage: str, exc: BaseException) -> None:
        metrics.ERRORS.labels(stage).inc()

    def _count_received(self) -> None:
        """Bring the received metric and rate up to date (once per batch, not per message)."""
        n = self.counters.received - self._received_counted
        if n:
            self._received_counted += n
            self._m_received.inc(n)
            self.counters.in_rate.add(n)
        dropped = self.intake.dropped - self.counters.dropped
        if dropped:
            self.counters.dropped += dropped
            self._m_dropped.inc(dropped)

    async def _record_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
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
        await self.deps.store.add_dead_letters(rows)

    # --- batches ---------------------------------------------------------------------

    async def _retry(self, stage: str, fn: Callable[[], Awaitable[T]]) -> T:
        return await retry(fn, stage=stage, on_error=self.intake_error)

    def intake_error(self, stage: str, exc: BaseException) -> None:
        """A failed step: shown in the status, counted."""
        self.intake.last_error = f"{stage}: {getattr(exc, 'message', None) or exc!r}"
        metrics.ERRORS.labels(stage).inc()

    async def _commit(self, entries: list[_Entry]) -> None:
        self._count_received()
        self._m_pre_queue.set(self.intake.queued)
        self._m_post_queue.set(self.intake.busy)
        # A traced message's trace continues through its batch (and so into inference);
        # the batch links every other traced message it carries.
        spans = [e.value.span for e in entries if e.value is not None and e.value.span]
        parent = trace.set_span_in_context(spans[0]) if spans else None
        links = [Link(sp.get_span_context()) for sp in spans[1:]]
        with tracer.start_as_current_span(
            "ingest batch", context=parent, links=links
        ) as batch_span:
            batch_span.set_attribute("linewatch.batch_size", len(entries))
            metrics.BATCH_SIZE.observe(len(entries))
            if self.rule.archive:
                entries = await self._skip_archived(entries)
                if not entries:
                    return
            scored = await self._score(entries)
            if scored:
                await self._publish_and_archive(scored, batch_span)

    async def _skip_archived(self, entries: list[_Entry]) -> list[_Entry]:
        """Settle the entries the archive already holds (and return the others).

        The memory of handled messages is warm (loaded from the archive at start), so only
        a redelivery (DUP) may have been handled before and forgotten by a crash; the
        archive is asked about those alone.
        """
        keys = [
            k
            for e in entries
            if (e.message.dup or not self._warm) and (k := _value(e).key) is not None
        ]
        if not keys:
            return entries
        store, rule = self.deps.store, self.rule.name
        seen = await self._retry("dedup", lambda: store.archived_keys(rule, keys))
        if not seen:
            return entries
        rest: list[_Entry] = []
        for e in entries:
            key = _value(e).key
            if key in seen:
                self._done.add_all([key])
                self._duplicate()
                self._end_span(e)
                self.intake.settle(e)
            else:
                rest.append(e)
        return rest

    async def _score(self, entries: list[_Entry]) -> list[tuple[_Entry, Verdict]]:
        """Verdicts for every entry; a curve the model refuses is dead-lettered."""
        if self.scorer is not None:
            with tracer.start_as_current_span("built-in model"):
                vs = await self.scorer.score([_value(e).tele for e in entries])
            batch_trace_id = trace_id(trace.get_current_span())
            for e, v in zip(entries, vs, strict=True):
                span = _value(e).span
                v["trace_id"] = batch_trace_id if span is None else trace_id(span)
            return list(zip(entries, vs, strict=True))
        channels = _value(entries[0]).tele.channel_names
        if any(_value(e).tele.channel_names != channels for e in entries):
            # one batch, one channel layout: score each layout on its own
            layouts: dict[tuple[str, ...], list[_Entry]] = {}
            for e in entries:
                layouts.setdefault(_value(e).tele.channel_names, []).append(e)
            scored: list[tuple[_Entry, Verdict]] = []
            for group in layouts.values():
                scored.extend(await self._score(group))
            return scored
        with tracer.start_as_current_span("inference call") as span:
            span.set_attribute("linewatch.batch_size", len(entries))
            teles = [_value(e).tele for e in entries]
            samples = np.concatenate([t.values for t in teles]).tobytes()
            lengths = (
                [n for t in teles for n in t.channel_lengths]
                if channels
                else [len(t.values) for t in teles]
            )
            backoff = Backoff(0.05, 2.0)
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
                    if len(entries) == 1:
                        await self.intake.dead_letter(entries, f"model: {exc.message}")
                        key = _value(entries[0]).key
                        if key is not None:
                            self._done.add_all([key])  # a redelivery is not refused twice
                        return []
                    out: list[tuple[_Entry, Verdict]] = []
                    for e in entries:
                        out.extend(await self._score([e]))
                    return out
                except LinewatchError as exc:
                    self.intake_error("inference", exc)
                    await asyncio.sleep(backoff.next())
        batch_span = trace.get_current_span()
        vs = verdicts([(_value(e).tele, _value(e).span) for e in entries], result, batch_span)
        return list(zip(entries, vs, strict=True))

    async def _publish_and_archive(
        self, scored: list[tuple[_Entry, Verdict]], batch_span: Span
    ) -> None:
        """Publish the verdicts and archive the batch at once; both must succeed."""
        now = time.perf_counter()
        batch_props = inject_user_properties(trace.set_span_in_context(batch_span))
        messages: list[tuple[str, bytes, list[tuple[str, str]]]] = []
        for entry, verdict in scored:
            value = _value(entry)
            verdict["latency_ms"] = round((now - entry.received) * 1000, 3)
            topic = self.template.render(
                entry.topic, device_id=value.tele.device_id, point=value.tele.point
            )
            props = (
                inject_user_properties(trace.set_span_in_context(value.span))
                if value.span is not None
                else batch_props
            )
            messages.append((topic, orjson.dumps(verdict), props))
            verdict["_topic"] = topic
        publish = self._publish_verdicts(messages)
        if self.rule.archive:
            await asyncio.gather(publish, self._archive(scored))
        else:
            await publish
        self._finish(scored, batch_span)

    async def _publish_verdicts(
        self, messages: list[tuple[str, bytes, list[tuple[str, str]]]]
    ) -> None:
        with tracer.start_as_current_span("publish verdicts", kind=SpanKind.PRODUCER) as span:
            span.set_attribute("messaging.batch.message_count", len(messages))
            # waits across reconnects until the broker acknowledged every verdict
            await self.intake.publish_spread(messages, qos=self.rule.qos)

    async def _archive(self, scored: list[tuple[_Entry, Verdict]]) -> None:
        with tracer.start_as_current_span("archive") as span:
            span.set_attribute("linewatch.rows", 2 * len(scored))
            tele_rows, verdict_rows = archive_rows(
                self.rule.name, [(_value(e).tele, e.topic, v) for e, v in scored]
            )
            await self._retry("archive", lambda: self.deps.archive.write(tele_rows, verdict_rows))

    def _finish(self, scored: list[tuple[_Entry, Verdict]], batch_span: Span) -> None:
        """The batch is published and archived: count it and acknowledge its messages."""
        rule = self.rule
        done = time.perf_counter()
        counters = self.counters
        alarm = rule.alarm
        keys: list[MsgKey] = []
        for entry, v in scored:
            value = _value(entry)
            if alarm.threshold:
                self.deps.alarms.observe(rule.name, alarm, value.tele.device_id, bool(v["ok"]))
            self._end_span(entry)
            self.intake.settle(entry)
            if (key := value.key) is not None:
                keys.append(key)
        self._done.add_all(keys)
        metrics.LATENCY.observe_many([done - entry.received for entry, _ in scored])
        counters.verdicts += len(scored)
        counters.out_rate.add(len(scored))
        counters.lag_ms = round((done - scored[0][0].received) * 1000, 3)
        labels: dict[str, int] = {}
        for _, v in scored:
            labels[v["label"]] = labels.get(v["label"], 0) + 1
        for label, n in labels.items():
            metrics.VERDICTS.labels(rule.name, label).inc(n)
        self._stream(scored, batch_span)

    def _stream(self, scored: list[tuple[_Entry, Verdict]], batch_span: Span) -> None:
        vs = self.deps.verdict_stream
        ts = self.deps.telemetry_stream
        if not vs.subscribers and not ts.subscribers:
            return
        records = [(_value(e).tele, e.topic, _value(e).span, v) for e, v in scored]
        out_v, out_t = stream_records(
            self.rule.name,
            records,
            batch_span,
            verdicts=bool(vs.subscribers),
            telemetry=bool(ts.subscribers),
        )
        for record in out_v:
            vs.publish(record)
        for trecord in out_t:
            ts.publish(trecord)

    @staticmethod
    def _end_span(entry: _Entry) -> None:
        if entry.value is not None and entry.value.span is not None:
            entry.value.span.end()


def _value(entry: _Entry) -> _Tele:
    value = entry.value
    assert value is not None
    return value
