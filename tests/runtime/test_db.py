import asyncio
import sqlite3
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Field, SQLModel, select

from linewatch.runtime.db import Database, service_registry


class _Base(SQLModel, registry=service_registry()):
    pass


class Widget(_Base, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)


async def test_schema_session_and_rollback(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.create_schema(_Base.metadata)
        await db.create_schema(_Base.metadata)  # idempotent
        async with db.session() as session:
            session.add(Widget(name="a"))
        try:
            async with db.session() as session:
                session.add(Widget(name="b"))
                await session.flush()
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        async with db.session() as session:
            names = (await session.exec(select(Widget.name))).all()
        assert list(names) == ["a"]
        assert await db.ping()
    finally:
        await db.close()


async def test_additive_migration_adds_column(database_url: str) -> None:
    old = sa.MetaData()
    sa.Table("gadget", old, sa.Column("id", sa.Integer, primary_key=True))
    new = sa.MetaData()
    sa.Table(
        "gadget",
        new,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("colour", sa.String(20), server_default="red"),
    )
    db = Database(database_url)
    try:
        await db.create_schema(old)
        async with db.connect() as conn:
            await conn.execute(sa.text("INSERT INTO gadget (id) VALUES (1)"))
        await db.create_schema(new)
        async with db.connect() as conn:
            colour = (await conn.execute(sa.text("SELECT colour FROM gadget"))).scalar_one()
        assert colour == "red"
    finally:
        await db.close()


async def test_unreachable_database_pings_false() -> None:
    db = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        assert not await db.ping()
    finally:
        await db.close()


async def test_a_new_sqlite_connection_needs_no_write_lock(tmp_path: Path) -> None:
    """While another connection writes, a new connection opens and reads at once (its
    pragmas only query the file's modes; setting one waited for the write lock)."""
    path = tmp_path / "busy.db"
    first = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await first.create_schema(_Base.metadata)
        async with first.engine.connect() as conn:
            assert (await conn.execute(sa.text("PRAGMA auto_vacuum"))).scalar() == 2  # new file
    finally:
        await first.close()
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO widget (name) VALUES ('held')")
        second = Database(f"sqlite+aiosqlite:///{path}")
        try:
            async with asyncio.timeout(20):  # not a speed check: without the fix it hangs 30 s
                async with second.session() as session:
                    assert (await session.exec(select(Widget))).all() == []
        finally:
            await second.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
