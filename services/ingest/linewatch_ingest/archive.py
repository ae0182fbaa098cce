"""Group commit of archive rows: one writer, one transaction for many batches.

Every rule's batch workers hand their telemetry and verdict rows to the
:class:`ArchiveWriter` and wait for the commit. A single task takes whatever is waiting
(up to ``max_rows``) and writes it in one transaction. On SQLite this avoids writers
queueing on the database lock (whose busy handler sleeps); on PostgreSQL it turns many
small transactions into a few large multi-row inserts. The writer holds one connection
across transactions (no pool checkout, ping and reset per batch; a failed one is dropped
and opened again). The queue is bounded, so a slow database slows the pipeline instead of
growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from linewatch.runtime.errors import Unavailable
from linewatch_ingest.store import IngestStore

__all__ = ["ArchiveWriter"]


@dataclass(slots=True)
class _Job:
    telemetry: Sequence[tuple[Any, ...]]
    verdicts: Sequence[tuple[Any, ...]]
    done: asyncio.Future[None]


class ArchiveWriter:
    """Writes archive rows from every pipeline in few, large transactions."""

    def __init__(self, store: IngestStore, *, max_rows: int = 4096, queue_size: int = 256) -> None:
        self._store = store
        self._max_rows = max_rows
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="archive-writer")

    async def close(self) -> None:
        """Stop the writer; jobs still waiting fail with Unavailable."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.done.done():
                job.done.set_exception(Unavailable("archive writer stopped"))

    async def write(
        self, telemetry: Sequence[tuple[Any, ...]], verdicts: Sequence[tuple[Any, ...]]
    ) -> None:
        """Archive rows; returns once they are committed.

        Raises:
            Exception: the database error of the failed transaction (the caller retries).
        """
        job = _Job(telemetry, verdicts, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        await job.done

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._conn.close())
                self._conn = None

    async def _connection(self) -> AsyncConnection:
        """The writer's own connection, held across transactions (opened again after a
        failure)."""
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = await self._store.db.engine.connect()
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    async def _loop(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            rows = len(jobs[0].telemetry) + len(jobs[0].verdicts)
            while rows < self._max_rows and not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                rows += len(job.telemetry) + len(job.verdicts)
            telemetry = [row for job in jobs for row in job.telemetry]
            verdicts = [row for job in jobs for row in job.verdicts]
            try:
                await self._store.archive_on(await self._connection(), telemetry, verdicts)
            except asyncio.CancelledError:
                for job in jobs:
                    if not job.done.done():
                        job.done.set_exception(Unavailable("archive writer stopped"))
                raise
            except Exception as exc:
                await self._drop_connection()  # a fresh one for the retry
                for job in jobs:
                    if not job.done.done():
                        job.done.set_exception(exc)
            else:
                for job in jobs:
                    if not job.done.done():
                        job.done.set_result(None)
