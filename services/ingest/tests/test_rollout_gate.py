"""Rollouts gated by quality, end to end: the real OTA service asks the real ingest
(``QueryVerdictCounts``) about verdicts the real model gave on curves simulated machines
publish on the real broker; the OTA device simulator installs the updates.

The OTA service starts first and ingest later (ingest calls OTA too): the gate waits
while ingest does not answer, as in a cluster where ingest restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from linewatch_ingest.app import IngestService, running
from linewatch_ota.devices_config import DevicesConfig

from linewatch.v1 import ingest_pb2, ingest_pb2_grpc, ota_pb2
from linewatch_dev.cycles_simulator import ProductionCycles
from linewatch_dev.ota_simulator import SimulatedFleet
from linewatch_dev.ota_testing import OtaRunner, until
from linewatch_dev.testing import free_port, operator_channel, secured_grpc

from .conftest import Inference, ingest_config

PAUSED = ota_pb2.ROLLOUT_STATE_PAUSED
COMPLETED = ota_pb2.ROLLOUT_STATE_COMPLETED
CYCLES = 12


@dataclass
class Stack:
    ota: OtaRunner
    ingest: IngestService
    mqtt_url: str
    prefix: str

    async def counts(self, devices: list[str]) -> dict[str, int]:
        """Verdicts ingest archived per device so far."""
        async with operator_channel(f"127.0.0.1:{self.ingest.port}") as channel:
            request = ingest_pb2.QueryVerdictCountsRequest(
                devices=[ingest_pb2.VerdictCountsDevice(device_id=d) for d in devices]
            )
            request.window.start.FromSeconds(0)
            request.window.end.FromSeconds(int(time.time()) + 60)
            reply = await ingest_pb2_grpc.IngestServiceStub(channel).QueryVerdictCounts(request)
        return {d.device_id: int(d.window.total) for d in reply.devices}

    async def gate_alarms(self, state: ingest_pb2.AlarmState, n: int = 0) -> list[Any]:
        """The ``quality_gate`` alarms in ``state`` (waiting until there are ``n``)."""
        found: list[Any] = []

        async def enough() -> bool:
            async with operator_channel(f"127.0.0.1:{self.ingest.port}") as channel:
                stub = ingest_pb2_grpc.IngestServiceStub(channel)
                reply = await stub.QueryAlarms(ingest_pb2.QueryAlarmsRequest(state=state))
            found[:] = [a for a in reply.records if a.kind == "quality_gate"]
            return len(found) >= n

        await until(enough, timeout=30, what=f"{n} quality gate alarms")
        return found

    async def baseline(self, devices: list[str], n: int = CYCLES) -> None:
        async def enough() -> bool:
            return min((await self.counts(devices)).values()) >= n

        await until(enough, timeout=60, what=f"{n} archived cycles per device")

    def cycles(self, lines: dict[str, str], fleet: SimulatedFleet | None, **kw: Any) -> Any:
        return ProductionCycles(
            mqtt_url=self.mqtt_url, topic_prefix=self.prefix, lines=lines, fleet=fleet, **kw
        )


@pytest.fixture
async def stack(
    tmp_path: Path, mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> AsyncIterator[Stack]:
    """OTA (device inventory on, asking ingest) and ingest (demo rule) on one database
    (disjoint tables: neither reads the other's)."""
    p = topic_prefix
    ingest_port = free_port()
    ota = OtaRunner(
        tmp_path=tmp_path / "ota",
        database_url=database_url,
        mqtt_url=mqtt_url,
        topic_root=f"{p}/ota",
        ingest_addr=f"127.0.0.1:{ingest_port}",
        ingest_timeout_s=2.0,
        devices=DevicesConfig(
            topic_root=f"{p}/devices",
            projector_topic="",
            telemetry_topics=[f"{p}/+/+/telemetry"],
            tick_interval_s=0.1,
        ),
    )
    await ota.start()
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=p
    )
    config = config.model_copy(update={"grpc": secured_grpc(port=ingest_port, grace_s=0.5)})
    try:
        async with running(config) as ingest:
            yield Stack(ota=ota, ingest=ingest, mqtt_url=mqtt_url, prefix=p)
    finally:
        await ota.close()


