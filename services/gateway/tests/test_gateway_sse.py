"""Server-Sent Events against a real uvicorn: delivery, filters, resume, heartbeats, drops."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, cast

import httpx
import pytest
from linewatch_gateway.sse import StreamFilter, StreamHub

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage

from .conftest import WRITE_TOKEN


async def sse_events(resp: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parse a text/event-stream into dicts (comments come as {"comment": ...})."""
    event: dict[str, Any] = {}
    async for line in resp.aiter_lines():
        if line == "":
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")


async def collect(
    url: str, n: int, *, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(timeout=timeout) as http,
        http.stream("GET", url, headers=headers) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        async with asyncio.timeout(timeout):
            async for ev in sse_events(resp):
                if "data" in ev:
                    got.append(ev)
                    if len(got) >= n:
                        break
    return got


async def eventually(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` is true."""
    async with asyncio.timeout(timeout):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.02)


async def streams_connected(url: str) -> None:
    """Wait until /readyz says every upstream stream is subscribed."""
    async with httpx.AsyncClient() as http, asyncio.timeout(10):
        while True:
            body = (await http.get(f"{url}/readyz")).json()
            if all(body.get("streams", {}).values()):
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the backend registers the subscription just after


async def test_verdicts_delivered_with_ids_and_filters(live: Any) -> None:
    """Curves published over MQTT come out of the real pipeline as SSE verdicts."""
    url = f"{live.url}/v1/stream/verdicts"
    await streams_connected(live.url)
    all_task = asyncio.create_task(collect(url, 3))
    line_b = asyncio.create_task(collect(url + "?line=B", 1))
    spikes = asyncio.create_task(collect(url + "?label=spike&device=press-08", 1))
    await asyncio.sleep(0.3)
    ids = await live.stack.publish(
        [("press-07", "A", "ok"), ("press-07", "B", "ok"), ("press-08", "A", "spike")]
    )
    events = await all_task
    assert [e["event"] for e in events] == ["verdict"] * 3
    numbers = [int(e["id"]) for e in events]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 3
    data = [json.loads(e["data"]) for e in events]
    assert {d["msg_id"] for d in data} == set(ids)
    first = next(d for d in data if d["msg_id"] == ids[0])
    assert first["device_id"] == "press-07"
    assert first["label"] == "ok"
    assert first["attrs"] == {"line": "A"}
    assert first["model"] == "curve-quality"
    assert [json.loads(e["data"])["msg_id"] for e in await line_b] == [ids[1]]
    assert [json.loads(e["data"])["msg_id"] for e in await spikes] == [ids[2]]


async def test_last_event_id_replays_what_was_missed(live: Any) -> None:
    url = f"{live.url}/v1/stream/verdicts"
    await streams_connected(live.url)
    first = asyncio.create_task(collect(url, 2))
    await asyncio.sleep(0.3)
    ids = await live.stack.publish([("press-07", "A", "ok")] * 5)
    seen = await first
    last_id = seen[-1]["id"]
    replay = await collect(url, 3, headers={"Last-Event-ID": last_id})
    seen_ids = [json.loads(e["data"])["msg_id"] for e in seen + replay]
    assert sorted(seen_ids) == sorted(ids)
    assert all(int(e["id"]) > int(last_id) for e in replay)
    by_query = await collect(f"{url}?since={last_id}&device=press-07", 3)
    assert [e["id"] for e in by_query] == [e["id"] for e in replay]
    async with httpx.AsyncClient() as http:
        bad = await http.get(url, headers={"Last-Event-ID": "not-a-number"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_argument"


async def test_heartbeats_on_an_idle_stream(live: Any) -> None:
    comments: list[str] = []
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("GET", f"{live.url}/v1/stream/alarms") as resp,
    ):
        async with asyncio.timeout(5):
            async for ev in sse_events(resp):
                if "comment" in ev:
                    comments.append(ev["comment"])
                if comments.count("heartbeat") >= 2:
                    break
    assert "connected" in comments
    assert comments.count("heartbeat") >= 2


async def test_telemetry_and_alarm_streams(live: Any) -> None:
    base = live.url + "/v1/stream/"
    await streams_connected(live.url)
    telemetry = asyncio.create_task(collect(base + "telemetry?line=A", 1))
    alarms = asyncio.create_task(collect(base + "alarms?device=d9", 1))
    await asyncio.sleep(0.3)
    ids = await live.stack.publish([("d1", "B", "ok"), ("d1", "A", "ok"), ("d9", "B", "spike")])
    (tel,) = await telemetry
    assert tel["event"] == "telemetry"
    data = json.loads(tel["data"])
    assert data["msg_id"] == ids[1]
    assert len(data["values"]) == 256
    (alarm,) = await alarms
    assert alarm["event"] == "alarm"
    assert json.loads(alarm["data"])["state"] == "active"
    assert json.loads(alarm["data"])["device_id"] == "d9"
    async with httpx.AsyncClient() as http:
        assert (await http.get(base + "nonsense")).status_code == 422


async def test_ota_stream_from_the_real_ota_service(live: Any) -> None:
    """A device reports progress over MQTT; the browser-side stream sees it, filtered."""
    stack = live.stack
    await streams_connected(live.url)
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    root = stack.ota_topic_root
    metadata: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_metadata(message: MqttMessage) -> None:
        await metadata.put(json.loads(message.payload))

    device = MqttClient(MqttConfig(url=stack.mqtt_url), client_id=f"gw-dev-{uuid.uuid4().hex[:8]}")
    await device.connect()
    try:
        await device.subscribe(f"{root}/d2/metadata", on_metadata)
        events: list[dict[str, Any]] = []

        async def watch() -> None:
            url = f"{live.url}/v1/stream/ota?device=d2"
            async with httpx.AsyncClient(timeout=20) as http, http.stream("GET", url) as resp:
                async for ev in sse_events(resp):
                    if "data" in ev:
                        events.append(ev)
                        data = json.loads(ev["data"])
                        if ev["event"] == "device_update" and data["percent"] == 42:
                            return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=live.url) as http:
            files = [("version", (None, b"2.0.0")), ("file", ("fw.bin", b"\x01" * 5000))]
            fw = (await http.post("/v1/firmware", files=files, headers=headers)).json()
            body = {"firmware_id": fw["id"], "devices": ["d1", "d2"]}
            made = await http.post("/v1/ota/rollouts", json=body, headers=headers)
            assert made.status_code == 201, made.text
        meta = await asyncio.wait_for(metadata.get(), 15)
        assert meta["url"].endswith(f"/v1/firmware/{fw['id']}/download")
        progress = {"update_id": meta["update_id"], "state": "downloading", "percent": 42}
        await device.publish(f"{root}/d2/progress", json.dumps(progress))
        await asyncio.wait_for(watcher, 15)
    finally:
        await device.disconnect()
    kinds = {ev["event"] for ev in events}
    assert kinds <= {"rollout", "device_update"}
    for ev in events:
        data = json.loads(ev["data"])
        assert "d2" in (data.get("devices") or [data.get("device_id")])
    last = json.loads(events[-1]["data"])
    assert last["state"] == "downloading"
    assert last["device_id"] == "d2"


async def test_upstream_reconnects_after_ingest_restart(live: Any) -> None:
    """Ingest restarts: the gateway re-subscribes by itself and clients keep receiving."""
    url = f"{live.url}/v1/stream/verdicts"
    await streams_connected(live.url)
    before = asyncio.create_task(collect(url, 1))
    await asyncio.sleep(0.3)
    await live.stack.publish([("press-07", "A", "ok")])
    (first,) = await before
    await live.stack.stop_ingest()
    await live.stack.start_ingest()
    await asyncio.sleep(1.5)  # the hub's backoff (sse_reconnect_max_s=0.5) has run out
    await streams_connected(live.url)
    after = asyncio.create_task(collect(url, 1, headers={"Last-Event-ID": first["id"]}))
    await asyncio.sleep(0.3)
    (msg_id,) = await live.stack.publish([("press-07", "A", "spike")])
    (second,) = await after
    assert json.loads(second["data"])["msg_id"] == msg_id
    assert int(second["id"]) > int(first["id"])


async def test_slow_client_is_dropped_without_slowing_others() -> None:
    async def never() -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield None

    hub = StreamHub("verdicts", never, lambda m: None, replay=10, queue_size=4)
    slow = hub.subscribe(StreamFilter())
    fast = hub.subscribe(StreamFilter())
    received: list[int] = []

    async def drain() -> None:
        async for chunk in hub.stream(fast, heartbeat_s=5):
            if chunk.startswith(b"id:"):
                received.append(int(chunk.split(b"\n")[0][4:]))
                if len(received) == 20:
                    return

    consumer = asyncio.create_task(drain())
    await asyncio.sleep(0)
    for i in range(20):
        hub.publish("verdict", {"i": i})
        await asyncio.sleep(0.005)  # a reader that keeps up; the slow one never reads
    await asyncio.wait_for(consumer, 5)
    assert len(received) == 20
    assert received == sorted(received)
    assert slow.dropped
    assert hub.clients == 0
    # the slow client's response ends at once; it may resume from the replay buffer
    chunks = [c async for c in hub.stream(slow, heartbeat_s=5)]
    assert chunks[0].startswith(b"retry:")
    assert len(chunks) <= 5
    resumed = hub.subscribe(StreamFilter(), last_event_id=received[9])
    assert [e.id for e in resumed.backlog] == received[10:]


@pytest.mark.parametrize("replay", [0, 3])
async def test_replay_buffer_is_bounded(replay: int) -> None:
    async def never() -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield None

    hub = StreamHub("alarms", never, lambda m: None, replay=replay)
    ids = [hub.publish("alarm", {"i": i}).id for i in range(10)]
    sub = hub.subscribe(StreamFilter(), last_event_id=ids[0])
    assert [e.id for e in sub.backlog] == ids[10 - replay :] if replay else sub.backlog == []
    # events between ids[0] and the buffer are gone: the client is told before the backlog
    assert sub.gap_after == ids[0]
    chunks = cast(AsyncGenerator[bytes, None], hub.stream(sub, heartbeat_s=5))
    assert (await anext(chunks)).startswith(b"retry:")
    gap = await anext(chunks)
    assert gap.startswith(b"event: gap\n")
    assert json.loads(gap.split(b"data: ")[1]) == {"after": ids[0], "stream": "alarms"}
    await chunks.aclose()
    # resuming from the newest event (or within the buffer) loses nothing: no gap
    assert hub.subscribe(StreamFilter(), last_event_id=ids[-1]).gap_after is None
    if replay:
        assert hub.subscribe(StreamFilter(), last_event_id=ids[-replay - 1]).gap_after is None


async def test_stream_takes_the_token_in_the_query_when_reads_need_auth(stack: Any) -> None:
    """EventSource cannot send headers: ``?access_token=`` opens the stream instead."""
    from linewatch_gateway.app import serve

    from linewatch_dev.testing import free_port

    from .conftest import READ_TOKEN, wait_serving

    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(stack.config(http_port=port, read_auth=True), stop))
    try:
        await wait_serving(port, task)
        url = f"http://127.0.0.1:{port}/v1/stream/alarms"
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(url)).status_code == 401
            async with http.stream("GET", url, params={"access_token": READ_TOKEN}) as resp:
                assert resp.status_code == 200
                first = await anext(resp.aiter_lines())
                assert first.startswith("retry:")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
