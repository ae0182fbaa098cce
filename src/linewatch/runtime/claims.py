"""Replica slots: each replica of a service holds one of ``slots`` numbered identities.

Replicas on one PostgreSQL database claim the lowest free slot with a session-level
advisory lock (``pg_try_advisory_lock``) on a connection of their own. The lock lives as
long as that connection: a replica killed with SIGKILL loses its slot the moment
PostgreSQL sees the socket close, and its replacement claims the same number. A service
derives what must survive its replicas from the slot (e.g. MQTT client ids, whose
persistent sessions hold the messages the dead replica had not acknowledged). A replica
that finds every slot held waits (a standby) and retries every ``retry_s``.

The holder checks its connection every ``check_s``; when it breaks the slot may already
be someone else's, so ``on_lost`` is called and the caller must stop acting as the slot
(then :meth:`SlotClaim.acquire` again).

SQLite is one process's database: the slot is always 0, nothing is locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from linewatch.runtime.db import Database
from linewatch.runtime.notify import asyncpg_dsn

__all__ = ["SlotClaim", "lock_key"]

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """The signed 64-bit advisory-lock key of a name."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


class SlotClaim:
    """Claims and holds one slot of ``namespace``."""

    def __init__(
        self,
        db: Database,
        namespace: str,
        slots: int,
        *,
        on_lost: Callable[[], Awaitable[None]] | None = None,
        retry_s: float = 1.0,
        check_s: float = 1.0,
    ) -> None:
        if slots < 1:
            raise ValueError("slots: at least 1")
        self.db = db
        self.namespace = namespace
        self.slots = slots
        self._on_lost = on_lost
        self._retry_s = retry_s
        self._check_s = check_s
        self._conn: asyncpg.Connection | None = None
        self._watch: asyncio.Task[None] | None = None
        self.slot: int | None = None
        """The slot held now (None: none)."""

    async def acquire(self) -> int:
        """Wait until a slot is free, claim it and return its number."""
        if self.db.is_sqlite:
            self.slot = 0
            return 0
        while True:
            try:
                slot = await self._try_all()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("slot claim: %s", exc.__class__.__name__)
                slot = None
            if slot is not None:
                self.slot = slot
                self._watch = asyncio.create_task(self._check(), name=f"slot-{self.namespace}")
                log.info("holding slot %d of %s", slot, self.namespace)
                return slot
            await asyncio.sleep(self._retry_s)

    async def _try_all(self) -> int | None:
        conn = await asyncpg.connect(asyncpg_dsn(self.db))
        try:
            for slot in range(self.slots):
                key = lock_key(f"{self.namespace}:{slot}")
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    self._conn = conn
                    return slot
        except BaseException:
            await conn.close()
            raise
        await conn.close()
        return None

    async def _check(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            await asyncio.sleep(self._check_s)
            try:
                await asyncio.wait_for(conn.execute("SELECT 1"), self._check_s * 2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("slot %s of %s lost: %r", self.slot, self.namespace, exc)
                self.slot = None
                self._conn = None
                with contextlib.suppress(Exception):
                    conn.terminate()
                if self._on_lost is not None:
                    await self._on_lost()
                return

    async def release(self) -> None:
        """Give the slot up (closing its connection frees the lock)."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 2)
            self._conn = None
        self.slot = None
