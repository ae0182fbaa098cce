"""Fixtures of the gateway tests: real gRPC backends and a real gateway.

Inference (a subprocess) and OTA (``linewatch_ota.app.serve`` in-process, on the test
broker and its own SQLite) are the real services. Ingest and sync are TEST BACKENDS until
those services land: real ``grpc.aio`` servers (the shared
``GrpcServer``: health, reflection, error mapping) implementing the protos with simple
in-memory behaviour of their own. They live only here and are never used outside tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped,unused-ignore]
from linewatch_gateway.app import create_app, serve
from linewatch_gateway.clients import Backends
from linewatch_gateway.config import GatewayConfig

from linewatch.runtime.config import GrpcConfig, MqttConfig
from linewatch.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from linewatch.runtime.grpc_server import GrpcServer
from linewatch.testing import free_port, wait_port
from linewatch.v1 import ingest_pb2, ingest_pb2_grpc, sync_pb2, sync_pb2_grpc

WRITE_TOKEN = "t-write"
READ_TOKEN = "t-read"


def _page(items: list[Any], page: Any) -> tuple[list[Any], str]:
    size = page.page_size or 100
    try:
        offset = int(page.page_token) if page.page_token else 0
    except ValueError as exc:
        raise InvalidArgument("page_token: not a token") from exc
    chunk = items[offset : offset + size]
    return chunk, str(offset + size) if offset + size < len(items) else ""


class _Fanout:
    """Live-stream subscribers of a test backend."""

    def __init__(self) -> None:
        self.queues: list[asyncio.Queue[Any]] = []

    def publish(self, item: Any) -> None:
        for q in self.queues:
            q.put_nowait(item)

    def end_all(self) -> None:
        """End every open stream (as a backend restart would)."""
        for q in self.queues:
            q.put_nowait(None)
        self.queues = []

    async def stream(self, wrap: Any) -> AsyncIterator[Any]:
        q: asyncio.Queue[Any] = asyncio.Queue()
        self.queues.append(q)
        try:
            while (item := await q.get()) is not None:
                yield wrap(item)
        finally:
            if q in self.queues:
                self.queues.remove(q)


class IngestTestBackend(ingest_pb2_grpc.IngestServiceServicer):
    """TEST BACKEND: ingest's gRPC API over in-memory rules, archive and streams."""

    def __init__(self) -> None:
        self.rules: dict[str, ingest_pb2.Rule] = {}
        self.running = True
        self.workers = 2
        self.verdicts: list[ingest_pb2.VerdictRecord] = []
        self.telemetry: list[ingest_pb2.TelemetryRecord] = []
        self.alarms: list[ingest_pb2.AlarmRecord] = []
        self.verdict_stream = _Fanout()
        self.telemetry_stream = _Fanout()
        self.alarm_stream = _Fanout()

    def push_verdict(self, record: ingest_pb2.VerdictRecord) -> None:
        self.verdicts.insert(0, record)
        self.verdict_stream.publish(record)

    def push_telemetry(self, record: ingest_pb2.TelemetryRecord) -> None:
        self.telemetry.insert(0, record)
        self.telemetry_stream.publish(record)

    def push_alarm(self, record: ingest_pb2.AlarmRecord) -> None:
        self.alarms.insert(0, record)
        self.alarm_stream.publish(record)

    def _rule(self, name: str) -> ingest_pb2.Rule:
        if name not in self.rules:
            raise NotFound(f"rule {name!r} not found")
        return self.rules[name]

    async def ListRules(self, request: Any, context: Any) -> Any:
        return ingest_pb2.ListRulesResponse(rules=list(self.rules.values()))

    async def GetRule(self, request: Any, context: Any) -> Any:
        return ingest_pb2.GetRuleResponse(rule=self._rule(request.name))

    async def CreateRule(self, request: Any, context: Any) -> Any:
        if request.rule.name in self.rules:
            raise AlreadyExists(f"rule {request.rule.name!r} exists already")
        self.rules[request.rule.name] = request.rule
        return ingest_pb2.CreateRuleResponse(rule=request.rule)

    async def UpdateRule(self, request: Any, context: Any) -> Any:
        self._rule(request.rule.name)
        self.rules[request.rule.name] = request.rule
        return ingest_pb2.UpdateRuleResponse(rule=request.rule)

    async def DeleteRule(self, request: Any, context: Any) -> Any:
        self._rule(request.name)
        del self.rules[request.name]
        return ingest_pb2.DeleteRuleResponse()

    async def PauseRule(self, request: Any, context: Any) -> Any:
        self._rule(request.name)
        return ingest_pb2.PauseRuleResponse()

    async def ResumeRule(self, request: Any, context: Any) -> Any:
        self._rule(request.name)
        return ingest_pb2.ResumeRuleResponse()

    def _status(self) -> ingest_pb2.GetIngestStatusResponse:
        state = ingest_pb2.WORKER_STATE_RUNNING if self.running else ingest_pb2.WORKER_STATE_STOPPED
        rules = [ingest_pb2.RuleStatus(name=n, state=state, messages_per_s=1.5) for n in self.rules]
        return ingest_pb2.GetIngestStatusResponse(state=state, workers=self.workers, rules=rules)

    async def GetIngestStatus(self, request: Any, context: Any) -> Any:
        return self._status()

    async def StartIngest(self, request: Any, context: Any) -> Any:
        self.running = True
        return ingest_pb2.StartIngestResponse(status=self._status())

    async def StopIngest(self, request: Any, context: Any) -> Any:
        self.running = False
        return ingest_pb2.StopIngestResponse(status=self._status())

    async def SetWorkers(self, request: Any, context: Any) -> Any:
        self.workers = request.workers
        return ingest_pb2.SetWorkersResponse(workers=request.workers)

    def _filtered(self, records: list[Any], flt: Any) -> list[Any]:
        out = []
        for r in records:
            if flt.device_id and r.device_id != flt.device_id:
                continue
            if flt.point and getattr(r, "point", flt.point) != flt.point:
                continue
            out.append(r)
        return out

    async def QueryTelemetry(self, request: Any, context: Any) -> Any:
        items, token = _page(self._filtered(self.telemetry, request.filter), request.filter.page)
        return ingest_pb2.QueryTelemetryResponse(records=items, next_page_token=token)

    async def QueryVerdicts(self, request: Any, context: Any) -> Any:
        records = self._filtered(self.verdicts, request.filter)
        if request.label:
            records = [r for r in records if r.label == request.label]
        items, token = _page(records, request.filter.page)
        return ingest_pb2.QueryVerdictsResponse(records=items, next_page_token=token)

    async def QueryDeadLetters(self, request: Any, context: Any) -> Any:
        record = ingest_pb2.DeadLetterRecord(id=1, topic="t", reason="values: empty", payload=b"{}")
        items, token = _page([record], request.filter.page)
        return ingest_pb2.QueryDeadLettersResponse(records=items, next_page_token=token)

    async def QueryAlarms(self, request: Any, context: Any) -> Any:
        records = self._filtered(self.alarms, request.filter)
        if request.state:
            records = [r for r in records if r.state == request.state]
        items, token = _page(records, request.filter.page)
        return ingest_pb2.QueryAlarmsResponse(records=items, next_page_token=token)

    def StreamVerdicts(self, request: Any, context: Any) -> Any:
        return self.verdict_stream.stream(lambda v: ingest_pb2.StreamVerdictsResponse(verdict=v))

    def StreamTelemetry(self, request: Any, context: Any) -> Any:
        return self.telemetry_stream.stream(
            lambda t: ingest_pb2.StreamTelemetryResponse(telemetry=t)
        )

    def StreamAlarms(self, request: Any, context: Any) -> Any:
        return self.alarm_stream.stream(lambda a: ingest_pb2.StreamAlarmsResponse(alarm=a))


