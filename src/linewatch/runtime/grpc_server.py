"""The gRPC server every service runs: grpc.aio, health, reflection, error mapping.

>>> server = GrpcServer(config=cfg.grpc, service="ingest")
>>> server.add(ingest_pb2_grpc.add_IngestServiceServicer_to_server, servicer,
...            ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name)
>>> port = await server.start()
>>> ...
>>> await server.stop()

Health (``grpc.health.v1``) reports SERVING for ``""`` and every added service once
started, NOT_SERVING during graceful shutdown. Reflection lists every added service, so
``grpcurl -plaintext host:port list`` works. :class:`ErrorInterceptor` turns
:class:`~linewatch.runtime.errors.LinewatchError` into the matching status code.

Every other method needs a bearer token (:class:`~linewatch.runtime.grpc_auth.AuthInterceptor`,
configured by ``grpc.auth``); ``grpc.tls`` turns on TLS or mTLS, and ``grpc.health_port``
serves health alone in plaintext for Kubernetes gRPC probes (which cannot speak TLS).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from linewatch.runtime.config import GrpcConfig
from linewatch.runtime.errors import ConfigError, LinewatchError
from linewatch.runtime.grpc_auth import (
    AuthInterceptor,
    Caller,
    load_callers,
    server_credentials,
)
from linewatch.runtime.grpc_options import server_options

__all__ = ["ErrorInterceptor", "GrpcServer"]

log = logging.getLogger(__name__)


def _wrap_unary_response(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await fn(request, context)
        except LinewatchError as exc:
            await context.abort(exc.grpc_code, exc.message)

    return handler


def _wrap_stream_response(fn: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
    async def handler(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            result = fn(request, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            else:
                await result
        except LinewatchError as exc:
            await context.abort(exc.grpc_code, exc.message)

    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Maps domain errors to gRPC status codes, in one place, for every method."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary_response(handler.unary_unary), **kwargs
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary_response(handler.stream_unary), **kwargs
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream_response(handler.unary_stream), **kwargs
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream_response(handler.stream_stream), **kwargs
            )
        return handler


def _bind(
    server: grpc.aio.Server,
    address: str,
    credentials: grpc.ServerCredentials | None,
    key: str,
) -> int:
    cause: RuntimeError | None = None
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        port = 0
        cause = exc
    if port == 0:
        raise ConfigError(f"{key}: cannot listen on {address} (in use?)") from cause
    return int(port)


class GrpcServer:
    """A grpc.aio server with health, reflection and the error interceptor."""

    def __init__(
        self,
        *,
        config: GrpcConfig,
        service: str,
        interceptors: list[grpc.aio.ServerInterceptor] | None = None,
        extra_callers: list[Caller] | None = None,
    ) -> None:
        """``extra_callers``: callers the service adds itself (e.g. an in-process client
        with a token made at start), on top of ``config.auth``'s."""
        self.config = config
        self.service = service
        max_bytes = config.max_message_mb * 1024 * 1024
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        auth: list[grpc.aio.ServerInterceptor] = []
        if config.auth.enabled:
            callers = [*load_callers(config.auth), *(extra_callers or [])]
            auth.append(AuthInterceptor(callers, service=service))
        else:
            log.warning(
                "grpc auth disabled (grpc.auth.enabled=false): every caller may call every method",
                extra={"fields": {"service": service}},
            )
        self._credentials = server_credentials(config.tls)
        self.server = grpc.aio.server(
            interceptors=[
                aio_server_interceptor(),  # type: ignore[no-untyped-call]
                *auth,
                ErrorInterceptor(),
                *(interceptors or []),
            ],
            options=server_options(max_bytes, [("grpc.so_reuseport", 0)]),
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._health_server: grpc.aio.Server | None = None
        if config.health_port:
            self._health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)
        self._names: list[str] = [health.SERVICE_NAME, reflection.SERVICE_NAME]
        self.port = 0

    def add(
        self, add_to_server: Callable[[Any, grpc.aio.Server], None], servicer: Any, full_name: str
    ) -> None:
        """Register a servicer (``add_XServicer_to_server``) under its full service name."""
        add_to_server(servicer, self.server)
        self._names.append(full_name)

    async def start(self) -> int:
        """Bind, start serving and mark every service SERVING; returns the bound port."""
        reflection.enable_server_reflection(self._names, self.server)
        address = f"{self.config.host}:{self.config.port}"
        self.port = _bind(self.server, address, self._credentials, "grpc.port")
        if self._health_server is not None:
            health_address = f"{self.config.host}:{self.config.health_port}"
            _bind(self._health_server, health_address, None, "grpc.health_port")
            await self._health_server.start()
        await self.server.start()
        for name in ["", *self._names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "grpc serving",
            extra={
                "fields": {
                    "address": f"{self.config.host}:{self.port}",
                    "tls": "mtls"
                    if self.config.tls.client_ca_file
                    else ("tls" if self._credentials else "off"),
                    "auth": self.config.auth.enabled,
                }
            },
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING first, then let calls finish within ``grace``."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.config.grace_s if grace is None else grace)
        if self._health_server is not None:
            await self._health_server.stop(0)
