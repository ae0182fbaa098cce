"""Property-based fuzzing of sync messages (hypothesis).

Unit level: :func:`parse_payload` and :func:`canonicalise` accept a message or say why,
whatever the bytes. Live: fuzzed messages on a running service's topic each end either
as queued jobs or as a dead letter with its reason (a message holding some refused URLs
gets one dead letter naming them), and the service keeps answering.
"""

from __future__ import annotations

import asyncio
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from linewatch_sync.urls import canonicalise, parse_payload

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.v1 import sync_pb2
from linewatch_dev.sync_testing import StartSync
from linewatch_dev.testing import fuzz_corpus

_url = st.one_of(
    st.builds(
        lambda host, path: f"http://{host}/{path}",
        st.sampled_from(["127.0.0.1", "img.example", "h", "", "user@h", "[::1]", "h:99999"]),
        st.text(max_size=20),
    ),
    st.text(max_size=30),
)
ALLOWED = ("127.0.0.1",)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10))


@st.composite
def sync_message(draw: st.DrawFn) -> bytes:
    """JSON documents with broken fields, seed-style comma lists, and raw bytes."""
    shape = draw(st.sampled_from(["json", "json", "csv", "bytes"]))
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    if shape == "csv":
        return ",".join(draw(st.lists(_url, max_size=5))).encode()
    doc: dict[str, object] = {
        "urls": draw(
            st.one_of(
                st.lists(
                    st.one_of(_url, st.fixed_dictionaries({"url": _url}), _scalars), max_size=5
                ),
                _scalars,
            )
        )
    }
    if draw(st.booleans()):
        doc["work_id"] = draw(st.one_of(st.text(max_size=10), _scalars))
    return json.dumps(doc).encode()


@settings(max_examples=400, deadline=None)
@given(payload=st.one_of(sync_message(), st.binary(max_size=500)))
def test_parse_accepts_or_says_why(payload: bytes) -> None:
    try:
        parsed = parse_payload(payload)
    except InvalidArgument as exc:
        reason = exc.message
    else:
        reason = ""
        for item in parsed.items:
            try:
                canon = canonicalise(item.url)
            except InvalidArgument as exc:
                refusal = exc.message
            else:
                refusal = ""
                assert canon.cache_path
                assert not canon.cache_path.startswith("/")
                assert ".." not in canon.cache_path.split("/")
            assert refusal or canon
    assert reason or parsed.items


def _refused(payload: bytes) -> bool:
    """Whether the service must dead-letter this message (all or some of it refused)."""
    try:
        parsed = parse_payload(payload)
    except InvalidArgument:
        return True
    for item in parsed.items:
        try:
            canonicalise(item.url, allowed_hosts=ALLOWED)
        except InvalidArgument:
            return True
    return False


async def test_fuzzed_messages_are_queued_or_dead_lettered(
    start_sync: StartSync, mqtt_url: str, topic_prefix: str
) -> None:
    sync = await start_sync(allowed_hosts=ALLOWED, max_attempts=1)
    corpus = [
        *fuzz_corpus(sync_message(), 100),
        b"\xff\xfe",
        b"{not json",
        b"http://127.0.0.1:1/a.jpg",
        # text PostgreSQL cannot store as such (the refusal must still be recorded)
        b'{"urls": ["http://h/\\u0000x", "\\ud800"]}',
    ]
    want = sum(1 for payload in corpus if _refused(payload))
    letters: list[MqttMessage] = []

    async def collect(message: MqttMessage) -> None:
        letters.append(message)

    async with (
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as watcher,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as device,
    ):
        await watcher.subscribe(f"{topic_prefix}/deadletter", collect)
        await asyncio.sleep(0.5)  # the service subscribes after it starts listening
        for payload in corpus:
            await device.publish(f"{topic_prefix}/sync", payload, timeout=10)
        async with asyncio.timeout(20):
            while len(letters) < want:  # noqa: ASYNC110 (another task publishes)
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    assert len(letters) == want
    bodies = [json.loads(m.payload) for m in letters]
    assert all(b["source"] == "sync" and b["reason"] for b in bodies)
    stats = await sync.stub.GetCacheStats(sync_pb2.GetCacheStatsRequest())  # still serving
    assert sum(stats.jobs_by_state.values()) >= 0
