"""Retention: delete what is older than its TTL, in small steps, and measure storage.

Each service lists its data kinds as :class:`Sweep` s (table, time column, TTL) and runs
:func:`sweep` on a schedule (:class:`RetentionConfig`). On PostgreSQL a partitioned
archive drops whole day partitions first (:mod:`linewatch.runtime.partitions`); what is
left (plain tables, the default partition, rows kept longer) is deleted in batches of
``batch_rows`` rows, one short transaction each, with a pause between batches so the
writers are never blocked for long. SQLite then gives the freed pages back with
``PRAGMA incremental_vacuum`` (new databases are created with ``auto_vacuum=INCREMENTAL``;
an older file is converted by a full :func:`vacuum`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from linewatch.runtime import partitions
from linewatch.runtime.db import Database

__all__ = [
    "DAY_MS",
    "RetentionConfig",
    "RetentionRunner",
    "Sweep",
    "SweepResult",
    "TableSize",
    "database_bytes",
    "sweep",
    "table_sizes",
    "vacuum",
]

log = logging.getLogger(__name__)
DAY_MS = partitions.DAY_MS


class RetentionConfig(BaseModel):
    """When and how fast retention runs (a service adds its TTLs; 0 days: keep forever)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    interval_s: float = Field(default=3600.0, gt=0)
    """Time between runs (the first run is at start)."""
    batch_rows: int = Field(default=2000, ge=1, le=1_000_000)
    """Rows per delete statement (one transaction each)."""
    pause_s: float = Field(default=0.01, ge=0, le=10)
    """Pause between two batches (gives the writers the database)."""
    partition_days_ahead: int = Field(default=7, ge=1, le=366)
    """PostgreSQL: day partitions created ahead of today."""


@dataclass(frozen=True)
class Sweep:
    """One data kind: rows of ``table`` whose ``ts_column`` is older than ``ttl_days``.

    ``keep_where`` (SQL on the table's rows, alias ``r``) marks rows kept longer, until
    ``keep_days`` (when larger than ``ttl_days``). ``partitioned``: a day-partitioned
    archive on PostgreSQL. ``pk``: the key column the batches select.
    """

    kind: str
    table: str
    ts_column: str
    ttl_days: float
    keep_where: str = ""
    keep_days: float = 0
    partitioned: bool = False
    pk: str = "id"
    #: Rows only (e.g. cleared alarms, finished jobs): SQL on alias ``r``.
    only_where: str = ""
    #: The time column holds epoch seconds (float), not milliseconds.
    seconds: bool = False


@dataclass
class SweepResult:
    """What one sweep did."""

    kind: str
    rows_deleted: int = 0
    partitions_dropped: int = 0
    rows_kept: int = 0
    seconds: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TableSize:
    """A table's rows and bytes on disk (PostgreSQL: with indexes and partitions)."""

    table: str
    rows: int
    bytes: int
    partitions: int = 0


def _cutoff(now_ms: int, days: float) -> int:
    return now_ms - int(days * DAY_MS)


async def _delete_batches(
    db: Database, s: Sweep, where: str, params: dict[str, int], cfg: RetentionConfig
) -> int:
    total = 0
    stmt = sa.text(
        f"DELETE FROM {s.table} WHERE {s.pk} IN "  # noqa: S608
        f"(SELECT r.{s.pk} FROM {s.table} r WHERE {where} LIMIT {cfg.batch_rows})"
    )
    while True:
        async with db.connect() as conn:
            result = await conn.execute(stmt, params)
        n = int(result.rowcount or 0)
        total += n
        if n < cfg.batch_rows:
            return total
        await asyncio.sleep(cfg.pause_s)


