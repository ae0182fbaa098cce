"""Each service's migration history: head equals its SQLModel metadata, and a database of
the release before migrations (main at 9456b3d, DDL kept in tests/fixtures) is upgraded
in place and keeps its rows. Both on SQLite and PostgreSQL.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from linewatch.runtime.db import Database
from linewatch.runtime.migrations import MigrationHistory, current_revision, migrate, schema_drift

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "schema_9456b3d"
SERVICES = ["ingest", "sync", "ota"]
# inference had no database before migrations: its history starts at the registry
WITH_HISTORY = [*SERVICES, "inference"]


def _history(service: str) -> MigrationHistory:
    history: MigrationHistory = importlib.import_module(f"linewatch_{service}.schema").HISTORY
    return history


def _value(column: sa.Column[Any], n: int) -> Any:
    t = column.type
    if isinstance(t, sa.Boolean):
        return n % 2 == 0
    if isinstance(t, sa.BigInteger):
        return 1_700_000_000_000 + n
    if isinstance(t, sa.Integer):
        return 7 + n
    if isinstance(t, sa.Float):
        return 1.5 + n
    if isinstance(t, sa.LargeBinary):
        return b"\x00\x01" * (n + 1)
    return f"v{n}"


def _old_rows(table: sa.Table) -> list[dict[str, Any]]:
    return [
        {c.name: _value(c, n) for c in table.columns}
        | ({"id": n + 1} if isinstance(table.c.get("id", sa.Column()).type, sa.Integer) else {})
        for n in range(3)
    ]


@pytest.mark.parametrize("service", WITH_HISTORY)
async def test_head_matches_the_service_metadata(database_url: str, service: str) -> None:
    """A table or column declared without a revision fails here (make migration)."""
    history = _history(service)
    db = Database(database_url)
    try:
        assert await migrate(db, history) == history.head()
        assert await migrate(db, history) == history.head()  # idempotent
        assert await schema_drift(db, history) == []
    finally:
        await db.close()


async def test_drift_is_reported_for_a_table_without_a_revision(database_url: str) -> None:
    """The comparison is not vacuous: an extra table on the metadata shows up."""
    history = _history("sync")
    db = Database(database_url)
    extra = sa.MetaData()
    for table in history.metadata.tables.values():
        table.to_metadata(extra)
    sa.Table("sync_new_thing", extra, sa.Column("id", sa.Integer, primary_key=True))
    try:
        await migrate(db, history)
        drift = await schema_drift(db, MigrationHistory("sync", history.versions, extra))
        assert [d[0] for d in drift] == ["add_table"]
    finally:
        await db.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_a_database_of_the_previous_release_is_upgraded_and_keeps_its_rows(
    database_url: str, service: str
) -> None:
    history = _history(service)
    dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    ddl = (FIXTURES / f"{service}.{dialect}.sql").read_text(encoding="utf-8")
    ddl = "\n".join(ln for ln in ddl.splitlines() if not ln.startswith("--"))
    statements = [s.strip() for s in ddl.split(";") if s.strip()]
    db = Database(database_url)
    try:
        async with db.connect() as conn:
            for statement in statements:
                await conn.execute(sa.text(statement))
            old = sa.MetaData()
            await conn.run_sync(old.reflect)
            expected: dict[str, int] = {}
            for table in old.sorted_tables:
                rows = _old_rows(table)
                await conn.execute(table.insert(), rows)
                expected[table.name] = len(rows)
        assert await current_revision(db, history) is None
        assert await migrate(db, history) == history.head()
        assert await schema_drift(db, history) == []
        async with db.connect() as conn:
            for name, count in expected.items():
                got = (await conn.execute(sa.text(f"SELECT count(*) FROM {name}"))).scalar_one()
                assert (name, got) == (name, count)
    finally:
        await db.close()


@pytest.mark.parametrize("service", WITH_HISTORY)
def test_the_migrate_command_upgrades_and_exits(tmp_path: Path, service: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}"
    config = tmp_path / f"{service}.yaml"
    config.write_text(f"database_url: {url}\ndata_dir: {tmp_path}\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", f"linewatch_{service}", "migrate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"schema at revision {_history(service).head()}" in done.stdout
