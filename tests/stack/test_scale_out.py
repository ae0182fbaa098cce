"""Scale-out: 2 ingest, 2 inference, 2 sync and 2 OTA processes on one PostgreSQL and one
Mosquitto.

Under load (``LINEWATCH_SCALE_N`` curves, 3000 by default): every message gets exactly one
archive row and its verdict; a rule created through one ingest replica is applied by both;
one ingest and one inference replica are killed with SIGKILL mid-load and restarted (what
Kubernetes does) → nothing lost, nothing archived twice; the recovery time is printed.
The inference replicas share one registry database and ingest balances over both (client-side
round robin); a version loaded and promoted through one inference replica is served by both
and names every later verdict. Two OTA replicas (one database, one firmware volume, a shared
subscription for device messages) update every device of a rollout exactly once, though one
is killed with SIGKILL mid-rollout and restarted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import sqlalchemy as sa
from linewatch_ingest.config import RuleConfig
from linewatch_ingest.rules import rule_to_proto
from linewatch_ota.download_server import DownloadServer

from linewatch.oip import grpc_service_pb2 as oip_pb2
from linewatch.oip import grpc_service_pb2_grpc as oip_grpc
from linewatch.runtime.config import MqttConfig
from linewatch.runtime.db import Database
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.v1 import (
    inference_pb2,
    inference_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    ota_pb2,
    ota_pb2_grpc,
    sync_pb2_grpc,
)
from linewatch_dev.curves import make_curve
from linewatch_dev.inference_testing import manifest_dict, onnx_bytes, sha256, zip_package
from linewatch_dev.ota_simulator import SimulatedFleet, fetch_signing_keys
from linewatch_dev.ota_testing import ota_process_config
from linewatch_dev.sync_drills import SyncProcess, spawn_python, verify_cache, wait_done
from linewatch_dev.testing import (
    TEST_TOKEN,
    Mosquitto,
    file_server,
    free_port,
    operator_channel,
    operator_client,
    operator_env,
    operator_grpc_dict,
    wait_port,
)

ROOT = Path(__file__).resolve().parents[2]
N = int(os.environ.get("LINEWATCH_SCALE_N", "3000"))
RATE = 250  # curves per second
SHIPPED = "curve-quality"


class Proc:
    """A service process that can be killed and started again with the same settings."""

    def __init__(self, args: list[str], env: dict[str, str], port: int) -> None:
        self.args, self.env, self.port = args, env, port
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *self.args,
            env={**os.environ, "OTEL_SDK_DISABLED": "true", **self.env},
            cwd=ROOT,
        )

    async def ready(self) -> None:
        await asyncio.to_thread(wait_port, self.port, 60)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


def _inference(tmp: Path, i: int, db: str) -> Proc:
    port = free_port()
    return Proc(
        ["-m", "linewatch_inference"],
        {
            "LINEWATCH_INFERENCE__GRPC__PORT": str(port),
            **operator_env("inference"),
            "LINEWATCH_INFERENCE__MODEL_DIR": str(ROOT / "models"),
            "LINEWATCH_INFERENCE__DATA_DIR": str(tmp / f"inference-{i}"),
            "LINEWATCH_INFERENCE__DATABASE_URL": db,
            "LINEWATCH_INFERENCE__ALLOWED_NETWORKS": "127.0.0.0/8",
            "LINEWATCH_INFERENCE__REGISTRY_POLL_S": "0.2",
            "LINEWATCH_INFERENCE__LOG_LEVEL": "WARNING",
        },
        port,
    )


def _ingest(tmp: Path, i: int, *, broker: str, db: str, inference: list[Proc], prefix: str) -> Proc:
    port = free_port()
    config = tmp / f"ingest-{i}.yaml"
    config.write_text(
        json.dumps(
            {
                "log_level": "WARNING",
                "grpc": operator_grpc_dict(port=port),
                "data_dir": str(tmp / f"ingest-{i}"),
                "database_url": db,
                "replicas": 2,
                "status_interval_s": 0.5,
                "client_id": "scale",
                "brokers": {"default": {"url": broker, "reconnect_max_delay_s": 1.0}},
                "inference": {
                    "target": "ipv4:" + ",".join(f"127.0.0.1:{p.port}" for p in inference),
                    "streams": len(inference),
                    "retry_max_delay_s": 0.5,
                },
                "deadletter_topic": f"{prefix}/deadletter",
                "rules": [
                    {
                        "name": "scale",
                        "source_topic": f"{prefix}/+/+/telemetry",
                        "model": SHIPPED,
                        "output_topic": f"{prefix}/{{1}}/{{2}}/verdict",
                    }
                ],
            }
        )
    )
    return Proc(["-m", "linewatch_ingest", "--config", str(config)], {}, port)


async def _status(proc: Proc) -> ingest_pb2.GetIngestStatusResponse:
    async with operator_channel(f"127.0.0.1:{proc.port}") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        st: ingest_pb2.GetIngestStatusResponse = await stub.GetIngestStatus(
            ingest_pb2.GetIngestStatusRequest(), timeout=5
        )
        return st


async def _running(proc: Proc, rule: str) -> bool:
    try:
        st = await _status(proc)
    except grpc.aio.AioRpcError:
        return False
    return any(r.name == rule and r.state == ingest_pb2.WORKER_STATE_RUNNING for r in st.rules)


async def _until(check: Any, timeout: float) -> float:
    """Seconds until ``await check()`` is truthy (fails after ``timeout``)."""
    start = time.monotonic()
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 (other processes change it)
            await asyncio.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
def package_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server for model packages: ``(base_url, folder)``."""
    root = tmp_path / "www"
    root.mkdir()
    with file_server(root) as url:
        yield url, root


