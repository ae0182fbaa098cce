"""The alarm lifecycle against real services: webhook formats and signatures checked by
a real local HTTP server, acknowledgement over gRPC, escalation, no-data and dead-letter
alarms, and state restored across an ingest restart."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from linewatch_ingest.app import IngestService, running
from linewatch_ingest.config import AlarmRuleConfig, RuleConfig
from linewatch_ingest.store import AlarmRow, Query

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch.v1 import ingest_pb2 as pb
from linewatch.v1 import ingest_pb2_grpc
from linewatch_dev.testing import operator_channel

from .chat_receiver import ChatReceiver
from .conftest import Inference, curve_payload, demo_rule, eventually, ingest_config


def alarm_rule(prefix: str, name: str, **alarm: Any) -> RuleConfig:
    return demo_rule(
        prefix,
        name=name,
        source_topic=f"{prefix}/+/+/{name}",
        output_topic=f"{prefix}/{name}-out/{{2}}",
        alarm=AlarmRuleConfig(**alarm),
    )


async def connected(ingest: IngestService, names: list[str]) -> None:
    for name in names:
        worker = ingest.controller.worker(name)
        assert worker is not None
        await worker.client.wait_connected(5)
    await asyncio.sleep(0.2)


async def alarms(ingest: IngestService) -> list[AlarmRow]:
    return list((await ingest.store.query_alarms(Query(page_size=1000))).rows)


def by_rule(rows: list[AlarmRow]) -> dict[str, AlarmRow]:
    return {row.rule: row for row in rows}


async def test_every_webhook_format_is_accepted_by_its_platform(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    p = topic_prefix
    hooks = {
        "generic": ("generic", ""),
        "feishu": ("feishu", "s3cret"),
        "dingtalk": ("dingtalk", "SECdingtalk"),
        "wecom": ("wecom", ""),
        "slack": ("slack", ""),
        "badsign": ("feishu", "s3cret"),  # the rule has another secret: refused
    }
    async with ChatReceiver(hooks) as chat:
        rules = [
            alarm_rule(
                p,
                name,
                threshold=1,
                window_s=60,
                severity="critical",
                webhook_url=chat.url(name),
                webhook_format=fmt,
                webhook_secret="wrong" if name == "badsign" else secret,
            )
            for name, (fmt, secret) in hooks.items()
        ]
        config = ingest_config(
            mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=p,
            rules=rules,
        )  # fmt: skip
        async with (
            running(config) as ingest,
            MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
        ):
            await connected(ingest, list(hooks))
            for name in hooks:
                await pub.publish(f"{p}/A/d/{name}", curve_payload(f"{name}-dev", kind="spike"))

            async def delivered() -> bool:
                rows = by_rule(await alarms(ingest))
                return len(rows) == len(hooks) and all(
                    r.delivery in {"sent", "failed"} for r in rows.values()
                )

            assert await eventually(delivered, timeout=30)
            rows = by_rule(await alarms(ingest))
            for name in ("generic", "feishu", "dingtalk", "wecom", "slack"):
                assert rows[name].delivery == "sent", name
                assert len(chat.accepted(name)) == 1, name
                assert rows[name].severity == "critical"
            assert rows["badsign"].delivery == "failed"
            assert len(chat.refused("badsign")) == 3  # retried, then given up
            assert not chat.accepted("badsign")
            (card,) = chat.accepted("feishu")
            assert card["card"]["header"]["template"] == "red"
            assert "feishu-dev" in card["card"]["elements"][0]["text"]["content"]
            (generic,) = chat.accepted("generic")
            assert generic["event"] == "alarm.raised"
            assert generic["kind"] == "verdicts"
            assert generic["severity"] == "critical"
            dingtalk = [c for c in chat.calls if c.path == "/dingtalk"]
            assert set(dingtalk[0].query) == {"timestamp", "sign"}
            assert chat.accepted("slack")[0]["attachments"][0]["color"] == "#D00000"


async def test_webhooks_cannot_reach_the_plant_network_unless_allowed(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    p = topic_prefix
    async with ChatReceiver({"hook": ("generic", "")}) as chat:
        rules = [alarm_rule(p, "inside", threshold=1, webhook_url=chat.url("hook"))]
        config = ingest_config(
            mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=p,
            rules=rules, webhook={"backoff_s": 0.1, "max_attempts": 3},  # no allowed networks
        )  # fmt: skip
        async with (
            running(config) as ingest,
            MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
        ):
            await connected(ingest, ["inside"])
            await pub.publish(f"{p}/A/dev/inside", curve_payload(kind="spike"))

            async def failed() -> bool:
                return [r.delivery for r in await alarms(ingest)] == ["failed"]

            assert await eventually(failed, timeout=20)
            assert chat.connections == 0
            assert "/hook" not in ingest.alarms.last_error  # the URL's path may hold a token


async def test_ack_stops_the_escalation_which_goes_once_otherwise(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    p = topic_prefix
    hooks = {"main": ("generic", ""), "second": ("dingtalk", "SECx"), "acked": ("generic", "")}
    async with ChatReceiver(hooks) as chat:
        rules = [
            alarm_rule(
                p, "esc", threshold=1, window_s=60, escalate_after_s=1,
                webhook_url=chat.url("main"), escalate_webhook_url=chat.url("second"),
                escalate_webhook_format="dingtalk", escalate_webhook_secret="SECx",
            ),
            alarm_rule(
                p, "calm", threshold=1, window_s=60, escalate_after_s=3,
                webhook_url=chat.url("acked"),
            ),
        ]  # fmt: skip
        config = ingest_config(
            mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=p,
            rules=rules,
        )  # fmt: skip
        async with (
            running(config) as ingest,
            MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
            operator_channel(f"127.0.0.1:{ingest.port}") as channel,
        ):
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            await connected(ingest, ["esc", "calm"])
            await pub.publish(f"{p}/A/calm-dev/calm", curve_payload(kind="spike"))

            async def calm_raised() -> AlarmRow | None:
                return by_rule(await alarms(ingest)).get("calm")

            calm = await eventually(calm_raised, timeout=20)
            assert calm is not None
            acked = await stub.AckAlarm(pb.AckAlarmRequest(id=calm.id, note="checked the die"))
            assert acked.alarm.acknowledged
            assert acked.alarm.acknowledged_by.startswith("grpc:")
            assert acked.alarm.ack_note == "checked the die"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.AckAlarm(pb.AckAlarmRequest(id=calm.id, by="someone else"))
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.AckAlarm(pb.AckAlarmRequest(id=999_999))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

            await pub.publish(f"{p}/A/esc-dev/esc", curve_payload(kind="spike"))

            async def escalated() -> bool:
                return bool(chat.accepted("second"))

            assert await eventually(escalated, timeout=20)
            assert [b["event"] for b in chat.accepted("main")] == ["alarm.raised"]
            assert "ESCALATED" in chat.accepted("second")[0]["markdown"]["title"]
            await asyncio.sleep(3.5)  # past calm's escalate_after_s
            assert len(chat.accepted("second")) == 1  # once
            assert [b["event"] for b in chat.accepted("acked")] == ["alarm.raised"]
            rows = by_rule(await alarms(ingest))
            assert rows["esc"].escalated_at_ms is not None
            assert rows["esc"].acked_at_ms is None
            assert rows["calm"].escalated_at_ms is None
            assert rows["calm"].acked_by.startswith("grpc:")


async def test_no_data_and_dead_letter_alarms(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    p = topic_prefix
    rules = [alarm_rule(p, "quiet", no_data_s=1, deadletter_threshold=2, severity="info")]
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=p, rules=rules
    )
    async with (
        running(config) as ingest,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
    ):
        await connected(ingest, ["quiet"])
        await pub.publish(f"{p}/A/silent/quiet", curve_payload("silent"))

        async def of_kind(kind: str, state: str) -> AlarmRow | None:
            found = [a for a in await alarms(ingest) if a.kind == kind and a.state == state]
            return found[0] if found else None

        async def no_data_active() -> AlarmRow | None:
            return await of_kind("no_data", "active")

        silent = await eventually(no_data_active, timeout=20)
        assert silent is not None
        assert silent.device_id == "silent"
        assert silent.severity == "info"
        assert "no data for 1s" in silent.message
        await pub.publish(f"{p}/A/silent/quiet", curve_payload("silent", seed=1))

        async def no_data_cleared() -> AlarmRow | None:
            return await of_kind("no_data", "cleared")

        assert await eventually(no_data_cleared, timeout=20)

        for _ in range(2):
            await pub.publish(f"{p}/A/silent/quiet", b"this is not a curve")

        async def dead_letters() -> AlarmRow | None:
            return await of_kind("deadletters", "active")

        letters = await eventually(dead_letters, timeout=20)
        assert letters is not None
        assert letters.device_id == ""
        assert letters.count >= 2


async def test_an_alarm_active_at_restart_clears_while_its_device_stays_ok(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    p = topic_prefix
    rules = [alarm_rule(p, "line", threshold=2, window_s=2)]
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=p, rules=rules
    )
    topic = f"{p}/A/press/line"
    async with MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub:
        async with running(config) as ingest:
            await connected(ingest, ["line"])
            for seed in range(2):
                await pub.publish(topic, curve_payload("press", kind="spike", seed=seed))

            async def active() -> list[AlarmRow]:
                return [a for a in await alarms(ingest) if a.state == "active"]

            (before,) = await eventually(active, timeout=20)
            await ingest.alarms.acknowledge(int(before.id or 0), by="token:abc", note="seen")
        # ingest restarts while the alarm is active; the device is OK from now on
        async with running(config) as ingest:
            await connected(ingest, ["line"])
            (restored,) = await alarms(ingest)
            assert restored.state == "active"
            assert restored.acked_by == "token:abc"

            async def cleared() -> bool:
                await pub.publish(topic, curve_payload("press"))
                rows = await alarms(ingest)
                return [a.state for a in rows] == ["cleared"]

            assert await eventually(cleared, timeout=20, interval=0.5)
            (after,) = await alarms(ingest)
            assert after.id == before.id
            assert after.ack_note == "seen"
