"""The gateway application: ``create_app(config, backends)`` and ``serve(config, stop)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from linewatch_gateway.clients import Backends
from linewatch_gateway.config import GatewayConfig
from linewatch_gateway.errors import install_error_handlers
from linewatch_gateway.hubs import make_hubs
from linewatch_gateway.middleware import BodyLimit, HttpMetrics
from linewatch_gateway.routes import (
    devices,
    firmware,
    health,
    ingest,
    models,
    ota,
    ota_plans,
    quality,
    storage,
    stream,
    sync,
)
from linewatch_gateway.sse import StreamHub
from linewatch_gateway.stream_access import StreamSlots, StreamTokens

__all__ = ["UvicornServer", "close_streams", "create_app", "serve"]

log = logging.getLogger(__name__)

DESCRIPTION = """REST and Server-Sent Events for linewatch.

Writes need `Authorization: Bearer <token>` (tokens come from the gateway configuration;
`make run` uses `dev-token`). Errors are `{"error": {"code": "...", "message": "..."}}`.
Lists are paged: `page_size`, `page_token` → `next_page_token` (empty on the last page).
Live streams are Server-Sent Events under `/v1/stream/` and honour `Last-Event-ID`.
"""


def create_app(config: GatewayConfig, backends: Backends) -> FastAPI:
    """The ASGI app over the given backend stubs; its lifespan runs the stream hubs."""
    hubs = make_hubs(config, backends)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(hub.run(), name=f"sse-{kind}") for kind, hub in hubs.items()]
        try:
            yield
        finally:
            for hub in hubs.values():
                hub.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(
        title="linewatch gateway",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.backends = backends
    app.state.hubs = hubs
    from linewatch_gateway.auth import Authorizer

    app.state.authorizer = Authorizer(
        tokens=config.tokens, read_tokens=config.read_tokens, read_auth=config.read_auth
    )
    secret = config.stream_token_secret.get_secret_value()
    app.state.stream_tokens = (
        StreamTokens(ttl_s=config.stream_token_ttl_s, key=secret.encode())
        if secret
        else StreamTokens(ttl_s=config.stream_token_ttl_s)
    )
    app.state.stream_slots = StreamSlots(
        total=config.sse_max_clients, per_address=config.sse_max_clients_per_address
    )
    install_error_handlers(app)
    for module in (
        ingest,
        models,
        quality,
        sync,
        firmware,
        ota,
        ota_plans,
        devices,
        storage,
        stream,
        health,
    ):
        app.include_router(module.router)
    app.add_middleware(
        BodyLimit,
        max_bytes=config.max_body_bytes,
        upload_max_bytes=config.max_upload_bytes,
        upload_path="/v1/firmware",
    )
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["ETag", "Content-Range", "Accept-Ranges"],
        )
    app.add_middleware(HttpMetrics)
    return app


def close_streams(app: FastAPI) -> None:
    """End every SSE response so the server can shut down without waiting for them."""
    hubs: dict[str, StreamHub] = app.state.hubs
    for hub in hubs.values():
        hub.close()


class UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handlers: ``serve``'s ``stop`` event rules."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _log_auth(config: GatewayConfig) -> None:
    if not config.tokens:
        log.warning("no write token configured: every write is refused (set tokens)")
    elif "dev-token" in config.tokens:
        log.warning(
            "writes accept the development token 'dev-token' (make run); never in production"
        )
    else:
        log.info("write tokens configured", extra={"fields": {"count": len(config.tokens)}})


async def serve(config: GatewayConfig, stop: asyncio.Event) -> None:
    """Serve HTTP on ``http_host:http_port`` until ``stop`` is set."""
    backends = Backends.connect(config)
    app = create_app(config, backends)
    server = UvicornServer(
        uvicorn.Config(
            app,
            host=config.http_host,
            port=config.http_port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            # behind a reverse proxy (the Ingress), X-Forwarded-For from these addresses
            # names the client (the SSE cap per client address counts real clients)
            proxy_headers=bool(config.trusted_proxies),
            forwarded_allow_ips=",".join(config.trusted_proxies) or None,
        )
    )
    _log_auth(config)
    try:
        async with asyncio.TaskGroup() as tg:
            serving = tg.create_task(server.serve())
            stopper = tg.create_task(stop.wait())
            await asyncio.wait({serving, stopper}, return_when=asyncio.FIRST_COMPLETED)
            close_streams(app)
            server.should_exit = True
            stopper.cancel()
    finally:
        await backends.close()
    if not server.started:
        from linewatch.runtime.errors import ConfigError

        raise ConfigError(f"http_port: cannot listen on {config.http_host}:{config.http_port}")
    log.info("gateway stopped")
