"""The embedded MQTT broker (amqtt): `make run`'s default on a laptop with no broker.

The test suite itself runs on Mosquitto (the machine's or its own); these tests keep the
embedded broker working for the launcher and the `linewatch broker` command.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch_dev.broker import EmbeddedBroker, broker_answers
from linewatch_dev.launcher import plan
from linewatch_dev.testing import Mosquitto, free_port, wait_port


async def _round_trip(url: str, topic: str, payload: bytes, *, qos: int) -> MqttMessage:
    got: asyncio.Queue[MqttMessage] = asyncio.Queue()

    async def handler(message: MqttMessage) -> None:
        await got.put(message)

    async with (
        MqttClient(MqttConfig(url=url), clean_start=True) as sub,
        MqttClient(MqttConfig(url=url), clean_start=True) as pub,
    ):
        await sub.subscribe(topic, handler, qos=qos)
        await asyncio.sleep(0.2)
        await pub.publish(topic, payload, qos=qos)
        return await asyncio.wait_for(got.get(), 10)


async def test_qos1_messages_cross_the_embedded_broker(topic_prefix: str) -> None:
    port = free_port()
    async with EmbeddedBroker(port=port):
        message = await _round_trip(
            f"mqtt://127.0.0.1:{port}", f"{topic_prefix}/a", b'{"x": 1}', qos=1
        )
    assert message.payload == b'{"x": 1}'
    assert message.topic == f"{topic_prefix}/a"


async def test_it_listens_only_while_running() -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port)
    assert not broker_answers("127.0.0.1", port)
    await broker.start()
    try:
        # a full MQTT session (a bare TCP probe that never sends CONNECT is left open by
        # amqtt at shutdown, which the suite reports as an unclosed transport)
        async with MqttClient(MqttConfig(url=f"mqtt://127.0.0.1:{port}")) as client:
            assert client is not None
    finally:
        await broker.stop()
    assert not await asyncio.to_thread(broker_answers, "127.0.0.1", port)
    await broker.stop()  # stopping twice is harmless


async def test_the_broker_command_serves_until_sigterm(topic_prefix: str) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "linewatch_dev.cli", "broker", "--port", str(port),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_port, port, 30)
        message = await _round_trip(f"mqtt://127.0.0.1:{port}", f"{topic_prefix}/b", b"hi", qos=0)
        assert message.payload == b"hi"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0


async def test_the_broker_command_says_when_its_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "linewatch_dev.cli", "broker", "--port", str(port),
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert f"cannot listen on {port}" in err.decode()


def test_the_launcher_starts_it_only_where_no_broker_answers(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    free = free_port()
    names = [c.name for c in plan(data_dir=tmp_path, simulator=False, broker_port=free)]
    assert names[0] == "broker"
    names = [c.name for c in plan(data_dir=tmp_path, simulator=False, broker_port=mosquitto.port)]
    assert "broker" not in names
