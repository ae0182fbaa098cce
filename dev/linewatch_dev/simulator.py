"""A line of simulated machines publishing process curves over MQTT (``linewatch simulate``).

Devices ``sim-<machine>-<n>`` on lines A, B … publish one curve per cycle and point to
``plant/<line>/<device_id>/telemetry`` (the demo rule's topics) in the telemetry format of
docs/topics.md. A share of the curves carries a defect (spike, drift, noise, step …);
the true kind travels in ``attrs.sim_kind`` so results can be checked.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass

import numpy as np

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch_dev.curves import CURVE_KINDS, make_curve

__all__ = ["SimulatorConfig", "run_simulator", "telemetry_payload"]

POINTS = ("pressure", "temperature", "torque")
MACHINES = ("press", "weld", "mold")


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """What to simulate."""

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    rate: float = 20.0
    defect_rate: float = 0.1
    lines: int = 2
    devices_per_line: int = 3
    topic_root: str = "plant"
    count: int = 0
    min_length: int = 200
    max_length: int = 400
    seed: int | None = None
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class _Device:
    device_id: str
    line: str


def _devices(config: SimulatorConfig) -> list[_Device]:
    out = []
    for li in range(config.lines):
        line = chr(ord("A") + li)
        for n in range(config.devices_per_line):
            machine = MACHINES[n % len(MACHINES)]
            out.append(_Device(f"sim-{machine}-{line.lower()}{n + 1:02d}", line))
    return out


def telemetry_payload(
    device_id: str,
    point: str,
    values: np.ndarray,
    *,
    line: str,
    kind: str,
    ts_ms: int | None = None,
) -> bytes:
    """One telemetry message (docs/topics.md) as JSON bytes."""
    body = {
        "device_id": device_id,
        "point": point,
        "ts": ts_ms if ts_ms is not None else int(time.time() * 1000),
        "values": [round(float(v), 5) for v in values],
        "msg_id": uuid.uuid4().hex,
        "attrs": {"line": line, "sim_kind": kind},
    }
    return json.dumps(body, separators=(",", ":")).encode()


async def run_simulator(config: SimulatorConfig, stop: asyncio.Event | None = None) -> int:
    """Publish until ``stop`` is set (or ``count`` messages); returns the number sent."""
    stop = stop or asyncio.Event()
    rng = np.random.default_rng(config.seed)
    devices = _devices(config)
    defects = [k for k in CURVE_KINDS if k != "ok"]
    sent = 0
    started = last_report = time.monotonic()
    interval = 1.0 / config.rate if config.rate > 0 else 0.0
    async with MqttClient(MqttConfig(url=config.mqtt_url), clean_start=True) as client:
        next_at = time.monotonic()
        while not stop.is_set() and (config.count == 0 or sent < config.count):
            device = devices[sent % len(devices)]
            point = POINTS[(sent // len(devices)) % len(POINTS)]
            kind = str(rng.choice(defects)) if rng.random() < config.defect_rate else "ok"
            length = int(rng.integers(config.min_length, config.max_length + 1))
            values = make_curve(kind, length=length, rng=rng)
            topic = f"{config.topic_root}/{device.line}/{device.device_id}/telemetry"
            payload = telemetry_payload(
                device.device_id, point, values, line=device.line, kind=kind
            )
            await client.publish(topic, payload, qos=1)
            sent += 1
            now = time.monotonic()
            if not config.quiet and now - last_report >= 2.0:
                rate = sent / (now - started)
                print(f"simulator: {sent} curves sent, {rate:.1f}/s", file=sys.stderr, flush=True)
                last_report = now
            if interval:
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    try:
                        async with asyncio.timeout(delay):
                            await stop.wait()
                    except TimeoutError:
                        pass
                elif delay < -1.0:
                    next_at = time.monotonic()  # fell behind: do not burst to catch up
    return sent
