"""What a scored batch turns into: a :class:`Verdict` per curve, and its three forms (the
MQTT verdict JSON, the archive row, the live-stream :class:`VerdictRecord`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from opentelemetry import trace
from opentelemetry.trace import Span

from linewatch.runtime.telemetry import current_traceparent
from linewatch.v1 import common_pb2, ingest_pb2
from linewatch_ingest.convert import stamp as make_stamp
from linewatch_ingest.inference_client import BatchResult
from linewatch_ingest.payload import Telemetry
from linewatch_ingest.store import scores_json

__all__ = ["Verdict", "archive_rows", "envelope_record", "stream_records", "trace_id", "verdicts"]


@dataclass(slots=True)
class Verdict:
    """One curve's verdict.

    Its JSON (:meth:`to_json`, the MQTT verdict body) holds ``device_id``, ``point``,
    ``ts``, ``msg_id``, ``model``, ``model_version``, ``label``, ``scores``, ``ok``,
    ``latency_ms``, ``trace_id``; rules on the built-in ``envelope`` model add ``envelope``
    (``outside`` [first, last] or null, ``max_deviation``, ``learned``, ``teach_in`` and,
    with monitoring windows, ``windows``). ``topic`` (where it was published) is filled in
    by the pipeline and is not part of the JSON.
    """

    device_id: str
    point: str
    ts: int
    msg_id: str
    model: str
    model_version: str
    label: str
    scores: dict[str, float]
    ok: bool
    latency_ms: float = 0.0
    trace_id: str = ""
    envelope: dict[str, Any] | None = None
    topic: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The documented verdict body."""
        body: dict[str, Any] = {
            "device_id": self.device_id,
            "point": self.point,
            "ts": self.ts,
            "msg_id": self.msg_id,
            "model": self.model,
            "model_version": self.model_version,
            "label": self.label,
            "scores": self.scores,
            "ok": self.ok,
            "latency_ms": self.latency_ms,
            "trace_id": self.trace_id,
        }
        if self.envelope is not None:
            body["envelope"] = self.envelope
        return body

    def to_json(self) -> bytes:
        """The MQTT verdict payload."""
        return orjson.dumps(self.to_dict())

    def to_row(self, rule: str, attrs: str) -> tuple[Any, ...]:
        """The archive row (``VERDICT_COLUMNS`` order); ``attrs`` is the curve's JSON attrs."""
        return (
            rule, self.msg_id, self.device_id, self.point, self.ts, self.model,
            self.model_version, self.label, self.ok, scores_json(self.scores),
            self.latency_ms, self.trace_id, self.topic, attrs,
        )  # fmt: skip

    def to_proto(
        self, rule: str, *, traceparent: str, attrs: dict[str, str]
    ) -> ingest_pb2.VerdictRecord:
        """The live-stream record."""
        return ingest_pb2.VerdictRecord(
            msg_id=self.msg_id,
            device_id=self.device_id,
            point=self.point,
            ts=make_stamp(self.ts),
            rule=rule,
            model=self.model,
            model_version=self.model_version,
            label=self.label,
            ok=self.ok,
            scores=self.scores,
            latency_ms=self.latency_ms,
            trace_id=self.trace_id,
            traceparent=traceparent,
            topic=self.topic,
            attrs=attrs,
            envelope=envelope_record(self.envelope),
        )


def envelope_record(envelope: dict[str, Any] | None) -> ingest_pb2.EnvelopeVerdict | None:
    """The stream form of a verdict's ``envelope`` object (``None`` for other models)."""
    if envelope is None:
        return None
    return ingest_pb2.EnvelopeVerdict(
        outside=envelope["outside"] or [],
        max_deviation=envelope["max_deviation"],
        learned=envelope["learned"],
        teach_in=envelope["teach_in"],
        windows=[ingest_pb2.WindowVerdict(**w) for w in envelope.get("windows", ())],
    )


def trace_id(span: Span) -> str:
    """The span's trace id as 32 hex digits ("" when not recording)."""
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def verdicts(
    teles: list[tuple[Telemetry, Span | None]], result: BatchResult, batch_span: Span
) -> list[Verdict]:
    """The verdict of every curve of a batch (``latency_ms`` filled in later)."""
    labels = result.labels
    model, version = result.model, result.version
    batch_trace_id = trace_id(batch_span)
    # a list per label, not per curve: the rows are zip's tuples, which come from the
    # interpreter's free list (256 new lists a batch set off a garbage collection)
    columns = np.round(result.probabilities.astype(np.float64), 6).T.tolist()
    if teles and len(columns) != len(labels):  # checked once, not by each row's zip
        raise ValueError(f"{len(columns)} probabilities per curve for {len(labels)} labels")
    return [
        Verdict(
            tele.device_id,
            tele.point,
            tele.ts_ms,
            tele.msg_id,
            model,
            version,
            labels[top],
            dict(zip(labels, row)),  # noqa: B905 (lengths checked above)
            ok,
            0.0,
            batch_trace_id if span is None else trace_id(span),
        )
        for (tele, span), top, ok, row in zip(
            teles, result.label_index, result.ok, zip(*columns, strict=True), strict=True
        )
    ]


def archive_rows(
    rule: str, scored: list[tuple[Telemetry, str, Verdict]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Telemetry and verdict rows (``TELEMETRY_COLUMNS`` / ``VERDICT_COLUMNS`` order) of
    ``(telemetry, source topic, verdict)`` triples."""
    tele_rows: list[tuple[Any, ...]] = []
    verdict_rows: list[tuple[Any, ...]] = []
    for t, topic, v in scored:
        attrs = orjson.dumps(t.attrs).decode() if t.attrs else "{}"  # most curves have none
        tele_rows.append(
            (rule, t.msg_id, t.device_id, t.point, t.ts_ms, topic, t.values.tobytes(), attrs)
        )
        verdict_rows.append(v.to_row(rule, attrs))
    return tele_rows, verdict_rows


def stream_records(
    rule: str,
    scored: list[tuple[Telemetry, str, Span | None, Verdict]],
    batch_span: Span,
    *,
    verdicts: bool,
    telemetry: bool,
) -> tuple[list[ingest_pb2.VerdictRecord], list[ingest_pb2.TelemetryRecord]]:
    """Live-stream records of a batch (only the kinds someone listens to)."""
    vs: list[ingest_pb2.VerdictRecord] = []
    ts: list[ingest_pb2.TelemetryRecord] = []
    for t, topic, span, v in scored:
        if verdicts:
            traceparent = current_traceparent(trace.set_span_in_context(span or batch_span))
            vs.append(v.to_proto(rule, traceparent=traceparent, attrs=t.attrs))
        if telemetry:
            ts.append(
                ingest_pb2.TelemetryRecord(
                    msg_id=t.msg_id,
                    device_id=t.device_id,
                    point=t.point,
                    ts=make_stamp(t.ts_ms),
                    topic=topic,
                    rule=rule,
                    curve=common_pb2.Curve(samples_f32=t.values.tobytes()),
                    attrs=t.attrs,
                )
            )
    return vs, ts
