"""Quality-loop benchmark: backtest curves/s from the archive and export rows/s with RSS.

``python -m bench.bench_quality [--quick] [--rows N]``. For SQLite (a file) and
PostgreSQL (127.0.0.1:5432, user postgres, a scratch database), an archive of N curves
(256 samples, rule ``demo``) is written through :meth:`IngestStore.archive`, then:

* **backtest, archive read**: :func:`linewatch_ingest.backtest.read_pages` with the
  curves (pages of 20,000 rows, curves joined to verdicts and labels): curves/s;
* **backtest, alarm replay**: a full :class:`Backtest` replaying an alarm rule over the
  archived verdicts (no scoring): curves/s;
* **backtest, end to end**: a :class:`Backtest` scoring every curve with the shipped CNN
  through the real inference service (in-process, on this machine's CPUs): curves/s on a
  slice of the archive (the CNN is the bound, so it is reported separately);
* **export**: the curves dataset as CSV and as Parquet, with the process's RSS sampled
  per chunk: rows/s and the peak RSS rise over the baseline, at N/4 and at N rows (flat
  memory: the rise does not grow with the rows).

Figures are printed and written to ``bench/results/quality.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from linewatch_inference.app import InferenceServer
from linewatch_inference.config import InferenceConfig
from linewatch_inference.metrics import InferenceMetrics
from linewatch_ingest.backtest import Backtest, read_pages
from linewatch_ingest.config import AlarmRuleConfig
from linewatch_ingest.export import ExportSpec, export_chunks
from linewatch_ingest.inference_client import InferenceClient
from linewatch_ingest.store import IngestStore
from prometheus_client import CollectorRegistry

from linewatch.runtime.db import Database
from linewatch_dev.curves import make_curve
from linewatch_dev.testing import free_port, secured_grpc

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "quality.json"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "lw_bench_quality"
LENGTH = 256

Row = dict[str, Any]


def row(metric: str, value: float, unit: str, note: str = "") -> Row:
    print(f"{metric:55s} {value:14,.1f} {unit} {note}", flush=True)
    return {"benchmark": "quality", "metric": metric, "value": value, "unit": unit, "note": note}


async def fill(store: IngestStore, rows: int) -> None:
    """An archive of ``rows`` curves with verdicts of rule ``demo`` (a few devices)."""
    rng = np.random.default_rng(7)
    kinds = ["ok", "ok", "ok", "spike", "drift", "noise", "step"]
    shapes = [make_curve(k, length=LENGTH, rng=rng).astype("<f4").tobytes() for k in kinds * 4]
    batch = 4096
    t0 = 1_700_000_000_000
    for start in range(0, rows, batch):
        tele, verdicts = [], []
        for i in range(start, min(rows, start + batch)):
            k = i % len(shapes)
            label = kinds[k % len(kinds)]
            dev, ts, msg = f"dev-{i % 16}", t0 + i * 10, f"m{i}"
            tele.append(("demo", msg, dev, "p", ts, "t", shapes[k], "{}"))
            verdicts.append(
                ("demo", msg, dev, "p", ts, "curve-quality", "1", label, label == "ok", "{}",
                 1.0, "", "t", "{}")
            )  # fmt: skip
        await store.archive(tele, verdicts)


async def pg_database() -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
        await conn.execute(f"CREATE DATABASE {PG_DB}")
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_DB}"


async def drop_pg() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
    finally:
        await conn.close()


async def export_rss(store: IngestStore, fmt: str, rows: int) -> tuple[float, float]:
    """rows/s and peak RSS rise (MiB) of exporting the first ``rows`` curves."""
    gc.collect()
    proc = psutil.Process()
    base = peak = proc.memory_info().rss
    spec = ExportSpec(kind="curves", format=fmt, end_ms=1_700_000_000_000 + rows * 10)  # type: ignore[arg-type]
    size = 0
    began = time.perf_counter()
    async for chunk in export_chunks(store, spec):
        size += len(chunk)
        peak = max(peak, proc.memory_info().rss)
    seconds = time.perf_counter() - began
    return rows / seconds, (peak - base) / 2**20


async def bench_db(name: str, url: str, rows: int, e2e_rows: int, target: str) -> list[Row]:
    out: list[Row] = []
    db = Database(url)
    store = IngestStore(db)
    await store.create()
    began = time.perf_counter()
    await fill(store, rows)
    note = f"{rows:,} curves of {LENGTH} samples"
    out.append(
        row(f"{name}: archive write", rows / (time.perf_counter() - began), "curves/s", note)
    )

    began = time.perf_counter()
    n = 0
    async for page in read_pages(store, "demo", None, None):
        n += len(page.ids)
    out.append(
        row(f"{name}: backtest archive read", n / (time.perf_counter() - began), "curves/s", note)
    )

    alarm = AlarmRuleConfig(threshold=3, window_s=60)
    report = await Backtest(
        store, None, rule="demo", model="curve-quality", model_version="", alarm=alarm
    ).run()
    out.append(row(f"{name}: backtest alarm replay", report.curves_per_s, "curves/s", note))

    client = InferenceClient(target, client=secured_grpc(port=0).client, timeout_s=120)
    await client.start()
    try:
        e2e_end = 1_700_000_000_000 + e2e_rows * 10
        report = await Backtest(
            store, client, rule="demo", model="curve-quality", model_version="1",
            alarm=None, end_ms=e2e_end,
        ).run()  # fmt: skip
        out.append(
            row(f"{name}: backtest end to end (CNN)", report.curves_per_s, "curves/s",
                f"{report.curves:,} curves scored by the real inference service")
        )  # fmt: skip
    finally:
        await client.close()

    for fmt in ("csv", "parquet"):
        await export_rss(store, fmt, 1000)  # warm up: imports, first buffers
        for part in (rows // 4, rows):
            rate, rss = await export_rss(store, fmt, part)
            out.append(row(f"{name}: export {fmt} {part:,} rows", rate, "rows/s"))
            out.append(row(f"{name}: export {fmt} {part:,} rows peak RSS rise", rss, "MiB"))
    await db.close()
    return out


async def main(rows: int, e2e_rows: int) -> list[Row]:
    out: list[Row] = []
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = InferenceServer(
            InferenceConfig(
                grpc=secured_grpc(port=port, grace_s=0.2),
                model_dir=ROOT / "models",
                data_dir=Path(tmp) / "inference",
            ),
            metrics=InferenceMetrics(CollectorRegistry()),
        )
        await server.start()
        try:
            target = f"127.0.0.1:{port}"
            sqlite_url = f"sqlite+aiosqlite:///{Path(tmp) / 'ingest.db'}"
            out += await bench_db("SQLite", sqlite_url, rows, e2e_rows, target)
            pg = await pg_database()
            if pg is None:
                print("PostgreSQL at 127.0.0.1:5432 does not answer: skipped")
            else:
                try:
                    out += await bench_db("PostgreSQL", pg, rows, e2e_rows, target)
                finally:
                    await drop_pg()
        finally:
            await server.stop()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 curves")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--e2e-rows", type=int, default=20_000)
    args = parser.parse_args()
    rows = 20_000 if args.quick else args.rows
    e2e = min(rows, 5_000 if args.quick else args.e2e_rows)
    results = asyncio.run(main(rows, e2e))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
