"""The cache quota on real files: least-recently-served eviction, files in use kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

from linewatch_sync.cachefs import CacheFs

from linewatch.v1 import sync_pb2
from linewatch_dev.sync_testing import ImageServer, Route, StartSync, image_bytes


async def put(cache: CacheFs, cache_path: str, size: int) -> None:
    part = cache.part_path(cache_path)
    part.write_bytes(b"x" * size)
    await cache.commit(part, cache_path)


def on_disk(cache: CacheFs) -> set[str]:
    return {
        p.relative_to(cache.root).as_posix()
        for p in cache.root.rglob("*")
        if p.is_file() and ".partial" not in p.parts
    }


async def test_evicts_least_recently_served_first(tmp_path: Path) -> None:
    cache = CacheFs(tmp_path / "cache", max_bytes=3000)
    for name in ("a", "b", "c"):
        await put(cache, f"h/{name}.jpg", 1000)
    assert cache.quota.used_bytes == 3000
    # serving a makes it the most recent: b is now the least recently served
    chunks = [c async for c in cache.read_chunks(await cache.stat("h/a.jpg"), 4096)]
    assert b"".join(chunks) == b"x" * 1000
    assert cache.quota.order() == ["h/b.jpg", "h/c.jpg", "h/a.jpg"]
    await put(cache, "h/d.jpg", 1000)
    assert on_disk(cache) == {"h/a.jpg", "h/c.jpg", "h/d.jpg"}
    await put(cache, "h/e.jpg", 1500)  # needs two files' room: c, then a
    assert on_disk(cache) == {"h/d.jpg", "h/e.jpg"}
    assert cache.quota.used_bytes == 2500
    assert cache.quota.evictions == 3


async def test_a_file_being_served_is_never_evicted(tmp_path: Path) -> None:
    cache = CacheFs(tmp_path / "cache", max_bytes=2000)
    await put(cache, "h/old.jpg", 1000)
    await put(cache, "h/new.jpg", 1000)
    stream = cache.read_chunks(await cache.stat("h/old.jpg"), 100)
    first = await anext(stream)  # open for serving, mid-stream
    await put(cache, "h/newer.jpg", 1000)  # over the limit: old is in use, new goes
    assert on_disk(cache) == {"h/old.jpg", "h/newer.jpg"}
    rest = [c async for c in stream]
    assert first + b"".join(rest) == b"x" * 1000
    assert not cache.quota.leased("h/old.jpg")
    await put(cache, "h/newest.jpg", 1000)  # the stream ended: now old can go
    assert on_disk(cache) == {"h/newer.jpg", "h/newest.jpg"}


async def test_a_file_being_written_is_never_evicted(tmp_path: Path) -> None:
    cache = CacheFs(tmp_path / "cache", max_bytes=1500)
    await put(cache, "h/a.jpg", 1000)
    with cache.lease("h/a.jpg"):  # a re-download of a is under way
        await put(cache, "h/b.jpg", 1000)
        assert on_disk(cache) == {"h/a.jpg", "h/b.jpg"}  # over the limit, nothing free
    await put(cache, "h/c.jpg", 100)
    assert on_disk(cache) == {"h/b.jpg", "h/c.jpg"}


async def test_order_and_size_survive_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = CacheFs(root)
    for name in ("a", "b", "c"):
        await put(cache, f"h/{name}.jpg", 1000)
    now = time.time()
    for age, name in ((30, "a"), (10, "b"), (20, "c")):
        os.utime(root / "h" / f"{name}.jpg", (now - age, now - age))
    (cache.partial_dir / "x.part").write_bytes(b"y" * 5000)  # partials are not counted
    reopened = CacheFs(root, max_bytes=2000)
    assert reopened.quota.used_bytes == 3000
    assert reopened.quota.order() == ["h/a.jpg", "h/c.jpg", "h/b.jpg"]
    await put(reopened, "h/d.jpg", 500)
    assert on_disk(reopened) == {"h/b.jpg", "h/d.jpg"}


async def test_service_keeps_its_quota_and_reports_it(
    start_sync: StartSync, image_server: ImageServer
) -> None:
    for i in range(4):
        image_server.routes[f"/{i}.jpg"] = Route(body=image_bytes(i, 300_000))
    svc = await start_sync(cache_max_bytes=700_000)
    for i in range(4):
        resp = await svc.stub.EnqueueUrls(
            sync_pb2.EnqueueUrlsRequest(urls=[f"{image_server.base_url}/{i}.jpg"])
        )
        await svc.wait_state(resp.jobs[0].id, {sync_pb2.JOB_STATE_DONE})
        if i == 1:  # serve the first image again: the second becomes the oldest
            request = sync_pb2.ReadImageRequest(cache_path=f"127.0.0.1_{image_server.port}/0.jpg")
            _ = [p async for p in svc.stub.ReadImage(request)]
    stats = await svc.stub.GetCacheStats(sync_pb2.GetCacheStatsRequest())
    host = f"127.0.0.1_{image_server.port}"
    cached = {p.name for p in (svc.config.resolved_cache_dir() / host).iterdir()}
    assert cached == {"3.jpg", "2.jpg"}
    assert stats.limit_bytes == 700_000
    assert stats.used_bytes <= 700_000
    assert stats.evictions == 2
