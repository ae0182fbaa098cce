"""Retention benchmark: drop/delete N archived curves while the archive takes 2,000 msg/s.

On each database (SQLite file, PostgreSQL) the ingest schema is migrated to head, then
``--curves`` curves (1 KB of samples each, plus a verdict; 10 % not ok) are written over
ten days 40-49 days ago. The load is ingest's archive write path (``IngestStore.archive``,
what the pipeline's archive writer calls): batches of 100 curves and 100 verdicts at
``--rate`` curves/s, latency of each batch's commit. p99 is measured for 10 s before,
then during one retention pass (telemetry and verdicts 30 days, not-ok kept 365 days):
PostgreSQL drops the ten day partitions (the not-ok rows moved to the default
partition), SQLite deletes in batches of ``batch_rows`` with incremental vacuum. Database
size before and after. Figures are printed, never asserted.

    .venv/bin/python -m bench.bench_retention                       # 1,000,000 curves
    .venv/bin/python -m bench.bench_retention --curves 200000 --db sqlite
"""

# ruff: noqa: S608  (the seed SQL is built from integers only)
from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import sqlalchemy as sa
from linewatch_ingest.config import IngestRetention
from linewatch_ingest.retention import ingest_retention
from linewatch_ingest.store import IngestStore

from linewatch.runtime import partitions
from linewatch.runtime.db import Database
from linewatch.runtime.retention import DAY_MS, database_bytes

