"""Fixtures shared by every test in the tree (tests/ and services/*/tests).

Real components first: the machine's Mosquitto (127.0.0.1:1883) and PostgreSQL
(127.0.0.1:5432) when they answer; otherwise the embedded defaults (an in-process amqtt
broker, SQLite). Tests that must kill a broker start their own ``mosquitto`` on a free port.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from linewatch_dev.broker import broker_answers
from linewatch_dev.testing import Mosquitto, broker_url, mosquitto_binary

PG_HOST = os.environ.get("LINEWATCH_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("LINEWATCH_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("LINEWATCH_TEST_PG_USER", "postgres")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """Our own mosquitto on a free port (skipped where mosquitto is not installed)."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture
async def mqtt_url() -> AsyncIterator[str]:
    """The machine's broker at 127.0.0.1:1883, else an embedded one on a free port."""
    async with broker_url() as url:
        yield url


@pytest.fixture
def topic_prefix() -> str:
    """A unique topic root, so tests sharing one broker never see each other's messages."""
    return f"lwtest/{uuid.uuid4().hex[:10]}"


def _postgres_available() -> bool:
    return broker_answers(PG_HOST, PG_PORT)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: SQLite in tmp_path, and a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    if not _postgres_available():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    name = f"lwtest_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        await asyncio.sleep(0)
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file."""
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
