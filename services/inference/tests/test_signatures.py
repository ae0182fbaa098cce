"""Signed model packages and safe model URLs, against a real file server and server."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from linewatch_inference.config import InferenceConfig
from linewatch_inference.signing import PackageVerifier

from linewatch.oip import grpc_service_pb2 as oip
from linewatch.oip import grpc_service_pb2_grpc as oip_grpc
from linewatch.runtime.errors import InvalidArgument
from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_dev.inference_testing import manifest_dict, onnx_bytes, sha256, zip_package
from linewatch_dev.testing import operator_channel

from .conftest import StartServer


def public_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(key: Ed25519PrivateKey, package: bytes) -> str:
    return base64.b64encode(key.sign(sha256(package).encode())).decode()


@pytest.fixture
async def api_factory() -> AsyncIterator[list[grpc.aio.Channel]]:
    channels: list[grpc.aio.Channel] = []
    yield channels
    for ch in channels:
        await ch.close()


def stub(port: int, channels: list[grpc.aio.Channel]) -> pb_grpc.InferenceServiceStub:
    ch = operator_channel(f"127.0.0.1:{port}")
    channels.append(ch)
    return pb_grpc.InferenceServiceStub(ch)


async def versions(api: pb_grpc.InferenceServiceStub) -> list[str]:
    model = (await api.GetModel(pb.GetModelRequest(name="tiny"))).model
    return sorted(v.version for v in model.versions)


async def test_unsigned_and_badly_signed_packages_are_refused_where_required(
    model_dir: Path,
    start_server: StartServer,
    http_files: tuple[str, Path],
    api_factory: list[grpc.aio.Channel],
    tmp_path: Path,
) -> None:
    base, www = http_files
    trusted, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ring = tmp_path / "keys.json"
    ring.write_text(json.dumps({"keys": [{"id": "release-2026", "ed25519": public_b64(trusted)}]}))
    package = zip_package(onnx_bytes(bias=(0.0, 3.0, 0.0)), manifest_dict(version="2"))
    (www / "tiny-2.zip").write_bytes(package)
    _, port = await start_server(model_dir, require_signatures=True, trusted_keys_file=ring)
    api = stub(port, api_factory)
    url, digest = f"{base}/tiny-2.zip", sha256(package)

    refusals = [
        ("", "requires signed model packages"),
        (sign(other, package), "does not verify"),
        (sign(trusted, b"another file"), "does not verify"),
        ("bm90IGEgc2lnbmF0dXJl", "does not verify"),
    ]
    for signature, why in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.LoadModel(pb.LoadModelRequest(url=url, sha256=digest, signature=signature))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert why in (err.value.details() or "")
        assert await versions(api) == ["1"]  # nothing changed

    loaded = await api.LoadModel(
        pb.LoadModelRequest(url=url, sha256=digest, signature=sign(trusted, package))
    )
    assert loaded.version == "2"
    assert await versions(api) == ["1", "2"]


async def test_signatures_optional_by_default_but_checked_when_given(
    model_dir: Path,
    start_server: StartServer,
    http_files: tuple[str, Path],
    api_factory: list[grpc.aio.Channel],
) -> None:
    base, www = http_files
    trusted = Ed25519PrivateKey.generate()
    package = zip_package(onnx_bytes(), manifest_dict(version="3"))
    (www / "tiny-3.zip").write_bytes(package)
    _, port = await start_server(model_dir, trusted_keys={"k1": public_b64(trusted)})
    api = stub(port, api_factory)
    url, digest = f"{base}/tiny-3.zip", sha256(package)
    forged = sign(Ed25519PrivateKey.generate(), package)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.LoadModel(pb.LoadModelRequest(url=url, sha256=digest, signature=forged))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await versions(api) == ["1"]
    loaded = await api.LoadModel(pb.LoadModelRequest(url=url, sha256=digest))
    assert loaded.version == "3"


async def test_model_url_to_loopback_is_refused_without_a_digest(
    model_dir: Path,
    start_server: StartServer,
    http_files: tuple[str, Path],
    api_factory: list[grpc.aio.Channel],
) -> None:
    base, www = http_files
    (www / "secret.zip").write_bytes(b"internal secret")
    _, port = await start_server(model_dir, allowed_networks=())
    api = stub(port, api_factory)
    for url in (f"{base}/secret.zip", base.replace("127.0.0.1", "2130706433") + "/secret.zip"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.LoadModel(pb.LoadModelRequest(url=url, sha256="0" * 64))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = err.value.details() or ""
        assert "not allowed" in details
        assert sha256(b"internal secret") not in details


def test_required_signatures_without_keys_refuse_every_package() -> None:
    verifier = PackageVerifier.from_config(InferenceConfig(require_signatures=True))
    key = Ed25519PrivateKey.generate()
    with pytest.raises(InvalidArgument, match="trusts no key"):
        verifier.check("0" * 64, sign(key, b"x"))
    open_verifier = PackageVerifier.from_config(
        InferenceConfig(trusted_keys={"k": public_b64(key)})
    )
    assert open_verifier.check(sha256(b"x"), sign(key, b"x")) == "k"
    assert open_verifier.check(sha256(b"x"), "") == ""


async def test_oip_repository_load_checks_the_signature_too(
    model_dir: Path,
    start_server: StartServer,
    http_files: tuple[str, Path],
    api_factory: list[grpc.aio.Channel],
) -> None:
    base, www = http_files
    trusted = Ed25519PrivateKey.generate()
    package = zip_package(onnx_bytes(), manifest_dict(version="4"))
    (www / "tiny-4.zip").write_bytes(package)
    _, port = await start_server(
        model_dir, require_signatures=True, trusted_keys={"k1": public_b64(trusted)}
    )
    ch = operator_channel(f"127.0.0.1:{port}")
    api_factory.append(ch)
    repo = oip_grpc.GRPCInferenceServiceStub(ch)
    params = {
        "url": oip.ModelRepositoryParameter(string_param=f"{base}/tiny-4.zip"),
        "sha256": oip.ModelRepositoryParameter(string_param=sha256(package)),
    }
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await repo.RepositoryModelLoad(
            oip.RepositoryModelLoadRequest(model_name="tiny", parameters=params)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    params["signature"] = oip.ModelRepositoryParameter(string_param=sign(trusted, package))
    await repo.RepositoryModelLoad(
        oip.RepositoryModelLoadRequest(model_name="tiny", parameters=params)
    )
    assert await versions(stub(port, api_factory)) == ["1", "4"]
