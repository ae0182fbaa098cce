"""The fan-out of OTA state changes to live subscribers (StreamOtaEvents).

A subscriber that falls behind loses its oldest events (counted in
``linewatch_ota_events_dropped_total``), never the service's progress.
"""

from __future__ import annotations

from linewatch.runtime.fanout import FanOut
from linewatch.v1 import ota_pb2
from linewatch_ota.metrics import EVENTS_DROPPED

__all__ = ["EventHub"]

Event = ota_pb2.StreamOtaEventsResponse


class EventHub(FanOut[Event]):
    """Publish state changes; subscribe to receive them."""

    def __init__(self, *, queue_size: int = 10000) -> None:
        super().__init__(buffer=queue_size, on_drop=EVENTS_DROPPED.inc)
