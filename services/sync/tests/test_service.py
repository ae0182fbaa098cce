"""The whole service: real broker, real database, real HTTP server, gRPC API."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.v1 import common_pb2, sync_pb2
from linewatch_dev.sync_testing import ImageServer, Route, RunningSync, StartSync, image_bytes

DONE = sync_pb2.JOB_STATE_DONE
DEAD = sync_pb2.JOB_STATE_DEAD


@pytest.fixture
async def publisher(mqtt_url: str, topic_prefix: str) -> AsyncIterator[MqttClient]:
    client = MqttClient(
        MqttConfig(url=mqtt_url), client_id=f"pub-{topic_prefix[-10:]}", clean_start=True
    )
    await client.connect()
    yield client
    await client.disconnect()


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".partial" not in p.parts
    }


async def test_both_payload_formats_end_to_end(
    start_sync: StartSync,
    image_server: ImageServer,
    publisher: MqttClient,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    bodies = {f"/img/{i}.jpg": image_bytes(i, 30_000 + i) for i in range(6)}
    for path, body in bodies.items():
        image_server.routes[path] = Route(body=body)
    svc = await start_sync()
    base = image_server.base_url
    seed = ",".join(f"{base}/img/{i}.jpg!thumb" for i in range(3))
    await publisher.publish(f"{topic_prefix}/sync", seed)
    doc = {"urls": [f"{base}/img/{i}.jpg" for i in range(3, 6)], "work_id": "work-42"}
    await publisher.publish(f"{topic_prefix}/sync-single-work", json.dumps(doc))
    jobs = await svc.wait_jobs(6)
    host = f"127.0.0.1_{image_server.port}"
    assert sorted(j.cache_path for j in jobs) == sorted(f"{host}{p}" for p in bodies)
    cached = files_under(tmp_path / "cache")
    assert cached == {f"{host}{p}": body for p, body in bodies.items()}
    work = await svc.stub.ListJobs(sync_pb2.ListJobsRequest(work_id="work-42"))
    assert sorted(j.url for j in work.jobs) == sorted(doc["urls"])
    for job in jobs:
        assert job.sha256 == hashlib.sha256(bodies[job.url[len(base) :]]).hexdigest()
    stats = await svc.stub.GetCacheStats(sync_pb2.GetCacheStatsRequest())
    assert stats.files == 6
    assert stats.bytes == sum(len(b) for b in bodies.values())
    assert stats.jobs_by_state["done"] == 6


async def test_invalid_payloads_are_recorded_and_dead_lettered(
    start_sync: StartSync,
    image_server: ImageServer,
    publisher: MqttClient,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    received: asyncio.Queue[MqttMessage] = asyncio.Queue()

    async def on_dead(message: MqttMessage) -> None:
        await received.put(message)

    await publisher.subscribe(f"{topic_prefix}/deadletter", on_dead)
    await asyncio.sleep(0.2)
    image_server.routes["/ok.jpg"] = Route(body=image_bytes(9, 1000))
    svc = await start_sync()
    await publisher.publish(f"{topic_prefix}/sync", b'{"urls": "not a list"}')
    async with asyncio.timeout(10):
        first = json.loads((await received.get()).payload)
    assert first["source"] == "sync"
    assert "JSON payload must be" in first["reason"]
    hostile = [
        "file:///etc/passwd",
        f"{image_server.base_url}/../../etc/passwd",
        f"{image_server.base_url}/a/%2e%2e/%2e%2e/x.jpg",
        f"{image_server.base_url}/ok.jpg",
    ]
    await publisher.publish(f"{topic_prefix}/sync", ",".join(hostile))
    async with asyncio.timeout(10):
        second = json.loads((await received.get()).payload)
    assert "file:///etc/passwd" in second["reason"]
    await svc.wait_jobs(1)
    rejected = await svc_rejections(svc)
    assert len(rejected) == 4  # the whole message, then three URLs
    assert set(files_under(tmp_path / "cache")) == {f"127.0.0.1_{image_server.port}/ok.jpg"}
    everything = await asyncio.to_thread(lambda: list(tmp_path.rglob("*")))
    assert not any(p.name == "passwd" for p in everything)


async def svc_rejections(svc: RunningSync) -> list[object]:
    from linewatch_sync.store import JobStore

    from linewatch.runtime.db import Database

    db = Database(svc.config.database_url)
    try:
        store = JobStore(
            db=db, worker_id="r", max_attempts=1, backoff_base_s=1, backoff_cap_s=1, lease_s=1
        )
        return list(await store.rejections())
    finally:
        await db.close()


async def test_grpc_enqueue_rejects_hostile_urls(
    start_sync: StartSync, image_server: ImageServer
) -> None:
    svc = await start_sync()
    resp = await svc.stub.EnqueueUrls(
        sync_pb2.EnqueueUrlsRequest(urls=["ftp://x/a.jpg", "http://h/..%2f..%2fx.jpg"])
    )
    assert not resp.jobs
    assert len(resp.rejected) == 2
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await svc.stub.EnqueueUrls(sync_pb2.EnqueueUrlsRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_dead_after_attempt_limit_then_retry_job(
    start_sync: StartSync, image_server: ImageServer
) -> None:
    body = image_bytes(3, 5000)
    image_server.routes["/flaky.jpg"] = Route(body=body, fail_first=3)
    image_server.routes["/gone.jpg"] = Route(status=404)
    svc = await start_sync(max_attempts=3)
    resp = await svc.stub.EnqueueUrls(
        sync_pb2.EnqueueUrlsRequest(
            urls=[f"{image_server.base_url}/flaky.jpg", f"{image_server.base_url}/gone.jpg"]
        )
    )
    flaky, gone = resp.jobs
    dead = await svc.wait_state(flaky.id, {DEAD})
    assert dead.attempts == 3
    assert "503" in dead.last_error
    gone_job = await svc.wait_state(gone.id, {DEAD})
    assert gone_job.attempts == 1
    assert "404" in gone_job.last_error
    assert image_server.seen.hits["/gone.jpg"] == 1
    retried = await svc.stub.RetryJob(sync_pb2.RetryJobRequest(id=flaky.id))
    assert retried.job.attempts == 0
    done = await svc.wait_state(flaky.id, {DONE})
    assert done.size == len(body)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await svc.stub.RetryJob(sync_pb2.RetryJobRequest(id=flaky.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await svc.stub.GetJob(sync_pb2.GetJobRequest(id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_restart_resumes_the_queue(
    start_sync: StartSync, image_server: ImageServer, tmp_path: Path
) -> None:
    bodies = {f"/s/{i}.jpg": image_bytes(i, 20_000) for i in range(12)}
    for path, body in bodies.items():
        image_server.routes[path] = Route(body=body, delay_s=0.3)
    svc = await start_sync(concurrency=2, per_host_concurrency=2)
    await svc.stub.EnqueueUrls(
        sync_pb2.EnqueueUrlsRequest(urls=[f"{image_server.base_url}{p}" for p in bodies])
    )
    await svc.wait_jobs(1)
    await svc.shutdown()
    stats_files = len(files_under(tmp_path / "cache"))
    assert 0 < stats_files < len(bodies)
    again = await start_sync(concurrency=4, per_host_concurrency=4)
    await again.wait_jobs(len(bodies))
    host = f"127.0.0.1_{image_server.port}"
    assert files_under(tmp_path / "cache") == {f"{host}{p}": b for p, b in bodies.items()}
    assert not list((tmp_path / "cache" / ".partial").iterdir())


async def test_read_image_streams_with_metadata(
    start_sync: StartSync, image_server: ImageServer
) -> None:
    body = image_bytes(5, 700_000)
    image_server.routes["/big.png"] = Route(body=body, content_type="image/png")
    svc = await start_sync()
    resp = await svc.stub.EnqueueUrls(
        sync_pb2.EnqueueUrlsRequest(urls=[f"{image_server.base_url}/big.png!large"])
    )
    (job,) = resp.jobs
    await svc.wait_state(job.id, {DONE})
    parts = [
        part
        async for part in svc.stub.ReadImage(sync_pb2.ReadImageRequest(cache_path=job.cache_path))
    ]
    # the bytes are a JPEG whatever the server's label said: the sniffed type is kept
    assert parts[0].content_type == "image/jpeg"
    assert parts[0].size == len(body)
    assert parts[0].etag == f'"{hashlib.sha256(body).hexdigest()}"'
    assert len(parts) > 1
    assert b"".join(p.chunk for p in parts) == body
    for bad in ["../etc/passwd", "/etc/passwd", "x/%2e%2e/y"]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [p async for p in svc.stub.ReadImage(sync_pb2.ReadImageRequest(cache_path=bad))]
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        _ = [
            p async for p in svc.stub.ReadImage(sync_pb2.ReadImageRequest(cache_path="h/none.jpg"))
        ]
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_resent_url_is_refetched_conditionally(
    start_sync: StartSync, image_server: ImageServer
) -> None:
    route = Route(body=image_bytes(7, 4000))
    image_server.routes["/e.jpg"] = route
    svc = await start_sync()
    url = f"{image_server.base_url}/e.jpg"
    (job,) = (await svc.stub.EnqueueUrls(sync_pb2.EnqueueUrlsRequest(urls=[url]))).jobs
    await svc.wait_state(job.id, {DONE})
    (again,) = (await svc.stub.EnqueueUrls(sync_pb2.EnqueueUrlsRequest(urls=[url + "!x"]))).jobs
    assert again.id == job.id
    await asyncio.sleep(0.1)
    await svc.wait_state(job.id, {DONE})
    async with asyncio.timeout(10):
        while image_server.seen.hits["/e.jpg"] < 2:  # noqa: ASYNC110 (a real server's counter)
            await asyncio.sleep(0.05)
    assert image_server.seen.headers[-1][1].get("if-none-match") == route.etag


async def test_list_jobs_paging(start_sync: StartSync, image_server: ImageServer) -> None:
    svc = await start_sync()
    urls = [f"{image_server.base_url}/missing/{i}.jpg" for i in range(7)]
    await svc.stub.EnqueueUrls(sync_pb2.EnqueueUrlsRequest(urls=urls, work_id="p"))
    seen: list[str] = []
    token = ""
    while True:
        page = await svc.stub.ListJobs(
            sync_pb2.ListJobsRequest(
                work_id="p", page=common_pb2.PageRequest(page_size=3, page_token=token)
            )
        )
        seen.extend(j.id for j in page.jobs)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 7
    assert len(set(seen)) == 7
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await svc.stub.ListJobs(
            sync_pb2.ListJobsRequest(page=common_pb2.PageRequest(page_token="garbage"))
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
