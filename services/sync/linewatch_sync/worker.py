"""The download loop: claim due jobs, download with bounded concurrency, write back.

One dispatcher claims at most as many jobs as there are free download slots, so the
number of jobs this process holds in ``downloading`` never exceeds ``concurrency``.
``concurrency`` worker tasks download them; one writer records the outcomes in batches
(one transaction for many jobs). On stop, jobs claimed but not finished are handed back
to the queue; after a crash, :meth:`JobStore.recover` does the same at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from linewatch_sync.downloader import Downloader
from linewatch_sync.store import JobRow, JobStore, Outcome

__all__ = ["SyncWorker"]

log = logging.getLogger(__name__)

_WRITE_BATCH = 256


class SyncWorker:
    """Runs the queue for one process."""

    def __init__(
        self,
        *,
        store: JobStore,
        downloader: Downloader,
        concurrency: int,
        poll_interval_s: float,
    ) -> None:
        self.store = store
        self.downloader = downloader
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._jobs: asyncio.Queue[JobRow] = asyncio.Queue(maxsize=concurrency)
        self._outcomes: asyncio.Queue[Outcome] = asyncio.Queue(maxsize=concurrency * 2)
        self._held: set[str] = set()
        self._min_batch = max(1, concurrency // 4)

    def wake(self) -> None:
        """New work was queued: look at the queue now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Download until ``stop`` is set, then hand unfinished jobs back."""
        recovered = await self.store.recover()
        if recovered:
            log.info("requeued interrupted jobs", extra={"fields": {"jobs": recovered}})
        tasks: list[asyncio.Task[None]] = []
        try:
            async with asyncio.TaskGroup() as group:
                tasks.append(group.create_task(self._dispatch()))
                tasks.extend(
                    group.create_task(self._download(slot)) for slot in range(self.concurrency)
                )
                tasks.append(group.create_task(self._write()))
                await stop.wait()
                for task in tasks:
                    task.cancel()
        finally:
            await self._drain()

    async def _dispatch(self) -> None:
        while True:
            self._wake.clear()
            free = self.concurrency - len(self._held)
            claimed: list[JobRow] = []
            # Claim in batches (a quarter of the slots) rather than one job per finished
            # download: one statement for many jobs.
            if free >= self._min_batch or (free > 0 and len(self._held) < self._min_batch):
                try:
                    claimed = await self.store.claim(free)
                except Exception:
                    log.exception("claiming jobs failed; retrying")
                    await asyncio.sleep(self.poll_interval_s)
                    continue
            for job in claimed:
                self._held.add(job.id)
                await self._jobs.put(job)
            if claimed and len(self._held) < self.concurrency:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval_s):
                    await self._wake.wait()

    async def _download(self, slot: int) -> None:
        while True:
            job = await self._jobs.get()
            # the file being written is never evicted by the cache quota
            with self.downloader.cache.lease(job.cache_path):
                outcome = await self.downloader.download(job, slot=slot)
            await self._outcomes.put(outcome)

    async def _write(self) -> None:
        while True:
            batch = [await self._outcomes.get()]
            while len(batch) < _WRITE_BATCH and not self._outcomes.empty():
                batch.append(self._outcomes.get_nowait())
            while True:
                try:
                    await self.store.finish(batch)
                    break
                except Exception:
                    log.exception("recording download outcomes failed; retrying")
                    await asyncio.sleep(self.poll_interval_s)
            for outcome in batch:
                self._held.discard(outcome.job_id)
            self._wake.set()

    async def _drain(self) -> None:
        """Record finished outcomes and release the rest (best effort, at shutdown)."""
        batch: list[Outcome] = []
        while not self._outcomes.empty():
            batch.append(self._outcomes.get_nowait())
        try:
            if batch:
                await self.store.finish(batch)
                for outcome in batch:
                    self._held.discard(outcome.job_id)
            if self._held:
                await self.store.release(sorted(self._held))
                self._held.clear()
        except Exception:
            log.exception("could not hand jobs back; they return when their lease expires")
