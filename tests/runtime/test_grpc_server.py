import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from linewatch.runtime.config import GrpcConfig
from linewatch.runtime.errors import ConfigError, NotFound
from linewatch.runtime.grpc_server import GrpcServer
from linewatch.v1 import sync_pb2, sync_pb2_grpc
from linewatch_dev.testing import operator_channel, secured_grpc


class _Sync(sync_pb2_grpc.SyncServiceServicer):
    async def GetJob(
        self, request: sync_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> sync_pb2.GetJobResponse:
        if request.id != "known":
            raise NotFound(f"job {request.id!r} does not exist")
        return sync_pb2.GetJobResponse(job=sync_pb2.SyncJob(id="known"))

    async def ReadImage(self, request, context):  # type: ignore[no-untyped-def]
        if request.cache_path == "missing":
            raise NotFound("no such image")
        yield sync_pb2.ReadImageResponse(chunk=b"abc")


async def test_health_reflection_and_error_mapping() -> None:
    server = GrpcServer(config=secured_grpc(port=0), service="test")
    server.add(sync_pb2_grpc.add_SyncServiceServicer_to_server, _Sync(), "linewatch.v1.SyncService")
    port = await server.start()
    try:
        async with operator_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", "linewatch.v1.SyncService"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING

            refl = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = refl.ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            reply = await call.read()
            await call.done_writing()
            names = {s.name for s in reply.list_services_response.service}
            assert {"linewatch.v1.SyncService", "grpc.health.v1.Health"} <= names

            stub = sync_pb2_grpc.SyncServiceStub(channel)
            assert (await stub.GetJob(sync_pb2.GetJobRequest(id="known"))).job.id == "known"
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetJob(sync_pb2.GetJobRequest(id="other"))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            assert "other" in (info.value.details() or "")

            chunks = [r.chunk async for r in stub.ReadImage(sync_pb2.ReadImageRequest())]
            assert chunks == [b"abc"]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in stub.ReadImage(sync_pb2.ReadImageRequest(cache_path="missing")):
                    pass
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(0)


async def test_port_in_use_is_a_config_error() -> None:
    first = GrpcServer(config=GrpcConfig(port=0), service="a")
    port = await first.start()
    try:
        second = GrpcServer(config=GrpcConfig(port=port), service="b")
        with pytest.raises(ConfigError, match=r"grpc\.port"):
            await second.start()
    finally:
        await first.stop(0)
