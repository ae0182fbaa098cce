"""OTA benchmark: 10,000 simulated devices through one rollout in 3 waves (1 %, 10 %, rest).

Like :mod:`bench.bench_ota` (the OTA service as its own process, this process the download
server and the fleet), with a small image (16 KB) so the figures are the scheduler's and
the waves' cost, not the download's. Each wave soaks ``--soak`` seconds before the next
starts; no quality gate (it needs ingest and the model: the tests cover it end to end).

    .venv/bin/python -m bench.bench_ota_waves                 # 10,000 devices
    .venv/bin/python -m bench.bench_ota_waves --quick         # 1,000 devices
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from linewatch_ota.download_server import DownloadServer

from bench.bench_ota import _Sampler, _wait_grpc
from linewatch.runtime.grpc_auth import callers_env
from linewatch.v1 import ota_pb2, ota_pb2_grpc
from linewatch_dev.broker import broker_answers
from linewatch_dev.ota_simulator import SimulatedFleet
from linewatch_dev.testing import TEST_TOKEN, free_port, operator_channel, operator_client

RESULTS = Path(__file__).parent / "results" / "ota_waves.json"
IMAGE_BYTES = 16 * 1024
MAX_S = 1200.0


async def _upload(stub: ota_pb2_grpc.OtaServiceStub) -> Any:
    async def requests() -> Any:
        yield ota_pb2.UploadFirmwareRequest(
            metadata=ota_pb2.UploadFirmwareRequest.Metadata(
                product="bench", version="2.0.0", filename="bench.bin"
            )
        )
        yield ota_pb2.UploadFirmwareRequest(chunk=os.urandom(IMAGE_BYTES))

    return (await stub.UploadFirmware(requests())).firmware


async def _roll_out(
    stub: ota_pb2_grpc.OtaServiceStub, firmware_id: str, ids: list[str], soak_s: int
) -> tuple[Any, list[float]]:
    """Create the rollout, poll until it stops running; the seconds each wave took."""
    started = time.monotonic()
    waves = [
        ota_pb2.WaveSpec(percent=1, soak_s=soak_s),
        ota_pb2.WaveSpec(percent=10, soak_s=soak_s),
        ota_pb2.WaveSpec(),
    ]
    request = ota_pb2.CreateRolloutRequest(
        firmware_id=firmware_id, devices=ids, error_threshold=0.05, timeout_s=120, waves=waves
    )
    state = (await stub.CreateRollout(request)).rollout
    passed: list[float] = []
    while state.state == ota_pb2.ROLLOUT_STATE_RUNNING and time.monotonic() - started < MAX_S:
        await asyncio.sleep(0.25)
        state = (await stub.GetRollout(ota_pb2.GetRolloutRequest(id=state.id))).rollout
        done = sum(1 for w in state.waves if w.state in {"soaking", "gating", "passed"})
        while len(passed) < done:
            passed.append(time.monotonic() - started)
    return state, passed


async def run(devices: int, concurrency: int, soak_s: int, max_active: int) -> list[dict[str, Any]]:
    """Run the benchmark; returns the result rows."""
    if not broker_answers("127.0.0.1", 1883):
        raise SystemExit("bench_ota_waves needs an MQTT broker at 127.0.0.1:1883 (mosquitto)")
    mqtt_url = "mqtt://127.0.0.1:1883"
    topic_root = f"bench/{uuid.uuid4().hex[:8]}/ota"
    grpc_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="bench-ota-waves-") as tmp:
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
            "LINEWATCH_OTA__DEVICES__ENABLED": "false",
            # below the stock broker's 1000 queued messages per client (the fleet's session)
            "LINEWATCH_OTA__MAX_ACTIVE_UPDATES": str(max_active),
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
            fw = await _upload(stub)
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
            state, waves_done = await _roll_out(stub, fw.id, ids, soak_s)
            elapsed = time.monotonic() - started
            cpu = sampler.used_cpu_s()
            watcher.cancel()
            counts = dict(state.counts)
            sizes = [w.size for w in state.waves]
        finally:
            if fleet is not None:
                await fleet.stop()
            await downloads.stop()
            await channel.close()
            service.terminate()
            await service.wait()
    ok = counts.get("succeeded", 0)
    note = (
        f"{devices} devices in waves {'/'.join(map(str, sizes))}, {soak_s} s soak each, "
        f"16 KB image, {concurrency} downloading at once, max_active_updates {max_active}, "
        "SQLite, stock Mosquitto"
    )
    print(f"rollout: {ok}/{devices} succeeded, state {ota_pb2.RolloutState.Name(state.state)}")
    print("waves installed at: " + ", ".join(f"{t:.1f} s" for t in waves_done))
    print(f"time to complete: {elapsed:.1f} s")
    print(f"service CPU: {cpu:.1f} s ({cpu / elapsed * 100:.0f}% of one core)")
    print(f"service peak RSS: {sampler.peak_rss / 2**20:.0f} MiB")
    rows = [
        {"benchmark": "ota_waves", "metric": "time_to_complete", "value": round(elapsed, 2),
         "unit": "s", "note": note},
        {"benchmark": "ota_waves", "metric": "devices_succeeded", "value": ok,
         "unit": "devices", "note": note},
        {"benchmark": "ota_waves", "metric": "service_cpu", "value": round(cpu, 2),
         "unit": "cpu-s", "note": note},
        {"benchmark": "ota_waves", "metric": "service_peak_rss",
         "value": round(sampler.peak_rss / 2**20, 1), "unit": "MiB", "note": note},
    ]  # fmt: skip
    for i, t in enumerate(waves_done):
        rows.append(
            {"benchmark": "ota_waves", "metric": f"wave_{i + 1}_installed_at",
             "value": round(t, 2), "unit": "s", "note": note}
        )  # fmt: skip
    return rows


def main() -> None:
    """Parse arguments, run, write ``bench/results/ota_waves.json``."""
    parser = argparse.ArgumentParser(prog="bench_ota_waves", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 devices")
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--soak", type=int, default=2)
    parser.add_argument("--max-active", type=int, default=500)
    args = parser.parse_args()
    devices = args.devices or (1000 if args.quick else 10_000)
    rows = asyncio.run(run(devices, args.concurrency, args.soak, args.max_active))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
