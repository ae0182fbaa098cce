"""At most one active update per device, enforced by the database across replicas."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from linewatch_ota.catalog import Catalog
from linewatch_ota.config import OtaConfig
from linewatch_ota.events import EventHub
from linewatch_ota.ingest_client import IngestCounts
from linewatch_ota.publisher import MetadataPublisher
from linewatch_ota.rollouts import Rollouts, RolloutSpec
from linewatch_ota.scheduler import Scheduler
from linewatch_ota.schema import HISTORY
from linewatch_ota.signing import FirmwareKeys, SigningKey
from linewatch_ota.store import DeviceUpdateRow
from linewatch_ota.wave_progress import WavePlans
from sqlalchemy.exc import IntegrityError

from linewatch.runtime.config import GrpcClientConfig, MqttConfig
from linewatch.runtime.db import Database
from linewatch.runtime.migrations import migrate
from linewatch.runtime.mqtt import MqttClient


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await migrate(database, HISTORY)
    yield database
    await database.close()


def _row(device: str, state: str) -> dict[str, object]:
    now = time.time()
    return {
        "id": uuid.uuid4().hex,
        "device_id": device,
        "rollout_id": "r",
        "firmware_id": "f",
        "version": "1",
        "priority": "normal",
        "priority_rank": 1,
        "state": state,
        "percent": 0,
        "attempts": 0,
        "reason": "",
        "timeout_s": 10,
        "max_retries": 1,
        "deadline": None,
        "created_at": now,
        "updated_at": now,
    }


async def test_the_database_refuses_a_second_active_update(db: Database) -> None:
    table = DeviceUpdateRow.__table__  # type: ignore[attr-defined]
    async with db.connect() as conn:
        await conn.execute(sa.insert(table), [_row("d1", "downloading"), _row("d1", "queued")])
        await conn.execute(sa.insert(table), [_row("d1", "succeeded"), _row("d1", "failed")])
    with pytest.raises(IntegrityError):
        async with db.connect() as conn:
            await conn.execute(sa.insert(table), [_row("d1", "notified")])


async def test_two_replicas_never_start_two_updates_for_one_device(
    db: Database, tmp_path: Path, mqtt_url: str, topic_prefix: str
) -> None:
    mqtt = MqttClient(MqttConfig(url=mqtt_url), clean_start=True)
    await mqtt.connect()
    keys = FirmwareKeys.from_config(SigningKey.load_or_create(tmp_path / "key.pem"), {}, None)
    schedulers = []
    rollouts = None
    for _ in range(2):  # two replicas: own catalog, lock and scheduler; one database
        catalog = Catalog(db=db, firmware_dir=tmp_path / "fw", max_bytes=10**6, keys=keys)
        events = EventHub()
        lock = asyncio.Lock()
        rollouts = Rollouts(db=db, catalog=catalog, events=events, write_lock=lock)
        publisher = MetadataPublisher(
            mqtt=mqtt,
            catalog=catalog,
            topic_root=topic_prefix,
            base_url="http://127.0.0.1:1",
            chunk_size=1024,
        )
        schedulers.append(
            Scheduler(
                db=db,
                rollouts=rollouts,
                publisher=publisher,
                events=events,
                write_lock=lock,
                tick_interval_s=0.05,
                plans=WavePlans(db=db, ingest=IngestCounts("", GrpcClientConfig()), inventory=None),
            )
        )
    assert rollouts is not None

    async def chunks() -> AsyncIterator[bytes]:
        yield b"firmware"

    fw = await rollouts.catalog.upload(product="p", version="1", filename="", chunks=chunks())
    devices = [f"rep-{i}" for i in range(50)]
    for _ in range(3):
        await rollouts.create(
            RolloutSpec(
                firmware_id=fw.id,
                devices=devices,
                priority="normal",
                error_threshold=1.0,
                timeout_s=300,
                max_retries=0,
            )
        )
    await asyncio.gather(*(s.tick() for s in schedulers for _ in range(3)))
    await mqtt.disconnect()
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(DeviceUpdateRow.device_id, sa.func.count())  # type: ignore[call-overload]
                .where(DeviceUpdateRow.state == "notified")
                .group_by(DeviceUpdateRow.device_id)
            )
        ).all()
    assert len(rows) == 50
    assert all(n == 1 for _, n in rows)


def test_replicas_sharing_device_messages_keep_their_sessions_short_lived() -> None:
    """A replaced pod's session stops taking its share of device messages within
    ``shared_session_expiry_s``, not the hour a single replica's session lasts."""
    assert OtaConfig().session_mqtt().session_expiry_s == 3600
    shared = OtaConfig(shared_group="linewatch")
    assert shared.session_mqtt().session_expiry_s == 30
    assert shared.session_mqtt().url == shared.mqtt.url
    quick = OtaConfig(shared_group="linewatch", mqtt=MqttConfig(session_expiry_s=5))
    assert quick.session_mqtt().session_expiry_s == 5
