"""Ingest's data kinds for retention (:mod:`linewatch.runtime.retention`).

Telemetry and verdicts: day partitions dropped on PostgreSQL, batches on SQLite; a curve
whose verdict is not ok or labelled, and that verdict, are kept ``flagged_days``. Dead
letters by receive time; alarms once cleared, by when they were raised.
"""

from __future__ import annotations

import sqlalchemy as sa

from linewatch.runtime.db import Database
from linewatch.runtime.retention import RetentionRunner, Sweep
from linewatch_ingest.config import IngestRetention

__all__ = ["LABEL_TABLE", "TABLES", "ingest_retention", "ingest_sweeps"]

LABEL_TABLE = "ingest_verdict_label"
"""Labels of verdicts (``verdict_id`` primary key), when the labelling feature made it."""
TABLES = ("ingest_telemetry", "ingest_verdict", "ingest_deadletter", "ingest_alarm")


async def _has_labels(db: Database) -> bool:
    async with db.connect() as conn:
        return await conn.run_sync(lambda c: sa.inspect(c).has_table(LABEL_TABLE))


async def ingest_sweeps(db: Database, cfg: IngestRetention) -> list[Sweep]:
    """The sweeps, in order (curves before the verdicts that keep them)."""
    # SQL of the code's own table names only; the cutoffs are bound parameters.
    labels = " OR {}.id IN (SELECT verdict_id FROM ingest_verdict_label)"
    has = await _has_labels(db)
    flagged_curve = (
        "EXISTS (SELECT 1 FROM ingest_verdict v WHERE v.rule = r.rule AND v.msg_id = r.msg_id "  # noqa: S608
        "AND v.device_id = r.device_id AND v.ts_ms = r.ts_ms AND (NOT v.ok"
        + (labels.format("v") if has else "")
        + "))"
    )
    flagged_verdict = "(NOT r.ok" + (labels.format("r") if has else "") + ")"
    keep = cfg.flagged_days
    return [
        Sweep(
            "telemetry", "ingest_telemetry", "ts_ms", cfg.telemetry_days, flagged_curve, keep, True
        ),
        Sweep("verdicts", "ingest_verdict", "ts_ms", cfg.verdict_days, flagged_verdict, keep, True),
        Sweep("dead_letters", "ingest_deadletter", "received_at_ms", cfg.deadletter_days),
        Sweep(
            "alarms",
            "ingest_alarm",
            "raised_at_ms",
            cfg.alarm_days,
            only_where="r.state = 'cleared'",
        ),
    ]


def ingest_retention(db: Database, cfg: IngestRetention) -> RetentionRunner:
    """The runner the service starts (and the storage API uses)."""

    async def sweeps() -> list[Sweep]:
        return await ingest_sweeps(db, cfg)

    return RetentionRunner("ingest", db, cfg, sweeps, TABLES)