class SyncTestBackend(sync_pb2_grpc.SyncServiceServicer):
    """TEST BACKEND: sync's gRPC API over an in-memory job table and image cache."""

    def __init__(self) -> None:
        self.jobs: dict[str, sync_pb2.SyncJob] = {}
        self.images: dict[str, tuple[str, bytes]] = {}

    async def EnqueueUrls(self, request: Any, context: Any) -> Any:
        jobs, rejected = [], []
        for url in request.urls:
            if not url.startswith(("http://", "https://")):
                rejected.append(f"{url}: not an http(s) URL")
                continue
            job = sync_pb2.SyncJob(
                id=uuid.uuid4().hex[:12],
                url=url,
                state=sync_pb2.JOB_STATE_FAILED,
                work_id=request.work_id,
            )
            self.jobs[job.id] = job
            jobs.append(job)
        return sync_pb2.EnqueueUrlsResponse(jobs=jobs, rejected=rejected)

    async def ListJobs(self, request: Any, context: Any) -> Any:
        jobs = [j for j in self.jobs.values() if not request.state or j.state == request.state]
        items, token = _page(jobs, request.page)
        return sync_pb2.ListJobsResponse(jobs=items, next_page_token=token)

    def _job(self, job_id: str) -> sync_pb2.SyncJob:
        if job_id not in self.jobs:
            raise NotFound(f"job {job_id!r} not found")
        return self.jobs[job_id]

    async def GetJob(self, request: Any, context: Any) -> Any:
        return sync_pb2.GetJobResponse(job=self._job(request.id))

    async def RetryJob(self, request: Any, context: Any) -> Any:
        job = self._job(request.id)
        if job.state not in (sync_pb2.JOB_STATE_FAILED, sync_pb2.JOB_STATE_DEAD):
            raise FailedPrecondition(f"job {job.id} is not failed or dead")
        job.state = sync_pb2.JOB_STATE_QUEUED
        return sync_pb2.RetryJobResponse(job=job)

    async def GetCacheStats(self, request: Any, context: Any) -> Any:
        size = sum(len(b) for _, b in self.images.values())
        return sync_pb2.GetCacheStatsResponse(files=len(self.images), bytes=size)

    async def ReadImage(self, request: Any, context: Any) -> AsyncIterator[Any]:
        if request.cache_path not in self.images:
            raise NotFound(f"{request.cache_path} is not cached")
        ctype, data = self.images[request.cache_path]
        modified = Timestamp(seconds=1763800000)
        etag = hashlib.sha256(data).hexdigest()[:32]
        yield sync_pb2.ReadImageResponse(
            content_type=ctype, size=len(data), etag=etag, modified_at=modified, chunk=data[:1000]
        )
        for i in range(1000, len(data), 1000):
            yield sync_pb2.ReadImageResponse(chunk=data[i : i + 1000])


