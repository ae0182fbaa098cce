"""Drill: the gateway restarted while SSE clients are attached.

Three clients behave like browsers' EventSource: they reconnect after the stream ends and
send ``Last-Event-ID``. Verdicts are produced before, during (the gateway is down) and
after the restart. The restarted gateway cannot replay what happened while it was down,
so it says so with a ``gap`` event and the clients fill the hole from ``GET
/v1/verdicts``: every client ends up with every verdict, none twice from the live stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

import httpx
import pytest
from linewatch_gateway.app import serve

from linewatch.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc
from linewatch_dev.testing import free_port, operator_channel

from .conftest import READ_TOKEN, Stack, wait_serving
from .test_gateway_sse import sse_events, streams_connected

HEADERS = {"Authorization": f"Bearer {READ_TOKEN}"}


@dataclass
class ResumingClient:
    """An EventSource-like SSE client of the verdict stream."""

    url: str
    live: list[str] = field(default_factory=list)
    backfilled: set[str] = field(default_factory=set)
    gaps: int = 0
    connects: int = 0
    last_id: str | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def seen(self) -> set[str]:
        return set(self.live) | self.backfilled

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http:
            while True:
                headers = dict(HEADERS)
                if self.last_id is not None:
                    headers["Last-Event-ID"] = self.last_id
                try:
                    async with http.stream(
                        "GET", f"{self.url}/v1/stream/verdicts", headers=headers
                    ) as resp:
                        if resp.status_code != 200:
                            raise httpx.TransportError(f"HTTP {resp.status_code}")
                        self.connects += 1
                        self.connected.set()
                        async for ev in sse_events(resp):
                            if ev.get("event") == "verdict":
                                self.live.append(json.loads(ev["data"])["msg_id"])
                                self.last_id = ev["id"]
                            elif ev.get("event") == "gap":
                                self.gaps += 1
                                await self._backfill(http)
                except (httpx.TransportError, httpx.StreamError):
                    pass
                self.connected.clear()
                await asyncio.sleep(0.3)  # the stream's retry hint, shortened

    async def _backfill(self, http: httpx.AsyncClient) -> None:
        resp = await http.get(f"{self.url}/v1/verdicts?page_size=1000", headers=HEADERS)
        assert resp.status_code == 200, resp.text
        self.backfilled |= {item["msg_id"] for item in resp.json()["items"]}


async def _archived(stack: Stack, ids: list[str]) -> None:
    async with operator_channel(stack.addrs["ingest"]) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        async with asyncio.timeout(30):
            while True:
                page = await stub.QueryVerdicts(
                    ingest_pb2.QueryVerdictsRequest(
                        filter=ingest_pb2.ArchiveFilter(page=common_pb2.PageRequest(page_size=1000))
                    )
                )
                if set(ids) <= {r.msg_id for r in page.records}:
                    return
                await asyncio.sleep(0.1)


async def _all_seen(clients: list[ResumingClient], ids: set[str], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not all(ids <= c.seen for c in clients):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_gateway_restarted_with_sse_clients_attached(stack: Stack) -> None:
    port = free_port()
    config = stack.config(http_port=port)
    url = f"http://127.0.0.1:{port}"

    async def start_gateway() -> tuple[asyncio.Event, asyncio.Task[None]]:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(config, stop))
        await wait_serving(port, task)
        await streams_connected(url)
        return stop, task

    stop, task = await start_gateway()
    clients = [ResumingClient(url) for _ in range(3)]
    runners = [asyncio.create_task(c.run()) for c in clients]
    try:
        for c in clients:
            await asyncio.wait_for(c.connected.wait(), 10)
        before = await stack.publish([("press-07", "A", "ok"), ("press-08", "B", "spike")] * 5)
        await _all_seen(clients, set(before))

        stop.set()
        await asyncio.wait_for(task, 15)
        during = await stack.publish([("press-07", "A", "ok")] * 10)
        await _archived(stack, during)  # the pipeline goes on without the gateway

        restarted = asyncio.get_running_loop().time()
        stop, task = await start_gateway()
        for c in clients:
            await asyncio.wait_for(c.connected.wait(), 10)
        resumed = asyncio.get_running_loop().time() - restarted
        after = await stack.publish([("press-09", "C", "drift")] * 10)
        await _all_seen(clients, set(before) | set(during) | set(after))
        print(f"SSE clients resumed {resumed:.2f} s after the gateway restarted")

        for c in clients:
            assert c.connects == 2
            assert c.gaps == 1  # told once that the restart lost events
            assert set(during) <= c.backfilled  # ... and filled the hole from the archive
            assert len(c.live) == len(set(c.live))  # no event twice on the live stream
            assert set(after) <= set(c.live)
    finally:
        for r in runners:
            r.cancel()
        for r in runners:
            with contextlib.suppress(asyncio.CancelledError):
                await r
        stop.set()
        await asyncio.wait_for(task, 15)