async def _served_version(proc: Proc) -> tuple[str, bool]:
    """(promoted version, whether this replica serves it) as ``proc`` reports them."""
    async with operator_channel(f"127.0.0.1:{proc.port}") as channel:
        api = inference_pb2_grpc.InferenceServiceStub(channel)
        got = await api.GetModel(inference_pb2.GetModelRequest(name=SHIPPED), timeout=5)
        oip = oip_grpc.GRPCInferenceServiceStub(channel)
        ready = await oip.ModelReady(oip_pb2.ModelReadyRequest(name=SHIPPED), timeout=5)
        return got.model.promoted_version, bool(got.model.promoted_ready and ready.ready)


async def promote_through_one_replica(inference: list[Proc], package: tuple[str, Path]) -> str:
    """Load version ``2`` of the model by URL through replica 0 and promote it there;
    return once every replica serves it (ModelReady true for the promoted version)."""
    base, www = package
    data = zip_package(onnx_bytes(bias=(3.0, 0.0, 0.0)), manifest_dict(name=SHIPPED, version="2"))
    (www / "cq-2.zip").write_bytes(data)
    async with operator_channel(f"127.0.0.1:{inference[0].port}") as channel:
        api = inference_pb2_grpc.InferenceServiceStub(channel)
        await api.LoadModel(
            inference_pb2.LoadModelRequest(url=f"{base}/cq-2.zip", sha256=sha256(data)), timeout=60
        )
        await api.PromoteModel(inference_pb2.PromoteModelRequest(name=SHIPPED, version="2"))
    await assert_replicas_serve_the_promoted_version(inference, "2")
    return "2"


async def assert_replicas_serve_the_promoted_version(inference: list[Proc], version: str) -> None:
    """Every inference replica reports ``version`` promoted and serves it."""

    async def everywhere() -> bool:
        try:
            got = [await _served_version(proc) for proc in inference]
        except grpc.aio.AioRpcError:
            return False
        return got == [(version, True)] * len(inference)

    await _until(everywhere, 60)