async def sweep(
    db: Database, sweeps: Sequence[Sweep], cfg: RetentionConfig, now_ms: int | None = None
) -> list[SweepResult]:
    """Apply every TTL once (``now_ms``: the clock, for tests). Returns what each did."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    out: list[SweepResult] = []
    for s in sweeps:
        if s.ttl_days <= 0:
            out.append(SweepResult(s.kind))
            continue
        started = time.perf_counter()
        res = SweepResult(s.kind)
        cutoff = _cutoff(now, s.ttl_days)
        keep = s.keep_where if s.keep_days > s.ttl_days else ""
        if s.partitioned and not db.is_sqlite:
            async with db.connect() as conn:
                expired = await conn.run_sync(partitions.expired_partitions, s.table, cutoff)
            for part in expired:  # one short transaction each: the parent is locked
                async with db.connect() as conn:
                    res.rows_kept += await conn.run_sync(
                        partitions.drop_partition, s.table, part, keep
                    )
                res.partitions_dropped += 1
                await asyncio.sleep(cfg.pause_s)
            async with db.connect() as conn:
                await conn.run_sync(
                    partitions.ensure_partitions, s.table, now, cfg.partition_days_ahead
                )
        scale = 1000 if s.seconds else 1
        where = f"r.{s.ts_column} < :cutoff"
        params = {"cutoff": cutoff // scale}
        if keep:
            where = f"({where} AND NOT ({keep}) OR r.{s.ts_column} < :keep_cutoff)"
            params["keep_cutoff"] = _cutoff(now, s.keep_days) // scale
        if s.only_where:
            where = f"{where} AND ({s.only_where})"
        res.rows_deleted = await _delete_batches(db, s, where, params, cfg)
        res.seconds = time.perf_counter() - started
        out.append(res)
        if res.rows_deleted or res.partitions_dropped:
            log.info(
                "retention %s: %d partitions dropped, %d rows deleted, %d kept longer (%.1f s)",
                s.kind, res.partitions_dropped, res.rows_deleted, res.rows_kept, res.seconds,
            )  # fmt: skip
    if db.is_sqlite and any(r.rows_deleted for r in out):
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA incremental_vacuum")
            await conn.commit()
    return out


async def _pg_sizes(conn: AsyncConnection, tables: Sequence[str]) -> list[TableSize]:
    out: list[TableSize] = []
    for t in tables:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT coalesce(sum(pg_total_relation_size(relid)), 0), "
                    "coalesce(sum(c.reltuples) FILTER (WHERE c.reltuples > 0), 0), "
                    "count(*) FILTER (WHERE level > 0) "
                    "FROM pg_partition_tree(CAST(:t AS regclass)) "
                    "JOIN pg_class c ON c.oid = relid"
                ),
                {"t": t},
            )
        ).one()
        out.append(TableSize(t, int(row[1]), int(row[0]), int(row[2])))
    return out


async def table_sizes(db: Database, tables: Sequence[str]) -> list[TableSize]:
    """Rows and bytes of each table (PostgreSQL: planner estimates of rows; SQLite:
    exact counts, and bytes from ``dbstat`` where SQLite has it, else 0)."""
    async with db.connect() as conn:
        if not db.is_sqlite:
            return await _pg_sizes(conn, tables)
        out: list[TableSize] = []
        for t in tables:
            rows = (await conn.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar_one()  # noqa: S608
            try:
                size = (
                    await conn.execute(
                        sa.text("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = :t"),
                        {"t": t},
                    )
                ).scalar_one()
            except sa.exc.OperationalError:
                size = 0
            out.append(TableSize(t, int(rows), int(size)))
        return out


async def database_bytes(db: Database) -> int:
    """The whole database's size on disk (SQLite: the file's pages in use)."""
    async with db.connect() as conn:
        if db.is_sqlite:
            count = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
            free = (await conn.exec_driver_sql("PRAGMA freelist_count")).scalar_one()
            size = (await conn.exec_driver_sql("PRAGMA page_size")).scalar_one()
            return int((count - free) * size)
        return int(
            (
                await conn.execute(sa.text("SELECT pg_database_size(current_database())"))
            ).scalar_one()
        )


async def vacuum(db: Database) -> None:
    """Give free space back: SQLite ``VACUUM`` (and switch to incremental auto-vacuum),
    PostgreSQL ``VACUUM (ANALYZE)`` (space reused, statistics fresh)."""
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        if db.is_sqlite:
            await conn.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
            await conn.commit()
            await conn.exec_driver_sql("VACUUM")
        else:
            driver = raw.driver_connection
            assert driver is not None
            await driver.execute("VACUUM (ANALYZE)")


class RetentionRunner:
    """A service's retention: its sweeps on a schedule, one run at a time, with metrics."""

    def __init__(
        self,
        service: str,
        db: Database,
        cfg: RetentionConfig,
        sweeps: Callable[[], Awaitable[Sequence[Sweep]]],
        tables: Sequence[str],
    ) -> None:
        self.service = service
        self.db = db
        self.cfg = cfg
        self._sweeps = sweeps
        self.tables = tuple(tables)
        self.lock = asyncio.Lock()
        self.last_run_ms = 0
        self.last_results: list[SweepResult] = []

    async def run_once(self, now_ms: int | None = None) -> list[SweepResult]:
        """One pass over every data kind (waits for a pass in progress)."""
        async with self.lock:
            started = time.perf_counter()
            results = await sweep(self.db, await self._sweeps(), self.cfg, now_ms)
            for r in results:
                ROWS_DELETED.labels(self.service, r.kind).inc(r.rows_deleted)
                PARTITIONS_DROPPED.labels(self.service, r.kind).inc(r.partitions_dropped)
            RUN_SECONDS.labels(self.service).observe(time.perf_counter() - started)
            self.last_run_ms = int(time.time() * 1000)
            LAST_RUN.labels(self.service).set(self.last_run_ms / 1000)
            self.last_results = results
            return results

    async def sizes(self) -> list[TableSize]:
        """Rows and bytes of the service's tables (and the metrics of them)."""
        out = await table_sizes(self.db, self.tables)
        for s in out:
            TABLE_BYTES.labels(self.service, s.table).set(s.bytes)
            TABLE_ROWS.labels(self.service, s.table).set(s.rows)
        return out

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Run every ``interval_s`` until ``stop`` is set or cancelled (a failed pass is
        logged, not fatal)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                if self.cfg.enabled:
                    await self.run_once()
                await self.sizes()
            except Exception:
                log.exception("retention pass failed; next in %.0f s", self.cfg.interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.interval_s)


ROWS_DELETED = Counter(
    "linewatch_retention_rows_deleted_total",
    "Rows deleted by retention (batches)",
    ["service", "kind"],
)
PARTITIONS_DROPPED = Counter(
    "linewatch_retention_partitions_dropped_total",
    "Day partitions dropped by retention (PostgreSQL)",
    ["service", "kind"],
)
RUN_SECONDS = Histogram(
    "linewatch_retention_run_seconds",
    "Duration of one retention pass",
    ["service"],
    buckets=(0.1, 1, 10, 60, 300, 1800, 7200),
)
LAST_RUN = Gauge(
    "linewatch_retention_last_run_timestamp_seconds", "When retention last ran", ["service"]
)
TABLE_BYTES = Gauge(
    "linewatch_storage_table_bytes", "Bytes on disk of a table", ["service", "table"]
)
TABLE_ROWS = Gauge(
    "linewatch_storage_table_rows", "Rows of a table (PostgreSQL: estimate)", ["service", "table"]
)