async def _waves(ota: OtaRunner, fw_id: str, devices: list[str], **kw: Any) -> Any:
    return await ota.rollout(
        fw_id,
        devices,
        error_threshold=0.5,
        waves=[ota_pb2.WaveSpec(count=2, soak_s=1), ota_pb2.WaveSpec()],
        gate=ota_pb2.QualityGate(cycles=CYCLES, confidence=0.95, max_wait_s=60),
        **kw,
    )


@pytest.mark.parametrize("then", ["resume", "cancel"])
async def test_a_good_wave_proceeds_and_a_degrading_one_pauses_with_the_reason(
    stack: Stack, then: str
) -> None:
    ota = stack.ota
    devices = [f"press-{i:02d}" for i in range(1, 6)]
    fw = await ota.upload(os.urandom(50_000), version="1.3.0")
    fleet = await ota.fleet(devices)
    # press-04 (second wave) makes bad parts once it runs the new firmware
    machines = stack.cycles(
        dict.fromkeys(devices, "A"), fleet, after_update={"press-04": 0.9}, interval_s=0.1
    )
    await machines.start()
    try:
        await stack.baseline(devices)
        rollout = await _waves(ota, fw.id, devices)
        paused = await ota.wait_rollout(rollout.id, PAUSED, timeout=120)
    finally:
        await machines.stop()
        await fleet.stop()
    first, second = paused.waves
    assert first.state == "passed"
    assert {g.device_id for g in first.gate} == {"press-01", "press-02"}
    assert not any(g.regressed for g in first.gate)
    assert all(g.before_total >= CYCLES and g.after_total >= CYCLES for g in first.gate)
    # the second wave started only after the first one's soak
    assert second.started_at.ToNanoseconds() >= first.installed_at.ToNanoseconds() + 10**9
    assert second.state == "regressed"
    bad = next(g for g in second.gate if g.device_id == "press-04")
    assert bad.regressed
    assert bad.after_not_ok > bad.before_not_ok
    assert paused.reason.startswith("quality gate: press-04: ")
    assert "% not ok after 1.3.0" in paused.reason
    assert [g.device_id for g in second.gate if g.regressed] == ["press-04"]

    # the regression is an alarm of the plant too, naming device, rollout, version, rates
    (alarm,) = await stack.gate_alarms(ingest_pb2.ALARM_STATE_ACTIVE, 1)
    assert (alarm.kind, alarm.severity, alarm.device_id) == ("quality_gate", "critical", "press-04")
    assert alarm.rule == f"rollout/{rollout.id}/wave/2"
    assert alarm.message.startswith(f"quality gate paused rollout {rollout.id} at wave 2: ")
    assert paused.reason.removeprefix("quality gate: ") in alarm.message
    # the operator accepts the wave (the rollout goes on) or cancels: the alarm clears
    if then == "resume":
        await ota.stub.ResumeRollout(ota_pb2.ResumeRolloutRequest(id=rollout.id))
    else:
        await ota.stub.CancelRollout(ota_pb2.CancelRolloutRequest(id=rollout.id))
    (cleared,) = await stack.gate_alarms(ingest_pb2.ALARM_STATE_CLEARED, 1)
    assert cleared.id == alarm.id
    assert not await stack.gate_alarms(ingest_pb2.ALARM_STATE_ACTIVE)


async def test_a_rollout_whose_waves_stay_good_completes(stack: Stack) -> None:
    ota = stack.ota
    devices = [f"good-{i}" for i in range(1, 5)]
    fw = await ota.upload(os.urandom(50_000), version="1.3.0")
    fleet = await ota.fleet(devices)
    machines = stack.cycles(dict.fromkeys(devices, "B"), fleet, not_ok_rate=0.1)
    await machines.start()
    try:
        await stack.baseline(devices)
        rollout = await _waves(ota, fw.id, devices)
        done = await ota.wait_rollout(rollout.id, COMPLETED, timeout=120)
    finally:
        await machines.stop()
        await fleet.stop()
    assert [w.state for w in done.waves] == ["passed", "passed"]
    assert dict(done.counts) == {"succeeded": 4}
    assert all(len(w.gate) == w.size for w in done.waves)


