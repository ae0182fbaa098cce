"""The ingest service process: database, inference client, alarms, rules, gRPC API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from linewatch.runtime.db import Database, default_sqlite_url
from linewatch.runtime.fanout import FanOut
from linewatch.runtime.grpc_server import GrpcServer
from linewatch.runtime.storage_api import add_storage_service
from linewatch.runtime.telemetry import setup_telemetry
from linewatch.v1 import ingest_pb2, ingest_pb2_grpc
from linewatch_ingest.alarm_actions import AlarmActions
from linewatch_ingest.alarms import AlarmEngine
from linewatch_ingest.api import IngestServicer
from linewatch_ingest.archive import ArchiveWriter
from linewatch_ingest.config import IngestConfig
from linewatch_ingest.control import IngestController
from linewatch_ingest.inference_client import InferenceClient
from linewatch_ingest.labels import labels_from
from linewatch_ingest.pipeline import PipelineDeps
from linewatch_ingest.replicas import Replicas
from linewatch_ingest.retention import ingest_retention
from linewatch_ingest.schema import HISTORY
from linewatch_ingest.shadow import ShadowScorer
from linewatch_ingest.store import IngestStore

__all__ = ["IngestService", "running", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestService:
    """A running ingest service (what :func:`running` yields)."""

    config: IngestConfig
    port: int
    store: IngestStore
    controller: IngestController
    inference: InferenceClient
    alarms: AlarmEngine


@asynccontextmanager
async def running(config: IngestConfig) -> AsyncIterator[IngestService]:
    """Start every part of the service; stop them in reverse order on exit."""
    setup_telemetry("ingest")  # idempotent; verdicts need real trace ids
    db = Database(config.database_url or default_sqlite_url(config.data_dir, "ingest"))
    store = IngestStore(db)
    async with db.schema_lock():  # replicas starting together
        await store.create()
    inference, targets = await _inference_clients(config)
    verdicts: FanOut[ingest_pb2.VerdictRecord] = FanOut(buffer=config.stream_buffer)
    telemetry: FanOut[ingest_pb2.TelemetryRecord] = FanOut(buffer=config.stream_buffer)
    alarm_stream: FanOut[ingest_pb2.AlarmRecord] = FanOut(buffer=config.stream_buffer)
    alarms, alarm_task = await _start_alarms(config, store, alarm_stream)
    retention = ingest_retention(db, config.retention)
    retention_task = asyncio.create_task(retention.run_forever(), name="retention")
    archive = ArchiveWriter(store)
    archive.start()
    shadow = ShadowScorer(store, inference, queue_size=config.shadow_queue_size)
    shadow.start()
    deps = PipelineDeps(
        config, store, inference, alarms, archive, verdicts, telemetry, targets=targets,
        shadow=shadow,
    )  # fmt: skip
    controller = IngestController(deps)
    replicas = await _replicas(config, controller, db)
    claim_task: asyncio.Task[None] | None = None
    server = GrpcServer(config=config.grpc, service="ingest")
    add_storage_service(server, retention, HISTORY)
    try:
        await controller.load()
        servicer = IngestServicer(
            controller=controller,
            store=store,
            verdicts=verdicts,
            telemetry=telemetry,
            alarms=alarm_stream,
            labels=labels_from(store, inference, config),
            shadow=shadow,
            inference=inference,
            max_page_size=config.max_page_size,
        )
        server.add(
            ingest_pb2_grpc.add_IngestServiceServicer_to_server,
            servicer,
            ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
        )
        port = await server.start()
        if replicas is None:
            await controller.start()
        else:  # a standby waits for a free slot with its API up
            claim_task = asyncio.create_task(replicas.start(), name="replica-claim")
        yield IngestService(config, port, store, controller, inference, alarms)
    finally:
        await server.stop()
        if claim_task is not None:
            claim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claim_task
        await controller.stop(grace=config.grpc.grace_s)
        if replicas is not None:
            await replicas.close()
        for task in (alarm_task, retention_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await shadow.close()
        await archive.close()
        await _close_clients(inference, targets)
        await db.close()


async def _inference_clients(
    config: IngestConfig,
) -> tuple[InferenceClient, dict[str, InferenceClient]]:
    """The inference client and one per named target, started."""
    inference = InferenceClient(
        config.inference.target,
        timeout_s=config.inference.timeout_s,
        max_inflight=config.inference.max_inflight,
        retry_max_delay_s=config.inference.retry_max_delay_s,
        protocol=config.inference.protocol,
        models=config.inference.models,
        client=config.grpc.client,
        streams=config.inference.streams,
        rebalance_s=config.inference.rebalance_s,
    )
    await inference.start()
    targets = {
        name: InferenceClient(
            t.target,
            timeout_s=t.timeout_s,
            max_inflight=t.max_inflight,
            retry_max_delay_s=t.retry_max_delay_s,
            protocol=t.protocol,
            models=t.models,
            client=config.grpc.client,
            streams=t.streams,
            rebalance_s=t.rebalance_s,
        )
        for name, t in config.targets.items()
    }
    for client in targets.values():
        await client.start()
    return inference, targets


async def _start_alarms(
    config: IngestConfig, store: IngestStore, stream: FanOut[ingest_pb2.AlarmRecord]
) -> tuple[AlarmEngine, asyncio.Task[None]]:
    """The alarm engine, its active alarms restored (before any verdict), running."""
    alarms = AlarmEngine(
        store,
        config.webhook,
        stream=stream,
        actions=AlarmActions(store, config.devices_addr, config.grpc.client),
        reported=config.reported_alarms,
    )
    await alarms.restore()
    return alarms, asyncio.create_task(alarms.run(), name="alarms")


async def _close_clients(inference: InferenceClient, targets: dict[str, InferenceClient]) -> None:
    await inference.close()
    for client in targets.values():
        await client.close()


async def _replicas(
    config: IngestConfig, controller: IngestController, db: Database
) -> Replicas | None:
    """With several replicas: the slot, rule-change and status machinery (prepared)."""
    if config.replicas == 1:
        return None
    replicas = Replicas(
        controller, db, replicas=config.replicas, interval_s=config.status_interval_s
    )
    controller.replicas = replicas
    await replicas.prepare()
    return replicas


async def serve(config: IngestConfig, stop: asyncio.Event) -> None:
    """Run the ingest service until ``stop`` is set."""
    async with running(config):
        await stop.wait()
    log.info("ingest stopped")
