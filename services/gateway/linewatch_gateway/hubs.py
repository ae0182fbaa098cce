"""The four live streams: which upstream RPC feeds each, and how events are keyed."""

from __future__ import annotations

from typing import Any

from linewatch.v1 import devices_pb2, ingest_pb2, ota_pb2
from linewatch_gateway.clients import Backends
from linewatch_gateway.config import GatewayConfig
from linewatch_gateway.convert import enum_name, message_to_dict
from linewatch_gateway.sse import StreamHub

__all__ = ["STREAM_KINDS", "make_hubs"]

STREAM_KINDS = ("verdicts", "telemetry", "alarms", "ota", "commands")


def _verdict(resp: Any) -> tuple[str, dict[str, Any], tuple[str, ...], str, str]:
    v = resp.verdict
    data = message_to_dict(v)
    data.pop("traceparent", None)  # for the push's span, not for browsers
    return "verdict", data, (v.device_id,), v.attrs.get("line", ""), v.label


def _verdict_traceparent(resp: Any) -> str:
    return str(resp.verdict.traceparent)


def _telemetry(resp: Any) -> tuple[str, dict[str, Any], tuple[str, ...], str, str]:
    t = resp.telemetry
    return "telemetry", message_to_dict(t), (t.device_id,), t.attrs.get("line", ""), ""


def _alarm(resp: Any) -> tuple[str, dict[str, Any], tuple[str, ...], str, str]:
    a = resp.alarm
    return "alarm", message_to_dict(a), (a.device_id,), "", ""


def _ota(resp: Any) -> tuple[str, dict[str, Any], tuple[str, ...], str, str] | None:
    which = resp.WhichOneof("event")
    if which == "rollout":
        return "rollout", message_to_dict(resp.rollout), tuple(resp.rollout.devices), "", ""
    if which == "device_update":
        u = resp.device_update
        return "device_update", message_to_dict(u), (u.device_id,), "", ""
    return None


def _command(resp: Any) -> tuple[str, dict[str, Any], tuple[str, ...], str, str]:
    from linewatch_gateway.routes.devices import command_dict

    c = resp.command
    return "command", command_dict(c), (c.device_id,), "", enum_name_of_state(c.state)


def enum_name_of_state(state: int) -> str:
    """A command state's short name (the stream's ``label`` filter)."""
    return enum_name(devices_pb2.CommandState.DESCRIPTOR, state)


def make_hubs(config: GatewayConfig, backends: Backends) -> dict[str, StreamHub]:
    """One hub per stream kind, not yet running."""
    opts: dict[str, Any] = {
        "replay": config.sse_replay,
        "queue_size": config.sse_client_queue,
        "backoff_max_s": config.sse_reconnect_max_s,
    }
    return {
        "verdicts": StreamHub(
            "verdicts",
            lambda: backends.ingest.StreamVerdicts(ingest_pb2.StreamVerdictsRequest()),
            _verdict,
            traceparent_of=_verdict_traceparent,
            **opts,
        ),
        "telemetry": StreamHub(
            "telemetry",
            lambda: backends.ingest.StreamTelemetry(ingest_pb2.StreamTelemetryRequest()),
            _telemetry,
            **opts,
        ),
        "alarms": StreamHub(
            "alarms",
            lambda: backends.ingest.StreamAlarms(ingest_pb2.StreamAlarmsRequest()),
            _alarm,
            **opts,
        ),
        "ota": StreamHub(
            "ota",
            lambda: backends.ota.StreamOtaEvents(ota_pb2.StreamOtaEventsRequest()),
            _ota,
            **opts,
        ),
        "commands": StreamHub(
            "commands",
            lambda: backends.devices.StreamCommandEvents(devices_pb2.StreamCommandEventsRequest()),
            _command,
            **opts,
        ),
    }
