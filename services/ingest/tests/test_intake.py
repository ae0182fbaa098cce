"""Poison never stops intake, on a stock-config Mosquitto (``max_inflight_messages 20``,
``max_queued_messages 1000``): a flood of deeply nested payloads is dead-lettered message
by message and the next good message is handled. Loop-prone rules are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from linewatch_ingest.app import running
from linewatch_ingest.rules import filters_overlap, validate_rule
from linewatch_ingest.store import DeadLetterRow

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.mqtt import MqttClient
from linewatch_dev.broker import EmbeddedBroker
from linewatch_dev.testing import STOCK_LIMITS, Mosquitto, free_port, private_mosquitto

from .conftest import Collector, Inference, curve_payload, demo_rule, eventually, ingest_config

FLOOD = 1200
DEEP = b'{"device_id": "d", "values": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"


@pytest.fixture
def stock_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Our own Mosquitto with the stock inflight window and queue."""
    with private_mosquitto(tmp_path, STOCK_LIMITS) as broker:
        yield broker


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_flood_of_deep_payloads_is_dead_lettered_one_by_one(
    stock_broker: Mosquitto, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    url = stock_broker.url
    config = ingest_config(
        mqtt_url=url, database_url=database_url, inference=inference, prefix=topic_prefix
    )
    topic = f"{topic_prefix}/A/dev-1/telemetry"
    async with (
        running(config) as ingest,
        Collector(url, f"{topic_prefix}/deadletter") as dead,
        Collector(url, f"{topic_prefix}/+/+/verdict") as verdicts,
        MqttClient(MqttConfig(url=url), clean_start=True) as pub,
    ):
        worker = ingest.controller.worker("demo")
        assert worker is not None
        await worker.client.wait_connected(5)
        # MQTT 5: the rule's sessions share one subscription
        assert len(worker.intake.clients) == config.sessions > 1
        assert worker.intake.filters == [
            f"$share/linewatch-ingest-demo/{topic_prefix}/+/+/telemetry"
        ]
        await pub.publish_many([(topic, DEEP, ())] * FLOOD, timeout=120)
        await pub.publish(f"{topic_prefix}/A/good-1/telemetry", curve_payload("good-1"))
        (verdict,) = await verdicts.wait_for(1, timeout=120)
        assert verdict["device_id"] == "good-1"

        def counted() -> bool:
            return bool(ingest.controller.status().rules[0].dead_letters == FLOOD)

        assert await eventually(lambda: _true(counted()), timeout=60)
        got = await dead.wait_for(FLOOD, timeout=60)
        assert len(got) == FLOOD
        assert {body["reason"] for body in got} == {"JSON nested deeper than 32 levels"}
        assert await ingest.store.count(DeadLetterRow) == FLOOD


def test_loop_prone_rules_are_refused() -> None:
    base = demo_rule("plant")
    for source in ("linewatch/#", "#", "+/deadletter", "$share/g/linewatch/+"):
        with pytest.raises(InvalidArgument, match="linewatch"):
            validate_rule(
                base.model_copy(update={"source_topic": source, "output_topic": "out/x"}),
                {"default"},
            )
    # its own output topic: directly, through wildcards, or through placeholders
    for source, output in [
        ("plant/+/+/telemetry", "plant/{1}/{2}/telemetry"),
        ("plant/#", "plant/{1}/verdict"),
        ("plant/+/+/+", "plant/{device_id}/{point}/verdict"),
        ("plant/a/b", "plant/a/b"),
    ]:
        with pytest.raises(InvalidArgument, match="own output_topic"):
            validate_rule(
                base.model_copy(update={"source_topic": source, "output_topic": output}),
                {"default"},
            )
    # a custom dead-letter topic counts too
    with pytest.raises(InvalidArgument, match="dead"):
        validate_rule(
            base.model_copy(update={"source_topic": "ops/+", "output_topic": "out/x"}),
            {"default"},
            deadletter_topic="ops/dead",
        )
    validate_rule(base, {"default"})  # the demo rule is fine


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("a/+/c", "a/b/c", True),
        ("a/#", "a", True),
        ("a/+", "a", False),
        ("a/b", "a/c", False),
        ("+/b", "a/+", True),
        ("#", "$SYS/x", False),
        ("a/+/c", "a/{1}/d", False),
        ("a/+/c", "a/x-{point}/c", True),
    ],
)
def test_filters_overlap(a: str, b: str, overlap: bool) -> None:
    assert filters_overlap(a, b) is overlap


async def test_the_api_refuses_a_loop_prone_rule(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=topic_prefix
    )
    async with running(config) as ingest:
        for source, output in [("linewatch/#", "out/x"), ("p/+/t", "p/{1}/t")]:
            rule = demo_rule(topic_prefix, name="loop", source_topic=source, output_topic=output)
            with pytest.raises(InvalidArgument):
                await ingest.controller.create_rule(rule)
        assert [r.name for r in ingest.controller.list_rules()] == ["demo"]


async def test_a_3_1_1_broker_without_shared_subscriptions_still_works(
    database_url: str, topic_prefix: str, inference: Inference
) -> None:
    """The embedded broker (amqtt) speaks 3.1.1 only and knows no ``$share``: the rule's
    intake falls back to one session on the plain filter."""
    port = free_port()
    async with EmbeddedBroker(port=port):
        url = f"mqtt://127.0.0.1:{port}"
        config = ingest_config(
            mqtt_url=url, database_url=database_url, inference=inference, prefix=topic_prefix
        )
        assert config.sessions > 1
        async with (
            running(config) as ingest,
            Collector(url, f"{topic_prefix}/+/+/verdict") as verdicts,
            MqttClient(MqttConfig(url=url), clean_start=True) as pub,
        ):
            worker = ingest.controller.worker("demo")
            assert worker is not None
            await worker.client.wait_connected(5)
            assert worker.intake.filters == [f"{topic_prefix}/+/+/telemetry"]
            await pub.publish(f"{topic_prefix}/A/p-1/telemetry", curve_payload("p-1"))
            (verdict,) = await verdicts.wait_for(1)
            assert verdict["device_id"] == "p-1"
