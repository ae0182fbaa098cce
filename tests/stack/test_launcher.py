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


def test_plan_lets_sync_and_inference_fetch_from_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LINEWATCH_SYNC__ALLOWED_NETWORKS", raising=False)
    monkeypatch.setenv("LINEWATCH_INFERENCE__ALLOWED_NETWORKS", "10.0.0.0/8")
    envs = {c.name: c.env for c in plan(data_dir=tmp_path, simulator=False)}
    assert envs["sync"]["LINEWATCH_SYNC__ALLOWED_NETWORKS"] == "127.0.0.0/8"
    # set by the operator: left as it is (the process inherits it)
    assert "LINEWATCH_INFERENCE__ALLOWED_NETWORKS" not in envs["inference"]


def test_plan_accepts_dev_token_as_operator_and_gives_callers_their_own(tmp_path: Path) -> None:
    from linewatch.runtime.config import ServiceConfig, load_config
    from linewatch.runtime.grpc_auth import client_token, load_callers, token_digest
    from linewatch_dev.launcher import DEV_TOKEN

    comps = {c.name: c for c in plan(data_dir=tmp_path, simulator=False)}

    def grpc_env(name: str) -> dict[str, str]:
        return {k: v for k, v in comps[name].env.items() if "__GRPC__" in k}

    grpc_services = [n for n in ("inference", "ingest", "sync", "ota") if n in comps]
    assert grpc_services
    seen_tokens = {}
    for name in [*grpc_services, *(["gateway"] if "gateway" in comps else [])]:
        config = load_config(ServiceConfig, service=name, environ=grpc_env(name))
        callers = {c.name: c for c in load_callers(config.grpc.auth)}
        assert callers["operator"].digest == token_digest(DEV_TOKEN)
        assert callers["operator"].allows("/linewatch.v1.OtaService/CreateRollout")
        seen_tokens[name] = client_token(config.grpc.client)
    for name in grpc_services:
        config = load_config(ServiceConfig, service=name, environ=grpc_env(name))
        callers = {c.name: c for c in load_callers(config.grpc.auth)}
        if "gateway" in comps:
            assert callers["gateway"].digest == token_digest(seen_tokens["gateway"])
    if "inference" in comps and "ingest" in comps:
        config = load_config(ServiceConfig, service="inference", environ=grpc_env("inference"))
        ingest = {c.name: c for c in load_callers(config.grpc.auth)}["ingest"]
        assert ingest.digest == token_digest(seen_tokens["ingest"])
        assert ingest.allows("/linewatch.v1.InferenceService/PredictStream")
        assert not ingest.allows("/linewatch.v1.InferenceService/LoadModel")
    if "ota" in comps and "ingest" in comps:  # alarm rules send device commands
        assert (
            comps["ingest"]
            .env["LINEWATCH_INGEST__DEVICES_ADDR"]
            .endswith(f":{SERVICE_PORTS['ota']}")
        )
        config = load_config(ServiceConfig, service="ota", environ=grpc_env("ota"))
        ingest = {c.name: c for c in load_callers(config.grpc.auth)}["ingest"]
        assert ingest.digest == token_digest(seen_tokens["ingest"])
        assert ingest.allows("/linewatch.v1.DeviceService/SendCommand")
        assert not ingest.allows("/linewatch.v1.DeviceService/CancelCommand")
        assert not ingest.allows("/linewatch.v1.OtaService/CreateRollout")
        # ota asks ingest for verdict counts (the rollout gate), with its own token
        assert (
            comps["ota"].env["LINEWATCH_OTA__INGEST_ADDR"].endswith(f":{SERVICE_PORTS['ingest']}")
        )
        config = load_config(ServiceConfig, service="ingest", environ=grpc_env("ingest"))
        ota = {c.name: c for c in load_callers(config.grpc.auth)}["ota"]
        assert ota.digest == token_digest(seen_tokens["ota"])
        assert ota.allows("/linewatch.v1.IngestService/QueryVerdictCounts")
        assert not ota.allows("/linewatch.v1.IngestService/QueryVerdicts")
        # ... and raises the gate's regressions as alarms, but cannot acknowledge them
        assert ota.allows("/linewatch.v1.IngestService/RaiseAlarm")
        assert not ota.allows("/linewatch.v1.IngestService/AckAlarm")
    assert DEV_TOKEN not in {seen_tokens.get("gateway"), seen_tokens.get("ingest")}
