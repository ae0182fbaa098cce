"""The OTA service process: wires catalog, rollouts, scheduler, MQTT intake and the API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from pydantic import SecretStr

from linewatch.runtime.db import Database, default_sqlite_url
from linewatch.runtime.grpc_auth import Caller, internal_caller
from linewatch.runtime.grpc_server import GrpcServer
from linewatch.runtime.migrations import migrate
from linewatch.runtime.retention import RetentionRunner
from linewatch.runtime.storage_api import add_storage_service
from linewatch.v1 import devices_pb2, devices_pb2_grpc, ota_pb2, ota_pb2_grpc
from linewatch_ota.api import OtaApi
from linewatch_ota.catalog import Catalog
from linewatch_ota.config import OtaConfig
from linewatch_ota.device_protocol import DeviceIntake
from linewatch_ota.devices_wiring import DevicesPart, start_devices
from linewatch_ota.download_server import DownloadServer
from linewatch_ota.events import EventHub
from linewatch_ota.groups import Groups
from linewatch_ota.ingest_client import IngestCounts
from linewatch_ota.publisher import MetadataPublisher
from linewatch_ota.retention import ota_retention
from linewatch_ota.rollouts import Rollouts
from linewatch_ota.scheduler import Scheduler
from linewatch_ota.schema import HISTORY
from linewatch_ota.signing import FirmwareKeys, SigningKey
from linewatch_ota.wave_progress import WavePlans

__all__ = ["serve"]

log = logging.getLogger(__name__)

SERVICE_NAME = ota_pb2.DESCRIPTOR.services_by_name["OtaService"].full_name
READER_METHODS = [f"/{SERVICE_NAME}/GetFirmware", f"/{SERVICE_NAME}/ReadFirmware"]
DEVICES_SERVICE_NAME = devices_pb2.DESCRIPTOR.services_by_name["DeviceService"].full_name


async def _catalog(config: OtaConfig, db: Database) -> Catalog:
    """The firmware catalog with its keys; signs the manifests of older images."""
    own = (
        await asyncio.to_thread(
            SigningKey.load_or_create, config.resolved_signing_key_path(), config.signing_key_id
        )
        if config.own_signing_key
        else None
    )
    keys = FirmwareKeys.from_config(own, config.trusted_keys, config.trusted_keys_file)
    catalog = Catalog(
        db=db,
        firmware_dir=config.resolved_firmware_dir(),
        max_bytes=config.max_firmware_mb * 1024 * 1024,
        keys=keys,
    )
    signed = await catalog.sign_unsigned()
    if signed:
        log.info("signed the manifests of %d older firmware images", signed)
    return catalog


def _plans(config: OtaConfig, db: Database, devices: DevicesPart | None) -> WavePlans:
    """Waves, gate and windows: ingest's counts and the inventory (line peers)."""
    ingest = IngestCounts(config.ingest_addr, config.grpc.client, config.ingest_timeout_s)
    inventory = devices.commands.inventory if devices is not None else None
    return WavePlans(db=db, ingest=ingest, inventory=inventory)


async def _open_db(config: OtaConfig) -> Database:
    """The database, its schema upgraded to the newest revision."""
    db = Database(config.database_url or default_sqlite_url(config.data_dir, "ota"))
    await migrate(db, HISTORY)
    return db


def _grpc_server(
    config: OtaConfig, db: Database, api: OtaApi, reader: Caller
) -> tuple[GrpcServer, RetentionRunner]:
    """The gRPC server with the OTA and storage services (retention's runner)."""
    server = GrpcServer(config=config.grpc, service="ota", extra_callers=[reader])
    server.add(ota_pb2_grpc.add_OtaServiceServicer_to_server, api, SERVICE_NAME)
    storage = add_storage_service(server, ota_retention(db, config.retention), HISTORY)
    return server, storage.runner


async def serve(
    config: OtaConfig, stop: asyncio.Event, *, ready: asyncio.Future[int] | None = None
) -> None:
    """Run the OTA service until ``stop`` is set.

    Args:
        config: the validated configuration.
        stop: set it to shut down gracefully.
        ready: when given, receives the bound gRPC port once serving (tests).
    """
    db = await _open_db(config)
    catalog = await _catalog(config, db)
    events = EventHub()
    write_lock = asyncio.Lock()
    rollouts = Rollouts(db=db, catalog=catalog, events=events, write_lock=write_lock)
    client_id = config.mqtt.client_id or f"linewatch-ota-{socket.gethostname()}"
    intake = DeviceIntake(
        broker=config.session_mqtt(),
        client_id=client_id,
        db=db,
        catalog=catalog,
        events=events,
        write_lock=write_lock,
        topic_root=config.topic_root,
        shared_group=config.shared_group,
        deadletter_topic=config.deadletter_topic,
    )
    publisher = MetadataPublisher(
        mqtt=intake.mqtt,
        catalog=catalog,
        topic_root=config.topic_root,
        base_url=config.public_base_url,
        chunk_size=config.chunk_size,
    )
    devices = start_devices(config, db, client_id=client_id) if config.devices.enabled else None
    plans = _plans(config, db, devices)
    scheduler = Scheduler(
        plans=plans,
        db=db,
        rollouts=rollouts,
        publisher=publisher,
        events=events,
        write_lock=write_lock,
        tick_interval_s=config.tick_interval_s,
        max_active=config.max_active_updates,
    )
    intake.publisher = publisher
    intake.scheduler = scheduler
    api = OtaApi(
        catalog=catalog,
        rollouts=rollouts,
        events=events,
        groups=config.groups,
        saved_groups=Groups(db, plans.inventory),
        default_timeout_s=config.default_timeout_s,
        default_max_retries=config.default_max_retries,
    )
    # the download server reads firmware over this service's own API, with a token
    # made here that may only read firmware
    reader, reader_token = internal_caller("ota-downloads", READER_METHODS)
    server, retention = _grpc_server(config, db, api, reader)
    if devices is not None:
        server.add(
            devices_pb2_grpc.add_DeviceServiceServicer_to_server, devices.api, DEVICES_SERVICE_NAME
        )
    downloads: DownloadServer | None = None
    try:
        await intake.start()
        if devices is not None:
            await devices.connect()
        port = await server.start()
        if config.http_port:
            downloads = DownloadServer(
                grpc_target=f"127.0.0.1:{port}",
                host=config.grpc.host,
                port=config.http_port,
                client=config.grpc.client.model_copy(
                    update={"token": SecretStr(reader_token), "token_file": None}
                ),
            )
            await downloads.start()
        if ready is not None and not ready.done():
            ready.set_result(port)
        log.info("ota serving", extra={"fields": {"grpc_port": port}})
        async with asyncio.TaskGroup() as group:
            group.create_task(scheduler.run(stop))
            group.create_task(retention.run_forever(stop))
            if devices is not None:
                group.create_task(devices.commands.run(stop))
            await stop.wait()
    finally:
        if downloads is not None:
            await downloads.stop()
        await server.stop()
        with contextlib.suppress(Exception):
            await intake.stop()
        if devices is not None:
            with contextlib.suppress(Exception):
                await devices.mqtt.disconnect()
        await plans.ingest.close()
        await db.close()
