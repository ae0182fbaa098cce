"""Command and device rows to ``linewatch.v1`` DeviceService messages."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped,unused-ignore]

from linewatch.v1 import devices_pb2
from linewatch_ota.command_store import CommandRow
from linewatch_ota.inventory import DeviceState

__all__ = ["COMMAND_STATE_FROM_PB", "COMMAND_STATE_PB", "command_pb", "device_pb"]

COMMAND_STATE_PB = {
    "queued": devices_pb2.COMMAND_STATE_QUEUED,
    "sent": devices_pb2.COMMAND_STATE_SENT,
    "succeeded": devices_pb2.COMMAND_STATE_SUCCEEDED,
    "failed": devices_pb2.COMMAND_STATE_FAILED,
    "timed_out": devices_pb2.COMMAND_STATE_TIMED_OUT,
    "expired": devices_pb2.COMMAND_STATE_EXPIRED,
    "cancelled": devices_pb2.COMMAND_STATE_CANCELLED,
}
COMMAND_STATE_FROM_PB = {v: k for k, v in COMMAND_STATE_PB.items()}


def _ts(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def command_pb(row: CommandRow) -> devices_pb2.Command:
    """The API view of one command."""
    return devices_pb2.Command(
        id=row.id,
        device_id=row.device_id,
        name=row.name,
        params_json=row.params_json,
        state=COMMAND_STATE_PB[row.state],
        timeout_s=row.timeout_s,
        expires_at=_ts(row.expires_at),
        created_at=_ts(row.created_at),
        sent_at=_ts(row.sent_at),
        finished_at=_ts(row.finished_at),
        result_json=row.result_json,
        error=row.error,
        source=row.source,
        attempts=row.attempts,
    )


def device_pb(state: DeviceState, *, online: bool, pending: int) -> devices_pb2.Device:
    """The API view of one device."""
    return devices_pb2.Device(
        device_id=state.device_id,
        online=online,
        status=state.status,
        last_seen=_ts(state.last_seen),
        firmware_version=state.firmware_version,
        hardware=state.hardware,
        points=sorted(state.points),
        attributes=state.attributes,
        pending_commands=pending,
    )
