"""The dashboard in headless Chromium: it loads, shows live events, controls ingest."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import WRITE_TOKEN

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = Path(__file__).parent / "browser" / "dashboard.mjs"

pytestmark = pytest.mark.browser


async def _push(stack: Any) -> int:
    """Curves for six devices on two lines through the real pipeline, two defective."""
    items = [
        (f"sim-{i}", "A" if i % 2 else "B", "spike" if i in (2, 5) else "ok") for i in range(6)
    ]
    await stack.publish(items)
    return len(items)


async def test_dashboard_shows_live_events(live: Any, tmp_path: Path) -> None:
    if shutil.which("node") is None or shutil.which("chromium") is None:
        pytest.skip("node or Debian chromium is not installed (make system-packages)")
    async with httpx.AsyncClient(base_url=live.url) as http:
        headers = {"Authorization": f"Bearer {WRITE_TOKEN}"}
        fw = await http.post(
            "/v1/firmware",
            files=[("version", (None, b"1.3.0")), ("file", ("fw.bin", b"x" * 4096))],
            headers=headers,
        )
        firmware_id = fw.json()["id"]
    shot = tmp_path / "dashboard.png"
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(SCRIPT),
        live.url + "/",
        str(shot),
        str(tmp_path / "profile"),
        WRITE_TOKEN,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(90):
            line = await proc.stdout.readline()
            if line.strip() != b"connected":
                raise AssertionError(f"page did not connect: {line!r} {await proc.stderr.read()!r}")
            expected = await _push(live.stack)
            async with httpx.AsyncClient(base_url=live.url) as http:
                made = await http.post(
                    "/v1/ota/rollouts",
                    json={"firmware_id": firmware_id, "devices": ["sim-0", "sim-1", "sim-2"]},
                    headers=headers,
                )
                assert made.status_code == 201
            proc.stdin.write(f"{expected}\n".encode())
            await proc.stdin.drain()
            out = (await proc.stdout.readline()).decode()
            err = await proc.stderr.read()
            assert out.startswith("result "), f"{out!r} {err.decode()[-2000:]}"
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    result = json.loads(out[len("result ") :])
    assert result["errors"] == []
    assert result["verdicts"] >= expected
    assert result["cards"] == 6
    assert result["bad"] == 2
    assert result["lines"] == 2
    assert result["rollouts"] == 1
    assert result["alarms"] == 2
    assert result["ingest"] == "stopped"
    async with httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/v1/ingest/status")).json()["state"] == "stopped"
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000
