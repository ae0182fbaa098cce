"""Ingest benchmark: the demo rule end to end, side by side with a seed-000-style baseline.

Path measured (each box its own process, so CPU and memory are its own):

    raw-socket publisher ─QoS1→ mosquitto ─→ ingest ─gRPC stream→ inference
                                    ↑          │ (verdict QoS1, SQLite archive on)
    raw-socket subscriber ←─────────┴──────────┘

The baseline replaces ingest + inference with the seed-000 design: one gmqtt client, a
task per message (acknowledged on receipt), onnxruntime at batch 1 in a thread,
``Semaphore(10)``, verdict published QoS 0, no archive. Both run in one invocation at the
same increasing offered loads; for each load it prints sustained verdicts/s, p50/p99
latency (device send → verdict received), loss (messages the broker accepted without a
verdict within the drain time), and CPU and peak RSS per process.

    .venv/bin/python -m bench.bench_ingest            # loads up to the breaking point
    .venv/bin/python -m bench.bench_ingest --quick    # the top load per broker
    .venv/bin/python -m bench.bench_ingest --systems linewatch_off,linewatch_mtls --loads 5000

``linewatch_off`` runs with gRPC auth off and plaintext; ``linewatch_mtls`` with bearer
tokens and mTLS between ingest and inference (the default ``linewatch`` has tokens over
plaintext): the cost of the security layer, side by side.

Results go to ``bench/results/ingest.json``. For profiling, ``LINEWATCH_BENCH_CPROFILE=file``
runs ingest under cProfile and ``LINEWATCH_BENCH_LOGS=dir`` keeps its log there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch_dev.curves import CURVE_KINDS, make_curve
from linewatch_dev.testing import (
    Mosquitto,
    free_port,
    operator_env,
    operator_grpc_dict,
    wait_port,
    write_pki,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "ingest.json"
TOPIC_RE = re.compile(rb'"msg_id":"r(\d+)-(\d+)-(\d+)"')


# --- raw MQTT 3.1.1 ----------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _varint(len(body)) + body


def _connect(client_id: str) -> bytes:
    return _packet(
        0x10, _str("MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big") + _str(client_id)
    )


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = (await reader.readexactly(1))[0]
    mult, length = 1, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length += (byte & 0x7F) * mult
        if not byte & 0x80:
            break
        mult *= 128
    return head, await reader.readexactly(length)


class RawPublisher:
    """Publishes pre-built telemetry at a fixed rate over one socket, QoS 1."""

    def __init__(self, port: int, curves: list[str]) -> None:
        self.port = port
        self.curves = curves
        self.acked = 0
        self.sent = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writer.write(_connect(f"bench-pub-{os.getpid()}"))
        await _read_packet(self._reader)  # CONNACK
        self._task = asyncio.create_task(self._acks())

    async def _acks(self) -> None:
        assert self._reader is not None
        while True:
            head, _ = await _read_packet(self._reader)
            if head >> 4 == 4:
                self.acked += 1

    async def run(self, run_id: int, rate: float, duration: float) -> int:
        """Send ``rate`` msg/s for ``duration`` s; returns the number sent."""
        assert self._writer is not None
        start = time.perf_counter()
        n = 0
        ncurves = len(self.curves)
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= duration:
                break
            due = int(rate * elapsed) + 1
            chunk = bytearray()
            now_ms = int(time.time() * 1000)
            now_us = int(time.time() * 1_000_000)
            while n < due:
                dev = n % 50
                payload = (
                    f'{{"device_id":"dev-{dev}","point":"pressure","ts":{now_ms},'
                    f'"msg_id":"r{run_id}-{n}-{now_us}","values":{self.curves[n % ncurves]}}}'
                ).encode()
                mid = n % 65535 + 1
                topic = _str(f"plant/L{dev % 4}/dev-{dev}/telemetry")
                chunk += _packet(0x32, topic + mid.to_bytes(2, "big") + payload)
                n += 1
            if chunk:
                self._writer.write(chunk)
                await self._writer.drain()
            await asyncio.sleep(0.002)
        self.sent += n
        return n

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()


@dataclass
class RunStats:
    """Verdicts received for one run id."""

    first_send_us: int = 0
    received: set[int] = field(default_factory=set)
    latencies_ms: list[float] = field(default_factory=list)
    last_us: int = 0


class RawSubscriber:
    """Receives verdicts (QoS 0) and measures latency from the msg_id's send time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.runs: dict[int, RunStats] = {}
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self, topic: str) -> None:
        reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writer.write(_connect(f"bench-sub-{os.getpid()}"))
        await _read_packet(reader)
        self._writer.write(_packet(0x82, (1).to_bytes(2, "big") + _str(topic) + b"\x00"))
        await _read_packet(reader)  # SUBACK
        self._task = asyncio.create_task(self._loop(reader))

    async def _loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            head, body = await _read_packet(reader)
            if head >> 4 != 3:
                continue
            now_us = int(time.time() * 1_000_000)
            match = TOPIC_RE.search(body)
            if match is None:
                continue
            run, seq, sent_us = (int(g) for g in match.groups())
            stats = self.runs.setdefault(run, RunStats())
            if seq not in stats.received:
                stats.received.add(seq)
                stats.latencies_ms.append((now_us - sent_us) / 1000)
                stats.last_us = now_us

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()


