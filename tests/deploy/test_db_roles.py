"""The chart's per-service database roles (deploy/helm/linewatch/files/postgres-roles.sql)
on the real PostgreSQL: each service creates its tables in its own schema and cannot
touch another's; running the script twice changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SQL = Path(__file__).resolve().parents[2] / "deploy/helm/linewatch/files/postgres-roles.sql"
HOST = os.environ.get("LINEWATCH_TEST_PG_HOST", "127.0.0.1")
PORT = os.environ.get("LINEWATCH_TEST_PG_PORT", "5432")
ADMIN = os.environ.get("LINEWATCH_TEST_PG_USER", "postgres")


def _psql(db: str, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-X", "-q", "-h", HOST, "-p", PORT, "-U", user, "-d", db, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )


@pytest.fixture
def database() -> Iterator[str]:
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    probe = _psql("postgres", ADMIN, "-c", "select 1")
    if probe.returncode != 0:
        pytest.skip(f"no PostgreSQL at {HOST}:{PORT} ({probe.stderr.strip()[:80]})")
    name = f"lw_roles_{uuid.uuid4().hex[:8]}"
    assert _psql("postgres", ADMIN, "-c", f'create database "{name}"').returncode == 0
    yield name
    _psql("postgres", ADMIN, "-c", f'drop database if exists "{name}" with (force)')


def _apply(db: str) -> subprocess.CompletedProcess[str]:
    return _psql(
        db,
        ADMIN,
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        f"db={db}",
        *("-v", "ingest_password=pw-i", "-v", "sync_password=pw-s", "-v", "ota_password=pw-o"),
        *("-v", "inference_password=pw-n"),
        "-f",
        str(SQL),
    )


def test_each_service_owns_its_schema_only(database: str) -> None:
    first = _apply(database)
    assert first.returncode == 0, first.stderr
    again = _apply(database)
    assert again.returncode == 0, again.stderr  # idempotent
    made = _psql(database, "linewatch_ingest", "-c", "create table verdicts (id int)")
    assert made.returncode == 0, made.stderr
    where = _psql(
        database,
        "linewatch_ingest",
        "-At",
        "-c",
        "select table_schema from information_schema.tables where table_name = 'verdicts'",
    )
    assert where.stdout.strip() == "ingest"
    assert _psql(database, "linewatch_sync", "-c", "create table jobs (id int)").returncode == 0
    # another service's tables are out of reach, and so is public
    denied = _psql(database, "linewatch_sync", "-c", "select * from ingest.verdicts")
    assert denied.returncode != 0
    assert "permission denied" in denied.stderr
    public = _psql(database, "linewatch_ota", "-c", "create table public.x (id int)")
    assert public.returncode != 0
    assert "permission denied" in public.stderr
