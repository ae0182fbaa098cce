"""Rows to protobuf messages, and the protocol's names for priorities and states."""

from __future__ import annotations

import json

from linewatch.runtime.signatures import canonical_json
from linewatch.v1 import ota_pb2
from linewatch_ota.catalog import manifest_of
from linewatch_ota.store import DeviceUpdateRow, FirmwareRow, RolloutRow

__all__ = [
    "PRIORITY_FROM_PB",
    "PRIORITY_RANK",
    "firmware_pb",
    "rollout_pb",
    "update_pb",
]

PRIORITY_FROM_PB = {
    ota_pb2.PRIORITY_UNSPECIFIED: "normal",
    ota_pb2.PRIORITY_NORMAL: "normal",
    ota_pb2.PRIORITY_SECURITY: "security",
}
PRIORITY_TO_PB = {"normal": ota_pb2.PRIORITY_NORMAL, "security": ota_pb2.PRIORITY_SECURITY}
PRIORITY_RANK = {"normal": 1, "security": 2}
ROLLOUT_STATE_PB = {
    "running": ota_pb2.ROLLOUT_STATE_RUNNING,
    "paused": ota_pb2.ROLLOUT_STATE_PAUSED,
    "completed": ota_pb2.ROLLOUT_STATE_COMPLETED,
    "cancelled": ota_pb2.ROLLOUT_STATE_CANCELLED,
}
UPDATE_STATE_PB = {
    "queued": ota_pb2.UPDATE_STATE_QUEUED,
    "notified": ota_pb2.UPDATE_STATE_NOTIFIED,
    "downloading": ota_pb2.UPDATE_STATE_DOWNLOADING,
    "installing": ota_pb2.UPDATE_STATE_INSTALLING,
    "succeeded": ota_pb2.UPDATE_STATE_SUCCEEDED,
    "failed": ota_pb2.UPDATE_STATE_FAILED,
    "cancelled": ota_pb2.UPDATE_STATE_CANCELLED,
}


def _nanos(epoch_s: float) -> int:
    return int(epoch_s * 1e9)


def firmware_pb(row: FirmwareRow) -> ota_pb2.Firmware:
    """The API's view of an image."""
    msg = ota_pb2.Firmware(
        id=row.id,
        product=row.product,
        version=row.version,
        size=row.size,
        sha256=row.sha256,
        signature=row.signature,
        filename=row.filename,
        hardware=json.loads(row.hardware_json or "[]"),
        security_counter=row.security_counter,
        manifest=canonical_json(manifest_of(row)).decode("utf-8"),
        manifest_signature=row.manifest_signature,
        key_id=row.key_id,
    )
    msg.created_at.FromNanoseconds(_nanos(row.created_at))
    return msg


def rollout_pb(row: RolloutRow, counts: dict[str, int]) -> ota_pb2.Rollout:
    """The API's view of a rollout with its per-state device counts."""
    msg = ota_pb2.Rollout(
        id=row.id,
        firmware_id=row.firmware_id,
        priority=PRIORITY_TO_PB[row.priority],
        state=ROLLOUT_STATE_PB[row.state],
        error_threshold=row.error_threshold,
        timeout_s=row.timeout_s,
        max_retries=row.max_retries,
        devices=json.loads(row.devices_json),
        counts=counts,
        reason=row.reason,
        allow_downgrade=row.allow_downgrade,
    )
    msg.created_at.FromNanoseconds(_nanos(row.created_at))
    msg.updated_at.FromNanoseconds(_nanos(row.updated_at))
    return msg


def update_pb(row: DeviceUpdateRow) -> ota_pb2.DeviceUpdate:
    """The API's view of one device update."""
    msg = ota_pb2.DeviceUpdate(
        update_id=row.id,
        device_id=row.device_id,
        rollout_id=row.rollout_id,
        firmware_id=row.firmware_id,
        version=row.version,
        state=UPDATE_STATE_PB[row.state],
        percent=row.percent,
        attempts=row.attempts,
        reason=row.reason,
        priority=PRIORITY_TO_PB[row.priority],
        wave=row.wave,
    )
    msg.updated_at.FromNanoseconds(_nanos(row.updated_at))
    return msg
