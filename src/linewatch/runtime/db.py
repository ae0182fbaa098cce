"""Async database access: PostgreSQL (asyncpg) or the embedded SQLite (aiosqlite).

Each service owns its tables: it declares them on its own ``MetaData`` (see
:func:`service_registry`) and upgrades them at start with its migration history
(:mod:`linewatch.runtime.migrations`, Alembic). :meth:`Database.create_schema` (create
missing tables, add missing columns) is only for tables that have no history (tests).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import registry
from sqlmodel.ext.asyncio.session import AsyncSession

from linewatch.runtime.errors import ConfigError

__all__ = ["Database", "default_sqlite_url", "service_registry"]

log = logging.getLogger(__name__)

_SCHEMA_LOCK = 0x6C696E6577617463  # "linewatc": advisory-lock key of a service's schema steps
_CREATE_LOCK = _SCHEMA_LOCK + 1  # of one create_schema call (taken inside schema_lock too)


def service_registry() -> registry:
    """A fresh SQLAlchemy registry (and MetaData) for one service's tables.

    Use it with SQLModel as ``class Base(SQLModel, registry=service_registry()): ...``.
    """
    return registry()


def default_sqlite_url(data_dir: Path, service: str) -> str:
    """``sqlite+aiosqlite:///<data_dir>/<service>.db`` (the embedded default)."""
    return f"sqlite+aiosqlite:///{(data_dir / f'{service}.db').as_posix()}"


def _set_sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    # Both modes are set on a new file only, and only queried on every later connection:
    # setting one reads the file and then writes its header, and SQLite answers a reader
    # that wants to write while another connection writes with "database is locked" at
    # once, without waiting (it could deadlock) — a replica or a restarted service's new
    # connection failed so on a loaded machine.
    cur.execute("PRAGMA page_count")
    if cur.fetchone()[0] == 0:
        # Before the first table only: freed pages can be given back in steps
        # (retention's PRAGMA incremental_vacuum); an older file keeps its mode.
        cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cur.execute("PRAGMA journal_mode")
    if str(cur.fetchone()[0]).lower() != "wal":
        cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Database:
    """One engine per process; sessions and connections from it."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigError(f"database_url {url!r}: not a database URL") from exc
        self.url = parsed
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if parsed.drivername != "sqlite+aiosqlite":
                raise ConfigError("database_url: use sqlite+aiosqlite:/// for SQLite")
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(url, echo=echo)
            event.listen(self.engine.sync_engine, "connect", _set_sqlite_pragmas)
        elif self.dialect == "postgresql":
            if parsed.drivername != "postgresql+asyncpg":
                raise ConfigError("database_url: use postgresql+asyncpg:// for PostgreSQL")
            self.engine = create_async_engine(
                url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
        else:
            raise ConfigError(f"database_url: unsupported database {self.dialect!r}")

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the embedded SQLite database."""
        return self.dialect == "sqlite"

    async def create_schema(self, metadata: sa.MetaData) -> None:
        """Create missing tables and add missing (nullable or defaulted) columns.

        For metadata without a migration history only (tests, scratch tables); a
        service's own tables go through :func:`linewatch.runtime.migrations.migrate`.
        """
        async with self.engine.begin() as conn:
            if not self.is_sqlite:  # replicas starting together: one after the other
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CREATE_LOCK})
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(self._add_missing_columns, metadata)

    @staticmethod
    def _add_missing_columns(sync_conn: sa.Connection, metadata: sa.MetaData) -> None:
        inspector = sa.inspect(sync_conn)
        for table in metadata.sorted_tables:
            existing = {col["name"] for col in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in existing:
                    continue
                ddl_type = column.type.compile(dialect=sync_conn.dialect)
                default = ""
                if column.server_default is not None:
                    arg = getattr(column.server_default, "arg", None)
                    if isinstance(arg, str):
                        default = f" DEFAULT '{arg}'"
                    elif arg is not None:
                        default = f" DEFAULT {arg.compile(dialect=sync_conn.dialect)}"
                log.info("adding column %s.%s", table.name, column.name)
                preparer = sync_conn.dialect.identifier_preparer
                sync_conn.execute(
                    sa.text(
                        f"ALTER TABLE {preparer.quote(table.name)} "
                        f"ADD COLUMN {preparer.quote(column.name)} {ddl_type}{default}"
                    )
                )

    @asynccontextmanager
    async def schema_lock(self) -> AsyncIterator[None]:
        """Hold the database's schema lock (PostgreSQL advisory lock; SQLite: nothing), so
        replicas starting together create tables one after the other (concurrent
        ``CREATE TABLE`` of one table fails on PostgreSQL's catalogue)."""
        if self.is_sqlite:
            yield
            return
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _SCHEMA_LOCK})
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _SCHEMA_LOCK})
                await conn.commit()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in one transaction (for bulk inserts and queries)."""
        async with self.engine.begin() as conn:
            yield conn

    async def ping(self) -> bool:
        """Whether the database answers now."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
