"""Conversions between archive rows and the ``linewatch.v1`` records of the API."""

from __future__ import annotations

import json
from typing import Any

from linewatch.v1 import common_pb2, ingest_pb2
from linewatch_ingest.store import AlarmRow, DeadLetterRow, TelemetryRow, VerdictRow

__all__ = [
    "alarm_record",
    "dead_letter_record",
    "stamp",
    "telemetry_record",
    "timestamp_ms",
    "verdict_record",
]


def _ts(ms: int | None) -> dict[str, int] | None:
    return stamp(ms) if ms is not None else None


def stamp(ms: int) -> dict[str, int]:
    """A ``google.protobuf.Timestamp`` (as constructor fields) from epoch milliseconds."""
    return {"seconds": ms // 1000, "nanos": (ms % 1000) * 1_000_000}


def timestamp_ms(ts: Any) -> int:
    """Epoch milliseconds of a protobuf Timestamp."""
    return int(ts.seconds) * 1000 + int(ts.nanos) // 1_000_000


def _attrs(text: str) -> dict[str, str]:
    data = json.loads(text or "{}")
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def telemetry_record(row: TelemetryRow) -> ingest_pb2.TelemetryRecord:
    """An archived curve as the API returns it."""
    return ingest_pb2.TelemetryRecord(
        msg_id=row.msg_id,
        device_id=row.device_id,
        point=row.point,
        ts=_ts(row.ts_ms),
        topic=row.topic,
        rule=row.rule,
        curve=common_pb2.Curve(samples_f32=row.samples),
        attrs=_attrs(row.attrs),
    )


def verdict_record(
    row: VerdictRow | Any, operator_label: str = "", operator_note: str = ""
) -> ingest_pb2.VerdictRecord:
    """An archived verdict as the API returns it (with its operator label, if any)."""
    return ingest_pb2.VerdictRecord(
        id=int(row.id or 0),
        operator_label=operator_label,
        operator_note=operator_note,
        msg_id=row.msg_id,
        device_id=row.device_id,
        point=row.point,
        ts=_ts(row.ts_ms),
        rule=row.rule,
        model=row.model,
        model_version=row.model_version,
        label=row.label,
        ok=row.ok,
        scores={str(k): float(v) for k, v in json.loads(row.scores).items()},
        latency_ms=row.latency_ms,
        trace_id=row.trace_id,
        topic=row.topic,
        attrs=_attrs(row.attrs),
    )


def dead_letter_record(row: DeadLetterRow) -> ingest_pb2.DeadLetterRecord:
    """A dead letter as the API returns it."""
    return ingest_pb2.DeadLetterRecord(
        id=int(row.id or 0),
        topic=row.topic,
        reason=row.reason,
        payload=row.payload,
        received_at=_ts(row.received_at_ms),
        rule=row.rule,
    )


def alarm_record(row: AlarmRow) -> ingest_pb2.AlarmRecord:
    """An alarm as the API returns it."""
    state = (
        ingest_pb2.ALARM_STATE_CLEARED if row.state == "cleared" else ingest_pb2.ALARM_STATE_ACTIVE
    )
    return ingest_pb2.AlarmRecord(
        id=int(row.id or 0),
        rule=row.rule,
        device_id=row.device_id,
        state=state,
        message=row.message,
        count=row.count,
        raised_at=_ts(row.raised_at_ms),
        cleared_at=_ts(row.cleared_at_ms),
        delivery=row.delivery,
        command_ids=[c for c in row.commands.split(",") if c],
        kind=row.kind,
        severity=row.severity,
        acknowledged=row.acked_at_ms is not None,
        acknowledged_by=row.acked_by,
        acknowledged_at=_ts(row.acked_at_ms),
        ack_note=row.ack_note,
        escalated_at=_ts(row.escalated_at_ms),
    )
