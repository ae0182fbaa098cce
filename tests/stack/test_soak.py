"""Soak: ingest and inference (their own processes) under a steady load, memory sampled.

Every message must come out as a verdict and the resident memory of both services must
stay flat once warm: the mean of the last quarter of the run may exceed the mean of the
second quarter by at most 10 % + 8 MiB. ``LINEWATCH_SOAK_S`` sets the length (600 s for
the real soak, ``make soak``; CI runs the default 60 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch_dev.curves import make_curve
from linewatch_dev.testing import free_port, operator_env, operator_grpc_dict, wait_port

ROOT = Path(__file__).resolve().parents[2]
RATE = 200  # messages per second
SAMPLE_S = 1.0


async def _spawn(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, *args, env={**os.environ, "OTEL_SDK_DISABLED": "true", **env}, cwd=ROOT
    )


def _flat(samples: list[float]) -> tuple[bool, float, float]:
    quarter = max(1, len(samples) // 4)
    warm = float(np.mean(samples[quarter : 2 * quarter]))
    last = float(np.mean(samples[-quarter:]))
    return last <= warm * 1.10 + 8.0, warm, last


@pytest.mark.slow
async def test_steady_load_keeps_memory_flat(
    mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    seconds = float(os.environ.get("LINEWATCH_SOAK_S", "60"))
    inf_port, ing_port = free_port(), free_port()
    config = tmp_path / "ingest.yaml"
    config.write_text(
        json.dumps(
            {
                "log_level": "WARNING",
                "grpc": operator_grpc_dict(port=ing_port),
                "data_dir": str(tmp_path / "ingest"),
                "client_id": f"soak-{topic_prefix.replace('/', '-')}",
                "brokers": {"default": {"url": mqtt_url}},
                "inference": {"target": f"127.0.0.1:{inf_port}"},
                "deadletter_topic": f"{topic_prefix}/deadletter",
                "rules": [
                    {
                        "name": "soak",
                        "source_topic": f"{topic_prefix}/+/+/telemetry",
                        "model": "curve-quality",
                        "output_topic": f"{topic_prefix}/{{1}}/{{2}}/verdict",
                        "alarm": {"threshold": 3, "window_s": 10},
                    }
                ],
            }
        )
    )
    inference = await _spawn(
        ["-m", "linewatch_inference"],
        {
            "LINEWATCH_INFERENCE__GRPC__PORT": str(inf_port),
            **operator_env("inference"),
            "LINEWATCH_INFERENCE__MODEL_DIR": str(ROOT / "models"),
            "LINEWATCH_INFERENCE__DATA_DIR": str(tmp_path / "inference"),
            "LINEWATCH_INFERENCE__LOG_LEVEL": "WARNING",
        },
    )
    ingest = await _spawn(["-m", "linewatch_ingest", "--config", str(config)], {})
    procs = {"inference": psutil.Process(inference.pid), "ingest": psutil.Process(ingest.pid)}
    rss: dict[str, list[float]] = {name: [] for name in procs}
    verdicts: set[str] = set()

    async def on_verdict(message: MqttMessage) -> None:
        verdicts.add(json.loads(message.payload)["msg_id"])

    rng = np.random.default_rng(1)
    curves = [
        [round(float(v), 3) for v in make_curve(kind, length=256, rng=rng)]
        for kind in ("ok", "ok", "ok", "spike", "drift")
    ]
    sent = 0
    try:
        await asyncio.to_thread(wait_port, inf_port, 60)
        await asyncio.to_thread(wait_port, ing_port, 60)
        async with (
            MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as sub,
            MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
        ):
            await sub.subscribe(f"{topic_prefix}/+/+/verdict", on_verdict)
            await asyncio.sleep(1.0)
            start = time.monotonic()
            next_sample = start
            while (now := time.monotonic()) - start < seconds:
                due = int((now - start) * RATE)
                batch = []
                while sent < due:
                    device = f"press-{sent % 20:02d}"
                    body = {
                        "device_id": device,
                        "point": "pressure",
                        "ts": int(time.time() * 1000),
                        "values": curves[sent % len(curves)],
                        "msg_id": f"soak-{sent}",
                    }
                    batch.append((f"{topic_prefix}/L1/{device}/telemetry", json.dumps(body), ()))
                    sent += 1
                await pub.publish_many(batch)
                if now >= next_sample:
                    for name, proc in procs.items():
                        rss[name].append(proc.memory_info().rss / 2**20)
                    next_sample += SAMPLE_S
                await asyncio.sleep(0.02)
            async with asyncio.timeout(30):
                while len(verdicts) < sent:  # noqa: ASYNC110 (another process publishes)
                    await asyncio.sleep(0.1)
    finally:
        for proc in (ingest, inference):
            proc.terminate()
        for proc in (ingest, inference):
            await proc.wait()
    assert len(verdicts) == sent
    report = {name: _flat(samples) for name, samples in rss.items()}
    print(
        f"soak {seconds:.0f} s at {RATE} msg/s, {sent} verdicts; RSS MiB (warm → last quarter): "
        + ", ".join(f"{n} {w:.1f} → {last:.1f}" for n, (_, w, last) in report.items())
    )
    for name, (flat, warm, last) in report.items():
        assert flat, f"{name} RSS grew from {warm:.1f} to {last:.1f} MiB"
