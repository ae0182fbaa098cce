"""OTA benchmark: N simulated devices through one rollout of a 1 MB image.

The OTA service runs as its own process (so its CPU and memory are its own); this
process plays the gateway (ranged HTTP downloads served over ``ReadFirmware``) and the
fleet (one MQTT connection, a bounded number of devices downloading at a time).

    .venv/bin/python -m bench.bench_ota            # 1,000 devices (target ≤ 60 s)
    .venv/bin/python -m bench.bench_ota --quick    # 200 devices
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import psutil
from linewatch_ota.download_server import DownloadServer

from linewatch.runtime.grpc_auth import callers_env
from linewatch.v1 import ota_pb2, ota_pb2_grpc
from linewatch_dev.broker import broker_answers
from linewatch_dev.ota_simulator import SimulatedFleet
from linewatch_dev.testing import TEST_TOKEN, free_port, operator_channel, operator_client

RESULTS = Path(__file__).parent / "results" / "ota.json"
IMAGE_BYTES = 1024 * 1024


class _Sampler:
    """Samples a process's CPU time and resident memory."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak_rss = 0
        self._cpu0 = 0.0

    def cpu_s(self) -> float:
        times = self.proc.cpu_times()
        return float(times.user + times.system)

    def start(self) -> None:
        self._cpu0 = self.cpu_s()

    def used_cpu_s(self) -> float:
        return self.cpu_s() - self._cpu0

    async def watch(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, int(self.proc.memory_info().rss))
            await asyncio.sleep(0.2)


async def _wait_grpc(stub: ota_pb2_grpc.OtaServiceStub, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await stub.GetSigningKey(ota_pb2.GetSigningKeyRequest(), timeout=1.0)
            return
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _upload(stub: ota_pb2_grpc.OtaServiceStub, image: bytes) -> Any:
    async def requests() -> AsyncIterator[ota_pb2.UploadFirmwareRequest]:
        yield ota_pb2.UploadFirmwareRequest(
            metadata=ota_pb2.UploadFirmwareRequest.Metadata(
                product="bench", version="2.0.0", filename="bench.bin"
            )
        )
        for i in range(0, len(image), 256 * 1024):
            yield ota_pb2.UploadFirmwareRequest(chunk=image[i : i + 256 * 1024])

    return (await stub.UploadFirmware(requests())).firmware


async def _roll_out(stub: ota_pb2_grpc.OtaServiceStub, firmware_id: str, ids: list[str]) -> Any:
    """Create the rollout and poll until it is no longer running (at most 300 s)."""
    started = time.monotonic()
    state = (
        await stub.CreateRollout(
            ota_pb2.CreateRolloutRequest(
                firmware_id=firmware_id, devices=ids, error_threshold=0.05, timeout_s=60
            )
        )
    ).rollout
    while state.state == ota_pb2.ROLLOUT_STATE_RUNNING and time.monotonic() - started < 300:
        await asyncio.sleep(0.25)
        state = (await stub.GetRollout(ota_pb2.GetRolloutRequest(id=state.id))).rollout
    return state


async def run(devices: int, concurrency: int) -> list[dict[str, Any]]:
    """Run the benchmark; returns the result rows."""
    if not broker_answers("127.0.0.1", 1883):
        raise SystemExit("bench_ota needs an MQTT broker at 127.0.0.1:1883 (mosquitto)")
    mqtt_url = "mqtt://127.0.0.1:1883"
    topic_root = f"bench/{uuid.uuid4().hex[:8]}/ota"
    grpc_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="bench-ota-") as tmp:
        env = {
            **os.environ,
            "LINEWATCH_OTA__GRPC__PORT": str(grpc_port),
            **callers_env("ota", {"bench": ("operator", TEST_TOKEN)}),
            "LINEWATCH_OTA__DATA_DIR": tmp,
            "LINEWATCH_OTA__LOG_LEVEL": "WARNING",
            "LINEWATCH_OTA__MQTT__URL": mqtt_url,
            "LINEWATCH_OTA__MQTT__CLIENT_ID": f"bench-ota-{uuid.uuid4().hex[:8]}",
            "LINEWATCH_OTA__TOPIC_ROOT": topic_root,
            "LINEWATCH_OTA__PUBLIC_BASE_URL": f"http://127.0.0.1:{http_port}",
            "LINEWATCH_OTA__TICK_INTERVAL_S": "0.5",
        }
        service = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "linewatch_ota", env=env
        )
        downloads = DownloadServer(
            grpc_target=f"127.0.0.1:{grpc_port}", port=http_port, client=operator_client()
        )
        channel = operator_channel(f"127.0.0.1:{grpc_port}")
        fleet: SimulatedFleet | None = None
        try:
            stub = ota_pb2_grpc.OtaServiceStub(channel)
            await _wait_grpc(stub)
            await downloads.start()
            sampler = _Sampler(service.pid)
            watcher = asyncio.create_task(sampler.watch())
            fw = await _upload(stub, os.urandom(IMAGE_BYTES))
            key = (await stub.GetSigningKey(ota_pb2.GetSigningKeyRequest())).public_key
            ids = [f"bench-{i:05d}" for i in range(devices)]
            fleet = SimulatedFleet(
                mqtt_url=mqtt_url,
                device_ids=ids,
                public_key=key,
                topic_root=topic_root,
                concurrency=concurrency,
            )
            await fleet.start(boot=False)
            sampler.start()
            started = time.monotonic()
            state = await _roll_out(stub, fw.id, ids)
            elapsed = time.monotonic() - started
            cpu = sampler.used_cpu_s()
            watcher.cancel()
            counts = dict(state.counts)
        finally:
            if fleet is not None:
                await fleet.stop()
            await downloads.stop()
            await channel.close()
            service.terminate()
            await service.wait()
    ok = counts.get("succeeded", 0)
    note = f"{devices} devices, 1 MB image, {concurrency} downloading at once"
    print(f"rollout: {ok}/{devices} succeeded, state {ota_pb2.RolloutState.Name(state.state)}")
    print(f"time to complete: {elapsed:.1f} s (target ≤ 60 s)")
    print(f"service CPU: {cpu:.1f} s ({cpu / elapsed * 100:.0f}% of one core)")
    print(f"service peak RSS: {sampler.peak_rss / 2**20:.0f} MiB")
    return [
        {"benchmark": "ota_rollout", "metric": "time_to_complete", "value": round(elapsed, 2),
         "unit": "s", "note": note},
        {"benchmark": "ota_rollout", "metric": "devices_succeeded", "value": ok,
         "unit": "devices", "note": note},
        {"benchmark": "ota_rollout", "metric": "devices_per_s", "value": round(ok / elapsed, 1),
         "unit": "devices/s", "note": note},
        {"benchmark": "ota_rollout", "metric": "service_cpu", "value": round(cpu, 2),
         "unit": "cpu-s", "note": note},
        {"benchmark": "ota_rollout", "metric": "service_peak_rss",
         "value": round(sampler.peak_rss / 2**20, 1), "unit": "MiB", "note": note},
    ]  # fmt: skip


def main() -> None:
    """Parse arguments, run, write ``bench/results/ota.json``."""
    parser = argparse.ArgumentParser(prog="bench_ota", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 devices")
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    devices = args.devices or (200 if args.quick else 1000)
    rows = asyncio.run(run(devices, args.concurrency))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
