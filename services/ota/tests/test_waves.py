"""Waves, thresholds, skipped devices and schedules on the real broker with the simulator
(no gate here: the gate's end-to-end tests run with ingest, services/ingest/tests/
test_rollout_gate.py), and the gate's statistics and the windows as pure functions."""

from __future__ import annotations

import datetime as dt
import os
import time

import grpc
import pytest
from linewatch_ota.gate import Gate, judge, reason
from linewatch_ota.schedule import MaintenanceWindow, Schedule
from linewatch_ota.waves import Wave, split

from linewatch.runtime.errors import InvalidArgument
from linewatch.v1 import ota_pb2
from linewatch_dev.ota_simulator import Behaviour, SimulatedFleet
from linewatch_dev.ota_testing import OtaRunner, until

PAUSED = ota_pb2.ROLLOUT_STATE_PAUSED
COMPLETED = ota_pb2.ROLLOUT_STATE_COMPLETED
RUNNING = ota_pb2.ROLLOUT_STATE_RUNNING
U = ota_pb2.UpdateState


async def test_waves_advance_only_after_soak_and_threshold(
    ota: OtaRunner, fleets: list[SimulatedFleet]
) -> None:
    devices = [f"w-{i}" for i in range(6)]
    fw = await ota.upload(os.urandom(30_000), version="1.3.0")
    fleet = await ota.fleet(devices, {"w-1": Behaviour.FAIL})
    fleets.append(fleet)
    rollout = await ota.rollout(
        fw.id,
        devices,
        error_threshold=0.5,
        waves=[
            ota_pb2.WaveSpec(count=1, soak_s=1),
            ota_pb2.WaveSpec(percent=20, error_threshold=0.0),
            ota_pb2.WaveSpec(),
        ],
    )
    assert [w.size for w in rollout.waves] == [1, 2, 3]
    paused = await ota.wait_rollout(rollout.id, PAUSED, timeout=60)
    first, second, third = paused.waves
    assert first.state == "passed"
    assert second.started_at.ToNanoseconds() >= first.installed_at.ToNanoseconds() + 10**9
    assert "wave 2: 1 of 2 devices failed" in paused.reason
    # the third wave never started
    assert third.state == "pending"
    for device in devices[3:]:
        assert (await ota.updates(device))[0].state == U.UPDATE_STATE_QUEUED
        assert fleet.version_of(device) == "1.0.0"
    resumed = await ota.stub.ResumeRollout(ota_pb2.ResumeRolloutRequest(id=rollout.id))
    assert resumed.rollout.state == RUNNING
    done = await ota.wait_rollout(rollout.id, COMPLETED, timeout=60)
    assert [w.state for w in done.waves] == ["passed", "passed", "passed"]
    assert dict(done.counts) == {"succeeded": 5, "failed": 1}


async def test_devices_on_the_target_version_are_skipped_and_reported(
    ota: OtaRunner, fleets: list[SimulatedFleet]
) -> None:
    fw = await ota.upload(os.urandom(20_000), version="1.3.0")
    fleets.append(await ota.fleet(["s-new"], current_version="1.3.0"))
    fleets.append(await ota.fleet(["s-old"]))
    await until(lambda: ota.device_known("s-new"), what="s-new's request")
    rollout = await ota.rollout(fw.id, ["s-new", "s-old"], error_threshold=1.0)
    assert list(rollout.skipped) == ["s-new"]
    assert list(rollout.devices) == ["s-old"]
    done = await ota.wait_rollout(rollout.id, COMPLETED)
    assert dict(done.counts) == {"succeeded": 1}
    assert await ota.updates("s-new") == []