async def test_idle_window_installs_wait_for_idleness(stack: Stack) -> None:
    ota = stack.ota
    devices = ["idle-1", "busy-1"]
    fw = await ota.upload(os.urandom(50_000), version="1.3.0")
    fleet = await ota.fleet(devices)
    machines = stack.cycles(dict.fromkeys(devices, "C"), fleet, interval_s=0.2)
    await machines.start()
    try:
        await stack.baseline(devices, n=3)
        rollout = await ota.rollout(
            fw.id, devices, schedule=ota_pb2.Schedule(idle_s=2), error_threshold=0.5
        )

        async def waiting() -> bool:
            ups = [await ota.updates(d) for d in devices]
            return all(u[0].reason.startswith("waiting for the machine to be idle") for u in ups)

        await until(waiting, timeout=30, what="both updates waiting for idleness")
        machines.stop_cycles(["idle-1"])

        async def idle_one_done() -> bool:
            return fleet.version_of("idle-1") == "1.3.0"

        await until(idle_one_done, timeout=60, what="the idle machine's install")
        # the machine still producing was not touched
        assert fleet.version_of("busy-1") == "1.0.0"
        assert (await ota.updates("busy-1"))[0].state == ota_pb2.UPDATE_STATE_QUEUED
        machines.stop_cycles(["busy-1"])
        await ota.wait_rollout(rollout.id, COMPLETED, timeout=60)
    finally:
        with contextlib.suppress(Exception):
            await machines.stop()
        await fleet.stop()


async def test_groups_follow_inventory_changes(stack: Stack) -> None:
    ota = stack.ota
    devices = ["grp-a1", "grp-a2", "grp-b1"]
    lines = {"grp-a1": "A", "grp-a2": "A", "grp-b1": "B"}
    machines = stack.cycles(lines, None, interval_s=0.2)
    await machines.start()
    try:
        group = ota_pb2.Group(name="line-a-presses", filter=ota_pb2.GroupFilter(lines=["A"]))
        await ota.stub.CreateGroup(ota_pb2.CreateGroupRequest(group=group))

        async def members(want: list[str]) -> bool:
            reply = await ota.stub.GetGroup(ota_pb2.GetGroupRequest(name="line-a-presses"))
            return [m for m in reply.group.members if m in devices] == want

        await until(lambda: members(["grp-a1", "grp-a2"]), what="the line-A members")
        machines.set_line("grp-a2", "B")
        machines.set_line("grp-b1", "A")
        await until(lambda: members(["grp-a1", "grp-b1"]), what="membership after the move")
        fw = await ota.upload(os.urandom(20_000), version="1.3.0")
        rollout = await ota.rollout(fw.id, [], groups=["line-a-presses"], error_threshold=1.0)
        assert sorted(rollout.devices) == ["grp-a1", "grp-b1"]
    finally:
        await machines.stop()


async def test_line_idle_installs_wait_until_the_whole_line_stops(stack: Stack) -> None:
    ota = stack.ota
    devices = ["line-d1", "line-d2"]
    fw = await ota.upload(os.urandom(20_000), version="1.3.0")
    fleet = await ota.fleet(devices)
    machines = stack.cycles(dict.fromkeys(devices, "D"), fleet, interval_s=0.2)
    await machines.start()
    try:
        await stack.baseline(devices, n=3)
        rollout = await ota.rollout(
            fw.id, ["line-d1"], schedule=ota_pb2.Schedule(idle_s=2, line_idle=True)
        )
        machines.stop_cycles(["line-d1"])  # its own machine stops, the line goes on

        async def waiting_for_line() -> bool:
            ups = await ota.updates("line-d1")
            return bool(ups[0].reason.startswith("waiting for its line to be idle"))

        await until(waiting_for_line, timeout=30, what="the update waiting for the line")
        await asyncio.sleep(3.0)  # longer than idle_s: line-d1 alone is idle by now
        assert fleet.version_of("line-d1") == "1.0.0"
        machines.stop_cycles(["line-d2"])
        await ota.wait_rollout(rollout.id, COMPLETED, timeout=60)
        assert fleet.version_of("line-d1") == "1.3.0"
    finally:
        await machines.stop()
        await fleet.stop()
