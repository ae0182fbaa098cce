"""ota's data kinds for retention (:mod:`linewatch.runtime.retention`)."""

from __future__ import annotations

from linewatch.runtime.db import Database
from linewatch.runtime.retention import RetentionRunner, Sweep
from linewatch_ota.config import OtaRetention

__all__ = ["TABLES", "ota_retention", "ota_sweeps"]

TABLES = ("ota_commands", "ota_device_updates", "ota_rollouts")


def ota_sweeps(cfg: OtaRetention) -> list[Sweep]:
    """The sweeps (SQL of the code's own names; the cutoffs are bound)."""
    return [
        Sweep("commands", "ota_commands", "created_at", cfg.command_days, pk="id",
              only_where="r.state IN ('succeeded', 'failed', 'timed_out', 'expired', "
              "'cancelled')", seconds=True),
        Sweep("device_updates", "ota_device_updates", "updated_at", cfg.update_days,
              only_where="r.state IN ('succeeded', 'failed', 'cancelled') AND r.rollout_id IN "
              "(SELECT id FROM ota_rollouts WHERE state IN ('completed', 'cancelled'))",
              seconds=True),
    ]  # fmt: skip


def ota_retention(db: Database, cfg: OtaRetention) -> RetentionRunner:
    """The runner the service starts (and the storage API uses)."""

    async def sweeps() -> list[Sweep]:
        return ota_sweeps(cfg)

    return RetentionRunner("ota", db, cfg, sweeps, TABLES)
