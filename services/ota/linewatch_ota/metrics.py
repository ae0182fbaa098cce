"""Prometheus metrics of the OTA service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "DEVICE_MESSAGES",
    "EVENTS_DROPPED",
    "METADATA_SENT",
    "ROLLOUTS",
    "UPDATES",
]

UPDATES = Gauge("linewatch_ota_updates", "Device updates by state", ["state"])
ROLLOUTS = Gauge("linewatch_ota_rollouts", "Rollouts by state", ["state"])
DEVICE_MESSAGES = Counter(
    "linewatch_ota_device_messages_total",
    "Device protocol messages received, by kind and result",
    ["kind", "result"],
)
METADATA_SENT = Counter(
    "linewatch_ota_metadata_sent_total", "Metadata messages sent to devices", ["reason"]
)
EVENTS_DROPPED = Counter(
    "linewatch_ota_events_dropped_total", "State-change events a slow subscriber lost"
)