@pytest.mark.slow
async def test_two_replicas_each_under_load_lose_and_duplicate_nothing_across_sigkill(
    mosquitto: Mosquitto,
    database_url: str,
    topic_prefix: str,
    tmp_path: Path,
    package_server: tuple[str, Path],
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("replicas share one PostgreSQL database")
    p = topic_prefix
    inference = [_inference(tmp_path, i, database_url) for i in range(2)]
    ingest = [
        _ingest(tmp_path, i, broker=mosquitto.url, db=database_url, inference=inference, prefix=p)
        for i in range(2)
    ]
    verdicts: dict[str, int] = {}
    versions: dict[str, str] = {}
    got = asyncio.Event()

    async def on_verdict(message: MqttMessage) -> None:
        verdict = json.loads(message.payload)
        msg_id = verdict["msg_id"]
        verdicts[msg_id] = verdicts.get(msg_id, 0) + 1
        versions[msg_id] = verdict["model_version"]
        got.set()

    rng = np.random.default_rng(3)
    curves = [[round(float(v), 3) for v in make_curve(k, length=256, rng=rng)] for k in
              ("ok", "ok", "spike", "drift", "noise")]  # fmt: skip
    try:
        for proc in inference:
            await proc.start()
        for proc in inference:
            await proc.ready()
        for proc in ingest:
            await proc.start()
        for proc in ingest:
            await proc.ready()
        for proc in ingest:
            await _until(lambda proc=proc: _running(proc, "scale"), 30)
        await assert_replicas_serve_the_promoted_version(inference, "1")
        promoted = await promote_through_one_replica(inference, package_server)
        async with (
            MqttClient(MqttConfig(url=mosquitto.url), clean_start=True) as sub,
            MqttClient(MqttConfig(url=mosquitto.url), clean_start=True) as pub,
        ):
            await sub.subscribe(f"{p}/+/+/verdict", on_verdict)
            await asyncio.sleep(0.5)
            # a rule created through replica 0 is applied by replica 1
            rule = RuleConfig(
                name="later", source_topic=f"{p}/later/+", model=SHIPPED,
                output_topic=f"{p}/later/{{1}}/out",
            )  # fmt: skip
            async with operator_channel(f"127.0.0.1:{ingest[0].port}") as channel:
                stub = ingest_pb2_grpc.IngestServiceStub(channel)
                await stub.CreateRule(ingest_pb2.CreateRuleRequest(rule=rule_to_proto(rule)))
            took = await _until(lambda: _running(ingest[1], "later"), 5)
            print(f"rule created on replica 0 running on replica 1 after {took:.2f} s")

            killed_at = 0.0
            sent_before_kill = 0
            start = time.monotonic()
            sent = 0
            while sent < N:
                due = min(N, int((time.monotonic() - start) * RATE))
                batch = []
                while sent < due:
                    dev = f"press-{sent % 16:02d}"
                    body = {"device_id": dev, "point": "pressure", "ts": 1_763_800_000_000 + sent,
                            "values": curves[sent % len(curves)], "msg_id": f"s{sent}"}  # fmt: skip
                    batch.append((f"{p}/L1/{dev}/telemetry", json.dumps(body), ()))
                    sent += 1
                if batch:
                    await pub.publish_many(batch, qos=1)
                if not killed_at and sent >= N // 3:
                    await ingest[0].kill()  # SIGKILL mid-load: one ingest, one inference
                    await inference[1].kill()
                    killed_at, sent_before_kill = time.monotonic(), sent
                    await ingest[0].start()  # what the Deployment does
                    await inference[1].start()
                await asyncio.sleep(0.02)

            async def backlog_done() -> bool:
                return all(f"s{i}" in verdicts for i in range(sent_before_kill))

            await _until(backlog_done, 120)
            recovered = time.monotonic() - killed_at
            await _until(lambda: _true(len(verdicts) >= N), 180)
            await asyncio.sleep(1.0)
        print(
            f"scale-out: {N} curves, 2 ingest + 2 inference on PostgreSQL + Mosquitto; "
            f"every message sent before the SIGKILL had its verdict {recovered:.2f} s after it; "
            f"{sum(verdicts.values()) - len(verdicts)} verdicts published twice (redelivered "
            "from the killed replica's unacknowledged window)"
        )
        assert set(verdicts) == {f"s{i}" for i in range(N)}
        db = Database(database_url)
        try:
            async with db.connect() as conn:
                rows = (
                    await conn.execute(
                        sa.text(
                            "SELECT msg_id, count(*) AS n FROM ingest_verdict "
                            "WHERE rule = 'scale' GROUP BY msg_id"
                        )
                    )
                ).all()
        finally:
            await db.close()
        assert len(rows) == N, "one archive row per message"
        assert {r.n for r in rows} == {1}, "no message archived twice"
        await assert_replicas_serve_the_promoted_version(inference, promoted)
        assert set(versions.values()) == {promoted}, "every verdict names the promoted version"
        st = await _status(ingest[1])
        (scale,) = [r for r in st.rules if r.name == "scale"]
        assert len(scale.replicas) == 2
    finally:
        for proc in ingest + inference:
            await proc.stop()


async def _true(value: bool) -> bool:
    return value


@pytest.mark.slow
async def test_two_sync_replicas_take_each_job_once_across_a_sigkill(
    mosquitto: Mosquitto, database_url: str, tmp_path: Path
) -> None:
    """2 sync processes on one PostgreSQL, one cache volume (ReadWriteMany) and one shared
    subscription: every URL is one job and one intact file, though one replica is killed
    with SIGKILL at 40 % and restarted (job claims: ``FOR UPDATE SKIP LOCKED`` + leases)."""
    if database_url.startswith("sqlite"):
        pytest.skip("replicas share one PostgreSQL database")
    count, size = 300, 32 * 1024
    port = free_port()
    server = await spawn_python(
        "-m", "linewatch_dev.sync_testing", "--port", str(port), "--count", str(count),
        "--size", str(size),
    )  # fmt: skip
    topic = f"scale/{uuid.uuid4().hex[:8]}/sync"
    replicas = [SyncProcess(tmp_path / f"sync-{i}", mosquitto.url, topic) for i in range(2)]
    for i, svc in enumerate(replicas):
        config = json.loads(svc.config_path.read_text())
        config.update(
            database_url=database_url,
            cache_dir=str(tmp_path / "cache"),
            shared_group="linewatch-sync",
            worker_id=f"sync-{i}",
        )
        svc.config_path.write_text(json.dumps(config))
    try:
        await asyncio.to_thread(wait_port, port, 30.0)
        for svc in replicas:
            await svc.start()
        async with MqttClient(MqttConfig(url=mosquitto.url), clean_start=True) as pub:
            for i in range(0, count, 50):
                urls = [f"http://127.0.0.1:{port}/img/{j}.jpg!thumb" for j in range(i, i + 50)]
                await pub.publish(topic, json.dumps({"urls": urls, "work_id": f"w{i}"}))
        async with operator_channel(f"127.0.0.1:{replicas[1].port}") as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            await wait_done(stub, int(count * 0.4), 60)
            await replicas[0].kill9()
            killed = time.monotonic()
            await replicas[0].start()
            await wait_done(stub, count, 120)
            print(f"sync: {count} images on 2 replicas, all done {time.monotonic() - killed:.2f} s "
                  "after one was killed")  # fmt: skip
        db = Database(database_url)
        try:
            async with db.connect() as conn:
                rows, urls = (
                    await conn.execute(
                        sa.text("SELECT count(*), count(DISTINCT url) FROM sync_jobs")
                    )
                ).one()
        finally:
            await db.close()
        assert rows == urls == count
        report = await asyncio.to_thread(
            verify_cache, tmp_path / "cache", f"127.0.0.1_{port}", count, size
        )
        assert (report["missing"], report["wrong"], report["extra"]) == (0, 0, 0), report
    finally:
        for svc in replicas:
            await svc.stop()
        server.terminate()
        await server.wait()


def _ota(tmp: Path, i: int, *, broker: str, db: str, root: str, public: str) -> Proc:
    port = free_port()
    config = tmp / f"ota-{i}.json"
    settings = ota_process_config(
        grpc=operator_grpc_dict(port=port), data_dir=tmp / "ota-volume", database_url=db,
        mqtt_url=broker, client_id=f"ota-{i}", topic_root=root, public_base_url=public,
    )  # fmt: skip
    config.write_text(json.dumps(settings))
    return Proc(["-m", "linewatch_ota", "--config", str(config)], {}, port)


async def _rollout(proc: Proc, rollout_id: str) -> ota_pb2.Rollout:
    async with operator_channel(f"127.0.0.1:{proc.port}") as channel:
        stub = ota_pb2_grpc.OtaServiceStub(channel)
        reply = await stub.GetRollout(ota_pb2.GetRolloutRequest(id=rollout_id), timeout=5)
        rollout: ota_pb2.Rollout = reply.rollout
        return rollout


async def _upload_and_roll_out(proc: Proc, image: bytes, devices: list[str]) -> str:
    async def requests() -> Any:
        meta = ota_pb2.UploadFirmwareRequest.Metadata(product="press", version="2.0.0")
        yield ota_pb2.UploadFirmwareRequest(metadata=meta)
        yield ota_pb2.UploadFirmwareRequest(chunk=image)

    async with operator_channel(f"127.0.0.1:{proc.port}") as channel:
        stub = ota_pb2_grpc.OtaServiceStub(channel)
        fw = (await stub.UploadFirmware(requests(), timeout=30)).firmware
        spec = ota_pb2.CreateRolloutRequest(
            firmware_id=fw.id, devices=devices, error_threshold=1.0, timeout_s=10, max_retries=5
        )
        rollout_id: str = (await stub.CreateRollout(spec, timeout=30)).rollout.id
        return rollout_id


@pytest.mark.slow
async def test_two_ota_replicas_update_every_device_once_across_a_sigkill(
    mosquitto: Mosquitto, database_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    """2 OTA processes on one PostgreSQL, one firmware volume and a ``$share`` device
    intake: one rollout of a few hundred simulated devices; one replica is killed with
    SIGKILL at a third and restarted → every device updated once, the rollout completed."""
    if database_url.startswith("sqlite"):
        pytest.skip("replicas share one PostgreSQL database")
    count, root, http_port = 300, f"{topic_prefix}/ota", free_port()
    public = f"http://127.0.0.1:{http_port}"
    ota = [_ota(tmp_path, i, broker=mosquitto.url, db=database_url, root=root, public=public)
           for i in range(2)]  # fmt: skip
    # the gateway's part: ranged downloads over ReadFirmware, from the replica left running
    downloads = DownloadServer(
        grpc_target=f"127.0.0.1:{ota[1].port}", port=http_port, client=operator_client()
    )
    ids = [f"dev-{i:04d}" for i in range(count)]
    fleet: SimulatedFleet | None = None
    try:
        for proc in ota:  # in turn: the first creates the signing key on the shared volume
            await proc.start()
            await proc.ready()
        await downloads.start()
        keys = [await fetch_signing_keys(f"127.0.0.1:{p.port}", token=TEST_TOKEN) for p in ota]
        assert keys[0] == keys[1], "both replicas sign with the key on the shared volume"
        fleet = SimulatedFleet(
            mqtt_url=mosquitto.url, device_ids=ids, keys=keys[0], topic_root=root, concurrency=32
        )
        await fleet.start(boot=False)
        rollout_id = await _upload_and_roll_out(ota[0], os.urandom(64 * 1024), ids)

        async def succeeded(share: float) -> bool:
            rollout = await _rollout(ota[1], rollout_id)
            return bool(rollout.counts["succeeded"] >= share * count)

        await _until(partial(succeeded, 1 / 3), 60)
        await ota[0].kill()  # SIGKILL mid-rollout
        killed = time.monotonic()
        at_kill = (await _rollout(ota[1], rollout_id)).counts["succeeded"]
        await ota[0].start()  # what the Deployment does: same pod, same MQTT client id
        await ota[0].ready()
        serving = time.monotonic() - killed
        assert await fetch_signing_keys(f"127.0.0.1:{ota[0].port}", token=TEST_TOKEN) == keys[0]

        async def completed(proc: Proc) -> bool:
            try:
                rollout = await _rollout(proc, rollout_id)
            except grpc.aio.AioRpcError:
                return False
            return rollout.state == ota_pb2.ROLLOUT_STATE_COMPLETED

        await _until(partial(completed, ota[1]), 60)
        recovered = time.monotonic() - killed
        await _until(partial(completed, ota[0]), 10)
        final = await _rollout(ota[0], rollout_id)
        db = Database(database_url)
        try:
            async with db.connect() as conn:
                rows = (
                    await conn.execute(
                        sa.text(
                            "SELECT device_id, count(*) AS n, min(state) AS state, "
                            "sum(attempts) AS attempts FROM ota_device_updates "
                            "WHERE rollout_id = :r GROUP BY device_id"
                        ),
                        {"r": rollout_id},
                    )
                ).all()
        finally:
            await db.close()
        print(
            f"ota: {count} devices, 2 OTA replicas on PostgreSQL + Mosquitto ($share intake); "
            f"one SIGKILLed at {at_kill} succeeded, serving again after {serving:.2f} s, "
            f"rollout complete {recovered:.2f} s after the kill; "
            f"{sum(r.attempts for r in rows) - len(rows)} metadata re-sends (deadline passed)"
        )
        assert final.counts["succeeded"] == count
        assert sorted(r.device_id for r in rows) == ids, "one device-update row per device"
        assert {r.n for r in rows} == {1}, "no device updated twice"
        assert {r.state for r in rows} == {"succeeded"}
        assert fleet.downloads == count, "no device downloaded the image twice"
        assert all(len(d.done) == 1 and d.version == "2.0.0" for d in fleet.devices.values())
    finally:
        if fleet is not None:
            await fleet.stop()
        await downloads.stop()
        for proc in ota:
            await proc.stop()
