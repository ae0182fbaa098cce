"""Sync retention on both databases: dead jobs and rejections past their TTL go; done
and retrying jobs stay."""

from __future__ import annotations

import sqlalchemy as sa
from linewatch_sync.config import SyncRetention
from linewatch_sync.retention import sync_retention
from linewatch_sync.schema import HISTORY

from linewatch.runtime.db import Database
from linewatch.runtime.migrations import migrate

NOW_S = 1_800_000_000.0
DAY_S = 86_400.0


async def test_dead_jobs_and_rejections_expire(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate(db, HISTORY)
        async with db.connect() as conn:
            for i, (state, age_days) in enumerate(
                [("dead", 40), ("dead", 2), ("done", 40), ("failed", 40)]
            ):
                await conn.execute(
                    sa.text(
                        "INSERT INTO sync_jobs (id, url, cache_path, state, work_id, attempts, "
                        "last_error, size, sha256, expected_sha256, content_type, etag, "
                        "last_modified, refetch, claimed_by, traceparent, lease_until, "
                        "next_attempt_at, created_at, updated_at) VALUES (:id, :url, :p, :s, "
                        "'', 0, '', 0, '', '', '', '', '', false, '', '', 0, 0, :t, :t)"
                    ),
                    {"id": f"j{i}", "url": f"http://x/{i}", "p": f"p{i}", "s": state,
                     "t": NOW_S - age_days * DAY_S},
                )  # fmt: skip
            for age_days in (40, 2):
                await conn.execute(
                    sa.text(
                        "INSERT INTO sync_rejections (topic, url, reason, payload, created_at) "
                        "VALUES ('t', '', 'bad', '', :t)"
                    ),
                    {"t": NOW_S - age_days * DAY_S},
                )
        cfg = SyncRetention(dead_job_days=30, rejection_days=30, pause_s=0)
        await sync_retention(db, cfg).run_once(now_ms=int(NOW_S * 1000))
        async with db.connect() as conn:
            jobs = (await conn.execute(sa.text("SELECT id FROM sync_jobs ORDER BY id"))).scalars()
            assert list(jobs) == ["j1", "j2", "j3"]
            n = (await conn.execute(sa.text("SELECT count(*) FROM sync_rejections"))).scalar_one()
            assert n == 1
    finally:
        await db.close()
