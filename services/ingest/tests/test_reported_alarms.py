"""Alarms other services report (``RaiseAlarm``/``ClearAlarms``): the ``ota`` role may
raise and clear ``quality_gate`` alarms and nothing else new; a repeated report never
raises twice; they reach the webhook and clear like other alarms."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from linewatch_ingest.app import running
from linewatch_ingest.config import AlarmRuleConfig
from linewatch_ingest.store import Query
from pydantic import SecretStr

from linewatch.runtime.config import GrpcAuthConfig, GrpcCaller
from linewatch.runtime.grpc_auth import ROLE_METHODS
from linewatch.v1 import ingest_pb2, ingest_pb2_grpc
from linewatch_dev.testing import operator_channel, secured_grpc

from .conftest import Inference, eventually, ingest_config
from .test_alarms import WebhookReceiver

OTA_TOKEN = "ota-caller-token"


def test_the_ota_role_may_call_the_gate_methods_only() -> None:
    assert sorted(ROLE_METHODS["ota"]) == [
        "/linewatch.v1.IngestService/ClearAlarms",
        "/linewatch.v1.IngestService/QueryVerdictCounts",
        "/linewatch.v1.IngestService/RaiseAlarm",
    ]


def _raise(device: str = "press-04", **changes: object) -> ingest_pb2.RaiseAlarmRequest:
    fields: dict[str, object] = {
        "kind": "quality_gate",
        "rule": "rollout/r1/wave/2",
        "device_id": device,
        "severity": "critical",
        "message": f"quality gate paused rollout r1 at wave 2: {device}: 3.1 % → 9.8 %",
        "count": 7,
    }
    fields.update(changes)
    return ingest_pb2.RaiseAlarmRequest(**fields)  # type: ignore[arg-type]


async def test_the_ota_role_raises_a_gate_alarm_once_and_clears_it(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    auth = GrpcAuthConfig(callers=[GrpcCaller(name="ota", role="ota", token=SecretStr(OTA_TOKEN))])
    async with WebhookReceiver() as hook:
        config = ingest_config(
            mqtt_url=mqtt_url,
            database_url=database_url,
            inference=inference,
            prefix=topic_prefix,
            grpc=secured_grpc(port=0, grace_s=0.5, auth=auth),
            reported_alarms=AlarmRuleConfig(webhook_url=hook.url("/gate")),
        )
        async with (
            running(config) as ingest,
            operator_channel(f"127.0.0.1:{ingest.port}", token=OTA_TOKEN) as channel,
        ):
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            first = await stub.RaiseAlarm(_raise())
            again = await stub.RaiseAlarm(_raise(message="retried"))
            other = await stub.RaiseAlarm(_raise("press-05"))
            assert first.raised
            assert not again.raised
            assert other.raised
            assert again.alarm.id == first.alarm.id
            alarm = first.alarm
            assert (alarm.kind, alarm.severity, alarm.device_id) == (
                "quality_gate",
                "critical",
                "press-04",
            )
            assert alarm.rule == "rollout/r1/wave/2"
            assert "3.1 % → 9.8 %" in alarm.message
            assert alarm.state == ingest_pb2.ALARM_STATE_ACTIVE
            active = (await ingest.store.query_alarms(Query(state="active"))).rows
            assert sorted(r.device_id for r in active) == ["press-04", "press-05"]

            for bad, why in (
                (_raise(kind="verdicts"), "kind"),
                (_raise(severity="fatal"), "severity"),
                (_raise(rule=""), "rule"),
                (_raise(message=""), "message"),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.RaiseAlarm(bad)
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert why in (refused.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.AckAlarm(ingest_pb2.AckAlarmRequest(id=alarm.id))
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.QueryAlarms(ingest_pb2.QueryAlarmsRequest())
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

            other_rollout = ingest_pb2.ClearAlarmsRequest(kind="quality_gate", rule="rollout/r")
            assert (await stub.ClearAlarms(other_rollout)).cleared == 0
            everything = ingest_pb2.ClearAlarmsRequest(kind="quality_gate", rule="rollout/r1")
            assert (await stub.ClearAlarms(everything)).cleared == 2
            assert (await stub.ClearAlarms(everything)).cleared == 0
            assert not (await ingest.store.query_alarms(Query(state="active"))).rows
            # cleared, the same report still does not raise it again
            assert not (await stub.RaiseAlarm(_raise())).raised

            def events() -> list[tuple[str, str]]:
                return [(b["event"], b["device_id"]) for b in hook.bodies("/gate")]

            async def delivered() -> bool:
                return len(events()) == 4

            assert await eventually(delivered, timeout=15)
            assert sorted(events()) == [
                ("alarm.cleared", "press-04"),
                ("alarm.cleared", "press-05"),
                ("alarm.raised", "press-04"),
                ("alarm.raised", "press-05"),
            ]


async def test_a_gate_alarm_survives_a_restart_until_cleared_and_can_be_acknowledged(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=topic_prefix
    )
    async with running(config) as ingest, operator_channel(f"127.0.0.1:{ingest.port}") as ch:
        first = await ingest_pb2_grpc.IngestServiceStub(ch).RaiseAlarm(_raise())
    async with running(config) as ingest, operator_channel(f"127.0.0.1:{ingest.port}") as ch:
        stub = ingest_pb2_grpc.IngestServiceStub(ch)
        await asyncio.sleep(2.5)  # sweeps run once a second: a reported alarm has no window
        (active,) = (await ingest.store.query_alarms(Query(state="active"))).rows
        assert active.id == first.alarm.id
        assert not (await stub.RaiseAlarm(_raise())).raised
        acked = await stub.AckAlarm(ingest_pb2.AckAlarmRequest(id=first.alarm.id, note="seen"))
        assert acked.alarm.acknowledged
        assert acked.alarm.state == ingest_pb2.ALARM_STATE_ACTIVE
        clear = ingest_pb2.ClearAlarmsRequest(kind="quality_gate", rule="rollout/r1/wave/2")
        assert (await stub.ClearAlarms(clear)).cleared == 1
        assert not (await ingest.store.query_alarms(Query(state="active"))).rows
