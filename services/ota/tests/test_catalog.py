"""The firmware catalog over gRPC: upload, limits, signatures, ranged reads, delete."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from linewatch_ota.signing import verify_signature

from linewatch.v1 import ota_pb2
from linewatch_dev.ota_testing import OtaRunner


async def test_upload_is_content_addressed_and_signed(ota: OtaRunner) -> None:
    data = os.urandom(300_000)
    fw = await ota.upload(data, version="2.0.0")
    assert fw.size == len(data)
    assert fw.sha256 == hashlib.sha256(data).hexdigest()
    stored = ota.config.resolved_firmware_dir() / fw.sha256
    assert stored.read_bytes() == data
    assert not list((ota.config.resolved_firmware_dir() / ".tmp").iterdir())
    assert verify_signature(await ota.public_key(), fw.sha256, fw.signature)
    assert not verify_signature(await ota.public_key(), "0" * 64, fw.signature)
    listed = await ota.stub.ListFirmware(ota_pb2.ListFirmwareRequest())
    assert [f.id for f in listed.firmware] == [fw.id]
    key_file = ota.config.resolved_signing_key_path()
    assert key_file.stat().st_mode & 0o777 == 0o600


async def test_version_unique_per_product_and_size_limit(ota: OtaRunner) -> None:
    await ota.upload(b"one", version="1.0.0")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ota.upload(b"two", version="1.0.0")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    other = await ota.upload(b"two", version="1.0.0", product="welder")
    assert other.product == "welder"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ota.upload(b"x" * (2 * 1024 * 1024 + 1), version="9.9.9")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ota.upload(b"x", version="bad version/")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    async def no_metadata() -> AsyncIterator[ota_pb2.UploadFirmwareRequest]:
        yield ota_pb2.UploadFirmwareRequest(chunk=b"abc")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ota.stub.UploadFirmware(no_metadata())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_ranged_reads_over_grpc_and_http(ota: OtaRunner) -> None:
    data = os.urandom(700_000)
    fw = await ota.upload(data)
    chunks = [
        c.chunk
        async for c in ota.stub.ReadFirmware(
            ota_pb2.ReadFirmwareRequest(id=fw.id, offset=1000, length=500_000)
        )
    ]
    assert b"".join(chunks) == data[1000:501_000]
    url = f"{ota.config.public_base_url}/v1/firmware/{fw.id}/download"
    async with httpx.AsyncClient() as client:
        part = await client.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
        assert part.content == data[100:200]
        whole = await client.get(url)
        assert whole.status_code == 200
        assert whole.content == data
        beyond = await client.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert beyond.status_code == 416
        missing = await client.get(f"{ota.config.public_base_url}/v1/firmware/nope/download")
        assert missing.status_code == 404


async def test_delete_refused_while_a_rollout_uses_it(ota: OtaRunner) -> None:
    fw = await ota.upload(b"image" * 100)
    rollout = await ota.rollout(fw.id, ["dev-del-1"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ota.stub.DeleteFirmware(ota_pb2.DeleteFirmwareRequest(id=fw.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await ota.stub.CancelRollout(ota_pb2.CancelRolloutRequest(id=rollout.id))
    await ota.stub.DeleteFirmware(ota_pb2.DeleteFirmwareRequest(id=fw.id))
    assert not (ota.config.resolved_firmware_dir() / fw.sha256).exists()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ota.stub.GetFirmware(ota_pb2.GetFirmwareRequest(id=fw.id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_rollout_requests_are_validated(ota: OtaRunner) -> None:
    fw = await ota.upload(b"validate")
    grouped = await ota.rollout(fw.id, ["extra-1"], group="line-a")
    assert list(grouped.devices) == ["extra-1", "grp-1", "grp-2"]
    assert grouped.max_retries == 2  # the configured default
    explicit = await ota.rollout(fw.id, ["zero-1"], max_retries=0)
    assert explicit.max_retries == 0
    bad: list[tuple[dict[str, Any], grpc.StatusCode]] = [
        ({"devices": ["a"], "group": "nope"}, grpc.StatusCode.NOT_FOUND),
        ({"devices": ["bad/id"]}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"devices": ["ota/#"]}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"devices": []}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"devices": ["a"], "error_threshold": 1.5}, grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for kwargs, code in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ota.stub.CreateRollout(ota_pb2.CreateRolloutRequest(firmware_id=fw.id, **kwargs))
        assert err.value.code() == code, kwargs
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ota.rollout("missing", ["a"])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ota.stub.GetRollout(ota_pb2.GetRolloutRequest(id="missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
