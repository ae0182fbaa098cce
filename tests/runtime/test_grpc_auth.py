"""The gRPC auth interceptor, the channel factory, TLS and mTLS, against real servers."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from linewatch.runtime.config import (
    GrpcAuthConfig,
    GrpcCaller,
    GrpcClientConfig,
    GrpcConfig,
    GrpcTlsConfig,
)
from linewatch.runtime.errors import ConfigError
from linewatch.runtime.grpc_auth import open_channel
from linewatch.runtime.grpc_server import GrpcServer
from linewatch.v1 import sync_pb2, sync_pb2_grpc
from linewatch_dev.testing import assert_every_method_guarded, call_code, free_port, write_pki

OPERATOR = "op-secret-token"
READER = "reader-secret-token"


class _Sync(sync_pb2_grpc.SyncServiceServicer):
    async def GetJob(self, request, context):  # type: ignore[no-untyped-def]
        return sync_pb2.GetJobResponse(job=sync_pb2.SyncJob(id=request.id))

    async def RetryJob(self, request, context):  # type: ignore[no-untyped-def]
        return sync_pb2.RetryJobResponse()


def _callers() -> GrpcAuthConfig:
    return GrpcAuthConfig(
        callers=[
            GrpcCaller(name="ops", role="operator", token=SecretStr(OPERATOR)),
            GrpcCaller(
                name="reader",
                role="read-only",
                sha256=hashlib.sha256(READER.encode()).hexdigest(),
            ),
        ]
    )


async def _server(**fields: object) -> GrpcServer:
    server = GrpcServer(config=GrpcConfig(port=0, auth=_callers(), **fields), service="t")  # type: ignore[arg-type]
    server.add(sync_pb2_grpc.add_SyncServiceServicer_to_server, _Sync(), "linewatch.v1.SyncService")
    await server.start()
    return server


async def test_every_method_needs_a_token_health_does_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await _server()
    target = f"127.0.0.1:{server.port}"
    try:
        checked = await assert_every_method_guarded(target, OPERATOR)
        assert "/linewatch.v1.SyncService/RetryJob" in checked
        async with grpc.aio.insecure_channel(target) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)
    assert OPERATOR not in caplog.text
    assert "not-a-token" not in caplog.text


async def test_read_only_caller_is_denied_writes() -> None:
    server = await _server()
    target = f"127.0.0.1:{server.port}"
    try:
        get = ("/linewatch.v1.SyncService/GetJob", False, False)
        retry = ("/linewatch.v1.SyncService/RetryJob", False, False)
        assert await call_code(target, get, READER) == grpc.StatusCode.OK
        assert await call_code(target, retry, READER) == grpc.StatusCode.PERMISSION_DENIED
        assert await call_code(target, retry, OPERATOR) == grpc.StatusCode.OK
        # "Bearer" is required, and a digest is not a token
        digest = hashlib.sha256(READER.encode()).hexdigest()
        assert await call_code(target, get, digest) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(0)


async def test_no_caller_configured_refuses_everything() -> None:
    server = GrpcServer(config=GrpcConfig(port=0), service="t")
    server.add(sync_pb2_grpc.add_SyncServiceServicer_to_server, _Sync(), "linewatch.v1.SyncService")
    await server.start()
    try:
        get = ("/linewatch.v1.SyncService/GetJob", False, False)
        code = await call_code(f"127.0.0.1:{server.port}", get, OPERATOR)
        assert code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(0)


def test_caller_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        GrpcCaller(name="x", role="operator")
    with pytest.raises(ValueError, match="role or methods"):
        GrpcCaller(name="x", token=SecretStr("t"))
    with pytest.raises(ValueError, match="pattern"):
        GrpcCaller(name="x", role="root", token=SecretStr("t"))
    assert "secret" not in repr(GrpcCaller(name="x", role="operator", token=SecretStr("secret")))
    bad = tmp_path / "callers.yaml"
    bad.write_text("- name: x\n  role: operator\n")
    with pytest.raises(ConfigError, match="callers_file"):
        GrpcServer(config=GrpcConfig(auth=GrpcAuthConfig(callers_file=bad)), service="t")


async def test_callers_and_token_from_files(tmp_path: Path) -> None:
    token_file = tmp_path / "gateway-token"
    token_file.write_text("file-token\n")
    callers = tmp_path / "callers.yaml"
    digest = hashlib.sha256(b"file-token").hexdigest()
    callers.write_text(f"- name: gateway\n  role: gateway\n  sha256: {digest}\n")
    auth = GrpcAuthConfig(callers_file=callers)
    server = GrpcServer(config=GrpcConfig(port=0, auth=auth), service="t")
    server.add(sync_pb2_grpc.add_SyncServiceServicer_to_server, _Sync(), "linewatch.v1.SyncService")
    await server.start()
    try:
        async with open_channel(
            f"127.0.0.1:{server.port}", GrpcClientConfig(token_file=token_file)
        ) as channel:
            reply = await sync_pb2_grpc.SyncServiceStub(channel).GetJob(
                sync_pb2.GetJobRequest(id="j1")
            )
            assert reply.job.id == "j1"
    finally:
        await server.stop(0)


# --- TLS and mTLS ---------------------------------------------------------------------


async def test_mtls_needs_a_client_certificate_and_health_stays_plaintext(
    tmp_path: Path,
) -> None:
    pki = write_pki(tmp_path)
    health_port = free_port()
    server = await _server(
        tls=GrpcTlsConfig(
            cert_file=pki["server_cert"], key_file=pki["server_key"], client_ca_file=pki["ca"]
        ),
        health_port=health_port,
    )
    target = f"127.0.0.1:{server.port}"
    request = sync_pb2.GetJobRequest(id="m1")
    try:
        mtls = GrpcClientConfig(
            token=SecretStr(OPERATOR),
            ca_file=pki["ca"],
            cert_file=pki["client_cert"],
            key_file=pki["client_key"],
        )
        async with open_channel(target, mtls) as channel:
            reply = await sync_pb2_grpc.SyncServiceStub(channel).GetJob(request, timeout=10)
            assert reply.job.id == "m1"
        # TLS but no client certificate: the handshake fails
        tls_only = GrpcClientConfig(token=SecretStr(OPERATOR), ca_file=pki["ca"])
        async with open_channel(target, tls_only) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await sync_pb2_grpc.SyncServiceStub(channel).GetJob(request, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # plaintext to the TLS port fails; the health port answers plaintext
        async with open_channel(target, GrpcClientConfig(token=SecretStr(OPERATOR))) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await sync_pb2_grpc.SyncServiceStub(channel).GetJob(request, timeout=5)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{health_port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # mTLS with a valid certificate still needs the token
        no_token = GrpcClientConfig(
            ca_file=pki["ca"], cert_file=pki["client_cert"], key_file=pki["client_key"]
        )
        async with open_channel(target, no_token) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await sync_pb2_grpc.SyncServiceStub(channel).GetJob(request, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(0)


def test_a_partial_grpc_section_keeps_the_services_default_port() -> None:
    from linewatch.runtime.config import ServiceConfig, load_config

    class _Svc(ServiceConfig):
        grpc: GrpcConfig = GrpcConfig(port=50052)

    env = {"LINEWATCH_SVC__GRPC__AUTH__CALLERS": "[{name: a, role: operator, token: t}]"}
    config = load_config(_Svc, service="svc", environ=env)
    assert config.grpc.port == 50052
    assert config.grpc.auth.callers[0].name == "a"
    assert (
        load_config(_Svc, service="svc", environ={"LINEWATCH_SVC__GRPC__PORT": "7"}).grpc.port == 7
    )
