"""The pipeline of one rule: the runtime's MQTT intake (receive → validate → batch →
acknowledge), and per batch: score → publish → archive → alarms.

The intake (:class:`linewatch.runtime.intake.Intake`) parses each message in the MQTT
handler (:mod:`linewatch_ingest.admission`; any failure, however malformed the payload,
is a dead letter) and hands batches to :meth:`RuleWorker._commit`, which scores them
(:mod:`linewatch_ingest.batch_scoring`) and sends the verdicts out
(:mod:`linewatch_ingest.outputs`);
a message is acknowledged (PUBACK) only once its verdict is published and its archive row
written, or once it is dead-lettered. So a crash at any point leaves it unacknowledged and
the broker redelivers it.

Duplicates: a message whose ``(device_id, msg_id, ts)`` equals one
handled before is acknowledged without being scored again and counted
(:mod:`linewatch_ingest.admission`); one equal to a message still in flight is acknowledged
with it.

Throughput: the rule's intake opens ``sessions`` MQTT sessions on one shared subscription,
so the broker's inflight window per session (Mosquitto's stock 20) does not cap the rate.
Backpressure: what waits is what the broker sent unacknowledged (its flow control bounds
it); QoS 0 beyond ``queue_size`` waiting is dropped and counted. Failed steps (inference,
publish, archive) are retried with capped backoff; nothing accepted is dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.trace import Link, Span

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.fanout import FanOut
from linewatch.runtime.intake import DeadLetter, DeadLetterPolicy, Intake
from linewatch.v1 import ingest_pb2
from linewatch_ingest import metrics
from linewatch_ingest.admission import (
    Admission,
    Admitted,
    AdmittedEntry,
    admitted,
    admitted_key,
)
from linewatch_ingest.alarms import AlarmEngine
from linewatch_ingest.archive import ArchiveWriter
from linewatch_ingest.batch_scoring import BatchScorer, Scored
from linewatch_ingest.config import IngestConfig, RuleConfig
from linewatch_ingest.dedup import MsgKey
from linewatch_ingest.envelope_store import EnvelopeStore
from linewatch_ingest.inference_client import InferenceClient
from linewatch_ingest.outputs import Outputs
from linewatch_ingest.rules import TopicTemplate
from linewatch_ingest.rulestats import Counters
from linewatch_ingest.scorers import EnvelopeScorer, make_scorer
from linewatch_ingest.shadow import ShadowScorer
from linewatch_ingest.store import IngestStore

__all__ = ["PipelineDeps", "RuleWorker"]

tracer = trace.get_tracer(__name__)


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
    shadow: ShadowScorer | None = None
    """Scores batches again with a model's candidate version (shadow evaluation)."""


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
        self.counters = Counters()
        self.scorer: EnvelopeScorer | None = make_scorer(rule, EnvelopeStore(deps.store.db))
        """A built-in model scoring in ingest (None: the inference service scores)."""
        self.admission = Admission(
            rule,
            deps.store,
            dedup_cache=cfg.dedup_cache,
            deadletter_topic=cfg.deadletter_topic,
            counters=self.counters,
            on_error=self.intake_error,
        )
        self.intake: Intake[Admitted] = Intake(
            name=rule.name,
            broker=broker,
            client_id=client_id,
            topic_filters=[rule.source_topic],
            parse=self.admission.parse,
            commit=self._commit,
            dead_letters=DeadLetterPolicy(
                source="ingest",
                topic=cfg.deadletter_topic,
                record=self._record_dead_letters,
                extra={"rule": rule.name},
            ),
            qos=rule.qos,
            # a teach-in model learns from a device's cycles in order: one session keeps
            # the broker's order (a shared subscription spreads it over sessions)
            sessions=1 if self.scorer is not None else cfg.sessions,
            share_group=f"linewatch-ingest-{rule.name}",
            share=cfg.replicas > 1 and self.scorer is None,  # replicas split the topic
            receive_maximum=cfg.receive_maximum,
            batch_max=cfg.batch.max_size,
            batch_delay_s=cfg.batch.max_delay_ms / 1000,
            workers=workers,
            qos0_limit=cfg.queue_size,
            key=admitted_key,
            on_duplicate=self.admission.duplicate,
            on_error=self._failed,
            on_dead_letter=self._dead_lettered,
        )
        self.scoring = BatchScorer(
            rule,
            deps.targets.get(rule.target, deps.inference),
            self.scorer,
            dead_letter=self.intake.dead_letter,
            remember=self.admission.remember,
            on_error=self.intake_error,
            shadow=deps.shadow if not rule.target else None,
        )
        self.outputs = Outputs(
            rule,
            template,
            intake=self.intake,
            archive=deps.archive,
            verdict_stream=deps.verdict_stream,
            telemetry_stream=deps.telemetry_stream,
            on_error=self.intake_error,
        )
        self.state = ingest_pb2.WORKER_STATE_STOPPED
        self._connect_task: asyncio.Task[None] | None = None
        self._m_received = metrics.RECEIVED.labels(rule.name)
        self._m_dropped = metrics.DROPPED.labels(rule.name)
        self._received_counted = 0
        self._m_pre_queue = metrics.PRE_QUEUE.labels(rule.name)
        self._m_post_queue = metrics.POST_QUEUE.labels(rule.name)

    @property
    def client(self) -> Intake[Admitted]:
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
        await self.admission.load_handled()
        await self.intake.start()

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

    # --- counting ---------------------------------------------------------------------

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

    def intake_error(self, stage: str, exc: BaseException) -> None:
        """A failed step: shown in the status, counted."""
        self.intake.last_error = f"{stage}: {getattr(exc, 'message', None) or exc!r}"
        metrics.ERRORS.labels(stage).inc()

    async def _commit(self, entries: list[AdmittedEntry]) -> None:
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
                entries = await self.admission.skip_archived(entries, self.intake.settle)
                if not entries:
                    return
            scored = await self.scoring.score(entries)
            if scored:
                await self.outputs.publish_and_archive(scored, batch_span)
                self._finish(scored, batch_span)

    async def _record_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        await self.admission.record_dead_letters(letters)
        self.deps.alarms.observe_dead_letters(self.rule.name, self.rule.alarm, len(letters))

    def _finish(self, scored: Scored, batch_span: Span) -> None:
        """The batch is published and archived: count it and acknowledge its messages."""
        name, alarm = self.rule.name, self.rule.alarm
        done = time.perf_counter()
        counters = self.counters
        observe, settle = self.deps.alarms.observe, self.intake.settle  # per message
        keys: list[MsgKey] = []
        for entry, v in scored:
            value = admitted(entry)
            observe(name, alarm, value.tele.device_id, bool(v.ok))
            if value.span is not None:
                value.span.end()
            settle(entry)
            if value.key is not None:
                keys.append(value.key)
        self.admission.remember(keys)
        metrics.LATENCY.observe_many([done - entry.received for entry, _ in scored])
        counters.verdicts += len(scored)
        counters.out_rate.add(len(scored))
        counters.lag_ms = round((done - scored[0][0].received) * 1000, 3)
        for label, n in Counter(v.label for _, v in scored).items():
            metrics.VERDICTS.labels(name, label).inc(n)
        self.outputs.stream(scored, batch_span)
