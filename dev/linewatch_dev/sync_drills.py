"""The sync service as a child process, and the kill -9 drill (tests and benchmarks).

Not used at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch.v1 import sync_pb2, sync_pb2_grpc
from linewatch_dev.sync_testing import image_bytes
from linewatch_dev.testing import TEST_TOKEN, free_port, operator_channel, wait_port

__all__ = [
    "SyncProcess",
    "cache_stats",
    "kill_mid_download",
    "spawn_python",
    "verify_cache",
    "wait_done",
]


async def spawn_python(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """``python *args`` as a child process (stdout discarded)."""
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
            "grpc": {
                "port": self.port,
                "auth": {"callers": [{"name": "drill", "role": "operator", "token": TEST_TOKEN}]},
            },
            "mqtt": {"url": mqtt_url, "client_id": f"drill-sync-{uuid.uuid4().hex[:8]}"},
            "topics": [topic],
            "deadletter_topic": "",
            "worker_id": "drill",
            "concurrency": 32,
            "per_host_concurrency": 32,
            "poll_interval_s": 0.1,
            "allowed_networks": ["127.0.0.0/8"],  # the drill's image server
        }
        self.config_path = workdir / "sync.yaml"
        self.config_path.write_text(json.dumps(config))
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await spawn_python("-m", "linewatch_sync", "--config", str(self.config_path))
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


async def cache_stats(stub: sync_pb2_grpc.SyncServiceStub) -> sync_pb2.GetCacheStatsResponse:
    """The service's cache and job counters."""
    stats: sync_pb2.GetCacheStatsResponse = await stub.GetCacheStats(
        sync_pb2.GetCacheStatsRequest(), timeout=10
    )
    return stats


async def wait_done(stub: sync_pb2_grpc.SyncServiceStub, n: int, timeout: float) -> float:
    """Seconds until ``n`` jobs are done."""
    start = time.perf_counter()
    async with asyncio.timeout(timeout):
        while (await cache_stats(stub)).jobs_by_state["done"] < n:  # noqa: ASYNC110 (polls a process)
            await asyncio.sleep(0.02)
    return time.perf_counter() - start


def verify_cache(cache: Path, host: str, count: int, size: int) -> dict[str, int]:
    """Byte-compare every file; count missing, wrong, extra and partial files."""
    missing = wrong = 0
    for i in range(count):
        path = cache / host / "img" / f"{i}.jpg"
        if not path.is_file():
            missing += 1
        elif path.read_bytes() != image_bytes(i, size):
            wrong += 1
    files = [p for p in cache.rglob("*") if p.is_file() and ".partial" not in p.parts]
    partial = list((cache / ".partial").iterdir()) if (cache / ".partial").exists() else []
    return {
        "missing": missing,
        "wrong": wrong,
        "extra": len(files) - (count - missing),
        "partial": len(partial),
    }


async def kill_mid_download(
    mqtt_url: str, base: str, host: str, work: Path, *, count: int, size: int
) -> dict[str, Any]:
    """Publish ``count`` image URLs over MQTT (half as JSON documents of 100, half in the
    plain comma-separated format), SIGKILL the service once 40 % are done, restart it,
    wait for all; the report counts jobs, distinct URLs and missing, wrong, extra and
    partial files (all must come out right), and the seconds from restart to done."""
    topic = f"drill/{uuid.uuid4().hex[:8]}/sync"
    svc = SyncProcess(work, mqtt_url, topic)
    await svc.start()
    pub = MqttClient(MqttConfig(url=mqtt_url), client_id=f"drill-pub-{uuid.uuid4().hex[:8]}")
    await pub.connect()
    t0 = time.perf_counter()
    try:
        # Half as JSON documents of 100 URLs, half in the plain comma-separated format.
        for i in range(0, count, 100):
            urls = [f"{base}/img/{j}.jpg!thumb" for j in range(i, min(i + 100, count))]
            if (i // 100) % 2:
                await pub.publish(topic, ",".join(urls))
            else:
                await pub.publish(topic, json.dumps({"urls": urls, "work_id": f"w{i}"}))
    finally:
        await pub.disconnect()
    async with operator_channel(f"127.0.0.1:{svc.port}") as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        async with asyncio.timeout(60):
            while (await cache_stats(stub)).jobs_by_state["done"] < count * 0.4:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    await svc.kill9()
    with contextlib.closing(sqlite3.connect(svc.db_path)) as conn:
        at_kill = dict(
            conn.execute("SELECT state, count(*) FROM sync_jobs GROUP BY state").fetchall()
        )
    parts_at_kill = len(list((work / "cache" / ".partial").glob("*.part")))
    await svc.start()
    restarted = time.perf_counter()
    try:
        async with operator_channel(f"127.0.0.1:{svc.port}") as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            await wait_done(stub, count, 120)
            recovered = time.perf_counter() - restarted
            stats = await cache_stats(stub)
    finally:
        await svc.stop()
    total = time.perf_counter() - t0
    with contextlib.closing(sqlite3.connect(svc.db_path)) as conn:
        rows, urls = conn.execute("SELECT count(*), count(DISTINCT url) FROM sync_jobs").fetchone()
    report = await asyncio.to_thread(verify_cache, work / "cache", host, count, size)
    return {
        "at_kill": at_kill,
        "parts_at_kill": parts_at_kill,
        "done": stats.jobs_by_state["done"],
        "rows": rows,
        "distinct_urls": urls,
        "seconds": total,
        "recovery_s": recovered,
        **report,
    }
