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
import json
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from linewatch.v1 import sync_pb2, sync_pb2_grpc
from linewatch_dev.sync_drills import (
    SyncProcess,
    kill_mid_download,
    spawn_python,
    verify_cache,
    wait_done,
)
from linewatch_dev.testing import broker_url, free_port, operator_channel, wait_port

RESULTS = Path(__file__).parent / "results" / "sync.json"
IMAGE_BYTES = 100 * 1024
CRASH_IMAGES = 1000
TARGET_RATE = 300.0


async def throughput(mqtt_url: str, base: str, host: str, count: int, work: Path) -> float:
    svc = SyncProcess(work, mqtt_url, f"bench/{uuid.uuid4().hex[:8]}/sync")
    await svc.start()
    try:
        async with operator_channel(f"127.0.0.1:{svc.port}") as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            urls = [f"{base}/img/{i}.jpg!thumb" for i in range(count)]
            start = time.perf_counter()
            for i in range(0, count, 1000):
                await stub.EnqueueUrls(sync_pb2.EnqueueUrlsRequest(urls=urls[i : i + 1000]))
            await wait_done(stub, count, 120)
            elapsed = time.perf_counter() - start
    finally:
        await svc.stop()
    report = await asyncio.to_thread(verify_cache, work / "cache", host, count, IMAGE_BYTES)
    if any(report.values()):
        raise SystemExit(f"throughput run left a bad cache: {report}")
    return count / elapsed


async def run(quick: bool) -> list[dict[str, Any]]:
    count = 1000 if quick else 3000
    http_port = free_port()
    server = await spawn_python(
        "-m",
        "linewatch_dev.sync_testing",
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
                result = await kill_mid_download(
                    mqtt_url, base, host, Path(tmp) / "c", count=CRASH_IMAGES, size=IMAGE_BYTES
                )
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
