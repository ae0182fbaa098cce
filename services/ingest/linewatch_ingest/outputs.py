"""A scored batch's outputs: its verdicts published over MQTT and, at once, the batch
archived (both must succeed before its messages are acknowledged), then the live
verdict and telemetry streams fed (only the kinds someone listens to)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from linewatch.runtime.fanout import FanOut
from linewatch.runtime.intake import Intake
from linewatch.runtime.retry import retry
from linewatch.runtime.telemetry import inject_user_properties
from linewatch.v1 import ingest_pb2
from linewatch_ingest.admission import Admitted, admitted
from linewatch_ingest.archive import ArchiveWriter
from linewatch_ingest.batch_scoring import Scored
from linewatch_ingest.config import RuleConfig
from linewatch_ingest.rules import TopicTemplate
from linewatch_ingest.verdicts import archive_rows, stream_records

__all__ = ["Outgoing", "Outputs"]

tracer = trace.get_tracer("linewatch_ingest.pipeline")

Outgoing = tuple[str, bytes, list[tuple[str, str]]]
"""One MQTT message to publish: topic, payload, user properties."""


class Outputs:
    """Where one rule's verdicts go."""

    def __init__(
        self,
        rule: RuleConfig,
        template: TopicTemplate,
        *,
        intake: Intake[Admitted],
        archive: ArchiveWriter,
        verdict_stream: FanOut[ingest_pb2.VerdictRecord],
        telemetry_stream: FanOut[ingest_pb2.TelemetryRecord],
        on_error: Callable[[str, BaseException], None],
    ) -> None:
        self.rule = rule
        self.template = template
        self._intake = intake
        self._archive_writer = archive
        self._verdict_stream = verdict_stream
        self._telemetry_stream = telemetry_stream
        self._on_error = on_error

    async def publish_and_archive(self, scored: Scored, batch_span: Span) -> None:
        """Publish the verdicts and archive the batch at once; both must succeed."""
        now = time.perf_counter()
        batch_props = inject_user_properties(trace.set_span_in_context(batch_span))
        render = self.template.render
        messages: list[Outgoing] = []
        for entry, verdict in scored:
            value = admitted(entry)
            tele = value.tele
            verdict.latency_ms = round((now - entry.received) * 1000, 3)
            topic = render(entry.message.topic, device_id=tele.device_id, point=tele.point)
            props = (
                inject_user_properties(trace.set_span_in_context(value.span))
                if value.span is not None
                else batch_props
            )
            messages.append((topic, verdict.to_json(), props))
            verdict.topic = topic
        publish = self._publish(messages)
        if self.rule.archive:
            await asyncio.gather(publish, self._archive(scored))
        else:
            await publish

    async def _publish(self, messages: list[Outgoing]) -> None:
        with tracer.start_as_current_span("publish verdicts", kind=SpanKind.PRODUCER) as span:
            span.set_attribute("messaging.batch.message_count", len(messages))
            # waits across reconnects until the broker acknowledged every verdict
            await self._intake.publish_spread(messages, qos=self.rule.qos)

    async def _archive(self, scored: Scored) -> None:
        with tracer.start_as_current_span("archive") as span:
            span.set_attribute("linewatch.rows", 2 * len(scored))
            tele_rows, verdict_rows = archive_rows(
                self.rule.name, [(admitted(e).tele, e.topic, v) for e, v in scored]
            )
            writer = self._archive_writer
            await retry(
                lambda: writer.write(tele_rows, verdict_rows),
                stage="archive",
                on_error=self._on_error,
            )

    def stream(self, scored: Scored, batch_span: Span) -> None:
        """Feed the live streams (nothing to do while nobody listens)."""
        vs = self._verdict_stream
        ts = self._telemetry_stream
        if not vs.subscribers and not ts.subscribers:
            return
        records = [(admitted(e).tele, e.topic, admitted(e).span, v) for e, v in scored]
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