# --- the baseline (seed 000) -------------------------------------------------------------


async def _baseline_main(port: int) -> None:
    """Seed-000 style: a task per message, onnxruntime batch 1, Semaphore(10)."""
    import gmqtt
    import onnxruntime as ort
    import yaml

    from linewatch_dev.curves import preprocess

    manifest = yaml.safe_load((ROOT / "models/curve-quality/manifest.yaml").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(ROOT / "models/curve-quality/model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    labels = manifest["labels"]
    length = int(manifest["input_length"])
    sem = asyncio.Semaphore(10)
    loop = asyncio.get_running_loop()
    client = gmqtt.Client(f"bench-baseline-{os.getpid()}")
    tasks: set[asyncio.Task[None]] = set()

    async def handle(topic: str, payload: bytes) -> None:
        async with sem:
            data = json.loads(payload)
            x = preprocess([np.asarray(data["values"], dtype=np.float32)], length=length)
            probs = (await loop.run_in_executor(None, session.run, None, {"curve": x}))[0][0]
            label = labels[int(np.argmax(probs))]
            parts = topic.split("/")
            verdict = {
                "device_id": data["device_id"],
                "point": data["point"],
                "ts": data["ts"],
                "msg_id": data.get("msg_id"),
                "model": "curve-quality",
                "label": label,
                "scores": dict(zip(labels, map(float, probs), strict=False)),
                "ok": label == "ok",
            }
            body = json.dumps(verdict, separators=(",", ":"))
            client.publish(f"plant/{parts[1]}/{parts[2]}/verdict", body, qos=0)

    def on_message(_c: Any, topic: str, payload: bytes, _qos: int, _p: Any) -> int:
        task = loop.create_task(handle(topic, payload))  # the seed's unbounded spawning
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return 0

    client.on_message = on_message
    await client.connect("127.0.0.1", port, version=4)
    client.subscribe("plant/+/+/telemetry", qos=1)
    await asyncio.Event().wait()


# --- orchestration -----------------------------------------------------------------------


class Proc:
    """A child process with CPU and peak-RSS sampling."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.popen = popen
        self.ps = psutil.Process(popen.pid)
        self.peak_rss = 0
        self._cpu0 = 0.0

    def cpu_s(self) -> float:
        with contextlib.suppress(psutil.Error):
            t = self.ps.cpu_times()
            return float(t.user + t.system)
        return 0.0

    def mark(self) -> None:
        self._cpu0 = self.cpu_s()
        self.peak_rss = 0

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, int(self.ps.memory_info().rss))

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _spawn(name: str, args: list[str], env: dict[str, str], log: Path) -> Proc:
    if (profile := os.environ.get("LINEWATCH_BENCH_CPROFILE")) and name == "ingest":
        args = ["-m", "cProfile", "-o", profile, *args]
    with log.open("wb") as out:
        popen = subprocess.Popen(  # noqa: S603
            [sys.executable, *args], env={**os.environ, **env}, stdout=out, stderr=out
        )
    return Proc(name, popen)


def _curves(n: int = 64) -> list[str]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        kind = "ok" if i % 5 else CURVE_KINDS[1 + (i // 5) % 4]
        values = make_curve(kind, length=256, rng=rng)
        out.append(json.dumps([round(float(v), 3) for v in values], separators=(",", ":")))
    return out


@dataclass
class LoadResult:
    system: str
    offered: int
    sent: int
    acked: int
    delivered: int
    sustained: float
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float]
    rss_mb: dict[str, float]
    broker: str = ""

    @property
    def loss(self) -> float:
        return 1.0 - self.delivered / self.sent if self.sent else 0.0


async def _measure(
    system: str,
    *,
    procs: list[Proc],
    pub: RawPublisher,
    sub: RawSubscriber,
    run_id: int,
    rate: int,
    duration: float,
    drain: float,
) -> LoadResult:
    me = psutil.Process()
    me_cpu0 = sum(me.cpu_times()[:2])
    for proc in procs:
        proc.mark()
    acked0 = pub.acked
    t0 = time.perf_counter()
    start_us = int(time.time() * 1_000_000)

    async def sampler() -> None:
        while True:
            for proc in procs:
                proc.sample()
            await asyncio.sleep(0.25)

    watch = asyncio.create_task(sampler())
    sent = await pub.run(run_id, rate, duration)
    stats = sub.runs.setdefault(run_id, RunStats())
    deadline = time.perf_counter() + drain
    while time.perf_counter() < deadline and len(stats.received) < sent:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    watch.cancel()
    wall = time.perf_counter() - t0
    lat = np.asarray(stats.latencies_ms or [0.0])
    span_s = max((stats.last_us - start_us) / 1e6, duration) if stats.received else duration
    cpu = {p.name: round(100 * (p.cpu_s() - p._cpu0) / wall, 1) for p in procs}
    cpu["driver"] = round(100 * (sum(me.cpu_times()[:2]) - me_cpu0) / wall, 1)
    return LoadResult(
        system=system,
        offered=rate,
        sent=sent,
        acked=pub.acked - acked0,
        delivered=len(stats.received),
        sustained=len(stats.received) / span_s,
        p50_ms=float(np.percentile(lat, 50)),
        p99_ms=float(np.percentile(lat, 99)),
        cpu=cpu,
        rss_mb={p.name: round(p.peak_rss / 2**20, 1) for p in procs},
    )


def _print(result: LoadResult) -> None:
    cpu = " ".join(f"{k}={v:.0f}%" for k, v in result.cpu.items())
    rss = " ".join(f"{k}={v:.0f}MB" for k, v in result.rss_mb.items())
    print(
        f"{result.system:9s} offered {result.offered:6d}/s  sustained {result.sustained:8.0f}/s  "
        f"delivered {result.delivered}/{result.sent}  "
        f"p50 {result.p50_ms:8.1f} ms  p99 {result.p99_ms:8.1f} ms  "
        f"loss {100 * result.loss:5.1f}%  cpu[{cpu}]  rss[{rss}]",
        flush=True,
    )


async def _wait_quiet(sub: RawSubscriber, run_id: int, timeout: float) -> None:
    """Wait until the previous run's stragglers stop arriving."""
    stats = sub.runs.get(run_id)
    if stats is None:
        return
    deadline = time.perf_counter() + timeout
    last = -1
    while time.perf_counter() < deadline and len(stats.received) != last:
        last = len(stats.received)
        await asyncio.sleep(0.5)


async def _run_system(
    system: str,
    *,
    broker: Mosquitto,
    procs: list[Proc],
    loads: list[int],
    duration: float,
    drain: float,
    curves: list[str],
    run_base: int,
) -> list[LoadResult]:
    pub = RawPublisher(broker.port, curves)
    sub = RawSubscriber(broker.port)
    await sub.start("plant/+/+/verdict")
    await pub.start()
    results = []
    try:
        # warm-up (connections, model, JIT-ish caches)
        await pub.run(run_base, 200, 1.0)
        await _wait_quiet(sub, run_base, 5)
        for i, rate in enumerate(loads, start=1):
            result = await _measure(
                system, procs=procs, pub=pub, sub=sub, run_id=run_base + i, rate=rate,
                duration=duration, drain=drain,
            )  # fmt: skip
            _print(result)
            results.append(result)
            await _wait_quiet(sub, run_base + i, 3)
            if result.loss > 0.5 and system == "baseline":
                break
    finally:
        await pub.close()
        await sub.close()
    return results


SYSTEMS = ("linewatch", "linewatch_x2", "baseline", "relay", "linewatch_off", "linewatch_mtls")
"""linewatch_x2: two ingest replicas splitting the topic with a shared subscription;
relay: ``mosquitto_sub | mosquitto_pub``, the limit."""
DEFAULT_SYSTEMS = ("linewatch", "baseline", "relay")
SESSIONS = int(os.environ.get("LINEWATCH_BENCH_SESSIONS", "8"))
"""MQTT sessions per rule (ingest's ``sessions``)."""
DEFAULT_LOADS = [1000, 2500, 5000, 10000, 12500, 15000]


def _ingest_yaml(
    tmp: Path,
    broker_port: int,
    inference_port: int,
    grpc_port: int,
    *,
    replica: int = 0,
    shared: bool = False,
    database_url: str = "",
    grpc: dict[str, Any] | None = None,
) -> Path:
    config: dict[str, Any] = {
        "log_level": "WARNING",
        "grpc": grpc or operator_grpc_dict(port=grpc_port),
        "data_dir": str(tmp / "ingest-data"),
        "database_url": database_url,
        "client_id": "bench-ingest" if shared else f"bench-ingest-{replica}",
        "brokers": {"default": {"url": f"mqtt://127.0.0.1:{broker_port}"}},
        "inference": {"target": f"127.0.0.1:{inference_port}"},
        "batch": {"max_size": 256, "max_delay_ms": 5},
        "receive_maximum": max(64, 4096 // SESSIONS),  # per session: 4096 in all
        "sessions": SESSIONS,
        "workers": 4,
    }
    if shared:
        # replicas (one PostgreSQL) split the demo rule's topic on its shared subscription;
        # each claims a slot and connects as bench-ingest-r<slot>-demo-<session>
        config["replicas"] = 2
    # e.g. LINEWATCH_BENCH_INGEST='{"workers": 8}' to try settings
    config.update(json.loads(os.environ.get("LINEWATCH_BENCH_INGEST", "{}")))
    path = tmp / f"ingest-{replica}.yaml"
    path.write_text(json.dumps(config))
    return path


async def _ready(port: int, timeout: float = 30) -> None:
    await asyncio.to_thread(wait_port, port, timeout)


async def _run_linewatch(
    tmp: Path,
    broker: Mosquitto,
    mosq: Proc,
    loads: list[int],
    *,
    replicas: int = 1,
    database_url: str = "",
    security: str = "tokens",
    **kw: Any,
) -> list[LoadResult]:
    inf_port = free_port()
    env = {"OTEL_SDK_DISABLED": "true"}
    logs = Path(os.environ.get("LINEWATCH_BENCH_LOGS", tmp))
    grpc_env, ingest_grpc = _security(security, tmp)
    inference = _spawn(
        "inference",
        ["-m", "linewatch_inference"],
        {
            **env,
            "LINEWATCH_INFERENCE__GRPC__PORT": str(inf_port),
            **grpc_env,
            "LINEWATCH_INFERENCE__MODEL_DIR": str(ROOT / "models"),
            "LINEWATCH_INFERENCE__DATA_DIR": str(tmp / "inference-data"),
            "LINEWATCH_INFERENCE__LOG_LEVEL": "WARNING",
        },
        logs / "inference.log",
    )
    ingests: list[Proc] = []
    ports: list[int] = []
    for replica in range(replicas):
        port = free_port()
        config = _ingest_yaml(
            tmp, broker.port, inf_port, port, replica=replica, shared=replicas > 1,
            database_url=database_url,
            grpc={**ingest_grpc, "port": port} if ingest_grpc else None,
        )  # fmt: skip
        name = "ingest" if replicas == 1 else f"ingest{replica + 1}"
        ingests.append(
            _spawn(name, ["-m", "linewatch_ingest", "--config", str(config)], env,
                   logs / f"{name}.log")
        )  # fmt: skip
        ports.append(port)
        await _ready(port)
    system = "linewatch" if replicas == 1 else f"linewatch_x{replicas}"
    if security != "tokens":
        system = f"linewatch_{security}"
    try:
        await _ready(inf_port)
        await asyncio.sleep(1.0)
        return await _run_system(
            system, broker=broker, procs=[mosq, *ingests, inference], loads=loads,
            run_base=100 * (2 * replicas + 1) + {"tokens": 0, "off": 1000, "mtls": 2000}[security],
            **kw,
        )  # fmt: skip
    finally:
        for proc in ingests:
            proc.stop()
        inference.stop()
        # drop ingest's persistent sessions: the broker would go on queueing every message
        # for them, a load the next system measured on the same broker would not have
        bases = (
            ["bench-ingest-0"] if replicas == 1 else [f"bench-ingest-r{i}" for i in range(replicas)]
        )
        for base in bases:
            for session in range(SESSIONS):
                with contextlib.suppress(Exception):
                    async with MqttClient(
                        MqttConfig(url=broker.url),
                        client_id=f"{base}-demo-{session}",
                        clean_start=True,
                    ):
                        pass


def _security(mode: str, tmp: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Inference's environment and ingest's ``grpc`` section for one security mode:
    ``tokens`` (the default: bearer tokens, plaintext), ``off`` (no auth, plaintext) or
    ``mtls`` (bearer tokens and mutual TLS)."""
    if mode == "tokens":
        return operator_env("inference"), {}
    if mode == "off":
        return {"LINEWATCH_INFERENCE__GRPC__AUTH__ENABLED": "false"}, {"auth": {"enabled": False}}
    pki = write_pki(tmp)
    prefix = "LINEWATCH_INFERENCE__GRPC__TLS__"
    server = {
        f"{prefix}CERT_FILE": str(pki["server_cert"]),
        f"{prefix}KEY_FILE": str(pki["server_key"]),
        f"{prefix}CLIENT_CA_FILE": str(pki["ca"]),
    }
    grpc = operator_grpc_dict()
    grpc["client"] = {
        **grpc["client"],
        "ca_file": str(pki["ca"]),
        "cert_file": str(pki["client_cert"]),
        "key_file": str(pki["client_key"]),
    }
    return {**operator_env("inference"), **server}, grpc


async def _run_baseline(
    tmp: Path, broker: Mosquitto, mosq: Proc, loads: list[int], **kw: Any
) -> list[LoadResult]:
    baseline = _spawn(
        "baseline",
        ["-m", "bench.bench_ingest", "--baseline-worker", str(broker.port)],
        {},
        tmp / "baseline.log",
    )
    try:
        await asyncio.sleep(2.0)
        return await _run_system(
            "baseline", broker=broker, procs=[mosq, baseline], loads=loads, run_base=200, **kw
        )
    finally:
        baseline.stop()


def _spawn_relay(broker_port: int) -> list[Proc]:
    port = str(broker_port)
    sub_bin = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
    pub_bin = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
    read, write = os.pipe()
    sub = subprocess.Popen(  # noqa: S603
        [sub_bin, "-h", "127.0.0.1", "-p", port, "-q", "1", "-i", "bench-relay-sub",
         "-t", "plant/+/+/telemetry"],
        stdout=write, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    pub = subprocess.Popen(  # noqa: S603
        [pub_bin, "-h", "127.0.0.1", "-p", port, "-q", "1", "-i", "bench-relay-pub",
         "-t", "plant/relay/c/verdict", "-l"],
        stdin=read, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(read)
    os.close(write)
    return [Proc("relay_sub", sub), Proc("relay_pub", pub)]


async def _run_relay(
    tmp: Path, broker: Mosquitto, mosq: Proc, loads: list[int], **kw: Any
) -> list[LoadResult]:
    """The limit: Mosquitto's own C clients, ``mosquitto_sub | mosquitto_pub``, QoS 1 both
    ways (the payload is relayed as is; it carries the msg_id the latency is read from)."""
    procs = _spawn_relay(broker.port)
    try:
        await asyncio.sleep(1.0)
        return await _run_system(
            "relay", broker=broker, procs=[mosq, *procs], loads=loads, run_base=700, **kw
        )
    finally:
        for proc in procs:
            proc.stop()


async def window_demo(
    *, rate: int = 10_000, duration: float = 3.0, ack_delay_s: float = 0.01
) -> list[tuple[int, int, int, float, int]]:
    """The design in isolation: the runtime's intake on a stock Mosquitto with a commit that
    takes ``ack_delay_s`` and costs nothing, at 1 and 8 sessions (each announcing a
    receive maximum of 20, the stock window): committed msg/s and the most messages
    unacknowledged at once.

    Returns ``(sessions, sent, committed, committed per second, peak unacknowledged)`` rows.
    """
    return [await _window_once(n, rate, duration, ack_delay_s) for n in (1, 8)]


async def _window_once(
    sessions: int, rate: int, duration: float, ack_delay_s: float
) -> tuple[int, int, int, float, int]:
    from linewatch.runtime.intake import DeadLetterPolicy, Entry, Intake

    with tempfile.TemporaryDirectory(prefix="bench-window-") as tmpdir:
        broker = Mosquitto(Path(tmpdir), extra_config=STOCK)
        broker.start()
        committed = 0
        peak = 0

        async def commit(entries: list[Entry[bytes]]) -> None:
            nonlocal committed, peak
            peak = max(peak, intake.queued + intake.busy)
            await asyncio.sleep(ack_delay_s)
            committed += len(entries)

        intake: Intake[bytes] = Intake(
            name="window",
            broker=MqttConfig(url=broker.url),
            client_id="bench-window",
            topic_filters=["plant/+/+/telemetry"],
            parse=lambda m: m.payload,
            commit=commit,
            dead_letters=DeadLetterPolicy(source="bench", topic=""),
            sessions=sessions,
            clean_start=True,
            receive_maximum=20,
            workers=16,
            batch_delay_s=0.001,
        )
        pub = RawPublisher(broker.port, _curves(4))
        try:
            await intake.start(wait=True)
            await pub.start()
            t0 = time.perf_counter()
            sent = await pub.run(1, rate, duration)
            await asyncio.sleep(0.5)
            elapsed = time.perf_counter() - t0
            return sessions, sent, committed, committed / elapsed, peak
        finally:
            await pub.close()
            await intake.stop(grace=0.5)
            broker.stop()


STOCK = "max_inflight_messages 20\nmax_queued_messages 1000\n"
"""Mosquitto's defaults (the test broker's config raises the queue; this puts it back)."""
TUNED = "max_inflight_messages 1000\n"
"""The broker tuned for linewatch (the Helm chart's broker sets the same)."""
BROKERS = {"stock": (STOCK, [1000, 10000]), "tuned": (TUNED, [1000, 20000])}


_CREATED: list[str] = []
"""Databases :func:`_fresh_database` made (dropped at the end of :func:`main`)."""


async def _drop_databases(server: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(server or "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    admin = url.set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        while _CREATED:
            await conn.execute(f'DROP DATABASE IF EXISTS "{_CREATED.pop()}" WITH (FORCE)')
    finally:
        await conn.close()


async def _fresh_database(server: str) -> str:
    """A new, empty database on the PostgreSQL server of ``server`` (a postgresql+asyncpg
    URL; default: the local server, user postgres)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(server or "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    name = f"bench_ingest_{os.getpid()}_{time.monotonic_ns()}"
    _CREATED.append(name)
    admin = url.set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def main(
    quick: bool,
    loads: list[int] | None = None,
    systems: tuple[str, ...] = DEFAULT_SYSTEMS,
    database_url: str = "",
    brokers: tuple[str, ...] = tuple(BROKERS),
) -> list[LoadResult]:
    """Run each system at each load against each of two private brokers: a stock
    Mosquitto (default inflight window and queue) and one tuned for linewatch."""
    kw: dict[str, Any] = {"duration": 4.0 if quick else 8.0, "drain": 3.0, "curves": _curves()}
    results: list[LoadResult] = []
    for name, (extra, default_loads) in BROKERS.items():
        if name not in brokers:
            continue
        broker_loads = loads or ([default_loads[-1]] if quick else default_loads)
        print(f"--- {name} broker ({extra.strip().replace(chr(10), ', ')})", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmpdir:
            tmp = Path(tmpdir)
            broker = Mosquitto(tmp, extra_config=extra)
            broker.start()
            mosq = Proc("mosquitto", broker.proc)  # type: ignore[arg-type]
            mine: list[LoadResult] = []
            try:
                # x1 beside x2: both on PostgreSQL (a fresh database each), x2 needs it
                pg = "linewatch_x2" in systems
                if "linewatch" in systems:
                    url = await _fresh_database(database_url) if pg else ""
                    mine += await _run_linewatch(
                        tmp, broker, mosq, broker_loads, database_url=url, **kw
                    )
                if "linewatch_x2" in systems:
                    mine += await _run_linewatch(
                        tmp, broker, mosq, broker_loads, replicas=2,
                        database_url=await _fresh_database(database_url), **kw,
                    )  # fmt: skip
                if "baseline" in systems:
                    mine += await _run_baseline(tmp, broker, mosq, broker_loads, **kw)
                if "relay" in systems:
                    mine += await _run_relay(tmp, broker, mosq, broker_loads, **kw)
                for security in ("off", "mtls"):
                    if f"linewatch_{security}" in systems:
                        mine += await _run_linewatch(
                            tmp, broker, mosq, broker_loads, security=security, **kw
                        )
            finally:
                broker.stop()
                if _CREATED:
                    await _drop_databases(database_url)
        for result in mine:
            result.broker = name
        _print_ratios(mine)
        results += mine
    return results


def _print_ratios(results: list[LoadResult]) -> None:
    relay = {r.offered: r for r in results if r.system == "relay"}
    for r in results:
        limit = relay.get(r.offered)
        if r.system != "relay" and limit is not None and limit.sustained:
            share = 100 * r.sustained / limit.sustained
            print(
                f"{r.broker} {r.system} at {r.offered}/s: {share:.0f}% of the relay's "
                f"sustained rate, delivered {r.delivered}/{r.sent}",
                flush=True,
            )


def _write(results: list[LoadResult], quick: bool) -> None:
    rows: list[dict[str, Any]] = []
    for r in results:
        note = f"{r.broker} broker, {r.system}, offered {r.offered} msg/s" + (
            " (quick)" if quick else ""
        )
        bench = f"ingest_{r.broker}_{r.system}"
        rows += [
            {"benchmark": bench, "metric": "sustained", "value": round(r.sustained, 1),
             "unit": "msg/s", "note": note},
            {"benchmark": bench, "metric": "p50_latency", "value": round(r.p50_ms, 2),
             "unit": "ms", "note": note},
            {"benchmark": bench, "metric": "p99_latency", "value": round(r.p99_ms, 2),
             "unit": "ms", "note": note},
            {"benchmark": bench, "metric": "loss", "value": round(100 * r.loss, 2),
             "unit": "%", "note": note},
        ]  # fmt: skip
        for name, cpu in r.cpu.items():
            rows.append(
                {"benchmark": bench, "metric": f"cpu_{name}", "value": cpu, "unit": "%",
                 "note": note}
            )  # fmt: skip
        for name, rss in r.rss_mb.items():
            rows.append(
                {"benchmark": bench, "metric": f"rss_{name}", "value": rss, "unit": "MB",
                 "note": note}
            )  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rows, indent=2) + "\n")
    tmp.replace(RESULTS)


def cli(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, internally, the baseline worker process)."""
    parser = argparse.ArgumentParser(prog="bench.bench_ingest")
    parser.add_argument("--quick", action="store_true", help="two loads, under 60 s")
    parser.add_argument(
        "--loads", type=lambda v: [int(x) for x in v.split(",")], help="e.g. 2000,8000"
    )
    parser.add_argument(
        "--systems", default=",".join(DEFAULT_SYSTEMS), help=f"of {','.join(SYSTEMS)}"
    )
    parser.add_argument(
        "--replica-database",
        default="",
        metavar="URL",
        help="PostgreSQL server (a postgresql+asyncpg URL) where linewatch and linewatch_x2 "
        "get a fresh database each when linewatch_x2 runs (default: the local server)",
    )
    parser.add_argument("--brokers", default=",".join(BROKERS), help="of stock,tuned")
    parser.add_argument(
        "--window", action="store_true", help="also with --quick: the intake-alone window demo"
    )
    parser.add_argument("--baseline-worker", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_worker:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_baseline_main(args.baseline_worker))
        return 0
    print(f"ingest benchmark on {psutil.cpu_count()} CPU(s); loads at QoS 1, 256-sample curves")
    systems = tuple(s for s in args.systems.split(",") if s)
    if unknown := set(systems) - set(SYSTEMS):
        parser.error(f"unknown system(s): {', '.join(sorted(unknown))}")
    brokers = tuple(b for b in args.brokers.split(",") if b)
    if unknown := set(brokers) - set(BROKERS):
        parser.error(f"unknown broker(s): {', '.join(sorted(unknown))}")
    results = asyncio.run(main(args.quick, args.loads, systems, args.replica_database, brokers))
    if args.window or not args.quick:
        print("--- the intake alone on a stock broker, commit = 10 ms sleep, 10,000 msg/s offered")
        for sessions, sent, committed, per_s, peak in asyncio.run(window_demo()):
            print(
                f"intake {sessions} session(s), receive maximum 20 each: committed "
                f"{committed}/{sent}, {per_s:,.0f} msg/s, at most {peak} unacknowledged at once",
                flush=True,
            )
    _write(results, args.quick)
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
