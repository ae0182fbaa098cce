"""Fixtures shared by every test in the tree (tests/ and services/*/tests).

Real components, and the suite starts what it needs when a machine has none:

- MQTT: the machine's broker at 127.0.0.1:1883 when it answers; otherwise one Mosquitto
  for the whole session on a free port (``make system-packages`` installs it); only where
  Mosquitto is not installed, the embedded amqtt broker (much slower: a last resort).
- PostgreSQL: the server at ``LINEWATCH_TEST_PG_HOST``:``LINEWATCH_TEST_PG_PORT``
  (default 127.0.0.1:5432, trust, user postgres) when it answers; otherwise a private
  cluster for the session (``initdb`` + ``pg_ctl``, run as the ``postgres`` user when the
  suite runs as root); where neither exists the PostgreSQL half of ``database_url`` skips.
- Tests that must kill a broker start their own ``mosquitto`` on a free port.

``LINEWATCH_TEST_MQTT_URL`` points the suite at another broker. The resolved addresses
are exported (``LINEWATCH_TEST_MQTT_URL``, ``LINEWATCH_TEST_PG_HOST``/``_PORT``) so
subprocesses a test starts see the same servers.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import gc
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from linewatch_dev.broker import EmbeddedBroker, broker_answers
from linewatch_dev.testing import Mosquitto, Postgres, free_port, mosquitto_binary, postgres_bin_dir

PG_USER = os.environ.get("LINEWATCH_TEST_PG_USER", "postgres")


def _guard_ast_construction() -> None:
    """One AST construction at a time, with the garbage collector held off (CPython < 3.11.8).

    CPython 3.11.0-3.11.7 keeps the AST constructor's recursion depth in module-global
    state (python/cpython#106905, fixed in 3.11.8). When a second construction starts
    while one is in progress, the first one fails with ``SystemError: AST constructor
    recursion depth mismatch``. In this suite that happens when pytest parses a test's
    source to format a failure and the collector, run mid-parse, finalises an asyncio
    future or task whose ``__del__`` logs an exception: the logged traceback's caret
    anchors parse the line again (same thread) — or when a service thread formats a
    traceback at that moment. pytest then dies with an INTERNALERROR instead of
    reporting the failure. Serialising ``ast.parse`` and disabling the collector for its
    duration removes both paths.
    """
    if not (3, 11) <= sys.version_info[:3] < (3, 11, 8):
        return
    original = ast.parse
    if getattr(original, "_linewatch_guarded", False):
        return
    lock = threading.RLock()

    @functools.wraps(original)
    def parse(*args: Any, **kwargs: Any) -> Any:
        with lock:
            enabled = gc.isenabled()
            gc.disable()
            try:
                return original(*args, **kwargs)
            finally:
                if enabled:
                    gc.enable()

    parse._linewatch_guarded = True  # type: ignore[attr-defined]
    ast.parse = parse


_guard_ast_construction()


# --- MQTT -----------------------------------------------------------------------------


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """Our own mosquitto on a free port (skipped where mosquitto is not installed)."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """The URL of the session's MQTT broker; None: use an embedded broker per test."""
    url = os.environ.get("LINEWATCH_TEST_MQTT_URL")
    if url:
        yield url
        return
    if broker_answers("127.0.0.1", 1883):
        yield "mqtt://127.0.0.1:1883"
        return
    if mosquitto_binary() is None:
        yield None
        return
    broker = Mosquitto(tmp_path_factory.mktemp("session-mosquitto"))
    broker.start()
    os.environ["LINEWATCH_TEST_MQTT_URL"] = broker.url
    try:
        yield broker.url
    finally:
        os.environ.pop("LINEWATCH_TEST_MQTT_URL", None)
        broker.stop()


@pytest.fixture
async def mqtt_url(session_broker: str | None) -> AsyncIterator[str]:
    """The session's broker (see the module docstring), else an embedded one."""
    if session_broker is not None:
        yield session_broker
        return
    port = free_port()
    async with EmbeddedBroker(port=port):
        yield f"mqtt://127.0.0.1:{port}"


@pytest.fixture
def topic_prefix() -> str:
    """A unique topic root, so tests sharing one broker never see each other's messages."""
    return f"lwtest/{uuid.uuid4().hex[:10]}"


# --- PostgreSQL -----------------------------------------------------------------------


@dataclass(frozen=True)
class PgServer:
    """Where the session's PostgreSQL listens (trust authentication)."""

    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"

    def admin(self) -> AbstractAsyncContextManager[Any]:
        return _pg_admin(self)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer | None]:
    """The machine's PostgreSQL, else a private cluster; None where neither exists."""
    host = os.environ.get("LINEWATCH_TEST_PG_HOST", "127.0.0.1")
    port = int(os.environ.get("LINEWATCH_TEST_PG_PORT", "5432"))
    if broker_answers(host, port):
        yield PgServer(host, port, PG_USER)
        return
    if postgres_bin_dir() is None:
        yield None
        return
    cluster = Postgres()
    try:
        cluster.start()
        os.environ["LINEWATCH_TEST_PG_HOST"] = "127.0.0.1"
        os.environ["LINEWATCH_TEST_PG_PORT"] = str(cluster.port)
        yield PgServer("127.0.0.1", cluster.port, "postgres")
    finally:
        os.environ.pop("LINEWATCH_TEST_PG_HOST", None)
        os.environ.pop("LINEWATCH_TEST_PG_PORT", None)
        cluster.remove()


@contextlib.asynccontextmanager
async def _pg_admin(server: PgServer) -> AsyncIterator[Any]:
    """A connection to the server's ``postgres`` database."""
    import asyncpg

    conn = await asyncpg.connect(
        host=server.host, port=server.port, user=server.user, database="postgres", timeout=5
    )
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PgServer | None
) -> AsyncIterator[str]:
    """A fresh, empty database: SQLite in tmp_path, and a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    if postgres_server is None:
        pytest.skip("no PostgreSQL: none answers and initdb/pg_ctl are not installed")
    name = f"lwtest_{uuid.uuid4().hex[:12]}"
    async with postgres_server.admin() as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url(name)
    finally:
        await asyncio.sleep(0)
        async with postgres_server.admin() as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file."""
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
