"""Change notices between the replicas of a service: PostgreSQL LISTEN/NOTIFY.

Replicas that share one PostgreSQL database tell each other that something changed with
:func:`notify` (``pg_notify``: delivered to every listener once the sending transaction
commits) and hear it with a :class:`Listener`, which holds one asyncpg connection of its
own ``LISTEN``-ing on a channel. A notice is a hint ("rule X changed"), never the data:
the listener reads the database. Notices sent while a listener was disconnected are lost,
so the listener calls ``on_reconnect`` after every (re)connect, where the caller reads
everything again.

SQLite has no notifications and is one process's database: :func:`notify` is a no-op on it
and a :class:`Listener` on SQLite never hears anything (services refuse several replicas
on SQLite in their configuration).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from linewatch.runtime.db import Database

__all__ = ["Listener", "asyncpg_dsn", "notify"]

log = logging.getLogger(__name__)

MAX_PAYLOAD = 7999
"""PostgreSQL's limit on a notice's payload (bytes, less one)."""


def asyncpg_dsn(db: Database) -> str:
    """The plain ``postgresql://`` DSN asyncpg connects with (the password kept)."""
    return db.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def notify(target: Database | AsyncConnection, channel: str, payload: str = "") -> None:
    """Send a notice on ``channel`` (in ``target``'s transaction when it is a connection).

    Raises:
        ValueError: the payload is longer than PostgreSQL takes.
    """
    if len(payload.encode()) > MAX_PAYLOAD:
        raise ValueError(f"notice payload over {MAX_PAYLOAD} bytes")
    stmt = sa.text("SELECT pg_notify(:channel, :payload)")
    if isinstance(target, Database):
        if target.is_sqlite:
            return
        async with target.connect() as conn:
            await conn.execute(stmt, {"channel": channel, "payload": payload})
        return
    if target.dialect.name == "sqlite":
        return
    await target.execute(stmt, {"channel": channel, "payload": payload})


class Listener:
    """Calls ``on_notice(payload)`` for every notice on ``channel``; reconnects by itself."""

    def __init__(
        self,
        db: Database,
        channel: str,
        on_notice: Callable[[str], Awaitable[None]],
        *,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        retry_s: float = 1.0,
    ) -> None:
        self.db = db
        self.channel = channel
        self._on_notice = on_notice
        self._on_reconnect = on_reconnect
        self._retry_s = retry_s
        self._task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self.listening = asyncio.Event()
        """Set while the LISTEN connection is up."""

    def start(self) -> None:
        """Begin listening (in the background; SQLite: nothing to hear)."""
        if self._task is None and not self.db.is_sqlite:
            self._task = asyncio.create_task(self._run(), name=f"listen-{self.channel}")

    async def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._queue.put_nowait(payload)

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(asyncpg_dsn(self.db))
                await conn.add_listener(self.channel, self._heard)
                self.listening.set()
                if self._on_reconnect is not None:
                    await self._on_reconnect()
                await self._dispatch(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "listener on %s: %s; reconnecting", self.channel, exc.__class__.__name__
                )
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(self._retry_s)

    async def _dispatch(self, conn: asyncpg.Connection) -> None:
        """Hand notices over until the connection breaks (checked every second)."""
        while True:
            try:
                payload = await asyncio.wait_for(self._queue.get(), 1.0)
            except TimeoutError:
                if conn.is_closed():
                    raise ConnectionError("listen connection closed") from None
                await conn.execute("SELECT 1")
                continue
            try:
                await self._on_notice(payload)
            except Exception:
                log.exception("notice on %s failed", self.channel)
