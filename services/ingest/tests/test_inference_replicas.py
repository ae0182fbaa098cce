"""Two inference processes on one registry database, ingest balancing over both.

End to end on the real broker: a version loaded by URL through one replica does not
change verdicts until it is promoted; promoted through one replica it is served by both
(``ModelReady``, the verdicts' ``model_version``); rollback is promoting the old one; and
one replica killed with SIGKILL mid-load loses no verdict. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from linewatch_ingest.app import running

from linewatch.oip import grpc_service_pb2 as oip
from linewatch.oip import grpc_service_pb2_grpc as oip_grpc
from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_dev.inference_testing import manifest_dict, onnx_bytes, sha256, zip_package
from linewatch_dev.testing import file_server, free_port, operator_channel, operator_env, wait_port

from .conftest import Collector, Inference, curve_payload, eventually, ingest_config

ROOT = Path(__file__).resolve().parents[3]
KINDS = ["ok", "spike", "drift", "noise", "step"]


@pytest.fixture
def package_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server for model packages: ``(base_url, folder)``."""
    root = tmp_path / "www"
    root.mkdir()
    with file_server(root) as url:
        yield url, root


class Replica:
    """One inference process (``python -m linewatch_inference``)."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "OTEL_SDK_DISABLED": "true",
            **operator_env("inference"),
            "LINEWATCH_INFERENCE__GRPC__PORT": str(self.port),
            "LINEWATCH_INFERENCE__MODEL_DIR": str(ROOT / "models"),
            "LINEWATCH_INFERENCE__DATA_DIR": str(data_dir),
            "LINEWATCH_INFERENCE__DATABASE_URL": database_url,
            "LINEWATCH_INFERENCE__ALLOWED_NETWORKS": "127.0.0.0/8",
            "LINEWATCH_INFERENCE__REGISTRY_POLL_S": "0.2",
            "LINEWATCH_INFERENCE__LOG_LEVEL": "WARNING",
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.channel = operator_channel(f"127.0.0.1:{self.port}")
        self.api = pb_grpc.InferenceServiceStub(self.channel)
        self.oip = oip_grpc.GRPCInferenceServiceStub(self.channel)

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "linewatch_inference", env=self.env, cwd=ROOT
        )
        await asyncio.to_thread(wait_port, self.port, 60.0)

    async def model(self) -> pb.Model:
        response = await self.api.GetModel(pb.GetModelRequest(name="curve-quality"))
        model: pb.Model = response.model
        return model

    async def ready(self) -> bool:
        answer = await self.oip.ModelReady(oip.ModelReadyRequest(name="curve-quality"))
        return bool(answer.ready)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await self.proc.wait()
        await self.channel.close()


@pytest.fixture
async def replicas(database_url: str, tmp_path: Path) -> AsyncIterator[list[Replica]]:
    started = [Replica(database_url, tmp_path / f"inference-{i}") for i in range(2)]
    try:
        for replica in started:  # one after the other: the first creates the tables
            await replica.start()
        yield started
    finally:
        for replica in started:
            await replica.stop()


async def _serving_everywhere(replicas: list[Replica], promoted: str) -> bool:
    async def check() -> bool:
        models = [await r.model() for r in replicas]
        return all(m.promoted_version == promoted and m.promoted_ready for m in models)

    return bool(await eventually(check, timeout=20))


async def _publish(pub: MqttClient, prefix: str, n: int, *, delay: float = 0.0) -> dict[str, str]:
    sent: dict[str, str] = {}
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        msg_id = f"m{i}-{uuid.uuid4().hex[:8]}"
        sent[msg_id] = kind
        await pub.publish(
            f"{prefix}/A/dev-{i % 3}/telemetry",
            curve_payload(f"dev-{i % 3}", kind=kind, msg_id=msg_id, seed=i),
        )
        if delay:
            await asyncio.sleep(delay)
    return sent


async def test_promotion_reaches_both_replicas_and_a_killed_one_loses_nothing(
    mqtt_url: str,
    database_url: str,
    topic_prefix: str,
    replicas: list[Replica],
    package_server: tuple[str, Path],
) -> None:
    a, b = replicas
    base, www = package_server
    # version 999 calls every curve ok (a defective part would pass)
    package = zip_package(
        onnx_bytes(bias=(3.0, 0.0, 0.0)), manifest_dict(name="curve-quality", version="999")
    )
    (www / "cq-999.zip").write_bytes(package)
    target = Inference(Path())
    target.port = 0
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=target, prefix=topic_prefix
    )
    config = config.model_copy(
        update={
            "inference": config.inference.model_copy(
                update={"target": f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}", "streams": 2}
            )
        }
    )
    assert await _serving_everywhere(replicas, "1")
    assert [await r.ready() for r in replicas] == [True, True]
    seen: set[str] = set()
    async with (
        running(config) as ingest,
        Collector(mqtt_url, f"{topic_prefix}/+/+/verdict") as verdicts,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
    ):
        await ingest.controller.worker("demo").client.wait_connected(5)  # type: ignore[union-attr]

        async def round_of(n: int, version: str, *, delay: float = 0.0) -> dict[str, str]:
            sent = await _publish(pub, topic_prefix, n, delay=delay)
            got = await verdicts.wait_for(len(seen) + n, timeout=60)
            fresh = {v["msg_id"]: v for v in got if v["msg_id"] in sent}
            assert set(fresh) == set(sent)  # none lost
            assert {v["model_version"] for v in fresh.values()} == {version}
            seen.update(sent)
            return {m: v["label"] for m, v in fresh.items()}

        labels = await round_of(20, "1")
        assert sorted(set(labels.values())) == sorted(KINDS)

        loaded = await a.api.LoadModel(
            pb.LoadModelRequest(url=f"{base}/cq-999.zip", sha256=sha256(package))
        )
        assert loaded.model.promoted_version == "1"
        # b takes the version from the database (its blob), still promoting 1
        assert await eventually(lambda: _has_version(b, "999"), timeout=20), (
            "replica b never loaded 999"
        )
        labels = await round_of(20, "1")  # loading changed nothing
        assert sorted(set(labels.values())) == sorted(KINDS)

        await a.api.PromoteModel(pb.PromoteModelRequest(name="curve-quality", version="999"))
        assert await _serving_everywhere(replicas, "999")
        assert [await r.ready() for r in replicas] == [True, True]
        labels = await round_of(20, "999")
        assert set(labels.values()) == {"ok"}

        # rollback, through the other replica
        await b.api.PromoteModel(pb.PromoteModelRequest(name="curve-quality", version="1"))
        assert await _serving_everywhere(replicas, "1")
        history = await a.api.ListPromotions(pb.ListPromotionsRequest(name="curve-quality"))
        assert [(p.from_version, p.to_version) for p in history.promotions] == [
            ("999", "1"),
            ("1", "999"),
            ("", "1"),
        ]
        await round_of(20, "1")

        # one replica killed mid-load: every curve still gets its verdict
        load = asyncio.create_task(_publish(pub, topic_prefix, 200, delay=0.005))
        await asyncio.sleep(0.4)
        killed_at = time.monotonic()
        await b.stop(signal.SIGKILL)
        sent = await load
        got = await verdicts.wait_for(len(seen) + len(sent), timeout=90)
        recovered_s = time.monotonic() - killed_at
        fresh = [v for v in got if v["msg_id"] in sent]
        assert {v["msg_id"] for v in fresh} == set(sent)
        assert {v["model_version"] for v in fresh} == {"1"}
        print(
            f"\nreplica killed mid-load: {len(sent)} curves, {len(fresh)} verdicts "
            f"({len(fresh) - len(sent)} duplicates), all in {recovered_s:.1f} s"
        )


async def test_streams_drained_and_reopened_lose_no_batch(
    mqtt_url: str, database_url: str, topic_prefix: str, replicas: list[Replica]
) -> None:
    a, b = replicas
    target = Inference(Path())
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=target, prefix=topic_prefix
    )
    config = config.model_copy(
        update={
            "inference": config.inference.model_copy(
                update={
                    "target": f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}",
                    "streams": 2,
                    "rebalance_s": 0.2,
                }
            )
        }
    )
    async with (
        running(config) as ingest,
        Collector(mqtt_url, f"{topic_prefix}/+/+/verdict") as verdicts,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
    ):
        await ingest.controller.worker("demo").client.wait_connected(5)  # type: ignore[union-attr]
        sent = await _publish(pub, topic_prefix, 200, delay=0.01)
        got = await verdicts.wait_for(len(sent), timeout=60)
        assert {v["msg_id"] for v in got} == set(sent)
        assert ingest.inference.rebalances > 0
        assert ingest.inference.reconnects == 0  # drained, never broken


async def _has_version(replica: Replica, version: str) -> bool:
    try:
        model = await replica.model()
    except grpc.aio.AioRpcError:
        return False
    return any(v.version == version for v in model.versions)
