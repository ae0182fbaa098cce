"""Drill: the sync service killed with SIGKILL in the middle of downloads, restarted.

Every URL ends as exactly one job and one complete, byte-identical file; no partial file
is left and nothing is downloaded into the cache twice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from linewatch_dev.sync_drills import kill_mid_download, spawn_python
from linewatch_dev.testing import free_port, wait_port

IMAGES = 300
SIZE = 64 * 1024


@pytest.mark.slow
async def test_killed_mid_download_and_restarted(mqtt_url: str, tmp_path: Path) -> None:
    port = free_port()
    server = await spawn_python(
        "-m", "linewatch_dev.sync_testing", "--port", str(port), "--count", str(IMAGES),
        "--size", str(SIZE),
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_port, port, 30.0)
        report = await kill_mid_download(
            mqtt_url, f"http://127.0.0.1:{port}", f"127.0.0.1_{port}", tmp_path,
            count=IMAGES, size=SIZE,
        )  # fmt: skip
    finally:
        server.terminate()
        await server.wait()
    print(f"sync drill: {report}")
    assert sum(report["at_kill"].values()) > 0  # killed with jobs in the database
    assert report["done"] == IMAGES
    assert report["rows"] == report["distinct_urls"] == IMAGES
    assert (report["missing"], report["wrong"], report["extra"], report["partial"]) == (0, 0, 0, 0)
