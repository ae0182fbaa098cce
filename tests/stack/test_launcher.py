"""`make run` = `linewatch up`: brings up what exists, the simulator publishes, Ctrl-C
leaves no process behind, a taken port is reported clearly."""

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import psutil
import pytest

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch_dev.broker import broker_answers
from linewatch_dev.launcher import (
    SERVICE_PORTS,
    Component,
    LaunchError,
    _check_ports,
    available_services,
    plan,
)


def test_plan_starts_every_existing_service_then_the_simulator(tmp_path: Path) -> None:
    names = [c.name for c in plan(data_dir=tmp_path, simulator=True)]
    assert names[-1] == "simulator"
    assert [n for n in names if n in SERVICE_PORTS] == available_services()
    assert "simulator" not in [c.name for c in plan(data_dir=tmp_path, simulator=False)]


def test_taken_port_is_reported_by_name() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        comps = [Component("ingest", ["true"], port=port)]
        with pytest.raises(LaunchError, match=f"ingest needs port {port}"):
            _check_ports(comps)


@pytest.mark.slow
async def test_up_runs_the_stack_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    ports = [*SERVICE_PORTS.values()]
    if any(broker_answers("127.0.0.1", p) for p in ports):
        pytest.skip("a default linewatch port is taken on this machine")
    if not broker_answers("127.0.0.1", 1883):
        ports.append(1883)
    env = {**os.environ, "LINEWATCH_SIMULATOR": "1"}
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
    output: list[str] = []
    try:
        async with asyncio.timeout(120):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    pytest.fail("linewatch up exited early:\n" + "".join(output))
                output.append(line)
                if "Ctrl-C stops everything" in line:
                    break
        text = "".join(output)
        assert "linewatch is up" in text
        assert "simulator" in text

        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "no supervised processes"

        # The simulator publishes on the demo topics.
        got: asyncio.Queue[MqttMessage] = asyncio.Queue()

        async def handler(message: MqttMessage) -> None:
            await got.put(message)

        async with MqttClient(MqttConfig(url="mqtt://127.0.0.1:1883"), clean_start=True) as c:
            await c.subscribe("plant/+/+/telemetry", handler)
            message = await asyncio.wait_for(got.get(), 30)
        body = json.loads(message.payload)
        assert body["device_id"].startswith("sim-")

        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest = (await proc.stdout.read()).decode()
            code = await proc.wait()
        assert "linewatch: stopped." in rest, rest
        assert code == 0, rest
        gone, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, f"left behind: {alive}"
        assert gone
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
