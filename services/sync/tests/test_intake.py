"""Intake: a message is acknowledged only once its jobs are committed."""

from __future__ import annotations

import time

import pytest
from linewatch_sync.intake import Intake
from linewatch_sync.store import JobStore

from linewatch.runtime.db import Database
from linewatch.runtime.intake import Entry
from linewatch.runtime.mqtt import MqttMessage
from linewatch_dev.testing import free_port


def _store(db: Database) -> JobStore:
    return JobStore(
        db=db, worker_id="w", max_attempts=3, backoff_base_s=1, backoff_cap_s=1, lease_s=60
    )


def _entry(intake: Intake, payload: bytes) -> Entry:  # type: ignore[type-arg]
    message = MqttMessage(topic="sync", payload=payload, qos=1)
    return Entry(message, intake.parse(message), time.perf_counter())


async def test_database_down_means_the_commit_fails() -> None:
    """The commit raises (→ retried by the intake, no PUBACK meanwhile) rather than drop."""
    db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none")
    intake = Intake(store=_store(db), allowed_hosts=(), max_urls=10)
    try:
        with pytest.raises(ConnectionRefusedError):
            await intake.commit([_entry(intake, b"http://h/a.jpg")])
    finally:
        await db.close()


async def test_message_is_queued_when_its_batch_commits(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    store = _store(db)
    await store.create_schema()
    woken: list[bool] = []
    intake = Intake(
        store=store, allowed_hosts=(), max_urls=10, on_queued=lambda: woken.append(True)
    )
    try:
        await intake.commit([_entry(intake, b'{"urls": ["http://h/a.jpg!t"], "work_id": "w"}')])
        rows, _ = await store.list()
        assert [(r.url, r.cache_path, r.work_id) for r in rows] == [
            ("http://h/a.jpg", "h/a.jpg", "w")
        ]
        assert woken == [True]
    finally:
        await db.close()
