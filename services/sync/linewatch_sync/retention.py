"""sync's data kinds for retention (:mod:`linewatch.runtime.retention`)."""

from __future__ import annotations

from linewatch.runtime.db import Database
from linewatch.runtime.retention import RetentionRunner, Sweep
from linewatch_sync.config import SyncRetention

__all__ = ["TABLES", "sync_retention", "sync_sweeps"]

TABLES = ("sync_jobs", "sync_rejections")


def sync_sweeps(cfg: SyncRetention) -> list[Sweep]:
    """The sweeps (SQL of the code's own names; the cutoffs are bound)."""
    return [
        Sweep("sync_jobs", "sync_jobs", "updated_at", cfg.dead_job_days,
              only_where="r.state = 'dead'", seconds=True),
        Sweep("sync_rejections", "sync_rejections", "created_at", cfg.rejection_days,
              seconds=True),
    ]  # fmt: skip


def sync_retention(db: Database, cfg: SyncRetention) -> RetentionRunner:
    """The runner the service starts (and the storage API uses)."""

    async def sweeps() -> list[Sweep]:
        return sync_sweeps(cfg)

    return RetentionRunner("sync", db, cfg, sweeps, TABLES)