async def test_a_start_time_holds_installs(ota: OtaRunner, fleets: list[SimulatedFleet]) -> None:
    fw = await ota.upload(os.urandom(20_000), version="1.3.0")
    fleet = await ota.fleet(["t-1"])
    fleets.append(fleet)
    schedule = ota_pb2.Schedule(time_zone="Europe/Berlin")
    schedule.start_at.FromNanoseconds(int((time.time() + 2.0) * 1e9))
    rollout = await ota.rollout(fw.id, ["t-1"], error_threshold=1.0, schedule=schedule)

    async def waiting() -> bool:
        ups = await ota.updates("t-1")
        return bool(ups[0].reason.startswith("waiting for the start time"))

    await until(waiting, what="the update waiting for its start time")
    assert fleet.version_of("t-1") == "1.0.0"
    await ota.wait_rollout(rollout.id, COMPLETED, timeout=30)


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"waves": [ota_pb2.WaveSpec(), ota_pb2.WaveSpec(count=1)]}, "only the last wave"),
        ({"waves": [ota_pb2.WaveSpec(percent=150)]}, "percent"),
        ({"gate": ota_pb2.QualityGate(cycles=10, confidence=0.2)}, "confidence"),
        ({"schedule": ota_pb2.Schedule(time_zone="Mars/Olympus")}, "time_zone"),
        ({"schedule": ota_pb2.Schedule(line_idle=True)}, "line_idle needs idle_s"),
        ({"groups": ["no-such-group"]}, "no-such-group"),
    ],
)
async def test_bad_plans_are_refused_with_the_reason(
    ota: OtaRunner, request_fields: dict[str, object], message: str
) -> None:
    fw = await ota.upload(os.urandom(10_000), version="1.3.0")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ota.rollout(fw.id, ["x-1"], **request_fields)
    assert err.value.code() in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
    assert message in (err.value.details() or "")


def test_split_counts_percentages_and_the_rest() -> None:
    devices = [f"d{i}" for i in range(10)]
    waves = split(devices, [Wave(count=1), Wave(percent=10), Wave()])
    assert [len(w) for w in waves] == [1, 1, 8]
    assert [d for w in waves for d in w] == devices
    assert [len(w) for w in split(devices[:1], [Wave(count=1), Wave(percent=50), Wave()])] == [
        1,
        0,
        0,
    ]
    with pytest.raises(InvalidArgument):
        split(devices, [Wave()] * 21)


def test_gate_z_test_and_beta_binomial() -> None:
    z = Gate(cycles=50)
    worse = judge(z, "press-07", (100, 3), (100, 10))
    assert worse.regressed
    assert reason(worse, "1.3.0") == "press-07: 3.0 % → 10.0 % not ok after 1.3.0"
    assert not judge(z, "p", (100, 3), (100, 4)).regressed
    assert not judge(z, "p", (100, 10), (100, 2)).regressed  # better is never a regression
    assert not judge(z, "p", (0, 0), (100, 50)).regressed  # no baseline: noted, not judged
    assert judge(z, "p", (0, 0), (100, 50)).note == "no cycles before the update"
    beta = Gate(cycles=50, method="beta_binomial", confidence=0.99)
    assert judge(beta, "p", (100, 3), (100, 15)).regressed
    assert not judge(beta, "p", (100, 3), (100, 5)).regressed
    with pytest.raises(InvalidArgument):
        Gate(method="t_test").validate()


def test_maintenance_windows_in_the_plant_time_zone() -> None:
    # Saturday/Sunday 22:00-06:00 in Berlin (crosses midnight)
    s = Schedule(
        time_zone="Europe/Berlin",
        windows=(MaintenanceWindow(weekdays=(6, 7), start_minute=22 * 60, end_minute=6 * 60),),
    ).validate()
    berlin = dt.timezone(dt.timedelta(hours=1))  # CET in December

    def at(day: int, hour: int, minute: int) -> float:
        return dt.datetime(2026, 12, day, hour, minute, tzinfo=berlin).timestamp()

    assert s.why_not_now(at(5, 23, 0)) == ""  # Saturday 23:00
    assert s.why_not_now(at(7, 5, 59)) == ""  # Monday 05:59 (Sunday's night)
    assert s.why_not_now(at(7, 6, 0)).startswith("outside the maintenance windows")
    assert s.why_not_now(at(5, 21, 59)) != ""  # Saturday before 22:00
    assert s.why_not_now(at(4, 23, 0)) != ""  # Friday night
