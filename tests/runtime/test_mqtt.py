import asyncio

import pytest

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.errors import ConfigError, Unavailable
from linewatch.runtime.mqtt import MqttClient, MqttMessage, topic_matches
from linewatch_dev.broker import EmbeddedBroker
from linewatch_dev.testing import Mosquitto, free_port


@pytest.mark.parametrize(
    ("flt", "topic", "ok"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a/b/c", True),
        ("a/#", "a", True),
        ("+/+/telemetry", "plant/x/telemetry", True),
        ("$share/g/plant/+/+/telemetry", "plant/a/b/telemetry", True),
        ("#", "$SYS/broker", False),
        ("a/b", "a/c", False),
    ],
)
def test_topic_matches(flt: str, topic: str, ok: bool) -> None:
    assert topic_matches(flt, topic) is ok


def test_bad_url_is_config_error() -> None:
    with pytest.raises(ConfigError, match="scheme"):
        MqttClient(MqttConfig(url="http://x:1883"))


async def test_publish_subscribe_with_user_properties(mqtt_url: str, topic_prefix: str) -> None:
    got: asyncio.Queue[MqttMessage] = asyncio.Queue()

    async def handler(message: MqttMessage) -> None:
        await got.put(message)

    async with MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as client:
        await client.subscribe(f"{topic_prefix}/+/data", handler)
        await asyncio.sleep(0.2)
        await client.publish(
            f"{topic_prefix}/dev1/data", b'{"x": 1}', user_properties=[("traceparent", "00-ab")]
        )
        message = await asyncio.wait_for(got.get(), 5)
    assert message.topic == f"{topic_prefix}/dev1/data"
    assert message.payload == b'{"x": 1}'
    assert message.qos == 1
    if client.protocol_version == 5:
        assert message.user_property("TraceParent") == "00-ab"


async def test_unreachable_broker_is_unavailable() -> None:
    client = MqttClient(MqttConfig(url=f"mqtt://127.0.0.1:{free_port()}"))
    with pytest.raises(Unavailable, match="unreachable"):
        await client.connect(timeout=3)


async def test_reconnect_resubscribe_and_redeliver_unacked(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """A handler that fails leaves the message unacked; after the broker restarts the
    client reconnects by itself, resubscribes and gets the message again."""
    deliveries: list[bytes] = []
    second = asyncio.Event()

    async def handler(message: MqttMessage) -> None:
        deliveries.append(message.payload)
        if len(deliveries) == 1:
            raise RuntimeError("not handled: must be redelivered")
        second.set()

    config = MqttConfig(url=mosquitto.url, reconnect_max_delay_s=0.5)
    sub = MqttClient(config, client_id=f"sub-{topic_prefix[-10:]}")
    await sub.connect()
    await sub.subscribe(f"{topic_prefix}/#", handler)
    await asyncio.sleep(0.2)
    async with MqttClient(config, clean_start=True) as pub:
        await pub.publish(f"{topic_prefix}/a", b"one")
    for _ in range(50):
        if deliveries:
            break
        await asyncio.sleep(0.05)
    assert deliveries == [b"one"]

    mosquitto.stop()  # SIGTERM: mosquitto saves the session with the unacked message
    await asyncio.sleep(0.3)
    assert not sub.connected
    mosquitto.start()
    await sub.wait_connected(timeout=15)
    await asyncio.wait_for(second.wait(), 15)
    assert deliveries == [b"one", b"one"]

    # Still subscribed after the restart: new messages arrive too.
    async with MqttClient(config, clean_start=True) as pub:
        await pub.publish(f"{topic_prefix}/b", b"two")
    for _ in range(100):
        if b"two" in deliveries:
            break
        await asyncio.sleep(0.05)
    assert deliveries[-1] == b"two"
    await sub.disconnect()


async def test_publish_waits_for_connection_then_fails_clearly(mosquitto: Mosquitto) -> None:
    client = MqttClient(MqttConfig(url=mosquitto.url, reconnect_max_delay_s=0.5))
    await client.connect()
    mosquitto.kill()
    await asyncio.sleep(0.3)
    with pytest.raises(Unavailable):
        await client.publish("x/y", b"z", timeout=0.5)
    mosquitto.start()
    await client.wait_connected(timeout=15)
    await client.publish("x/y", b"z", timeout=5)
    await client.disconnect()


async def test_embedded_broker_round_trip(topic_prefix: str) -> None:
    port = free_port()
    got: asyncio.Queue[MqttMessage] = asyncio.Queue()

    async def handler(message: MqttMessage) -> None:
        await got.put(message)

    async with (
        EmbeddedBroker(port=port),
        MqttClient(MqttConfig(url=f"mqtt://127.0.0.1:{port}")) as client,
    ):
        await client.subscribe(f"{topic_prefix}/#", handler)
        await asyncio.sleep(0.2)
        await client.publish(f"{topic_prefix}/x", b"hello")
        message = await asyncio.wait_for(got.get(), 5)
    assert message.payload == b"hello"


async def test_many_concurrent_publishes_wait_for_free_packet_ids(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """More QoS 1 publishes in flight than the broker's receive maximum (20 by default)
    wait for PUBACKs instead of failing."""
    async with MqttClient(MqttConfig(url=mosquitto.url), clean_start=True) as client:
        await asyncio.gather(
            *(client.publish(f"{topic_prefix}/n/{i}", b"x", timeout=20) for i in range(300))
        )
