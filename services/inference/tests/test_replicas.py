"""Two inference servers on one registry database (SQLite and PostgreSQL): what is done
through one reaches the other, and a package blob is verified when a replica reads it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from linewatch_inference.app import InferenceServer

from linewatch.oip import grpc_service_pb2 as oip
from linewatch.oip import grpc_service_pb2_grpc as oip_grpc
from linewatch.runtime.db import Database
from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_dev.inference_testing import manifest_dict, onnx_bytes, sha256, zip_package
from linewatch_dev.testing import operator_channel

from .conftest import StartServer


@pytest.fixture
async def channels() -> AsyncIterator[list[grpc.aio.Channel]]:
    opened: list[grpc.aio.Channel] = []
    yield opened
    for ch in opened:
        await ch.close()


async def _until(check: Callable[[], Awaitable[bool]], tries: int = 100) -> bool:
    for _ in range(tries):
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_changes_through_one_replica_reach_the_other(
    model_dir: Path,
    start_server: StartServer,
    http_files: tuple[str, Path],
    database_url: str,
    tmp_path: Path,
    channels: list[grpc.aio.Channel],
) -> None:
    base, www = http_files
    v2 = zip_package(onnx_bytes(bias=(0.0, 3.0, 0.0)), manifest_dict(version="2"))
    v3 = zip_package(onnx_bytes(bias=(0.0, 0.0, 3.0)), manifest_dict(version="3"))
    (www / "v2.zip").write_bytes(v2)
    (www / "v3.zip").write_bytes(v3)
    servers: list[InferenceServer] = []
    apis: list[pb_grpc.InferenceServiceStub] = []
    oips: list[oip_grpc.GRPCInferenceServiceStub] = []
    for i in range(2):
        server, port = await start_server(
            model_dir,
            data_dir=tmp_path / f"replica-{i}",
            database_url=database_url,
            registry_poll_s=0.1,
        )
        ch = operator_channel(f"127.0.0.1:{port}")
        channels.append(ch)
        servers.append(server)
        apis.append(pb_grpc.InferenceServiceStub(ch))
        oips.append(oip_grpc.GRPCInferenceServiceStub(ch))
    a, b = apis

    async def model(api: pb_grpc.InferenceServiceStub) -> pb.Model:
        found: pb.Model = (await api.GetModel(pb.GetModelRequest(name="tiny"))).model
        return found

    async def versions(api: pb_grpc.InferenceServiceStub) -> list[str]:
        return sorted(v.version for v in (await model(api)).versions if v.state == 2)

    # both read model_dir; version 1 was promoted once, by whichever started first
    history = await b.ListPromotions(pb.ListPromotionsRequest(name="tiny"))
    assert [(p.from_version, p.to_version) for p in history.promotions] == [("", "1")]

    await a.LoadModel(pb.LoadModelRequest(url=f"{base}/v2.zip", sha256=sha256(v2)))
    (www / "v2.zip").unlink()  # b loads it from the database, not the URL
    assert await _until(lambda: _eq(versions(b), ["1", "2"]))
    got = await model(b)
    assert got.promoted_version == "1"
    assert [v.loaded_by for v in got.versions if v.version == "2"] == ["test"]
    assert [v.sha256 for v in got.versions if v.version == "2"] == [sha256(v2)]

    await a.SetShadow(pb.SetShadowRequest(name="tiny", shadow_version="2"))
    assert await _until(lambda: _eq(_shadow(b), "2"))

    await b.PromoteModel(pb.PromoteModelRequest(name="tiny", version="2"))
    assert await _until(lambda: _eq(_promoted(a), "2"))
    for stub in oips:
        ready = await stub.ModelReady(oip.ModelReadyRequest(name="tiny"))
        assert ready.ready
        assert (
            await stub.ModelReady(oip.ModelReadyRequest(name="tiny", version="7"))
        ).ready is False

    await a.UnloadModel(pb.UnloadModelRequest(name="tiny", version="1"))
    assert await _until(lambda: _eq(versions(b), ["2"]))

    # a blob altered in the database: b refuses it and keeps serving what it has
    await a.LoadModel(pb.LoadModelRequest(url=f"{base}/v3.zip", sha256=sha256(v3)))
    await servers[1].stop()
    db = Database(database_url)
    async with db.connect() as conn:
        await conn.execute(
            sa.text("UPDATE inference_package SET data = :d WHERE sha256 = :s"),
            {"d": v3[:-1] + b"x", "s": sha256(v3)},
        )
    await db.close()
    _, port = await start_server(
        model_dir, data_dir=tmp_path / "replica-1b", database_url=database_url
    )
    ch = operator_channel(f"127.0.0.1:{port}")
    channels.append(ch)
    fresh = pb_grpc.InferenceServiceStub(ch)
    got = await model(fresh)
    assert sorted(v.version for v in got.versions if v.state == 2) == ["2"]
    failed = [v for v in got.versions if v.version == "3"]
    assert failed[0].state == 3
    assert "corrupt" in failed[0].reason


async def _eq(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def _shadow(api: pb_grpc.InferenceServiceStub) -> str:
    return str((await api.GetModel(pb.GetModelRequest(name="tiny"))).model.shadow_version)


async def _promoted(api: pb_grpc.InferenceServiceStub) -> str:
    return str((await api.GetModel(pb.GetModelRequest(name="tiny"))).model.promoted_version)