RESULTS = Path(__file__).parent / "results" / "retention.json"
PG = os.environ.get("LINEWATCH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH = 100
SAMPLES = b"\x00\x00\x80\x3f" * 256  # 256 float32 samples: 1 KB
NOW = int(time.time() * 1000)


def _seed_sql(sqlite: bool, n: int) -> list[str]:
    start = NOW - 49 * DAY_MS
    step = max(1, (10 * DAY_MS) // n)
    if sqlite:
        series = (
            f"WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {n - 1}) "
        )
        blob, src, ok = "randomblob(1024)", "s", "(i % 10 != 0)"
    else:
        series = ""
        blob = "convert_to(repeat(md5(i::text), 32), 'UTF8')"
        src, ok = f"generate_series(0, {n - 1}) AS s(i)", "(i % 10 != 0)"
    ts = f"{start} + i * {step}"
    return [
        f"{series}INSERT INTO ingest_telemetry (rule, msg_id, device_id, point, ts_ms, topic, "
        f"samples, attrs) SELECT 'bench', 'm' || i, 'd' || (i % 50), 'p', {ts}, 't', {blob}, "
        f"'{{}}' FROM {src}",
        f"{series}INSERT INTO ingest_verdict (rule, msg_id, device_id, point, ts_ms, model, "
        f"model_version, label, ok, scores, latency_ms, trace_id, topic, attrs) SELECT "
        f"'bench', 'm' || i, 'd' || (i % 50), 'p', {ts}, 'm', '1', 'x', {ok}, '{{}}', 1.0, '', "
        f"'t', '{{}}' FROM {src}",
    ]


async def _load(store: IngestStore, rate: float, stop: asyncio.Event, lat: list[float]) -> None:
    """Archive batches at ``rate`` curves/s (fixed schedule) until ``stop``."""
    interval = BATCH / rate
    seq = 0
    next_at = time.perf_counter()
    while not stop.is_set():
        ts = int(time.time() * 1000)
        tel, ver = [], []
        for _ in range(BATCH):
            seq += 1
            key = ("bench", f"live-{seq}", f"d{seq % 50}", "p", ts)
            tel.append((*key, "t", SAMPLES, "{}"))
            ver.append((*key, "m", "1", "x", True, "{}", 1.0, "", "t", "{}"))
        started = time.perf_counter()
        await store.archive(tel, ver)
        lat.append((time.perf_counter() - started) * 1000)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def run_one(url: str, curves: int, rate: float, batch_rows: int) -> dict[str, Any]:
    """One database: seed, load before, load during retention; the figures."""
    db = Database(url, pool_size=4)
    store = IngestStore(db)
    await store.create()
    cfg = IngestRetention(
        telemetry_days=30, verdict_days=30, flagged_days=365, batch_rows=batch_rows, pause_s=0.005
    )
    runner = ingest_retention(db, cfg)
    started = time.perf_counter()
    async with db.connect() as conn:
        if not db.is_sqlite:
            days = list(range((NOW - 50 * DAY_MS) // DAY_MS, NOW // DAY_MS + 2))
            for t in ("ingest_telemetry", "ingest_verdict"):
                await conn.run_sync(partitions.ensure_partitions, t, NOW, 7, days)
        for statement in _seed_sql(db.is_sqlite, curves):
            await conn.execute(sa.text(statement))
    seed_s = time.perf_counter() - started
    if db.is_sqlite:
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        async with db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert raw.driver_connection is not None
            await raw.driver_connection.execute("VACUUM ANALYZE")
    size_before = await database_bytes(db)
    stop = asyncio.Event()
    before: list[float] = []
    load = asyncio.create_task(_load(store, rate, stop, before))
    await asyncio.sleep(10)
    stop.set()
    await load
    stop = asyncio.Event()
    during: list[float] = []
    load = asyncio.create_task(_load(store, rate, stop, during))
    started = time.perf_counter()
    results = await runner.run_once(now_ms=NOW)
    took = time.perf_counter() - started
    stop.set()
    await load
    size_after = await database_bytes(db)
    by_kind = {r.kind: r for r in results}
    await db.close()
    return {
        "database": "sqlite" if url.startswith("sqlite") else "postgresql",
        "curves": curves,
        "seed_s": seed_s,
        "p99_before_ms": _p(before, 99),
        "p99_during_ms": _p(during, 99),
        "p50_before_ms": _p(before, 50),
        "p50_during_ms": _p(during, 50),
        "achieved_rate": len(during) * BATCH / took if took else 0.0,
        "retention_s": took,
        "rows_deleted": by_kind["telemetry"].rows_deleted + by_kind["verdicts"].rows_deleted,
        "partitions_dropped": by_kind["telemetry"].partitions_dropped
        + by_kind["verdicts"].partitions_dropped,
        "kept": by_kind["telemetry"].rows_kept + by_kind["verdicts"].rows_kept,
        "size_before_mb": size_before / 2**20,
        "size_after_mb": size_after / 2**20,
    }


async def _pg_url() -> tuple[str, str]:
    name = f"lwbench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    base = PG.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}", name


async def _pg_drop(name: str) -> None:
    conn = await asyncpg.connect(PG)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every database asked for, one after the other."""
    out = []
    for kind in args.db:
        if kind == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{tmp}/ingest.db"
                out.append(await run_one(url, args.curves, args.rate, args.batch_rows))
        else:
            url, name = await _pg_url()
            try:
                out.append(await run_one(url, args.curves, args.rate, args.batch_rows))
            finally:
                await _pg_drop(name)
    return out


def main() -> None:
    """Run, print the table, write bench/results/retention.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--batch-rows", type=int, default=5000)
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    runs = asyncio.run(main_async(args))
    head = (
        f"{'database':<11} {'curves':>9} {'p99 before':>11} {'p99 during':>11} {'x':>5} "
        f"{'retention':>10} {'deleted':>9} {'dropped':>8} {'kept':>7} "
        f"{'size before':>12} {'size after':>11}"
    )
    print(head)
    rows: list[dict[str, Any]] = []
    for r in runs:
        ratio = r["p99_during_ms"] / r["p99_before_ms"] if r["p99_before_ms"] else float("nan")
        print(
            f"{r['database']:<11} {r['curves']:>9,} {r['p99_before_ms']:>9.1f}ms "
            f"{r['p99_during_ms']:>9.1f}ms {ratio:>5.2f} {r['retention_s']:>9.1f}s "
            f"{r['rows_deleted']:>9,} {r['partitions_dropped']:>8} {r['kept']:>7,} "
            f"{r['size_before_mb']:>10.0f}MB {r['size_after_mb']:>9.0f}MB"
        )
        db = r["database"]
        note = f"{r['curves']:,} curves, load {args.rate:.0f} curves/s, archive batches of {BATCH}"
        rows += [
            {"benchmark": f"retention-{db}", "metric": m, "value": r[k], "unit": u, "note": note}
            for m, k, u in (
                ("archive p99 before", "p99_before_ms", "ms"),
                ("archive p99 during", "p99_during_ms", "ms"),
                ("retention time", "retention_s", "s"),
                ("rows deleted", "rows_deleted", "rows"),
                ("partitions dropped", "partitions_dropped", "partitions"),
                ("rows kept (not ok)", "kept", "rows"),
                ("size before", "size_before_mb", "MB"),
                ("size after", "size_after_mb", "MB"),
                ("load achieved during", "achieved_rate", "curves/s"),
            )
        ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
