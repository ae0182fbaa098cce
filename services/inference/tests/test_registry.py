"""Loading by URL from a real HTTP server: checksums, broken models, persistence."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from linewatch.oip import grpc_service_pb2 as oip
from linewatch.oip import grpc_service_pb2_grpc as oip_grpc
from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_dev.inference_testing import (
    LENGTH,
    manifest_dict,
    onnx_bytes,
    sha256,
    zip_package,
)
from linewatch_dev.testing import operator_channel

from .conftest import StartServer


@pytest.fixture
async def channel_factory() -> AsyncIterator[list[grpc.aio.Channel]]:
    channels: list[grpc.aio.Channel] = []
    yield channels
    for ch in channels:
        await ch.close()


def stub(port: int, channels: list[grpc.aio.Channel]) -> pb_grpc.InferenceServiceStub:
    ch = operator_channel(f"127.0.0.1:{port}")
    channels.append(ch)
    return pb_grpc.InferenceServiceStub(ch)


def batch(n: int = 3, version: str = "") -> pb.CurveBatch:
    curves = np.random.default_rng(n).standard_normal((n, LENGTH)).astype("<f4")
    return pb.CurveBatch(
        model="tiny", version=version, samples_f32=curves.tobytes(), lengths=[LENGTH] * n
    )


async def predict_labels(
    api: pb_grpc.InferenceServiceStub, version: str = ""
) -> tuple[str, list[str]]:
    response = await api.Predict(pb.PredictRequest(batch=batch(version=version)))
    return response.result.version, [s.label for s in response.result.scores]


async def test_load_zip_by_url_with_sha256(
    model_dir: Path,
    start_server: StartServer,
    http_files: tuple[str, Path],
    channel_factory: list[grpc.aio.Channel],
) -> None:
    base, www = http_files
    package = zip_package(onnx_bytes(bias=(0.0, 3.0, 0.0)), manifest_dict(version="2"))
    (www / "tiny-2.zip").write_bytes(package)
    _, port = await start_server(model_dir)
    api = stub(port, channel_factory)
    assert await predict_labels(api) == ("1", ["ok", "ok", "ok"])

    loaded = await api.LoadModel(
        pb.LoadModelRequest(url=f"{base}/tiny-2.zip", sha256=sha256(package))
    )
    assert loaded.version == "2"
    assert loaded.model.latest_version == "2"
    assert sorted(v.version for v in loaded.model.versions) == ["1", "2"]
    # Loading does not change what calls without a version score with: 1 is promoted.
    assert loaded.model.promoted_version == "1"
    assert await predict_labels(api) == ("1", ["ok", "ok", "ok"])
    assert await predict_labels(api, "2") == ("2", ["bad", "bad", "bad"])
    promoted = await api.PromoteModel(pb.PromoteModelRequest(name="tiny", version="2"))
    assert promoted.model.promoted_version == "2"
    assert (promoted.promotion.from_version, promoted.promotion.to_version) == ("1", "2")
    assert promoted.promotion.by == "test"  # the caller secured_grpc names
    assert await predict_labels(api) == ("2", ["bad", "bad", "bad"])
    assert await predict_labels(api, "1") == ("1", ["ok", "ok", "ok"])


async def test_wrong_checksum_keeps_old_version_serving(
    model_dir: Path,
    start_server: StartServer,
    http_files: tuple[str, Path],
    channel_factory: list[grpc.aio.Channel],
) -> None:
    base, www = http_files
    package = zip_package(onnx_bytes(bias=(0.0, 3.0, 0.0)), manifest_dict(version="1"))
    (www / "tiny.zip").write_bytes(package)
    _, port = await start_server(model_dir)
    api = stub(port, channel_factory)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.LoadModel(pb.LoadModelRequest(url=f"{base}/tiny.zip", sha256="0" * 64))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "checksum mismatch" in (err.value.details() or "")
    # The same version number, different weights: still the old weights serving.
    assert await predict_labels(api) == ("1", ["ok", "ok", "ok"])

    bad_md5 = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.LoadModel(pb.LoadModelRequest(url=f"{base}/tiny.zip", md5_base64=bad_md5))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "md5" in (err.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.LoadModel(pb.LoadModelRequest(url=f"{base}/tiny.zip"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "checksum is required" in (err.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.LoadModel(pb.LoadModelRequest(url=f"{base}/missing.zip", sha256="0" * 64))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "HTTP 404" in (err.value.details() or "")
    assert await predict_labels(api) == ("1", ["ok", "ok", "ok"])

    # The legacy checksum (base64 md5) is accepted and swaps the version in place.
    good_md5 = base64.b64encode(hashlib.md5(package).digest()).decode()
    loaded = await api.LoadModel(pb.LoadModelRequest(url=f"{base}/tiny.zip", md5_base64=good_md5))
    assert loaded.version == "1"
    assert await predict_labels(api) == ("1", ["bad", "bad", "bad"])


async def test_broken_model_keeps_old_version_and_says_why(
    model_dir: Path,
    start_server: StartServer,
    http_files: tuple[str, Path],
    channel_factory: list[grpc.aio.Channel],
) -> None:
    base, www = http_files
    broken = b"this is not an onnx model"
    (www / "broken.onnx").write_bytes(broken)
    wrong_shape = onnx_bytes(bias=(1.0, 0.0))  # 2 outputs, manifest says 3 labels
    (www / "wrong.onnx").write_bytes(wrong_shape)
    _, port = await start_server(model_dir)
    api = stub(port, channel_factory)
    manifest = yaml.safe_dump(manifest_dict(version="1"))

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.LoadModel(
            pb.LoadModelRequest(url=f"{base}/broken.onnx", sha256=sha256(broken), manifest=manifest)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a loadable ONNX model" in (err.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.LoadModel(
            pb.LoadModelRequest(
                url=f"{base}/wrong.onnx", sha256=sha256(wrong_shape), manifest=manifest
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "labels need [2, 3]" in (err.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.LoadModel(
            pb.LoadModelRequest(url=f"{base}/wrong.onnx", sha256=sha256(wrong_shape))
        )
    assert "needs its manifest" in (err.value.details() or "")

    model = (await api.GetModel(pb.GetModelRequest(name="tiny"))).model
    (v1,) = model.versions
    assert v1.state == pb.MODEL_STATE_READY
    assert "labels need" in v1.reason  # the last failed load of this version, and why
    assert await predict_labels(api) == ("1", ["ok", "ok", "ok"])


async def test_bare_onnx_with_manifest_and_oip_load_persist_across_restart(
    model_dir: Path,
    start_server: StartServer,
    http_files: tuple[str, Path],
    channel_factory: list[grpc.aio.Channel],
    tmp_path: Path,
) -> None:
    base, www = http_files
    model = onnx_bytes(bias=(0.0, 0.0, 3.0))
    (www / "tiny-3.onnx").write_bytes(model)
    data_dir = tmp_path / "state"
    server, port = await start_server(model_dir, data_dir=data_dir)
    ch = operator_channel(f"127.0.0.1:{port}")
    channel_factory.append(ch)
    repo = oip_grpc.GRPCInferenceServiceStub(ch)
    params = {
        "url": oip.ModelRepositoryParameter(string_param=f"{base}/tiny-3.onnx"),
        "sha256": oip.ModelRepositoryParameter(string_param=sha256(model)),
        "manifest": oip.ModelRepositoryParameter(
            string_param=yaml.safe_dump(manifest_dict(version="3"))
        ),
    }
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await repo.RepositoryModelLoad(
            oip.RepositoryModelLoadRequest(model_name="other", parameters=params)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not 'other'" in (err.value.details() or "")

    await repo.RepositoryModelLoad(
        oip.RepositoryModelLoadRequest(model_name="tiny", parameters=params)
    )
    index = await repo.RepositoryIndex(oip.RepositoryIndexRequest(ready=True))
    assert [(m.name, m.version, m.state) for m in index.models] == [
        ("tiny", "1", "READY"),
        ("tiny", "3", "READY"),
    ]
    api = stub(port, channel_factory)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.UnloadModel(pb.UnloadModelRequest(name="tiny", version="1"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await api.PromoteModel(pb.PromoteModelRequest(name="tiny", version="3"))
    await api.UnloadModel(pb.UnloadModelRequest(name="tiny", version="1"))
    await api.SetShadow(pb.SetShadowRequest(name="tiny", shadow_version="3"))
    await server.stop()

    # A new process on the same database: version 3 back (from its verified blob, not
    # the URL), promoted, version 1 still unloaded although its package is in model_dir.
    (www / "tiny-3.onnx").unlink()
    _, port2 = await start_server(model_dir, data_dir=data_dir)
    api2 = stub(port2, channel_factory)
    restored = (await api2.GetModel(pb.GetModelRequest(name="tiny"))).model
    assert [v.version for v in restored.versions] == ["3"]
    assert restored.versions[0].source_url == f"{base}/tiny-3.onnx"
    assert restored.versions[0].sha256 == sha256(model)
    assert restored.shadow_version == "3"
    assert restored.promoted_version == "3"
    history = await api2.ListPromotions(pb.ListPromotionsRequest(name="tiny"))
    assert [(p.from_version, p.to_version, p.by) for p in history.promotions] == [
        ("1", "3", "test"),
        ("", "1", "registry"),
    ]
    assert await predict_labels(api2) == ("3", ["worse", "worse", "worse"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await predict_labels(api2, "1")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_zip_packages_in_model_dir_and_bad_ones_beside_them(
    tmp_path: Path, start_server: StartServer, channel_factory: list[grpc.aio.Channel]
) -> None:
    models = tmp_path / "zips"
    models.mkdir()
    (models / "tiny-5.zip").write_bytes(
        zip_package(onnx_bytes(bias=(0.0, 3.0, 0.0)), manifest_dict(version="5"))
    )
    (models / "not-a-zip.zip").write_bytes(b"garbage")
    bad = manifest_dict(name="other")
    bad["ok_labels"] = ["missing"]
    (models / "other.zip").write_bytes(zip_package(onnx_bytes(), bad))
    server, port = await start_server(models)
    api = stub(port, channel_factory)
    assert await predict_labels(api) == ("5", ["bad", "bad", "bad"])
    listed = await api.ListModels(pb.ListModelsRequest())
    assert [m.name for m in listed.models] == ["tiny"]
    # Reloading from model_dir leaves no extracted copies behind for other models.
    ch = operator_channel(f"127.0.0.1:{port}")
    channel_factory.append(ch)
    repo = oip_grpc.GRPCInferenceServiceStub(ch)
    await repo.RepositoryModelLoad(oip.RepositoryModelLoadRequest(model_name="tiny"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await repo.RepositoryModelLoad(oip.RepositoryModelLoadRequest(model_name="other"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    packages = server.registry.state_dir / "packages"
    async with asyncio.timeout(10):  # the replaced copy is removed once it has drained
        while True:
            if len(list(packages.glob(".dir-*"))) == 1:  # the one being served
                break
            await asyncio.sleep(0.02)
