"""Change notices (LISTEN/NOTIFY) and replica slots (advisory locks) on a real database."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import sqlalchemy as sa

from linewatch.runtime.claims import SlotClaim
from linewatch.runtime.db import Database
from linewatch.runtime.notify import Listener, asyncpg_dsn, notify


async def _wait(event: asyncio.Event) -> None:
    async with asyncio.timeout(10):
        await event.wait()


async def test_notices_reach_every_listener_and_a_reconnect_resyncs(database_url: str) -> None:
    db = Database(database_url)
    heard: list[tuple[str, str]] = []
    got = asyncio.Event()
    resyncs: list[str] = []
    resynced = asyncio.Event()

    def on(name: str) -> object:
        async def handle(payload: str) -> None:
            heard.append((name, payload))
            got.set()

        return handle

    async def resync() -> None:
        resyncs.append("x")
        resynced.set()

    listeners = [
        Listener(db, "lw_test", on(n), on_reconnect=resync, retry_s=0.1)  # type: ignore[arg-type]
        for n in ("a", "b")
    ]
    try:
        for listener in listeners:
            listener.start()
        if db.is_sqlite:  # one process's database: nothing to hear, notify is a no-op
            await notify(db, "lw_test", "x")
            await asyncio.sleep(0.3)
            assert heard == []
            assert not listeners[0].listening.is_set()
            return
        for listener in listeners:
            await _wait(listener.listening)
        assert len(resyncs) == 2
        await notify(db, "lw_test", "rule-1")
        async with db.connect() as conn:  # in a transaction: delivered on commit
            await notify(conn, "lw_test", "rule-2")
        async with asyncio.timeout(10):
            while len(heard) < 4:
                got.clear()
                await got.wait()
        assert sorted(heard) == [("a", "rule-1"), ("a", "rule-2"), ("b", "rule-1"), ("b", "rule-2")]
        with pytest.raises(ValueError, match="payload"):
            await notify(db, "lw_test", "x" * 8000)
        # the server drops the listening connection: the listener reconnects and resyncs
        async with db.connect() as conn:
            await conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND datname = current_database()"
                )
            )
        async with asyncio.timeout(15):
            while len(resyncs) < 4:
                resynced.clear()
                await resynced.wait()
        await notify(db, "lw_test", "rule-3")
        async with asyncio.timeout(10):
            while len(heard) < 6:
                got.clear()
                await got.wait()
    finally:
        for listener in listeners:
            await listener.close()
        await db.close()


async def test_replicas_hold_distinct_slots_and_a_dead_holders_slot_is_taken(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        if db.is_sqlite:
            assert await SlotClaim(db, "svc", 2).acquire() == 0
            return
        a, b = SlotClaim(db, "svc", 2, retry_s=0.1), SlotClaim(db, "svc", 2, retry_s=0.1)
        assert [await a.acquire(), await b.acquire()] == [0, 1]
        lost = asyncio.Event()

        async def on_lost() -> None:
            lost.set()

        c = SlotClaim(db, "svc", 2, retry_s=0.1, check_s=0.1, on_lost=on_lost)
        waiting = asyncio.create_task(c.acquire())  # every slot held: a standby
        await asyncio.sleep(0.5)
        assert not waiting.done()
        # the holder of slot 0 dies (its connection goes): the standby takes slot 0
        admin = await asyncpg.connect(asyncpg_dsn(db))
        await admin.execute(
            "SELECT pg_terminate_backend($1)",
            a._conn.get_server_pid(),  # type: ignore[union-attr]
        )
        async with asyncio.timeout(10):
            assert await waiting == 0
        await admin.close()
        # the new holder loses its connection: it is told, and holds nothing
        await b.release()
        admin = await asyncpg.connect(asyncpg_dsn(db))
        await admin.execute(
            "SELECT pg_terminate_backend($1)",
            c._conn.get_server_pid(),  # type: ignore[union-attr]
        )
        await admin.close()
        await _wait(lost)
        assert c.slot is None
        await a.release()
        await c.release()
    finally:
        await db.close()
