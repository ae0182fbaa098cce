"""Gateway security: write-only rule secrets, stream tokens, SSE caps, encode-once fan-out,
and a dashboard that keeps no long-lived token in localStorage or URLs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from linewatch_gateway.app import serve
from linewatch_gateway.sse import StreamFilter, StreamHub
from linewatch_gateway.stream_access import StreamSlots, StreamTokens

from linewatch.v1 import ingest_pb2, ingest_pb2_grpc
from linewatch_dev.testing import free_port, operator_channel

from .conftest import READ_TOKEN, WRITE_TOKEN, Stack, auth, wait_serving

HOOK = "https://open.feishu.cn/open-apis/bot/v2/hook/0f1e2d3c-secret-hook-token?sign=abc"
SECRET = "webhook-signing-secret"


@contextlib.asynccontextmanager
async def gateway(stack: Stack, **overrides: Any) -> AsyncIterator[str]:
    """A real uvicorn gateway over the stack; yields its base URL."""
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(stack.config(http_port=port, **overrides), stop))
    await wait_serving(port, task)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def _assert_error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert resp.json()["error"]["message"]


async def test_rule_secrets_are_write_only(client: httpx.AsyncClient, stack: Stack) -> None:
    alarm: dict[str, Any] = {
        "threshold": 2,
        "window_s": 60,
        "webhook_url": HOOK,
        "webhook_secret": SECRET,
    }
    rule: dict[str, Any] = {
        "name": "hooked",
        "source_topic": f"{stack.topic_root}/hooked/+/telemetry",
        "model": "curve-quality",
        "output_topic": f"{stack.topic_root}/hooked/{{1}}/verdict",
        "alarm": alarm,
    }
    created = await client.post("/v1/rules", json=rule, headers=auth())
    assert created.status_code == 201, created.text
    reads = [
        created.text,
        (await client.get("/v1/rules", headers=auth(READ_TOKEN))).text,
        (await client.get("/v1/rules/hooked", headers=auth(READ_TOKEN))).text,
    ]
    for text in reads:
        assert SECRET not in text
        assert "secret-hook-token" not in text
        assert "sign=abc" not in text
    shown = (await client.get("/v1/rules/hooked")).json()["alarm"]
    assert shown["webhook_secret"] == "***"
    assert shown["webhook_url"] == "https://open.feishu.cn/***"

    # read, change one field, write back: the stored secrets stay
    changed: dict[str, Any] = {**shown, "threshold": 5}
    changed.pop("webhook_format", None)
    body = {**rule, "alarm": changed}
    updated = await client.put("/v1/rules/hooked", json=body, headers=auth())
    assert updated.status_code == 200, updated.text
    async with operator_channel(stack.addrs["ingest"]) as channel:
        stored = await ingest_pb2_grpc.IngestServiceStub(channel).GetRule(
            ingest_pb2.GetRuleRequest(name="hooked")
        )
    assert stored.rule.alarm.threshold == 5
    assert stored.rule.alarm.webhook_url == HOOK
    assert stored.rule.alarm.webhook_secret == SECRET
    # a placeholder with nothing to keep is refused
    fresh = {**rule, "name": "fresh", "alarm": {**alarm, "webhook_secret": "***"}}
    _assert_error(
        await client.post("/v1/rules", json=fresh, headers=auth()), 400, "invalid_argument"
    )
    await client.delete("/v1/rules/hooked", headers=auth())


async def test_streams_open_with_a_short_lived_stream_token(stack: Stack) -> None:
    async with gateway(stack, read_auth=True) as base, httpx.AsyncClient(timeout=10) as http:
        url = f"{base}/v1/stream/alarms"
        _assert_error(await http.get(url), 401, "unauthenticated")
        # a bearer token in the URL is not accepted
        _assert_error(
            await http.get(url, params={"access_token": READ_TOKEN}), 401, "unauthenticated"
        )
        _assert_error(await http.get(url, params={"token": READ_TOKEN}), 401, "unauthenticated")
        _assert_error(await http.post(f"{base}/v1/stream/token"), 401, "unauthenticated")
        issued = await http.post(f"{base}/v1/stream/token", headers=auth(READ_TOKEN))
        assert issued.status_code == 200, issued.text
        token = issued.json()["token"]
        assert READ_TOKEN not in token
        assert WRITE_TOKEN not in token
        assert issued.json()["expires_in_s"] == 300
        async with http.stream("GET", url, params={"token": token}) as resp:
            assert resp.status_code == 200
            assert (await anext(resp.aiter_lines())).startswith("retry:")
        # forged and expired tokens, and the stream token anywhere but a stream
        expiry, _, mac = token.partition(".")
        forged = f"{int(expiry) + 60}.{mac}"
        _assert_error(await http.get(url, params={"token": forged}), 401, "unauthenticated")
        other = StreamTokens(ttl_s=300)
        _assert_error(
            await http.get(url, params={"token": other.issue()[0]}), 401, "unauthenticated"
        )
        _assert_error(
            await http.get(f"{base}/v1/rules", headers=auth(token)), 401, "unauthenticated"
        )


def test_stream_token_expires() -> None:
    tokens = StreamTokens(ttl_s=60)
    token, expiry = tokens.issue(now=1_000_000)
    assert tokens.valid(token, now=1_000_030)
    assert not tokens.valid(token, now=expiry + 1)
    assert not tokens.valid(token + "x", now=1_000_030)
    assert not tokens.valid("", now=1_000_030)


async def test_sse_caps_answer_503(stack: Stack) -> None:
    async with (
        gateway(stack, sse_max_clients=3, sse_max_clients_per_address=2) as base,
        httpx.AsyncClient(timeout=10) as http,
    ):
        url = f"{base}/v1/stream/verdicts"
        async with http.stream("GET", url) as first, http.stream("GET", url) as second:
            assert first.status_code == second.status_code == 200
            third = await http.get(url)
            _assert_error(third, 503, "too_many_streams")
            assert "per client address" in third.json()["error"]["message"]
            assert third.headers["retry-after"] == "10"
        # the slots come back once the streams close
        for _ in range(100):
            async with http.stream("GET", url) as again:
                if again.status_code == 200:
                    break
            await asyncio.sleep(0.1)
        assert again.status_code == 200


def test_total_cap_across_addresses() -> None:
    slots = StreamSlots(total=2, per_address=5)
    assert slots.acquire("10.0.0.1") is None
    assert slots.acquire("10.0.0.2") is None
    refused = slots.acquire("10.0.0.3")
    assert refused is not None
    assert "at most 2 live streams" in refused
    slots.release("10.0.0.1")
    assert slots.acquire("10.0.0.3") is None
    assert slots.count == 2


async def test_each_event_is_encoded_once_for_every_client() -> None:
    async def nothing() -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield None

    hub = StreamHub("verdicts", nothing, lambda m: None)
    subs = [hub.subscribe(StreamFilter()) for _ in range(3)]
    streams = [hub.stream(sub, heartbeat_s=30) for sub in subs]
    for stream in streams:
        await anext(stream)  # the retry hint
    hub.publish("verdict", {"device_id": "d1", "ok": True})
    chunks = [await anext(stream) for stream in streams]
    assert chunks[0].startswith(b"id: ")
    assert all(chunk is chunks[0] for chunk in chunks)  # the same bytes object
    for stream in streams:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_dashboard_keeps_no_long_lived_token_in_local_storage_or_urls(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/")).text
    assert "localStorage.setItem" not in page
    assert "localStorage.getItem" not in page
    assert "access_token" not in page
    assert "sessionStorage" in page
    assert "/v1/stream/token" in page


async def test_sse_cap_counts_clients_behind_a_trusted_proxy(stack: Stack) -> None:
    async with (
        gateway(stack, sse_max_clients_per_address=1, trusted_proxies=["127.0.0.1"]) as base,
        httpx.AsyncClient(timeout=10) as http,
    ):
        url = f"{base}/v1/stream/alarms"
        one = {"X-Forwarded-For": "10.9.0.1"}
        two = {"X-Forwarded-For": "10.9.0.2"}
        async with (
            http.stream("GET", url, headers=one) as a,
            http.stream("GET", url, headers=two) as b,
        ):
            assert a.status_code == b.status_code == 200
            _assert_error(await http.get(url, headers=one), 503, "too_many_streams")
