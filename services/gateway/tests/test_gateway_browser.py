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
                    json={
                        "firmware_id": firmware_id,
                        "devices": ["sim-0", "sim-1", "sim-2"],
                        "waves": [{"count": 1, "soak_s": 60}, {}],
                    },
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
    assert result["rolloutWaves"] == 2
    assert result["rolloutDevices"] == ["sim-0", "sim-1", "sim-2"]
    assert result["alarms"] == 2
    (acked,) = result["acked"]
    assert "acknowledged by token:" in acked
    assert "checked on the line" in acked
    assert result["ingest"] == "stopped"
    async with httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/v1/ingest/status")).json()["state"] == "stopped"
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000


ENVELOPE_SCRIPT = Path(__file__).parent / "browser" / "envelope.mjs"
TEACH_IN = 20


async def test_dashboard_shows_the_envelope_band_and_the_stretch_that_left(
    live: Any, tmp_path: Path
) -> None:
    if shutil.which("node") is None or shutil.which("chromium") is None:
        pytest.skip("node or Debian chromium is not installed (make system-packages)")
    import numpy as np

    from linewatch.runtime.config import MqttConfig
    from linewatch.runtime.mqtt import MqttClient
    from linewatch_dev.press_cycles import press_cycle

    stack = live.stack
    root = stack.topic_root
    async with httpx.AsyncClient(base_url=live.url) as http:
        made = await http.post(
            "/v1/rules",
            json={
                "name": "press",
                "source_topic": f"{root}/press/+/cycle",
                "model": "envelope",
                "output_topic": f"{root}/press/{{1}}/judged",
                "model_params": {"teach_in": TEACH_IN},
            },
            headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
        )
        assert made.status_code == 201, made.text
        async with asyncio.timeout(15):
            while True:
                status = (await http.get("/v1/ingest/status")).json()
                rule = next(r for r in status["rules"] if r["name"] == "press")
                if rule["state"] == "running" and not rule["last_error"]:
                    break
                await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # the rule's subscription is on its way
    shot = tmp_path / "envelope.png"
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(ENVELOPE_SCRIPT),
        live.url + "/",
        str(shot),
        str(tmp_path / "profile"),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    rng = np.random.default_rng(9)
    kinds = ["ok"] * (TEACH_IN + 1) + ["step"]
    try:
        async with asyncio.timeout(90):
            line = await proc.stdout.readline()
            if line.strip() != b"connected":
                raise AssertionError(f"page did not connect: {line!r} {await proc.stderr.read()!r}")
            pub = MqttClient(MqttConfig(url=stack.mqtt_url), clean_start=True)
            await pub.connect()
            try:
                for i, kind in enumerate(kinds):
                    body = {
                        "device_id": "press-7",
                        "point": "force",
                        "ts": 1763800000000 + i,
                        "values": [round(float(v), 3) for v in press_cycle(kind, rng)],
                        "msg_id": f"e{i}",
                    }
                    await pub.publish(f"{root}/press/press-7/cycle", json.dumps(body), qos=1)
            finally:
                await pub.disconnect()
            proc.stdin.write(f"{len(kinds)}\n".encode())
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
    assert result["bandPoints"] == 2 * 256  # upper edge and lower edge, every sample
    assert result["stretchPoints"] >= 3
    assert result["zone"] == 1
    assert "out_of_envelope" in result["title"]
    assert "max deviation" in result["meta"]
    assert result["learning"] == TEACH_IN
    assert result["cardBands"] >= 1
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


DEVICE_SCRIPT = Path(__file__).parent / "browser" / "device.mjs"


async def test_device_page_shows_inventory_and_sends_a_command(live: Any, tmp_path: Path) -> None:
    if shutil.which("node") is None or shutil.which("chromium") is None:
        pytest.skip("node or Debian chromium is not installed (make system-packages)")
    from linewatch.runtime.config import MqttConfig
    from linewatch.runtime.mqtt import MqttClient
    from linewatch_dev.devices_simulator import CommandFleet

    stack = live.stack
    fleet = CommandFleet(
        mqtt_url=stack.mqtt_url, device_ids=["sim-9"], topic_root=f"{stack.topic_root}/devices"
    )
    await fleet.start()
    try:
        pub = MqttClient(MqttConfig(url=stack.mqtt_url), clean_start=True)
        await pub.connect()
        try:
            body = {"current_version": "1.2.0", "hw": "rev-b"}
            await pub.publish(f"{stack.ota_topic_root}/sim-9/request", json.dumps(body))
        finally:
            await pub.disconnect()
        await stack.publish([("sim-9", "A", "ok")])
        async with httpx.AsyncClient(base_url=live.url) as http, asyncio.timeout(30):
            while True:  # the inventory and the archived verdict are there before the page
                device = (await http.get("/v1/devices/sim-9")).json()
                verdicts = (await http.get("/v1/verdicts?device=sim-9")).json()
                if device.get("firmware_version") and device.get("points") and verdicts["items"]:
                    break
                await asyncio.sleep(0.1)
        shot = tmp_path / "device.png"
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(DEVICE_SCRIPT),
            live.url + "/#device=sim-9",
            str(shot),
            str(tmp_path / "profile"),
            WRITE_TOKEN,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            async with asyncio.timeout(90):
                line = await proc.stdout.readline()
                if line.strip() != b"connected":
                    err = await proc.stderr.read()
                    raise AssertionError(f"page did not connect: {line!r} {err!r}")
                out = (await proc.stdout.readline()).decode()
                err = await proc.stderr.read()
                assert out.startswith("result "), f"{out!r} {err.decode()[-2000:]}"
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        await fleet.stop()
    result = json.loads(out[len("result ") :])
    assert result["errors"] == []
    assert result["title"] == "sim-9"
    assert result["online"].startswith("online")
    assert (result["firmware"], result["hardware"], result["points"]) == (
        "1.2.0",
        "rev-b",
        "pressure",
    )
    # newest first; both succeeded although power_on's events came over the streams being
    # replaced and power_off's POST answer ("queued") came after its stream events
    assert [c[:2] for c in result["commands"]] == [
        ["power_off", "succeeded"],
        ["power_on", "succeeded"],
    ]
    assert all('"device":"sim-9"' in c[2] for c in result["commands"])
    assert result["verdicts"] >= 1
    assert "sim-9" in result["listed"]
    assert fleet.received_names("sim-9") == ["power_on", "power_off"]
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
