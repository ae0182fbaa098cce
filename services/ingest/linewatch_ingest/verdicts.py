"""What a scored batch turns into: verdict messages, archive rows, live-stream records."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from opentelemetry import trace
from opentelemetry.trace import Span

from linewatch.runtime.telemetry import current_traceparent
from linewatch.v1 import common_pb2, ingest_pb2
from linewatch_ingest.inference_client import BatchResult
from linewatch_ingest.payload import Telemetry
from linewatch_ingest.scorers import envelope_record
from linewatch_ingest.store import scores_json

__all__ = ["archive_rows", "stream_records", "trace_id", "verdicts"]

Verdict = dict[str, Any]
"""One curve's published verdict: ``device_id``, ``point``, ``ts``, ``msg_id``, ``model``,
``model_version``, ``label``, ``scores``, ``ok``, ``latency_ms``, ``trace_id``; rules on the
built-in ``envelope`` model add ``envelope`` (``outside`` [first, last] or null,
``max_deviation``, ``learned``, ``teach_in``, ``windows``), carried into the MQTT verdict
JSON and the live :class:`VerdictRecord`. The pipeline adds ``_topic`` (the verdict topic)
after publishing; it is not part of the published JSON."""


def trace_id(span: Span) -> str:
    """The span's trace id as 32 hex digits ("" when not recording)."""
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def verdicts(
    teles: list[tuple[Telemetry, Span | None]], result: BatchResult, batch_span: Span
) -> list[Verdict]:
    """The published verdict of every curve of a batch (``latency_ms`` filled in later)."""
    labels = result.labels
    model, version = result.model, result.version
    batch_trace_id = trace_id(batch_span)
    rows = np.round(result.probabilities.astype(np.float64), 6).tolist()
    out: list[Verdict] = []
    for (tele, span), top, ok, row in zip(teles, result.label_index, result.ok, rows, strict=True):
        out.append(
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
                "trace_id": batch_trace_id if span is None else trace_id(span),
            }
        )
    return out


def archive_rows(
    rule: str, scored: list[tuple[Telemetry, str, Verdict]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Telemetry and verdict rows (``TELEMETRY_COLUMNS`` / ``VERDICT_COLUMNS`` order) of
    ``(telemetry, source topic, verdict)`` triples."""
    tele_rows: list[tuple[Any, ...]] = []
    verdict_rows: list[tuple[Any, ...]] = []
    for t, topic, v in scored:
        attrs = orjson.dumps(t.attrs).decode()
        tele_rows.append(
            (rule, t.msg_id, t.device_id, t.point, t.ts_ms, topic, t.values.tobytes(), attrs)
        )
        verdict_rows.append(
            (
                rule, t.msg_id, t.device_id, t.point, t.ts_ms, v["model"], v["model_version"],
                v["label"], v["ok"], scores_json(v["scores"]), v["latency_ms"], v["trace_id"],
                v["_topic"], attrs,
            )
        )  # fmt: skip
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
    from linewatch_ingest.convert import stamp as make_stamp

    vs: list[ingest_pb2.VerdictRecord] = []
    ts: list[ingest_pb2.TelemetryRecord] = []
    for t, topic, span, v in scored:
        stamp = make_stamp(t.ts_ms)
        if verdicts:
            vs.append(
                ingest_pb2.VerdictRecord(
                    msg_id=t.msg_id,
                    device_id=t.device_id,
                    point=t.point,
                    ts=stamp,
                    rule=rule,
                    model=v["model"],
                    model_version=v["model_version"],
                    label=v["label"],
                    ok=v["ok"],
                    scores=v["scores"],
                    latency_ms=v["latency_ms"],
                    trace_id=v["trace_id"],
                    traceparent=current_traceparent(trace.set_span_in_context(span or batch_span)),
                    topic=v["_topic"],
                    attrs=t.attrs,
                    envelope=envelope_record(v.get("envelope")),
                )
            )
        if telemetry:
            ts.append(
                ingest_pb2.TelemetryRecord(
                    msg_id=t.msg_id,
                    device_id=t.device_id,
                    point=t.point,
                    ts=stamp,
                    topic=topic,
                    rule=rule,
                    curve=common_pb2.Curve(samples_f32=t.values.tobytes()),
                    attrs=t.attrs,
                )
            )
    return vs, ts
