"""The chart's broker ACL (deploy/helm/linewatch/files/mosquitto-acl.conf, the very file the
chart renders) on a real Mosquitto with a password file: no anonymous client, and a
device cannot forge another device's OTA ``verify`` (the OTA service never sees it), and
device commands reach only their device."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch_dev.testing import Mosquitto, mosquitto_binary

ACL = Path(__file__).resolve().parents[2] / "deploy/helm/linewatch/files/mosquitto-acl.conf"
USERS = {"linewatch-ota": "ota-pw", "press-01": "pw-01", "press-02": "pw-02"}


@pytest.fixture
def broker(tmp_path: Path) -> Mosquitto:
    if mosquitto_binary() is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto and mosquitto_passwd are needed")
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(f"{user}:{pw}\n" for user, pw in USERS.items()))
    subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True)
    acl = tmp_path / "acl.conf"
    acl.write_text(ACL.read_text())
    broker = Mosquitto(
        tmp_path,
        extra_config=f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n",
    )
    broker.start()
    return broker


def _pub(broker: Mosquitto, topic: str, payload: Mapping[str, object], *auth: str) -> int:
    """Publish with mosquitto_pub (QoS 1, MQTT 5); returns its exit code."""
    proc = subprocess.run(
        [
            "mosquitto_pub",
            "-p",
            str(broker.port),
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            json.dumps(payload),
            *auth,
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    return proc.returncode


async def test_a_device_cannot_forge_another_devices_verify(broker: Mosquitto) -> None:
    seen: list[tuple[str, dict[str, object]]] = []
    got_marker = asyncio.Event()

    async def on_verify(message: MqttMessage) -> None:
        seen.append((message.topic, json.loads(message.payload)))
        if message.topic == "ota/press-02/verify":
            got_marker.set()

    ota = MqttClient(
        MqttConfig(url=broker.url, username="linewatch-ota", password=USERS["linewatch-ota"]),
        clean_start=True,
    )
    try:
        await ota.connect()
        await ota.subscribe("ota/+/verify", on_verify, qos=1)
        await asyncio.sleep(0.3)  # the SUBSCRIBE is on its way
        forged = {"update_id": "u1", "version": "6.6.6", "sha256": "00", "ok": True}
        own = {"update_id": "u2", "version": "1.3.0", "sha256": "11", "ok": True}
        as_02 = ("-u", "press-02", "-P", USERS["press-02"], "-i", "press-02")
        # press-02 forges press-01's verify, then sends its own (same client: in order)
        await asyncio.to_thread(_pub, broker, "ota/press-01/verify", forged, *as_02)
        assert await asyncio.to_thread(_pub, broker, "ota/press-02/verify", own, *as_02) == 0
        await asyncio.wait_for(got_marker.wait(), 20)
        assert [topic for topic, _ in seen] == ["ota/press-02/verify"]
        # press-01 may publish its own
        as_01 = ("-u", "press-01", "-P", USERS["press-01"], "-i", "press-01")
        assert await asyncio.to_thread(_pub, broker, "ota/press-01/verify", own, *as_01) == 0
        for _ in range(200):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.05)
        assert seen[-1] == ("ota/press-01/verify", own)
    finally:
        await ota.disconnect()
        broker.kill()


async def test_anonymous_and_wrong_password_are_refused(broker: Mosquitto) -> None:
    try:
        payload = {"current_version": "1.0.0"}
        assert await asyncio.to_thread(_pub, broker, "ota/press-01/request", payload) != 0
        wrong = ("-u", "press-01", "-P", "nope")
        assert await asyncio.to_thread(_pub, broker, "ota/press-01/request", payload, *wrong) != 0
        right = ("-u", "press-01", "-P", USERS["press-01"])
        assert await asyncio.to_thread(_pub, broker, "ota/press-01/request", payload, *right) == 0
    finally:
        broker.kill()


async def test_device_commands_reach_only_their_device(broker: Mosquitto) -> None:
    """OTA sends commands to devices/<id>/commands and reads every device's results and
    seed 001's projector-remote-control; a device gets only its own commands and cannot
    forge another device's result."""
    results: list[str] = []
    to_01: list[str] = []
    got = asyncio.Event()

    async def on_result(message: MqttMessage) -> None:
        results.append(message.topic)
        got.set()

    async def on_command(message: MqttMessage) -> None:
        to_01.append(message.topic)
        got.set()

    def client(user: str) -> MqttClient:
        return MqttClient(MqttConfig(url=broker.url, username=user, password=USERS[user]))

    ota, press = client("linewatch-ota"), client("press-01")
    try:
        await ota.connect()
        await press.connect()
        await ota.subscribe("devices/+/commands/+/result", on_result, qos=1)
        await ota.subscribe("projector-remote-control", on_result, qos=1)
        await press.subscribe("devices/+/commands", on_command, qos=1)  # + : only its own
        await ota.publish("devices/press-02/commands", b'{"id": "c2"}', qos=1)
        await ota.publish("devices/press-01/commands", b'{"id": "c1"}', qos=1)
        await asyncio.wait_for(got.wait(), 20)
        assert to_01 == ["devices/press-01/commands"]
        got.clear()
        as_02 = ("-u", "press-02", "-P", USERS["press-02"])
        forged = {"ok": True}
        await asyncio.to_thread(_pub, broker, "devices/press-01/commands/c1/result", forged, *as_02)
        own = "devices/press-02/commands/c2/result"
        assert await asyncio.to_thread(_pub, broker, own, forged, *as_02) == 0
        await asyncio.wait_for(got.wait(), 20)
        assert results == [own]
    finally:
        await press.disconnect()
        await ota.disconnect()
        broker.kill()
