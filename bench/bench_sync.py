"""Sync benchmark: mirror 100 KB images from a local HTTP server; survive a kill -9.

The sync service and the image server each run as their own process. Two runs:

1. throughput: N URLs enqueued over gRPC, time until all N files are in the cache;
2. crash: 1,000 URLs published over MQTT (JSON and seed formats), the service killed with
   SIGKILL in the middle, restarted; then every file must be complete and byte-identical,
   each URL exactly one job, and no partial file left.

    .venv/bin/python -m bench.bench_sync            # 3,000 images + the crash run
    .venv/bin/python -m bench.bench_sync --quick    # 1,000 images + the crash run (< 60 s)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from linewatch_sync.testing import image_bytes

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch.testing import broker_url, free_port, wait_port
from linewatch.v1 import sync_pb2, sync_pb2_grpc

RESULTS = Path(__file__).parent / "results" / "sync.json"
IMAGE_BYTES = 100 * 1024
CRASH_IMAGES = 1000
TARGET_RATE = 300.0


async def _spawn(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.DEVNULL, env=env
    )


class SyncProcess:
    """The sync service as a child process, with its config in a directory."""

    def __init__(self, workdir: Path, mqtt_url: str, topic: str) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.topic = topic
        config = {
            "log_level": "WARNING",
            "data_dir": str(workdir / "data"),
            "cache_dir": str(workdir / "cache"),
            "grpc": {"port": self.port},
            "mqtt": {"url": mqtt_url, "client_id": f"bench-sync-{uuid.uuid4().hex[:8]}"},
            "topics": [topic],
            "deadletter_topic": "",
            "worker_id": "bench",
            "concurrency": 32,
            "per_host_concurrency": 32,
            "poll_interval_s": 0.1,
        }
        self.config_path = workdir / "sync.yaml"
        self.config_path.write_text(json.dumps(config))
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await _spawn("-m", "linewatch_sync", "--config", str(self.config_path))
        await asyncio.to_thread(wait_port, self.port, 60.0)

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    @property
    def db_path(self) -> Path:
        return self.workdir / "data" / "sync.db"


async def _stats(stub: sync_pb2_grpc.SyncServiceStub) -> sync_pb2.GetCacheStatsResponse:
    stats: sync_pb2.GetCacheStatsResponse = await stub.GetCacheStats(
        sync_pb2.GetCacheStatsRequest(), timeout=10
    )
    return stats


async def _wait_done(stub: sync_pb2_grpc.SyncServiceStub, n: int, timeout: float) -> float:
    start = time.perf_counter()
    async with asyncio.timeout(timeout):
        while (await _stats(stub)).jobs_by_state["done"] < n:  # noqa: ASYNC110 (polls a process)
            await asyncio.sleep(0.02)
    return time.perf_counter() - start


def _verify(cache: Path, host: str, count: int) -> dict[str, int]:
    """Byte-compare every file; count missing, wrong, extra and partial files."""
    missing = wrong = 0
    for i in range(count):
        path = cache / host / "img" / f"{i}.jpg"
        if not path.is_file():
            missing += 1
        elif path.read_bytes() != image_bytes(i, IMAGE_BYTES):
            wrong += 1
    files = [p for p in cache.rglob("*") if p.is_file() and ".partial" not in p.parts]
    partial = list((cache / ".partial").iterdir()) if (cache / ".partial").exists() else []
    return {
        "missing": missing,
        "wrong": wrong,
        "extra": len(files) - (count - missing),
        "partial": len(partial),
    }


async def throughput(mqtt_url: str, base: str, host: str, count: int, work: Path) -> float:
    svc = SyncProcess(work, mqtt_url, f"bench/{uuid.uuid4().hex[:8]}/sync")
    await svc.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            urls = [f"{base}/img/{i}.jpg!thumb" for i in range(count)]
            start = time.perf_counter()
            for i in range(0, count, 1000):
                await stub.EnqueueUrls(sync_pb2.EnqueueUrlsRequest(urls=urls[i : i + 1000]))
            await _wait_done(stub, count, 120)
            elapsed = time.perf_counter() - start
    finally:
        await svc.stop()
    report = await asyncio.to_thread(_verify, work / "cache", host, count)
    if any(report.values()):
        raise SystemExit(f"throughput run left a bad cache: {report}")
    return count / elapsed


async def crash(mqtt_url: str, base: str, host: str, work: Path) -> dict[str, Any]:
    topic = f"bench/{uuid.uuid4().hex[:8]}/sync"
    svc = SyncProcess(work, mqtt_url, topic)
    await svc.start()
    pub = MqttClient(MqttConfig(url=mqtt_url), client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    await pub.connect()
    t0 = time.perf_counter()
    try:
        # Half as JSON documents of 100 URLs, half in the seed's comma-separated format.
        for i in range(0, CRASH_IMAGES, 100):
            urls = [f"{base}/img/{j}.jpg!thumb" for j in range(i, i + 100)]
            if (i // 100) % 2:
                await pub.publish(topic, ",".join(urls))
            else:
                await pub.publish(topic, json.dumps({"urls": urls, "work_id": f"w{i}"}))
    finally:
        await pub.disconnect()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        async with asyncio.timeout(60):
            while (await _stats(stub)).jobs_by_state["done"] < CRASH_IMAGES * 0.4:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    await svc.kill9()
    with contextlib.closing(sqlite3.connect(svc.db_path)) as conn:
        at_kill = dict(
            conn.execute("SELECT state, count(*) FROM sync_jobs GROUP BY state").fetchall()
        )
    parts_at_kill = len(list((work / "cache" / ".partial").glob("*.part")))
    await svc.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            await _wait_done(stub, CRASH_IMAGES, 120)
            stats = await _stats(stub)
    finally:
        await svc.stop()
    total = time.perf_counter() - t0
    with contextlib.closing(sqlite3.connect(svc.db_path)) as conn:
        rows, urls = conn.execute("SELECT count(*), count(DISTINCT url) FROM sync_jobs").fetchone()
    report = await asyncio.to_thread(_verify, work / "cache", host, CRASH_IMAGES)
    return {
        "at_kill": at_kill,
        "parts_at_kill": parts_at_kill,
        "done": stats.jobs_by_state["done"],
        "rows": rows,
        "distinct_urls": urls,
        "seconds": total,
        **report,
    }


async def run(quick: bool) -> list[dict[str, Any]]:
    count = 1000 if quick else 3000
    http_port = free_port()
    server = await _spawn(
        "-m",
        "linewatch_sync.testing",
        "--port",
        str(http_port),
        "--count",
        str(max(count, CRASH_IMAGES)),
        "--size",
        str(IMAGE_BYTES),
    )
    base = f"http://127.0.0.1:{http_port}"
    host = f"127.0.0.1_{http_port}"
    rows: list[dict[str, Any]] = []
    try:
        await asyncio.to_thread(wait_port, http_port, 30.0)
        async with broker_url() as mqtt_url:
            with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
                rate = await throughput(mqtt_url, base, host, count, Path(tmp) / "t")
                print(
                    f"throughput: {count} images of {IMAGE_BYTES // 1024} KB: "
                    f"{rate:,.0f} images/s ({rate * IMAGE_BYTES / 1e6:,.1f} MB/s); "
                    f"target >= {TARGET_RATE:.0f}: {'PASS' if rate >= TARGET_RATE else 'FAIL'}"
                )
                result = await crash(mqtt_url, base, host, Path(tmp) / "c")
            ok = (
                result["done"] == CRASH_IMAGES
                and result["rows"] == result["distinct_urls"] == CRASH_IMAGES
                and not any(result[k] for k in ("missing", "wrong", "extra", "partial"))
            )
            print(
                f"kill -9 with states {result['at_kill']} and {result['parts_at_kill']} partial "
                f"files, restart: {result['done']}/{CRASH_IMAGES} done, {result['rows']} jobs "
                f"for {result['distinct_urls']} URLs, missing {result['missing']}, wrong "
                f"{result['wrong']}, extra {result['extra']}, partial left {result['partial']} "
                f"in {result['seconds']:.1f} s: {'PASS' if ok else 'FAIL'}"
            )
    finally:
        server.send_signal(signal.SIGTERM)
        await server.wait()
    rows.append(
        {
            "benchmark": "sync throughput",
            "metric": "images_per_s",
            "value": rate,
            "unit": "images/s",
            "note": f"{count} x 100 KB, local HTTP server, SQLite",
        }
    )
    rows.append(
        {
            "benchmark": "sync throughput",
            "metric": "mb_per_s",
            "value": rate * IMAGE_BYTES / 1e6,
            "unit": "MB/s",
            "note": f"{count} x 100 KB",
        }
    )
    rows.append(
        {
            "benchmark": "sync kill -9",
            "metric": "intact_files",
            "value": float(CRASH_IMAGES - result["missing"] - result["wrong"]),
            "unit": "files",
            "note": f"of {CRASH_IMAGES}; killed with {result['at_kill']}",
        }
    )
    rows.append(
        {
            "benchmark": "sync kill -9",
            "metric": "duplicate_or_partial",
            "value": float(result["extra"] + result["partial"] + result["rows"] - CRASH_IMAGES),
            "unit": "files",
            "note": "extra files + partial files + duplicate jobs",
        }
    )
    rows.append(
        {
            "benchmark": "sync kill -9",
            "metric": "seconds",
            "value": result["seconds"],
            "unit": "s",
            "note": "publish, kill at 40 %, restart, all done",
        }
    )
    if not ok or rate < TARGET_RATE:
        rows.append(
            {
                "benchmark": "sync",
                "metric": "failed",
                "value": 1.0,
                "unit": "",
                "note": "a target was missed",
            }
        )
    return rows


def main() -> None:
    """Parse arguments, run, write ``bench/results/sync.json``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 images (under 60 s)")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    rows = asyncio.run(run(args.quick))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
