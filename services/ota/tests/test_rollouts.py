"""Rollouts end to end on the real broker: devices follow the protocol (the simulator)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import grpc
import pytest
from linewatch_ota.signing import verify_signature

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.v1 import ota_pb2
from linewatch_dev.ota_simulator import Behaviour, SimulatedFleet
from linewatch_dev.ota_testing import OtaRunner, until

RUNNING = ota_pb2.ROLLOUT_STATE_RUNNING
PAUSED = ota_pb2.ROLLOUT_STATE_PAUSED
COMPLETED = ota_pb2.ROLLOUT_STATE_COMPLETED
CANCELLED = ota_pb2.ROLLOUT_STATE_CANCELLED
U = ota_pb2.UpdateState


class Recorder:
    """A raw MQTT subscriber that keeps every metadata message sent to devices."""

    def __init__(self, mqtt_url: str, topic_root: str) -> None:
        self.client = MqttClient(MqttConfig(url=mqtt_url), clean_start=True)
        self.topic_root = topic_root
        self.messages: list[tuple[str, dict[str, Any]]] = []

    async def __aenter__(self) -> Recorder:
        await self.client.subscribe(f"{self.topic_root}/+/metadata", self._on)
        await self.client.connect()
        await asyncio.sleep(0.2)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    async def _on(self, message: MqttMessage) -> None:
        self.messages.append((message.topic.split("/")[-2], json.loads(message.payload)))

    def for_device(self, device_id: str) -> list[dict[str, Any]]:
        return [body for dev, body in self.messages if dev == device_id]


async def state_of(ota: OtaRunner, device_id: str, rollout_id: str) -> Any:
    for update in await ota.updates(device_id):
        if update.rollout_id == rollout_id:
            return update
    raise AssertionError(f"{device_id} has no update of {rollout_id}")


async def test_success_path(ota: OtaRunner, fleets: list[SimulatedFleet]) -> None:
    data = os.urandom(200_000)
    fw = await ota.upload(data, version="1.3.0")
    devices = [f"ok-{i}" for i in range(4)]
    events: list[Any] = []

    async def watch() -> None:
        async for event in ota.stub.StreamOtaEvents(ota_pb2.StreamOtaEventsRequest()):
            events.append(event)

    watcher = asyncio.create_task(watch())
    async with Recorder(ota.mqtt_url, ota.topic_root) as recorder:
        fleet = await ota.fleet(devices)
        fleets.append(fleet)
        rollout = await ota.rollout(
            fw.id, devices, priority=ota_pb2.PRIORITY_SECURITY, error_threshold=0.5
        )
        done = await ota.wait_rollout(rollout.id, COMPLETED)
    watcher.cancel()
    assert dict(done.counts) == {"succeeded": 4}
    for device in devices:
        assert fleet.version_of(device) == "1.3.0"
        update = await state_of(ota, device, rollout.id)
        assert (update.state, update.percent, update.attempts) == (U.UPDATE_STATE_SUCCEEDED, 100, 1)
    # The metadata has exactly the documented fields, and the signature checks out.
    body = recorder.for_device("ok-0")[0]
    assert set(body) == {
        "update_id", "version", "url", "size", "sha256", "chunk_size", "priority", "signature",
        "manifest", "manifest_signature", "key_id",
    }  # fmt: skip
    assert body["manifest"] == {
        "product": "press", "hardware": [], "version": "1.3.0", "sha256": fw.sha256,
        "security_counter": 0,
    }  # fmt: skip
    assert body["url"] == f"{ota.config.public_base_url}/v1/firmware/{fw.id}/download"
    assert (body["size"], body["sha256"], body["chunk_size"]) == (len(data), fw.sha256, 65536)
    assert body["priority"] == "security"
    assert body["version"] == "1.3.0"
    assert verify_signature(await ota.public_key(), body["sha256"], body["signature"])
    # The live stream saw the device states and the rollout complete.
    await until(lambda: _has_completed(events, rollout.id), what="completed event")
    seen = {e.device_update.state for e in events if e.WhichOneof("event") == "device_update"}
    assert {U.UPDATE_STATE_NOTIFIED, U.UPDATE_STATE_DOWNLOADING, U.UPDATE_STATE_SUCCEEDED} <= seen


async def _has_completed(events: list[Any], rollout_id: str) -> bool:
    return any(
        e.WhichOneof("event") == "rollout"
        and e.rollout.id == rollout_id
        and e.rollout.state == COMPLETED
        for e in events
    )


async def test_bad_checksum_and_ok_false_fail(ota: OtaRunner, fleets: list[SimulatedFleet]) -> None:
    fw = await ota.upload(os.urandom(50_000))
    behaviours = {"bad-sum": Behaviour.BAD_CHECKSUM, "bad-ok": Behaviour.FAIL}
    fleets.append(await ota.fleet([*behaviours, "good"], behaviours))
    rollout = await ota.rollout(fw.id, [*behaviours, "good"], error_threshold=1.0)
    done = await ota.wait_rollout(rollout.id, COMPLETED)
    assert dict(done.counts) == {"failed": 2, "succeeded": 1}
    bad_sum = await state_of(ota, "bad-sum", rollout.id)
    assert bad_sum.state == U.UPDATE_STATE_FAILED
    assert "sha256 mismatch" in bad_sum.reason
    bad_ok = await state_of(ota, "bad-ok", rollout.id)
    assert bad_ok.state == U.UPDATE_STATE_FAILED
    assert "ok: false" in bad_ok.reason


async def test_silent_device_is_retried_then_failed(ota: OtaRunner) -> None:
    fw = await ota.upload(b"silent" * 1000)
    async with Recorder(ota.mqtt_url, ota.topic_root) as recorder:
        rollout = await ota.rollout(
            fw.id, ["mute-1"], timeout_s=1, max_retries=1, error_threshold=1.0
        )
        done = await ota.wait_rollout(rollout.id, COMPLETED, timeout=15)
    update = await state_of(ota, "mute-1", rollout.id)
    assert update.state == U.UPDATE_STATE_FAILED
    assert update.attempts == 2
    assert "no progress within 1s after 2 notifications" in update.reason
    sent = recorder.for_device("mute-1")
    assert len(sent) == 2
    assert sent[0] == sent[1]
    assert dict(done.counts) == {"failed": 1}


async def test_invalid_duplicate_and_late_messages_are_harmless(
    ota: OtaRunner, fleets: list[SimulatedFleet]
) -> None:
    fw = await ota.upload(os.urandom(10_000))
    fleets.append(await ota.fleet(["dup-1"]))
    rollout = await ota.rollout(fw.id, ["dup-1"])
    await ota.wait_rollout(rollout.id, COMPLETED)
    update = await state_of(ota, "dup-1", rollout.id)
    async with MqttClient(MqttConfig(url=ota.mqtt_url), clean_start=True) as client:
        root = f"{ota.topic_root}/dup-1"
        uid = update.update_id
        await client.publish(f"{root}/progress", b"{broken")
        await client.publish(
            f"{root}/progress",
            json.dumps({"update_id": uid, "state": "downloading", "percent": 10}),
        )
        await client.publish(
            f"{root}/verify",
            json.dumps({"update_id": uid, "version": "x", "sha256": "0" * 64, "ok": False}),
        )
        await client.publish(
            f"{ota.topic_root}/other-dev/verify",
            json.dumps({"update_id": uid, "version": "1.3.0", "sha256": fw.sha256, "ok": False}),
        )
    await asyncio.sleep(0.5)
    again = await state_of(ota, "dup-1", rollout.id)
    assert (again.state, again.percent, again.reason) == (U.UPDATE_STATE_SUCCEEDED, 100, "")


async def test_pause_resume_cancel(ota: OtaRunner, fleets: list[SimulatedFleet]) -> None:
    fw_busy = await ota.upload(b"busy" * 100, version="0.9.0")
    fw = await ota.upload(os.urandom(20_000), version="1.0.0")
    # "pr-b" is kept busy by a rollout to a device that is not online yet.
    blocker = await ota.rollout(fw_busy.id, ["pr-b"], timeout_s=300)
    await until(lambda: _state_is(ota, "pr-b", blocker.id, U.UPDATE_STATE_NOTIFIED), what="blocker")
    rollout = await ota.rollout(fw.id, ["pr-a", "pr-b"])
    paused = (await ota.stub.PauseRollout(ota_pb2.PauseRolloutRequest(id=rollout.id))).rollout
    assert paused.state == PAUSED
    await ota.stub.CancelRollout(ota_pb2.CancelRolloutRequest(id=blocker.id))
    assert (await state_of(ota, "pr-b", blocker.id)).state == U.UPDATE_STATE_CANCELLED
    fleets.append(await ota.fleet(["pr-a", "pr-b"]))
    await asyncio.sleep(1.0)  # many ticks: a paused rollout starts nothing new
    assert (await state_of(ota, "pr-b", rollout.id)).state == U.UPDATE_STATE_QUEUED
    resumed = (await ota.stub.ResumeRollout(ota_pb2.ResumeRolloutRequest(id=rollout.id))).rollout
    assert resumed.state == RUNNING
    done = await ota.wait_rollout(rollout.id, COMPLETED)
    assert done.counts["succeeded"] == 2
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ota.stub.PauseRollout(ota_pb2.PauseRolloutRequest(id=rollout.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Cancelling a rollout cancels its queued and active updates.
    silent = await ota.rollout(fw_busy.id, ["pr-x", "pr-y"], timeout_s=300)
    await until(lambda: _state_is(ota, "pr-x", silent.id, U.UPDATE_STATE_NOTIFIED), what="x")
    cancelled = (await ota.stub.CancelRollout(ota_pb2.CancelRolloutRequest(id=silent.id))).rollout
    assert cancelled.state == CANCELLED
    assert dict(cancelled.counts) == {"cancelled": 2}


async def _state_is(ota: OtaRunner, device: str, rollout_id: str, state: int) -> bool:
    return bool((await state_of(ota, device, rollout_id)).state == state)


async def test_auto_pause_at_the_error_threshold(
    ota: OtaRunner, fleets: list[SimulatedFleet]
) -> None:
    fw = await ota.upload(os.urandom(20_000))
    devices = [f"ap-{i}" for i in range(10)]
    behaviours = dict.fromkeys(devices[:3], Behaviour.FAIL)
    fleets.append(await ota.fleet(devices, behaviours))
    rollout = await ota.rollout(fw.id, devices, error_threshold=0.2)
    paused = await ota.wait_rollout(rollout.id, PAUSED)
    assert "auto-paused" in paused.reason
    await until(
        lambda: _counts_total(ota, rollout.id, ("failed", "succeeded"), 10), what="all done"
    )
    final = await ota.get_rollout(rollout.id)
    assert final.state == PAUSED
    assert dict(final.counts) == {"failed": 3, "succeeded": 7}
    # Resuming counts only new failures: nothing pending, so it completes.
    await ota.stub.ResumeRollout(ota_pb2.ResumeRolloutRequest(id=rollout.id))
    await ota.wait_rollout(rollout.id, COMPLETED)


async def _counts_total(ota: OtaRunner, rollout_id: str, states: tuple[str, ...], n: int) -> bool:
    counts = (await ota.get_rollout(rollout_id)).counts
    return bool(sum(counts.get(s, 0) for s in states) == n)


async def test_priority_then_age_ordering(ota: OtaRunner) -> None:
    fw = await ota.upload(b"prio" * 100)
    blocker = await ota.rollout(fw.id, ["prio-1"], timeout_s=300)
    await until(lambda: _state_is(ota, "prio-1", blocker.id, U.UPDATE_STATE_NOTIFIED), what="b")
    normal_old = await ota.rollout(fw.id, ["prio-1"], timeout_s=300)
    normal_new = await ota.rollout(fw.id, ["prio-1"], timeout_s=300)
    security = await ota.rollout(
        fw.id, ["prio-1"], timeout_s=300, priority=ota_pb2.PRIORITY_SECURITY
    )
    order = [u.rollout_id for u in await ota.updates("prio-1")]
    assert order == [blocker.id, security.id, normal_old.id, normal_new.id]
    await ota.stub.CancelRollout(ota_pb2.CancelRolloutRequest(id=blocker.id))
    await until(lambda: _state_is(ota, "prio-1", security.id, U.UPDATE_STATE_NOTIFIED), what="s")
    assert (await state_of(ota, "prio-1", normal_old.id)).state == U.UPDATE_STATE_QUEUED
    await ota.stub.CancelRollout(ota_pb2.CancelRolloutRequest(id=security.id))
    await until(lambda: _state_is(ota, "prio-1", normal_old.id, U.UPDATE_STATE_NOTIFIED), what="n")
    assert (await state_of(ota, "prio-1", normal_new.id)).state == U.UPDATE_STATE_QUEUED


async def test_one_active_update_per_device_under_concurrent_rollouts(ota: OtaRunner) -> None:
    fw = await ota.upload(b"conc" * 100)
    devices = [f"cc-{i}" for i in range(20)]
    rollouts = await asyncio.gather(*(ota.rollout(fw.id, devices, timeout_s=300) for _ in range(5)))
    await asyncio.sleep(1.0)
    for device in devices:
        states = [u.state for u in await ota.updates(device)]
        active = [s for s in states if s in {U.UPDATE_STATE_NOTIFIED}]
        assert len(active) == 1, (device, states)
        assert states.count(U.UPDATE_STATE_QUEUED) == 4
    assert len({r.id for r in rollouts}) == 5


async def test_restart_mid_rollout_resumes(ota: OtaRunner, fleets: list[SimulatedFleet]) -> None:
    fw = await ota.upload(os.urandom(30_000))
    devices = [f"rs-{i}" for i in range(6)]
    rollout = await ota.rollout(fw.id, devices, timeout_s=3, max_retries=5)
    await until(lambda: _counts_total(ota, rollout.id, ("notified",), 6), what="all notified")
    await ota.public_key()
    await ota.stop()
    # Devices come online while the service is down: their requests wait at the broker.
    fleets.append(await ota.fleet(devices))
    await asyncio.sleep(0.5)
    await ota.start()
    done = await ota.wait_rollout(rollout.id, COMPLETED, timeout=30)
    assert dict(done.counts) == {"succeeded": 6}
