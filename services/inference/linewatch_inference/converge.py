"""Replicas converge on the registry database: every ``registry_poll_s`` each replica
reads the catalog and loads the versions loaded by URL elsewhere (from their verified
blobs), drops the versions unloaded elsewhere, and takes each model's promoted and shadow
version. A short poll works the same on SQLite and PostgreSQL; the tables are a handful of
rows per model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from linewatch.runtime.errors import LinewatchError, NotFound
from linewatch_inference.catalog import Snapshot, VersionRecord
from linewatch_inference.registry import Registry

__all__ = ["Converger"]

log = logging.getLogger("linewatch_inference.registry")


class Converger:
    """Keeps one replica's loaded set equal to the registry database's.

    Args:
        registry: This replica's registry.
        poll_s: Seconds between two reads of the catalog.
    """

    def __init__(self, registry: Registry, *, poll_s: float) -> None:
        self.registry = registry
        self.poll_s = poll_s
        self._failed: dict[tuple[str, str], str] = {}
        """Versions whose blob failed to load here, by the sha256 that failed."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Poll in the background."""
        self._task = asyncio.create_task(self._run(), name="registry-converge")

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registry database not read (%s); retrying", exc)

    async def run_once(self) -> None:
        """Read the catalog once and apply it."""
        reg = self.registry
        async with reg.lock:  # every local change is made with its database write under it
            snapshot = await reg.catalog.snapshot()
            self._drop_gone(snapshot)
            self._apply_models(snapshot)
            wanted = [
                row
                for key, row in snapshot.versions.items()
                if row.kind == "url"
                and row.state == "serving"
                and self._local_sha(key) != row.sha256
                and self._failed.get(key) != row.sha256
            ]
        for row in wanted:
            await self._load(row)
        if wanted:
            async with reg.lock:
                self._apply_models(await reg.catalog.snapshot())

    def _local_sha(self, key: tuple[str, str]) -> str:
        entry = self.registry.index.get(key[0])
        served = entry.versions.get(key[1]) if entry is not None else None
        return served.sha256 if served is not None else ""

    def _drop_gone(self, snapshot: Snapshot) -> None:
        for entry in self.registry.models():
            gone = [
                v
                for v in entry.versions
                if (row := snapshot.versions.get((entry.name, v))) is None or row.state != "serving"
            ]
            if gone:
                log.info(
                    "model unloaded elsewhere",
                    extra={"fields": {"model": entry.name, "versions": gone}},
                )
                self.registry.drop_local(entry, gone)

    def _apply_models(self, snapshot: Snapshot) -> None:
        for name, (promoted, shadow) in snapshot.models.items():
            entry = self.registry.index.get(name)
            if entry is None:
                continue
            entry.promoted = promoted
            entry.shadow = shadow if shadow in entry.versions else ""

    async def _load(self, row: VersionRecord) -> None:
        reg = self.registry
        key = (row.name, row.version)
        try:
            blob = await reg.catalog.blob(row.sha256)
            staged = await asyncio.to_thread(
                reg.stager.from_blob,
                blob,
                url=row.source_url,
                sha256=row.sha256,
                manifest=row.bare_manifest,
                signature=row.signature,
            )
            served = await asyncio.to_thread(reg.open_staged, staged, row.loaded_by)
        except NotFound:
            return  # unloaded or replaced since the snapshot: the next poll sees it
        except LinewatchError as exc:
            self._failed[key] = row.sha256
            reg.record_failure(row.name, row.version, exc.message)
            return
        if row.loaded_at is not None:
            served.loaded_at = row.loaded_at
        served.batcher.start()
        async with reg.lock:
            reg.swap_in(served)
        reg.metrics.loads.labels(outcome="ok").inc()
        log.info(
            "model serving (loaded elsewhere)",
            extra={"fields": {"model": row.name, "version": row.version, "sha256": row.sha256}},
        )
