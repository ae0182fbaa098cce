"""Retention on both databases: TTLs applied (whole day partitions dropped on
PostgreSQL, batches on SQLite), not-ok and labelled curves kept longer, then dropped too."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from linewatch_ingest.config import IngestRetention
from linewatch_ingest.retention import ingest_retention
from linewatch_ingest.store import IngestStore

from linewatch.runtime import partitions
from linewatch.runtime.db import Database
from linewatch.runtime.retention import DAY_MS

T0 = int(dt.datetime(2026, 3, 10, tzinfo=dt.UTC).timestamp() * 1000)
"""The archive's first day; runs below move the clock (``now_ms``) from there."""
DAYS = 3
PER_DAY = 12  # every 4th verdict not ok


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[IngestStore]:
    db = Database(database_url)
    s = IngestStore(db)
    await s.create()
    yield s
    await db.close()


async def _fill(store: IngestStore) -> None:
    tel, ver = [], []
    for day in range(DAYS):
        for i in range(PER_DAY):
            ts = T0 + day * DAY_MS + i * 60_000
            key = ("r", f"m{day}-{i}", f"d{i % 3}", "p", ts)
            tel.append((*key, "t", b"\x00" * 16, "{}"))
            ok = i % 4 != 0
            ver.append((*key, "m", "1", "ok" if ok else "bad", ok, "{}", 1.0, "", "t", "{}"))
    await store.archive(tel, ver)
    async with store.db.connect() as conn:
        for i in range(5):
            await conn.execute(
                sa.text(
                    "INSERT INTO ingest_deadletter (rule, topic, reason, payload, device_id, "
                    "point, received_at_ms) VALUES ('r', 't', 'bad', :p, '', '', :ts)"
                ),
                {"p": b"x", "ts": T0 + i},
            )
        for state in ("active", "cleared"):
            await conn.execute(
                sa.text(
                    "INSERT INTO ingest_alarm (rule, device_id, state, message, count, "
                    "raised_at_ms, delivery, commands) "
                    "VALUES ('r', 'd0', :s, '', 1, :ts, 'sent', '')"
                ),
                {"s": state, "ts": T0},
            )


async def _count(db: Database, table: str, where: str = "1 = 1") -> int:
    async with db.connect() as conn:
        return int(
            (
                await conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}"))
            ).scalar_one()
        )


async def _day_partitions(db: Database, table: str) -> list[int]:
    async with db.connect() as conn:
        parts = await conn.run_sync(partitions.list_partitions, table)
    return [p.start_ms for p in parts]


CFG = IngestRetention(
    telemetry_days=30, verdict_days=30, flagged_days=365, deadletter_days=7, alarm_days=30,
    batch_rows=5, pause_s=0,
)  # fmt: skip


async def test_ttls_drop_old_days_and_keep_not_ok_longer(store: IngestStore) -> None:
    db = store.db
    runner = ingest_retention(db, CFG)
    await runner.run_once(now_ms=T0)  # nothing expired; PostgreSQL: partitions from T0 on
    await _fill(store)
    if not db.is_sqlite:
        assert {T0 + d * DAY_MS for d in range(DAYS)} <= set(
            await _day_partitions(db, "ingest_telemetry")
        )
    total, not_ok = DAYS * PER_DAY, DAYS * PER_DAY // 4
    assert await _count(db, "ingest_telemetry") == total

    # 31 days after the first day: days 0 and 1 have expired (day 2 ends after the cutoff)
    results = {r.kind: r for r in await runner.run_once(now_ms=T0 + 32 * DAY_MS)}
    expired_days = 2
    kept = expired_days * PER_DAY // 4
    remaining = (DAYS - expired_days) * PER_DAY + kept
    assert await _count(db, "ingest_telemetry") == remaining
    assert await _count(db, "ingest_verdict") == remaining
    old = f"ts_ms < {T0 + expired_days * DAY_MS}"
    assert await _count(db, "ingest_verdict", f"{old} AND NOT ok") == kept
    assert await _count(db, "ingest_verdict", f"{old} AND ok") == 0
    assert await _count(db, "ingest_telemetry", old) == kept
    assert await _count(db, "ingest_deadletter") == 0
    assert await _count(db, "ingest_alarm") == 1  # the active one stays
    if db.is_sqlite:
        assert results["telemetry"].rows_deleted == expired_days * PER_DAY - kept
    else:
        # whole days dropped, not deleted row by row; the not-ok rows moved to the default
        assert results["telemetry"].partitions_dropped >= expired_days
        assert results["telemetry"].rows_kept == kept
        days_left = await _day_partitions(db, "ingest_telemetry")
        assert T0 not in days_left
        assert T0 + DAY_MS not in days_left
        assert T0 + 2 * DAY_MS in days_left
        assert await _count(db, "ingest_telemetry_default") == kept

    # past flagged_days the kept ones go too
    await runner.run_once(now_ms=T0 + 400 * DAY_MS)
    assert await _count(db, "ingest_telemetry") == 0
    assert await _count(db, "ingest_verdict") == 0
    assert not_ok  # (the data had not-ok verdicts to keep)


async def test_labelled_ok_curves_are_kept_longer(store: IngestStore) -> None:
    db = store.db
    runner = ingest_retention(db, CFG)
    await runner.run_once(now_ms=T0)
    await _fill(store)
    async with db.connect() as conn:  # an operator labels one ok verdict
        await conn.execute(
            sa.text(
                "INSERT INTO ingest_verdict_label "
                "(verdict_id, label, note, labelled_by, labelled_at_ms) "
                "SELECT id, 'spike', '', 'test', 0 FROM ingest_verdict WHERE msg_id = 'm0-1'"
            )
        )
    await runner.run_once(now_ms=T0 + 40 * DAY_MS)
    per_all_days = DAYS * PER_DAY // 4 + 1
    assert await _count(db, "ingest_verdict") == per_all_days
    assert await _count(db, "ingest_telemetry", "msg_id = 'm0-1'") == 1
    assert await _count(db, "ingest_verdict", "ok") == 1


async def test_ttl_zero_keeps_everything(store: IngestStore) -> None:
    runner = ingest_retention(store.db, IngestRetention())
    await _fill(store)
    await runner.run_once(now_ms=T0 + 4000 * DAY_MS)
    assert await _count(store.db, "ingest_telemetry") == DAYS * PER_DAY
    sizes = {s.table: s for s in await runner.sizes()}
    assert set(sizes) == {"ingest_telemetry", "ingest_verdict", "ingest_deadletter", "ingest_alarm"}
    if store.db.is_sqlite:
        assert sizes["ingest_telemetry"].rows == DAYS * PER_DAY
    assert sizes["ingest_telemetry"].bytes > 0
