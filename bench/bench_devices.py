"""Device-commands benchmark: N simulated devices, one command each, all results back.

The OTA service (which owns device commands) runs as its own process; this process plays
the API client (SendCommand over gRPC) and the fleet (one MQTT connection answering every
command at once). The clock runs from the first SendCommand to the last result committed
(seen on StreamCommandEvents).

    .venv/bin/python -m bench.bench_devices            # 1,000 devices (target ≤ 10 s)
    .venv/bin/python -m bench.bench_devices --quick    # 200 devices
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from linewatch.v1 import common_pb2, devices_pb2, devices_pb2_grpc
from linewatch_dev.broker import broker_answers
from linewatch_dev.devices_simulator import CommandFleet
from linewatch_dev.testing import free_port

RESULTS = Path(__file__).parent / "results" / "devices.json"
FINAL = {
    devices_pb2.COMMAND_STATE_SUCCEEDED,
    devices_pb2.COMMAND_STATE_FAILED,
    devices_pb2.COMMAND_STATE_TIMED_OUT,
    devices_pb2.COMMAND_STATE_EXPIRED,
    devices_pb2.COMMAND_STATE_CANCELLED,
}


async def _wait_grpc(stub: devices_pb2_grpc.DeviceServiceStub, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await stub.ListDevices(devices_pb2.ListDevicesRequest(), timeout=1.0)
            return
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _online(stub: devices_pb2_grpc.DeviceServiceStub, n: int, prefix: str) -> None:
    """Wait until the service sees all ``n`` devices online (their retained status)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen, token = 0, ""
        while True:
            page = await stub.ListDevices(
                devices_pb2.ListDevicesRequest(
                    prefix=prefix,
                    online_only=True,
                    page=common_pb2.PageRequest(page_size=1000, page_token=token),
                )
            )
            seen += len(page.devices)
            token = page.next_page_token
            if not token:
                break
        if seen >= n:
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"only {seen}/{n} devices came online")


async def _measure(
    stub: devices_pb2_grpc.DeviceServiceStub, ids: list[str]
) -> tuple[dict[str, devices_pb2.Command], float, float]:
    """Send one command per device; (finished commands, seconds to all results, to all sent)."""
    devices = len(ids)
    finished: dict[str, devices_pb2.Command] = {}
    all_done = asyncio.Event()
    events = stub.StreamCommandEvents(devices_pb2.StreamCommandEventsRequest())

    async def watch() -> None:
        async for event in events:
            if event.command.state in FINAL:
                finished[event.command.id] = event.command
                if len(finished) >= devices:
                    all_done.set()

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.5)  # the stream's subscription
    sem = asyncio.Semaphore(64)

    async def send(device_id: str) -> None:
        async with sem:
            await stub.SendCommand(
                devices_pb2.SendCommandRequest(device_id=device_id, name="power_on")
            )

    started = time.monotonic()
    await asyncio.gather(*(send(d) for d in ids))
    sent_s = time.monotonic() - started
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_done.wait(), 120)
    elapsed = time.monotonic() - started
    watcher.cancel()
    events.cancel()
    return finished, elapsed, sent_s


async def run(devices: int) -> list[dict[str, Any]]:
    """Run the benchmark; returns the result rows."""
    if not broker_answers("127.0.0.1", 1883):
        raise SystemExit("bench_devices needs an MQTT broker at 127.0.0.1:1883 (mosquitto)")
    mqtt_url = "mqtt://127.0.0.1:1883"
    root = f"bench/{uuid.uuid4().hex[:8]}"
    grpc_port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-devices-") as tmp:
        env = {
            **os.environ,
            "LINEWATCH_OTA__GRPC__PORT": str(grpc_port),
            "LINEWATCH_OTA__DATA_DIR": tmp,
            "LINEWATCH_OTA__LOG_LEVEL": "WARNING",
            "LINEWATCH_OTA__MQTT__URL": mqtt_url,
            "LINEWATCH_OTA__MQTT__CLIENT_ID": f"bench-devices-{uuid.uuid4().hex[:8]}",
            "LINEWATCH_OTA__TOPIC_ROOT": f"{root}/ota",
            "LINEWATCH_OTA__DEVICES__TOPIC_ROOT": f"{root}/devices",
            "LINEWATCH_OTA__DEVICES__PROJECTOR_TOPIC": f"{root}/projector-remote-control",
        }
        service = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "linewatch_ota", env=env
        )
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
        ids = [f"bench-{i:05d}" for i in range(devices)]
        fleet = CommandFleet(mqtt_url=mqtt_url, device_ids=ids, topic_root=f"{root}/devices")
        try:
            stub = devices_pb2_grpc.DeviceServiceStub(channel)
            await _wait_grpc(stub)
            await fleet.start()
            await _online(stub, devices, "bench-")
            finished, elapsed, sent_s = await _measure(stub, ids)
        finally:
            with contextlib.suppress(Exception):
                await fleet.stop()
            await channel.close()
            service.terminate()
            await service.wait()
    ok = sum(1 for c in finished.values() if c.state == devices_pb2.COMMAND_STATE_SUCCEEDED)
    latencies = sorted(
        (c.finished_at.ToNanoseconds() - c.created_at.ToNanoseconds()) / 1e9
        for c in finished.values()
    )
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    note = f"{devices} devices on one MQTT connection, 1 command each, SQLite"
    print(f"commands: {ok}/{devices} succeeded ({len(finished)} finished)")
    print(f"all results in: {elapsed:.2f} s (target ≤ 10 s); all sent via gRPC in {sent_s:.2f} s")
    print(f"per-command latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    return [
        {"benchmark": "device_commands", "metric": "all_results", "value": round(elapsed, 2),
         "unit": "s", "note": note},
        {"benchmark": "device_commands", "metric": "succeeded", "value": ok,
         "unit": "commands", "note": note},
        {"benchmark": "device_commands", "metric": "latency_p50", "value": round(p50 * 1000, 1),
         "unit": "ms", "note": note},
        {"benchmark": "device_commands", "metric": "latency_p99", "value": round(p99 * 1000, 1),
         "unit": "ms", "note": note},
    ]  # fmt: skip


def main() -> None:
    """Parse arguments, run, write ``bench/results/devices.json``."""
    parser = argparse.ArgumentParser(prog="bench_devices", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 devices")
    parser.add_argument("--devices", type=int, default=0)
    args = parser.parse_args()
    devices = args.devices or (200 if args.quick else 1000)
    rows = asyncio.run(run(devices))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
