"""Device commands and inventory: the real broker, SQLite and PostgreSQL, simulated devices."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from linewatch_ota.commands import (
    InvalidDeviceMessage,
    json_depth,
    parse_projector,
    parse_result,
)
from linewatch_ota.devices_config import DevicesConfig

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch.v1 import common_pb2, devices_pb2, devices_pb2_grpc
from linewatch_dev.devices_simulator import CommandBehaviour, CommandFleet
from linewatch_dev.ota_testing import OtaRunner, until

S = devices_pb2


class Devices:
    """The OTA service with device commands on, plus a DeviceService stub."""

    def __init__(self, runner: OtaRunner, prefix: str) -> None:
        self.runner = runner
        self.root = f"{prefix}/devices"
        self.telemetry = f"{prefix}/telemetry"
        self.projector = f"{prefix}/projector-remote-control"
        self.stub = devices_pb2_grpc.DeviceServiceStub(runner.channel)

    async def send(self, device_id: str, name: str = "power_on", **kw: Any) -> Any:
        reply = await self.stub.SendCommand(
            S.SendCommandRequest(device_id=device_id, name=name, **kw)
        )
        return reply.command

    async def get(self, device_id: str, command_id: str) -> Any:
        reply = await self.stub.GetCommand(S.GetCommandRequest(device_id=device_id, id=command_id))
        return reply.command

    async def wait_state(self, device_id: str, command_id: str, state: int) -> Any:
        async def check() -> bool:
            return bool((await self.get(device_id, command_id)).state == state)

        await until(check, what=f"command {command_id} in state {S.CommandState.Name(state)}")
        return await self.get(device_id, command_id)

    def fleet(self, devices: list[str], **kw: Any) -> CommandFleet:
        return CommandFleet(
            mqtt_url=self.runner.mqtt_url, device_ids=devices, topic_root=self.root, **kw
        )


@pytest.fixture
async def devices(
    tmp_path: Path, database_url: str, mqtt_url: str, topic_prefix: str
) -> AsyncIterator[Devices]:
    runner = OtaRunner(
        tmp_path=tmp_path, database_url=database_url, mqtt_url=mqtt_url, topic_root=topic_prefix
    )
    runner.config = runner.config.model_copy(
        update={
            "devices": DevicesConfig(
                topic_root=f"{topic_prefix}/devices",
                telemetry_topics=[f"{topic_prefix}/telemetry/#"],
                projector_topic=f"{topic_prefix}/projector-remote-control",
                tick_interval_s=0.1,
                flush_interval_s=0.2,
            )
        }
    )
    await runner.start()
    try:
        yield Devices(runner, topic_prefix)
    finally:
        await runner.close()


@pytest.fixture
async def fleets() -> AsyncIterator[list[CommandFleet]]:
    started: list[CommandFleet] = []
    yield started
    for fleet in started:
        with contextlib.suppress(Exception):
            await fleet.stop()


async def _start(fleets: list[CommandFleet], fleet: CommandFleet, **kw: Any) -> CommandFleet:
    await fleet.start(**kw)
    fleets.append(fleet)
    return fleet


# --- validation at the edge (pure) ------------------------------------------------------


def test_result_validation() -> None:
    topic = "devices/d1/commands/abc/result"
    assert parse_result("devices", topic, b'{"ok": true, "result": {"x": 1}}') == (
        "d1",
        "abc",
        True,
        '{"x":1}',
        "",
    )
    assert parse_result("devices", topic, b'{"ok": false, "error": "jammed"}')[2:] == (
        False,
        "",
        "jammed",
    )
    bad = [
        (topic, b'{"ok": "yes"}', "ok"),
        (topic, b"[1]", "JSON object"),
        (topic, b"\xff\xfe", "not JSON"),
        (topic, b'{"ok": true, "result": [1]}', "result"),
        (topic, b'{"ok": true, "x": "' + b"a" * 70_000 + b'"}', "larger"),
        (topic, b'{"ok": true, "result": ' + b'{"a": ' * 40 + b"1" + b"}" * 41, "deeper"),
        (topic, b"[" * 100_000 + b"]" * 100_000, "larger"),
        ("devices/d1/commands/abc", b'{"ok": true}', "expected"),
        ("devices/d 1/commands/abc/result", b'{"ok": true}', "device id"),
    ]
    for t, payload, reason in bad:
        with pytest.raises(InvalidDeviceMessage, match=reason):
            parse_result("devices", t, payload)


def test_projector_validation() -> None:
    assert parse_projector(b'{"command": "on", "projectors": ["p1", "p2", "p1"]}') == (
        "on",
        ["p1", "p2"],
        {},
    )
    for payload in (b'{"command": "on"}', b'{"command": "", "projectors": ["p1"]}',
                    b'{"command": "on", "projectors": ["a/b"]}', b"on"):  # fmt: skip
        with pytest.raises(InvalidDeviceMessage):
            parse_projector(payload)
    assert json_depth({"a": [{"b": 1}]}) == 3
    assert json_depth(1) == 0


# --- states -----------------------------------------------------------------------------


async def test_succeeded_and_failed(devices: Devices, fleets: list[CommandFleet]) -> None:
    await _start(
        fleets, devices.fleet(["ok-1", "bad-1"], behaviours={"bad-1": CommandBehaviour.FAIL})
    )
    good = await devices.send("ok-1", params_json='{"level": 3}')
    assert good.state == S.COMMAND_STATE_QUEUED
    bad = await devices.send("bad-1", name="stop_press")
    done = await devices.wait_state("ok-1", good.id, S.COMMAND_STATE_SUCCEEDED)
    assert json.loads(done.result_json) == {"name": "power_on", "device": "ok-1"}
    assert done.attempts == 1
    assert done.sent_at.ToNanoseconds() > 0
    failed = await devices.wait_state("bad-1", bad.id, S.COMMAND_STATE_FAILED)
    assert failed.error == "cannot stop_press"
    history = await devices.stub.ListCommands(S.ListCommandsRequest(device_id="ok-1"))
    assert [c.id for c in history.commands] == [good.id]


async def test_timed_out(devices: Devices, fleets: list[CommandFleet]) -> None:
    await _start(fleets, devices.fleet(["mute-1"], behaviours={"mute-1": CommandBehaviour.SILENT}))
    cmd = await devices.send("mute-1", timeout_s=1)
    out = await devices.wait_state("mute-1", cmd.id, S.COMMAND_STATE_TIMED_OUT)
    assert "no result within 1s" in out.error


async def test_expired_and_cancelled(devices: Devices) -> None:
    # nobody ever says online: the commands wait, then expire or are cancelled
    old = await devices.send("away-1", expires_s=1)
    await devices.wait_state("away-1", old.id, S.COMMAND_STATE_EXPIRED)
    keep = await devices.send("away-1")
    device = (await devices.stub.GetDevice(S.GetDeviceRequest(device_id="away-1"))).device
    assert (device.online, device.pending_commands) == (False, 1)
    cancelled = await devices.stub.CancelCommand(
        S.CancelCommandRequest(device_id="away-1", id=keep.id)
    )
    assert cancelled.command.state == S.COMMAND_STATE_CANCELLED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await devices.stub.CancelCommand(S.CancelCommandRequest(device_id="away-1", id=keep.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await devices.get("other-device", keep.id)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_requests_refused(devices: Devices) -> None:
    for kw in ({"device_id": "a/b"}, {"name": ""}, {"params_json": "[1]"},
               {"params_json": "{"}, {"timeout_s": 100_000}):  # fmt: skip
        req: dict[str, Any] = {"device_id": "d1", "name": "x", **kw}
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await devices.stub.SendCommand(S.SendCommandRequest(**req))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- offline devices, restarts, order ---------------------------------------------------


async def test_queued_for_offline_device_survives_restart(
    devices: Devices, fleets: list[CommandFleet]
) -> None:
    fleet = devices.fleet(["late-1"], behaviours={"late-1": CommandBehaviour.OFFLINE})
    await _start(fleets, fleet)
    first = await devices.send("late-1", name="before_restart")
    await devices.runner.stop()
    await devices.runner.start()
    second = await devices.send("late-1", name="after_restart")
    assert (await devices.get("late-1", first.id)).state == S.COMMAND_STATE_QUEUED
    assert fleet.received("late-1") == []
    await fleet.come_online(["late-1"])
    await devices.wait_state("late-1", first.id, S.COMMAND_STATE_SUCCEEDED)
    await devices.wait_state("late-1", second.id, S.COMMAND_STATE_SUCCEEDED)
    assert fleet.received_names("late-1") == ["before_restart", "after_restart"]


async def test_online_device_gets_queued_commands_after_restart(
    devices: Devices, fleets: list[CommandFleet]
) -> None:
    """The device is online (retained status) while the service is down."""
    await devices.runner.stop()
    fleet = await _start(fleets, devices.fleet(["steady-1"]))
    await devices.runner.start()
    cmd = await devices.send("steady-1")
    await devices.wait_state("steady-1", cmd.id, S.COMMAND_STATE_SUCCEEDED)
    assert fleet.received("steady-1") == [cmd.id]


async def test_one_in_flight_per_device_in_order(
    devices: Devices, fleets: list[CommandFleet]
) -> None:
    fleet = await _start(fleets, devices.fleet(["seq-1"], hold=True))
    ids = [(await devices.send("seq-1", name=f"step-{i}")).id for i in range(4)]
    await devices.wait_state("seq-1", ids[0], S.COMMAND_STATE_SENT)
    await until(lambda: _true(fleet.received("seq-1") == ids[:1]), what="first delivered")
    # the next ones wait while the first is unanswered
    for later in ids[1:]:
        assert (await devices.get("seq-1", later)).state == S.COMMAND_STATE_QUEUED
    await fleet.release()
    for command_id in ids:
        await devices.wait_state("seq-1", command_id, S.COMMAND_STATE_SUCCEEDED)
    assert fleet.received("seq-1") == ids


async def _true(value: bool) -> bool:
    return value


async def test_device_may_answer_only_its_own_commands(
    devices: Devices, fleets: list[CommandFleet], mqtt_url: str
) -> None:
    await _start(fleets, devices.fleet(["own-1"], behaviours={"own-1": CommandBehaviour.SILENT}))
    cmd = await devices.send("own-1", timeout_s=60)
    await devices.wait_state("own-1", cmd.id, S.COMMAND_STATE_SENT)
    async with MqttClient(MqttConfig(url=mqtt_url)) as intruder:
        await intruder.publish(
            f"{devices.root}/other-1/commands/{cmd.id}/result", b'{"ok": true, "result": {}}'
        )
        # a valid answer of the right device afterwards still counts: the intruder's was ignored
        await intruder.publish(
            f"{devices.root}/own-1/commands/{cmd.id}/result", b'{"ok": false, "error": "real"}'
        )
    out = await devices.wait_state("own-1", cmd.id, S.COMMAND_STATE_FAILED)
    assert out.error == "real"


# --- seed 001 and inventory --------------------------------------------------------------


async def test_projector_fan_out(
    devices: Devices, fleets: list[CommandFleet], mqtt_url: str
) -> None:
    fleet = await _start(fleets, devices.fleet(["p1", "p2"]))
    async with MqttClient(MqttConfig(url=mqtt_url)) as client:
        await client.publish(
            devices.projector, json.dumps({"command": "power_on", "projectors": ["p1", "p2"]})
        )
    for device_id in ("p1", "p2"):

        async def done(d: str = device_id) -> bool:
            reply = await devices.stub.ListCommands(
                S.ListCommandsRequest(device_id=d, state=S.COMMAND_STATE_SUCCEEDED)
            )
            return len(reply.commands) == 1

        await until(done, what=f"{device_id} switched")
        reply = await devices.stub.ListCommands(S.ListCommandsRequest(device_id=device_id))
        (cmd,) = reply.commands
        assert (cmd.name, cmd.source) == ("power_on", "projector-remote-control")
        assert fleet.received_names(device_id) == ["power_on"]


async def test_inventory_fields(
    devices: Devices, fleets: list[CommandFleet], mqtt_url: str, topic_prefix: str
) -> None:
    fleet = await _start(fleets, devices.fleet(["inv-1", "inv-2"]))
    async with MqttClient(MqttConfig(url=mqtt_url)) as client:
        await client.publish(
            f"{topic_prefix}/inv-1/request", json.dumps({"current_version": "1.2.0", "hw": "rev-b"})
        )
        await client.publish(
            f"{devices.telemetry}/inv-1",
            json.dumps({"device_id": "inv-1", "point": "pressure", "ts": 1, "values": [1.0],
                        "attrs": {"line": "A"}}),
        )  # fmt: skip
    await fleet.set_status(["inv-2"], "offline")

    async def inventoried() -> bool:
        d = (await devices.stub.GetDevice(S.GetDeviceRequest(device_id="inv-1"))).device
        return bool(d.firmware_version and d.points)

    await until(inventoried, what="inventory filled")
    one = (await devices.stub.GetDevice(S.GetDeviceRequest(device_id="inv-1"))).device
    assert (one.online, one.status, one.firmware_version, one.hardware) == (
        True,
        "online",
        "1.2.0",
        "rev-b",
    )
    assert list(one.points) == ["pressure"]
    assert dict(one.attributes) == {"line": "A"}
    assert one.last_seen.ToNanoseconds() > 0

    async def offline() -> bool:
        d = (await devices.stub.GetDevice(S.GetDeviceRequest(device_id="inv-2"))).device
        return bool(d.status == "offline")

    await until(offline, what="inv-2 offline")
    two = (await devices.stub.GetDevice(S.GetDeviceRequest(device_id="inv-2"))).device
    assert not two.online
    listed = await devices.stub.ListDevices(S.ListDevicesRequest(prefix="inv-"))
    assert [d.device_id for d in listed.devices] == ["inv-1", "inv-2"]
    online = await devices.stub.ListDevices(S.ListDevicesRequest(prefix="inv-", online_only=True))
    assert [d.device_id for d in online.devices] == ["inv-1"]
    page = await devices.stub.ListDevices(
        S.ListDevicesRequest(prefix="inv-", page=common_pb2.PageRequest(page_size=1))
    )
    assert [d.device_id for d in page.devices] == ["inv-1"]
    assert page.next_page_token == "1"
    # the inventory survives a restart (written behind to the database)
    await asyncio.sleep(0)
    await devices.runner.stop()
    await devices.runner.start()
    again = (await devices.stub.GetDevice(S.GetDeviceRequest(device_id="inv-1"))).device
    assert (again.firmware_version, list(again.points)) == ("1.2.0", ["pressure"])


async def test_response_topic_and_correlation_data(
    devices: Devices, fleets: list[CommandFleet], mqtt_url: str
) -> None:
    """An MQTT 5 device sees where to answer in the message's properties."""
    import gmqtt

    seen: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    raw = gmqtt.Client(f"raw-{uuid.uuid4().hex[:8]}")
    raw.on_message = lambda client, topic, payload, qos, props: seen.put_nowait(
        (payload.decode(), props)
    )
    host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_subscribe(*_: Any) -> None:
        if not subscribed.done():
            subscribed.set_result(None)

    raw.on_subscribe = on_subscribe
    await raw.connect(host, int(port))
    try:
        raw.subscribe(f"{devices.root}/mqtt5-1/commands", qos=1)
        await asyncio.wait_for(subscribed, 30)
        await _start(fleets, devices.fleet(["mqtt5-1"]))
        cmd = await devices.send("mqtt5-1", expires_s=100)
        payload, props = await asyncio.wait_for(seen.get(), 30)
    finally:
        await raw.disconnect()
    body = json.loads(payload)
    assert (body["id"], body["name"], body["params"]) == (cmd.id, "power_on", {})
    assert body["expires_at"] == cmd.expires_at.ToMilliseconds()
    assert props["response_topic"] == [f"{devices.root}/mqtt5-1/commands/{cmd.id}/result"]
    assert props["correlation_data"] == [cmd.id.encode()]


async def test_commands_for_offline_devices_never_crowd_out_online_ones(
    database_url: str,
) -> None:
    from linewatch_ota.command_store import CommandRow, CommandStore
    from linewatch_ota.schema import HISTORY

    from linewatch.runtime.db import Database
    from linewatch.runtime.migrations import migrate

    db = Database(database_url)
    await migrate(db, HISTORY)
    try:
        store = CommandStore(db)

        def row(device: str, n: int) -> CommandRow:
            return CommandRow(
                id=f"{device}-{n}".replace("-", ""), device_id=device, seq=0, name="x",
                state="queued", timeout_s=30, expires_at=1e12, created_at=1.0,
            )  # fmt: skip

        await store.create([row("away", n) for n in range(20)] + [row("here", 0), row("here", 1)])
        # a small claim window: the 20 older commands of the offline device come first
        claimed = await store.claim({"here"}, max_in_flight=1, now=2.0, limit=1)
        assert [c.id for c in claimed] == ["here0"]
        # one in flight: the next waits until the first is answered
        assert await store.claim({"here"}, max_in_flight=1, now=2.0, limit=1) == []
    finally:
        await db.close()
