"""Two gateway replicas over one stack: each streams everything; resuming with a
``Last-Event-ID`` from one replica against the other.

Each replica numbers its stream's events itself (a counter starting at its start time in
µs), so an id from one replica means nothing to the other. The resume across replicas is
marked as an expected failure until event ids come from upstream (e.g. an ingest sequence);
today a client resumes only against the replica it was streaming from (the chart's
Ingress has no session affinity).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from linewatch_gateway.app import serve

from linewatch_dev.testing import free_port

from .conftest import LiveGateway, Stack, wait_serving
from .test_gateway_sse import collect, streams_connected


@pytest.fixture
async def two(stack: Stack) -> AsyncIterator[list[LiveGateway]]:
    """Two gateways on free ports over the same backends, with one stream-token key."""
    stops, tasks, out = [], [], []
    for _ in range(2):
        port = free_port()
        stop = asyncio.Event()
        task = asyncio.create_task(
            serve(stack.config(http_port=port, stream_token_secret="k" * 32), stop)
        )
        await wait_serving(port, task)
        stops.append(stop)
        tasks.append(task)
        out.append(LiveGateway(f"http://127.0.0.1:{port}", stack))
    try:
        yield out
    finally:
        for stop in stops:
            stop.set()
        for task in tasks:
            await asyncio.wait_for(task, 15)


def _ids(events: list[dict[str, Any]]) -> list[str]:
    return [json.loads(e["data"])["msg_id"] for e in events]


async def test_each_gateway_streams_every_verdict(two: list[LiveGateway]) -> None:
    for gw in two:
        await streams_connected(gw.url)
    streams = [asyncio.create_task(collect(f"{gw.url}/v1/stream/verdicts", 4)) for gw in two]
    await asyncio.sleep(0.3)
    sent = await two[0].stack.publish([("press-07", "A", "ok")] * 4)
    first, second = [await s for s in streams]
    assert sorted(_ids(first)) == sorted(sent)
    assert sorted(_ids(second)) == sorted(sent)


@pytest.mark.xfail(
    strict=True, reason="event ids are per gateway replica: resume needs the same replica"
)
async def test_resume_against_the_other_gateway(two: list[LiveGateway]) -> None:
    a, b = two
    for gw in two:
        await streams_connected(gw.url)
    first = asyncio.create_task(collect(f"{a.url}/v1/stream/verdicts", 2))
    await asyncio.sleep(0.3)
    sent = await a.stack.publish([("press-07", "A", "ok")] * 5)
    seen = await first
    replay = await collect(
        f"{b.url}/v1/stream/verdicts", 3, headers={"Last-Event-ID": seen[-1]["id"]}, timeout=5
    )
    assert sorted(_ids(seen) + _ids(replay)) == sorted(sent)
