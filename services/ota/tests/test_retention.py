"""OTA retention on both databases: finished commands past their TTL go; pending stay."""

from __future__ import annotations

import sqlalchemy as sa
from linewatch_ota.config import OtaRetention
from linewatch_ota.retention import ota_retention
from linewatch_ota.schema import HISTORY

from linewatch.runtime.db import Database
from linewatch.runtime.migrations import migrate

NOW_S = 1_800_000_000.0
DAY_S = 86_400.0


async def test_finished_commands_expire(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate(db, HISTORY)
        async with db.connect() as conn:
            for i, (state, age_days) in enumerate(
                [("succeeded", 40), ("failed", 40), ("queued", 40), ("succeeded", 3)]
            ):
                await conn.execute(
                    sa.text(
                        "INSERT INTO ota_commands (id, device_id, seq, name, params_json, state, "
                        "source, timeout_s, expires_at, created_at, attempts, result_json, error) "
                        "VALUES (:id, 'd', :seq, 'reboot', '{}', :s, 'api', 10, 0, :t, 0, '', '')"
                    ),
                    {"id": f"c{i}", "seq": i, "s": state, "t": NOW_S - age_days * DAY_S},
                )
        cfg = OtaRetention(command_days=30, update_days=30, pause_s=0)
        results = await ota_retention(db, cfg).run_once(now_ms=int(NOW_S * 1000))
        assert {r.kind: r.rows_deleted for r in results}["commands"] == 2
        async with db.connect() as conn:
            ids = (await conn.execute(sa.text("SELECT id FROM ota_commands ORDER BY id"))).scalars()
            assert list(ids) == ["c2", "c3"]
    finally:
        await db.close()
