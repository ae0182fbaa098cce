"""An idle stack (``linewatch up``, no simulator) for 150 s: no gRPC client is ever told
``GOAWAY too_many_pings`` (keepalive of every client matches what the servers allow, from
linewatch.runtime.grpc_options), and the gateway's ``/readyz`` stays ready.

With grpc's defaults a server accepts an idle client's ping only every 5 minutes; the
gateway's channels ping every 30 s, so the old stack logged the GOAWAY after ~90 s; 150 s
idle are five pings per channel, well past that. ``LINEWATCH_IDLE_S`` changes the idle time
(longer for a soak, shorter for a quick local run).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
from pathlib import Path

import pytest

from linewatch_dev.broker import broker_answers
from linewatch_dev.launcher import SERVICE_PORTS

IDLE_S = float(os.environ.get("LINEWATCH_IDLE_S", "150"))
MARKERS = ("GOAWAY", "too_many_pings", "ENHANCE_YOUR_CALM", "Too many pings")
"""What grpc logs (at ERROR, the default verbosity) or a failed call says on a GOAWAY."""


def _readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.slow
@pytest.mark.timeout(IDLE_S + 240)
async def test_idle_stack_logs_no_goaway(tmp_path: Path) -> None:
    if any(broker_answers("127.0.0.1", p) for p in SERVICE_PORTS.values()):
        pytest.skip("a default linewatch port is taken on this machine")
    env = {**os.environ, "LINEWATCH_SIMULATOR": "0", "OTEL_SDK_DISABLED": "true"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "linewatch_dev.cli",
        "up",
        "--data-dir",
        str(tmp_path / "state"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    stdout = proc.stdout
    output: list[str] = []

    async def read_until(marker: str | None) -> None:
        while True:
            line = (await stdout.readline()).decode(errors="replace")
            if not line:
                return
            output.append(line)
            if marker is not None and marker in line:
                return

    try:
        async with asyncio.timeout(120):
            await read_until("Ctrl-C stops everything")
        assert "linewatch is up" in "".join(output), "".join(output)
        gateway = SERVICE_PORTS["gateway"]
        ready_before = await asyncio.to_thread(_readyz, gateway)
        # Idle: nobody calls anything; the log is read meanwhile (so no pipe fills up).
        reader = asyncio.ensure_future(read_until(None))
        await asyncio.sleep(IDLE_S)
        ready_after = await asyncio.to_thread(_readyz, gateway)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            await reader
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = "".join(output)
    hits = [line for line in output if any(m in line for m in MARKERS)]
    assert not hits, "".join(hits[:5])
    assert ready_before == 200, log[-3000:]
    assert ready_after == 200, log[-3000:]
    assert code == 0, log[-3000:]
