"""linewatch's own MQTT client on real brokers: Maximum Packet Size both ways, shared
subscriptions, QoS 2, 3.1.1 fallback."""

from __future__ import annotations

import asyncio
from typing import Any

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import DEFERRED, MqttClient, MqttMessage
from linewatch_dev.broker import EmbeddedBroker
from linewatch_dev.testing import Mosquitto, free_port


async def test_broker_keeps_packets_over_our_maximum_packet_size(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """MQTT 5: the client announces max_packet_size; the broker does not send it a larger
    message (and the next one still arrives)."""
    got: asyncio.Queue[MqttMessage] = asyncio.Queue()

    async def handler(message: MqttMessage) -> None:
        await got.put(message)

    small = MqttConfig(url=mosquitto.url, max_packet_size=4096)
    async with (
        MqttClient(small, clean_start=True) as sub,
        MqttClient(MqttConfig(url=mosquitto.url), clean_start=True) as pub,
    ):
        assert sub.protocol_version == 5
        await sub.subscribe(f"{topic_prefix}/#", handler)
        await pub.publish(f"{topic_prefix}/big", b"x" * 10_000)
        await pub.publish(f"{topic_prefix}/small", b"ok")
        message = await asyncio.wait_for(got.get(), 10)
    assert message.topic == f"{topic_prefix}/small"
    assert got.empty()


async def test_oversized_packet_from_a_311_broker_is_skipped_and_acknowledged(
    topic_prefix: str,
) -> None:
    """A 3.1.1 broker knows no maximum packet size: the client skips the larger PUBLISH
    without buffering it, acknowledges it (no redelivery loop) and goes on."""
    port = free_port()
    got: asyncio.Queue[MqttMessage] = asyncio.Queue()

    async def handler(message: MqttMessage) -> None:
        await got.put(message)

    url = f"mqtt://127.0.0.1:{port}"
    async with (
        EmbeddedBroker(port=port),
        MqttClient(MqttConfig(url=url, max_packet_size=4096), clean_start=True) as sub,
        MqttClient(MqttConfig(url=url), clean_start=True) as pub,
    ):
        assert sub.protocol_version == 4
        await sub.subscribe(f"{topic_prefix}/#", handler)
        await asyncio.sleep(0.2)
        await pub.publish(f"{topic_prefix}/big", b"y" * 50_000)
        await pub.publish(f"{topic_prefix}/small", b"ok")
        message = await asyncio.wait_for(got.get(), 10)
        assert message.topic == f"{topic_prefix}/small"
        assert sub.oversized == 1
        assert sub.connected


async def test_shared_subscription_and_qos2_round_trip(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    got: asyncio.Queue[MqttMessage] = asyncio.Queue()

    async def handler(message: MqttMessage) -> None:
        await got.put(message)

    config = MqttConfig(url=mosquitto.url)
    async with (
        MqttClient(config, clean_start=True) as a,
        MqttClient(config, clean_start=True) as b,
        MqttClient(config, clean_start=True) as pub,
    ):
        await a.subscribe(f"$share/g/{topic_prefix}/+", handler, qos=2)
        await b.subscribe(f"$share/g/{topic_prefix}/+", handler, qos=2)
        await asyncio.gather(
            *(pub.publish(f"{topic_prefix}/{i}", str(i), qos=2) for i in range(20))
        )
        messages = [await asyncio.wait_for(got.get(), 10) for _ in range(20)]
    # each message once, to one member of the group
    assert sorted(int(m.payload) for m in messages) == list(range(20))
    assert {m.qos for m in messages} == {2}


async def test_malformed_data_from_the_broker_closes_and_reconnects() -> None:
    """A peer that answers CONNECT and then sends a remaining length of five bytes (not
    MQTT): the client closes that connection at once (no hang, no buffering forever) and
    connects again. (A raw TCP peer: no real broker sends malformed packets.)"""
    connects: asyncio.Queue[bytes] = asyncio.Queue()
    closed: asyncio.Queue[bool] = asyncio.Queue()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(2)
        await connects.put(first)
        await reader.read(4096)
        writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK, success, no properties
        writer.write(b"\x30\xff\xff\xff\xff\x01")  # a five-byte remaining length
        await writer.drain()
        await closed.put(await reader.read(4096) == b"")  # EOF: the client hung up
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = MqttConfig(url=f"mqtt://127.0.0.1:{port}", reconnect_max_delay_s=0.2)
    client = MqttClient(config, clean_start=True)
    try:
        await client.connect(timeout=5)
        assert (await asyncio.wait_for(connects.get(), 5))[0] == 0x10  # CONNECT
        assert await asyncio.wait_for(closed.get(), 5)
        assert (await asyncio.wait_for(connects.get(), 10))[0] == 0x10  # and again
    finally:
        await client.disconnect()
        server.close()
        await server.wait_closed()


async def test_broker_sends_at_most_our_receive_maximum_unacknowledged(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    held: list[MqttMessage] = []
    arrived = asyncio.Event()

    def handler(message: MqttMessage) -> Any:
        held.append(message)
        arrived.set()
        return DEFERRED

    config = MqttConfig(url=mosquitto.url)
    async with (
        MqttClient(config, clean_start=True, receive_maximum=5) as sub,
        MqttClient(config, clean_start=True) as pub,
    ):
        await sub.subscribe(f"{topic_prefix}/#", handler)
        await pub.publish_many([(f"{topic_prefix}/m", str(i), ()) for i in range(20)])
        while len(held) < 5:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 10)
        # a broker ignoring the window would have sent more within this moment
        await asyncio.sleep(0.5)
        assert [m.payload for m in held] == [str(i).encode() for i in range(5)]
        # acknowledging frees the window: the rest follow
        received = 0
        while received < 20:
            batch, held[:] = held[:], []
            for message in batch:
                message.ack()
                received += 1
            if received < 20:
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 10)
    assert received == 20


async def test_will_is_published_when_the_connection_dies(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    got: asyncio.Queue[MqttMessage] = asyncio.Queue()

    async def handler(message: MqttMessage) -> None:
        await got.put(message)

    config = MqttConfig(url=mosquitto.url)
    async with MqttClient(config, clean_start=True) as watcher:
        await watcher.subscribe(f"{topic_prefix}/will", handler)
        dying = MqttClient(
            config, clean_start=True, will_topic=f"{topic_prefix}/will", will_payload=b"gone"
        )
        await dying.connect()
        conn = dying._conn
        assert conn is not None
        assert conn.transport is not None
        conn.transport.abort()  # no DISCONNECT: the broker publishes the will
        message = await asyncio.wait_for(got.get(), 10)
        await dying.disconnect()
    assert message.payload == b"gone"
