"""A small, fast HTTP/1.1 image server for tests and benchmarks (not used at run time).

Each path is a :class:`Route` whose behaviour a test chooses: slow, failing with 503 a
few times first, cutting the body off (to exercise Range resume), lying about
Content-Length, serving HTML, redirecting, or absent (404). Range (``bytes=n-``),
``If-Range``, ``If-None-Match`` and keep-alive are supported.

``python -m linewatch_dev.sync_testing --port 8000 --count 1000 --size 102400`` serves
``/img/<i>.jpg`` with the bytes of :func:`image_bytes` (benchmarks run it in its own
process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import random
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from linewatch_sync.config import SyncConfig

from linewatch.v1 import common_pb2, sync_pb2, sync_pb2_grpc

__all__ = ["ImageServer", "Route", "RunningSync", "StartSync", "image_bytes"]


def image_bytes(index: int, size: int) -> bytes:
    """Deterministic pseudo-random bytes of image ``index`` (a JPEG magic in front)."""
    body = random.Random(index).randbytes(max(0, size - 3))
    return (b"\xff\xd8\xff" + body)[:size]


@dataclass
class Route:
    """What the server does for one path."""

    body: bytes = b""
    content_type: str = "image/jpeg"
    etag: str | None = None
    last_modified: str | None = None
    #: Answer 503 to the first N requests.
    fail_first: int = 0
    #: Sleep this long before answering.
    delay_s: float = 0.0
    #: Declare this many bytes more than the body holds, send the body, close.
    lie_extra: int = 0
    #: Send only this many body bytes (of the full declared length), then close ...
    cut_after: int | None = None
    #: ... on this many requests (then serve normally).
    cut_times: int = 1
    redirect: str | None = None
    status: int = 200
    ranges: bool = True

    def __post_init__(self) -> None:
        if self.etag is None:
            self.etag = f'"{hashlib.sha256(self.body).hexdigest()[:16]}"'


@dataclass
class _Seen:
    hits: Counter[str] = field(default_factory=Counter)
    headers: list[tuple[str, dict[str, str]]] = field(default_factory=list)


class ImageServer:
    """An asyncio HTTP server over a dict of routes."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, record: bool = True) -> None:
        self.host = host
        self.port = port
        self.routes: dict[str, Route] = {}
        self.seen = _Seen()
        self.record = record
        #: TCP connections accepted (SSRF tests: a refused URL makes none).
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> int:
        """Listen; returns the port."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=1024)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._conns):
                writer.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def __aenter__(self) -> ImageServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._conns.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    return
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                keep = await self._answer(parts[1], headers, writer)
                if not keep:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self._conns.discard(writer)
            writer.close()

    async def _answer(  # noqa: PLR0911, PLR0912 (one branch per behaviour)
        self, path: str, headers: dict[str, str], writer: asyncio.StreamWriter
    ) -> bool:
        self.seen.hits[path] += 1
        if self.record:
            self.seen.headers.append((path, headers))
        hit = self.seen.hits[path]
        route = self.routes.get(path)
        if route is None:
            await _send(writer, 404, {"content-type": "text/plain"}, b"not found")
            return True
        if route.delay_s:
            await asyncio.sleep(route.delay_s)
        if route.redirect is not None:
            await _send(writer, 302, {"location": route.redirect}, b"")
            return True
        if hit <= route.fail_first:
            await _send(writer, 503, {"content-type": "text/plain"}, b"busy")
            return True
        if route.status != 200:
            await _send(writer, route.status, {"content-type": "text/plain"}, b"no")
            return True
        base = {"content-type": route.content_type, "etag": route.etag or ""}
        if route.last_modified:
            base["last-modified"] = route.last_modified
        if route.ranges:
            base["accept-ranges"] = "bytes"
        if headers.get("if-none-match") == route.etag:
            await _send(writer, 304, base, b"", length=False)
            return True
        body, status, start = route.body, 200, 0
        wanted = headers.get("range", "")
        if_range = headers.get("if-range")
        if (
            route.ranges
            and wanted.startswith("bytes=")
            and wanted.endswith("-")
            and (if_range is None or if_range == route.etag)
        ):
            start = int(wanted[6:-1])
            if start >= len(body):
                await _send(writer, 416, {"content-range": f"bytes */{len(body)}"}, b"")
                return True
            status = 206
            base["content-range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            body = body[start:]
        if route.cut_after is not None and hit - route.fail_first <= route.cut_times:
            await _send(writer, status, base, body[: route.cut_after], declared=len(body))
            return False
        if route.lie_extra:
            await _send(writer, status, base, body, declared=len(body) + route.lie_extra)
            return False
        await _send(writer, status, base, body)
        return True


@dataclass
class RunningSync:
    """One running sync service."""

    config: SyncConfig
    port: int
    stub: sync_pb2_grpc.SyncServiceStub
    stop: asyncio.Event
    task: asyncio.Task[None]
    channel: grpc.aio.Channel

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)
        await self.channel.close()

    async def wait_state(
        self, job_id: str, states: set[int], timeout: float = 20.0
    ) -> sync_pb2.SyncJob:
        """Poll GetJob until the job is in one of ``states``."""
        async with asyncio.timeout(timeout):
            while True:
                job: sync_pb2.SyncJob = (
                    await self.stub.GetJob(sync_pb2.GetJobRequest(id=job_id))
                ).job
                if job.state in states:
                    return job
                await asyncio.sleep(0.05)

    async def wait_jobs(
        self, count: int, state: int = sync_pb2.JOB_STATE_DONE, timeout: float = 30.0
    ) -> list[sync_pb2.SyncJob]:
        """Poll ListJobs until ``count`` jobs are in ``state``."""
        async with asyncio.timeout(timeout):
            while True:
                resp = await self.stub.ListJobs(
                    sync_pb2.ListJobsRequest(
                        state=state,  # type: ignore[arg-type]
                        page=common_pb2.PageRequest(page_size=1000),
                    )
                )
                if len(resp.jobs) >= count:
                    return list(resp.jobs)
                await asyncio.sleep(0.05)


StartSync = Callable[..., Awaitable[RunningSync]]


_REASONS = {
    200: "OK",
    206: "Partial Content",
    302: "Found",
    304: "Not Modified",
    404: "Not Found",
    416: "Range Not Satisfiable",
    503: "Service Unavailable",
}


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    headers: dict[str, str],
    body: bytes,
    *,
    declared: int | None = None,
    length: bool = True,
) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    if length:
        lines.append(f"content-length: {len(body) if declared is None else declared}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    writer.write(head + body)
    await writer.drain()


async def _main(port: int, count: int, size: int) -> None:
    server = ImageServer(port=port, record=False)
    for i in range(count):
        server.routes[f"/img/{i}.jpg"] = Route(body=image_bytes(i, size))
    await server.start()
    print(f"serving {count} images on {server.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=100 * 1024)
    args = parser.parse_args()
    asyncio.run(_main(args.port, args.count, args.size))