@dataclass
class Stack:
    """The backends a gateway under test talks to."""

    ingest: IngestTestBackend
    sync: SyncTestBackend
    addrs: dict[str, str]
    mqtt_url: str
    ota_topic_root: str

    def config(self, **overrides: Any) -> GatewayConfig:
        values: dict[str, Any] = {
            "http_port": 0,
            "tokens": [WRITE_TOKEN],
            "read_tokens": [READ_TOKEN],
            "ingest_addr": self.addrs["ingest"],
            "inference_addr": self.addrs["inference"],
            "sync_addr": self.addrs["sync"],
            "ota_addr": self.addrs["ota"],
            "sse_heartbeat_s": 0.5,
        }
        values.update(overrides)
        return GatewayConfig(**values)


async def _start_test_backend(servicer: Any, add: Any, name: str) -> GrpcServer:
    server = GrpcServer(config=GrpcConfig(host="127.0.0.1", port=0, grace_s=0), service=name)
    server.add(add, servicer, name)
    await server.start()
    return server


async def _wait_port(port: int, task: asyncio.Task[None], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped at start")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.fixture(scope="session")
def inference_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The REAL inference service (``python -m linewatch_inference``), once per session.

    A subprocess: the service registers its Prometheus metrics per server instance, so it
    cannot start twice in one process.
    """
    root = tmp_path_factory.mktemp("inference")
    (root / "models").mkdir()
    port = free_port()
    env = {
        **os.environ,
        "LINEWATCH_INFERENCE__GRPC__PORT": str(port),
        "LINEWATCH_INFERENCE__MODEL_DIR": str(root / "models"),
        "LINEWATCH_INFERENCE__DATA_DIR": str(root),
        "LINEWATCH_INFERENCE__USE_CUDA": "'off'",
        "LINEWATCH_INFERENCE__LOG_FORMAT": "text",
        "LINEWATCH_INFERENCE__LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, "-m", "linewatch_inference"], env=env)
    try:
        wait_port(port, timeout=60)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def stack(
    inference_addr: str, mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    """Real inference and OTA + the ingest/sync test backends, each on a free port."""
    from linewatch_ota.app import serve as serve_ota
    from linewatch_ota.config import OtaConfig

    ingest, sync = IngestTestBackend(), SyncTestBackend()
    servers = [
        await _start_test_backend(
            ingest,
            ingest_pb2_grpc.add_IngestServiceServicer_to_server,
            "linewatch.v1.IngestService",
        ),
        await _start_test_backend(
            sync, sync_pb2_grpc.add_SyncServiceServicer_to_server, "linewatch.v1.SyncService"
        ),
    ]
    ota_root = f"{topic_prefix}/ota"
    ota_config = OtaConfig(
        grpc=GrpcConfig(host="127.0.0.1", port=0, grace_s=0),
        mqtt=MqttConfig(url=mqtt_url, client_id=f"gw-test-ota-{uuid.uuid4().hex[:8]}"),
        topic_root=ota_root,
        data_dir=tmp_path / "ota",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ota.db'}",
        tick_interval_s=0.2,
    )
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    ota = asyncio.create_task(serve_ota(ota_config, stop, ready=ready))
    waiters: set[asyncio.Future[Any]] = {ota, ready}
    await asyncio.wait(waiters, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if ota.done():
        ota.result()
    ota_port = await asyncio.wait_for(ready, 1)
    addrs = {
        "ingest": f"127.0.0.1:{servers[0].port}",
        "sync": f"127.0.0.1:{servers[1].port}",
        "ota": f"127.0.0.1:{ota_port}",
        "inference": inference_addr,
    }
    try:
        yield Stack(ingest, sync, addrs, mqtt_url, ota_root)
    finally:
        stop.set()
        await asyncio.wait_for(ota, 30)
        for server in servers:
            await server.stop(0)


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the gateway app (in-process ASGI) over the stack."""
    backends = Backends.connect(stack.config())
    app = create_app(stack.config(), backends)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http
    await backends.close()


@dataclass
class LiveGateway:
    """A real uvicorn gateway on a free port."""

    url: str
    stack: Stack


@pytest.fixture
async def live(stack: Stack) -> AsyncIterator[LiveGateway]:
    """The gateway's ``serve`` on a free port over the stack."""
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(stack.config(http_port=port), stop))
    await _wait_port(port, task)
    try:
        yield LiveGateway(f"http://127.0.0.1:{port}", stack)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def auth(token: str = WRITE_TOKEN) -> dict[str, str]:
    """The Authorization header."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def write_headers() -> dict[str, str]:
    """Headers of a writer."""
    return auth()


@pytest.fixture
def read_only_headers() -> dict[str, str]:
    """Headers of a read-only token."""
    return auth(READ_TOKEN)


_ = grpc
