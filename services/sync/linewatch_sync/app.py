"""The sync service process: wires store, cache, downloader, worker, MQTT intake and API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from linewatch.runtime.db import Database, default_sqlite_url
from linewatch.runtime.fetch import SafeFetcher
from linewatch.runtime.grpc_server import GrpcServer
from linewatch.runtime.storage_api import add_storage_service
from linewatch.v1 import sync_pb2, sync_pb2_grpc
from linewatch_sync import metrics
from linewatch_sync.api import SyncApi
from linewatch_sync.cachefs import CacheFs
from linewatch_sync.config import SyncConfig
from linewatch_sync.downloader import Downloader
from linewatch_sync.intake import Intake
from linewatch_sync.retention import sync_retention
from linewatch_sync.schema import HISTORY
from linewatch_sync.store import JobStore
from linewatch_sync.worker import SyncWorker

__all__ = ["serve"]

log = logging.getLogger(__name__)

SERVICE_NAME = sync_pb2.DESCRIPTOR.services_by_name["SyncService"].full_name
GAUGE_INTERVAL_S = 5.0
#: Worker slots sharing one HTTP client (connection pool).
CLIENT_SLOTS = 4


async def _update_gauges(store: JobStore, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):
            for state, count in (await store.counts()).items():
                metrics.JOBS.labels(state).set(count)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GAUGE_INTERVAL_S):
                await stop.wait()


async def serve(
    config: SyncConfig, stop: asyncio.Event, *, ready: asyncio.Future[int] | None = None
) -> None:
    """Run the sync service until ``stop`` is set.

    Args:
        config: the validated configuration.
        stop: set it to shut down gracefully.
        ready: when given, receives the bound gRPC port once serving (tests).
    """
    worker_id = config.worker_id or socket.gethostname()[:64]
    db = Database(config.database_url or default_sqlite_url(config.data_dir, "sync"))
    store = JobStore(
        db=db,
        worker_id=worker_id,
        max_attempts=config.max_attempts,
        backoff_base_s=config.backoff_base_s,
        backoff_cap_s=config.backoff_cap_s,
        lease_s=config.lease_s,
    )
    await store.create_schema()
    cache = CacheFs(config.resolved_cache_dir(), max_bytes=config.cache_max_bytes)
    client_id = config.mqtt.client_id or f"linewatch-sync-{worker_id}"
    async with contextlib.AsyncExitStack() as stack:
        # One small pool per group of worker slots (httpcore scans a pool per request).
        pools = max(1, config.concurrency // CLIENT_SLOTS)
        per_pool = -(-config.concurrency // pools)
        fetchers = [
            await stack.enter_async_context(
                SafeFetcher(
                    allowed_networks=config.allowed_networks,
                    connect_timeout_s=config.connect_timeout_s,
                    read_timeout_s=config.read_timeout_s,
                    max_connections=per_pool,
                    pool_timeout_s=config.total_timeout_s,
                )
            )
            for _ in range(pools)
        ]
        downloader = Downloader(
            cache=cache,
            fetcher=fetchers,
            max_bytes=config.max_bytes,
            allowed_content_types=config.allowed_content_types,
            allowed_hosts=config.allowed_hosts,
            per_host_concurrency=config.per_host_concurrency,
            total_timeout_s=config.total_timeout_s,
        )
        worker = SyncWorker(
            store=store,
            downloader=downloader,
            concurrency=config.concurrency,
            poll_interval_s=config.poll_interval_s,
        )
        intake = Intake(
            store=store,
            allowed_hosts=config.allowed_hosts,
            max_urls=config.max_urls_per_request,
            on_queued=worker.wake,
            deadletter_topic=config.deadletter_topic,
        )
        mqtt = intake.attach_mqtt(
            config.session_mqtt(),
            client_id=client_id,
            topics=config.topics,
            shared_group=config.shared_group,
        )
        server = GrpcServer(config=config.grpc, service="sync")
        server.add(
            sync_pb2_grpc.add_SyncServiceServicer_to_server,
            SyncApi(store=store, intake=intake, cache=cache),
            SERVICE_NAME,
        )
        retention = sync_retention(db, config.retention)
        add_storage_service(server, retention, HISTORY)
        try:
            await mqtt.start(wait=True)
            port = await server.start()
            if ready is not None and not ready.done():
                ready.set_result(port)
            log.info(
                "sync serving",
                extra={"fields": {"grpc_port": port, "cache_dir": str(cache.root)}},
            )
            async with asyncio.TaskGroup() as group:
                group.create_task(worker.run(stop))
                group.create_task(_update_gauges(store, stop))
                group.create_task(retention.run_forever(stop))
                await stop.wait()
        finally:
            await server.stop()
            with contextlib.suppress(Exception):
                await mqtt.stop(grace=1.0)
            await db.close()
