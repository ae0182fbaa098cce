"""The batch queue between the MQTT handler and the batch workers."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linewatch.runtime.batchqueue import BatchQueue


async def test_a_full_batch_is_handed_out_at_once() -> None:
    queue: BatchQueue[int] = BatchQueue()
    for i in range(10):
        queue.put(i)
    started = time.monotonic()
    assert await queue.get_batch(4, 30.0) == [0, 1, 2, 3]
    assert await queue.get_batch(4, 30.0) == [4, 5, 6, 7]
    assert time.monotonic() - started < 10  # never waited for the 30 s
    assert len(queue) == 2


async def test_a_partial_batch_waits_for_the_delay_then_goes() -> None:
    queue: BatchQueue[int] = BatchQueue()
    queue.put(1)
    getter = asyncio.create_task(queue.get_batch(100, 0.2))
    await asyncio.sleep(0.05)
    queue.put(2)
    assert not getter.done()  # still gathering
    assert await getter == [1, 2]


async def test_the_batch_goes_as_soon_as_it_is_full() -> None:
    queue: BatchQueue[int] = BatchQueue()
    getter = asyncio.create_task(queue.get_batch(3, 60.0))
    await asyncio.sleep(0.01)
    for i in range(5):
        queue.put(i)
    assert await asyncio.wait_for(getter, 10) == [0, 1, 2]
    assert len(queue) == 2


async def test_workers_share_the_items_in_order_and_lose_none() -> None:
    queue: BatchQueue[int] = BatchQueue()
    got: list[list[int]] = []

    async def worker() -> None:
        while True:
            batch = await queue.get_batch(7, 0.005)
            got.append(batch)
            await asyncio.sleep(0)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for i in range(1000):
        queue.put(i)
        if i % 13 == 0:
            await asyncio.sleep(0)
    for _ in range(200):
        if sum(len(b) for b in got) == 1000:
            break
        await asyncio.sleep(0.01)
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    assert sorted(i for batch in got for i in batch) == list(range(1000))
    assert all(1 <= len(batch) <= 7 for batch in got)
    assert [b[0] for b in got] == sorted(b[0] for b in got)  # batches leave in order


@pytest.mark.parametrize("waiting_for", ["first item", "more items"])
async def test_a_cancelled_worker_leaves_the_items_for_the_next(waiting_for: str) -> None:
    queue: BatchQueue[int] = BatchQueue()
    if waiting_for == "more items":
        queue.put(1)
    getter = asyncio.create_task(queue.get_batch(10, 60.0))
    await asyncio.sleep(0.01)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    queue.put(2)
    expected = [1, 2] if waiting_for == "more items" else [2]
    assert await asyncio.wait_for(queue.get_batch(10, 0.01), 10) == expected


def test_batch_histogram_exports_what_a_prometheus_histogram_does() -> None:
    from linewatch_ingest.metrics import BatchHistogram
    from prometheus_client import CollectorRegistry, Histogram

    bounds = (0.001, 0.01, 0.1, 1, 10)
    values = [0.0005, 0.001, 0.001, 0.002, 0.05, 0.1, 0.7, 1, 3, 10, 11, 1000]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("lat_seconds", "doc", bounds, registry=ours)
    single = Histogram("lat_seconds", "doc", buckets=bounds, registry=theirs)
    batch.observe_many(values[:5])
    batch.observe_many(values[5:])
    for value in values:
        single.observe(value)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    assert samples(ours) == pytest.approx(samples(theirs))


def test_recent_ids_remember_at_least_half_and_at_most_all() -> None:
    from linewatch_ingest.dedup import MsgKey, RecentIds, msg_key

    def key(i: int) -> MsgKey:
        return msg_key("press-01", str(i), 1000)

    ids = RecentIds(10)
    for start in range(0, 100, 3):
        ids.add_all(key(i) for i in range(start, start + 3))
        newest = start + 3
        assert all(key(i) in ids for i in range(max(0, newest - 5), newest))  # latest half
        assert len(ids) <= 10 + 3  # a generation may overshoot by one batch
    assert key(0) not in ids
    none = RecentIds(0)
    none.add_all([key(1)])
    assert key(1) not in none
    assert len(none) == 0


_device_ids = st.text(min_size=1, max_size=12).filter(lambda s: not any(c in s for c in "/+#\0"))


@given(
    a=st.tuples(_device_ids, st.text(max_size=12), st.integers(min_value=0, max_value=2**63)),
    b=st.tuples(_device_ids, st.text(max_size=12), st.integers(min_value=0, max_value=2**63)),
)
def test_msg_keys_are_equal_only_for_equal_triples(
    a: tuple[str, str, int], b: tuple[str, str, int]
) -> None:
    from linewatch_ingest.dedup import msg_key

    # NUL-joined: msg_ids may hold NULs themselves, device_ids never do
    assert (msg_key(*a) == msg_key(*b)) == (a == b)
    assert msg_key(*a) == msg_key(*a)


@settings(max_examples=50)
@given(
    probabilities=st.lists(
        st.lists(st.floats(min_value=0, max_value=1, width=32), min_size=3, max_size=3),
        max_size=20,
    )
)
def test_verdict_scores_are_each_row_rounded_to_six_places(
    probabilities: list[list[float]],
) -> None:
    import numpy as np
    from linewatch_ingest.inference_client import BatchResult
    from linewatch_ingest.payload import Telemetry
    from linewatch_ingest.verdicts import verdicts
    from opentelemetry.trace import INVALID_SPAN, Span

    labels = ("good", "drift", "spike")
    probs = np.array(probabilities, dtype=np.float32).reshape(len(probabilities), len(labels))
    index = [int(i) for i in probs.argmax(axis=1)] if len(probs) else []
    result = BatchResult("m", "1", labels, probs, index, [i == 0 for i in index])
    curve = np.zeros(4, dtype=np.float32)
    teles: list[tuple[Telemetry, Span | None]] = [
        (Telemetry(f"d{i}", "p", i, curve, f"m{i}"), None) for i in range(len(probs))
    ]
    vs = verdicts(teles, result, INVALID_SPAN)
    rows = np.round(probs.astype(np.float64), 6).tolist()
    assert [v.scores for v in vs] == [dict(zip(labels, row, strict=True)) for row in rows]
    assert [v.label for v in vs] == [labels[i] for i in index]
    assert [(v.device_id, v.ts, v.msg_id, v.trace_id) for v in vs] == [
        (f"d{i}", i, f"m{i}", "") for i in range(len(probs))
    ]


_levels = st.text(alphabet="abcXYZ-09", min_size=1, max_size=6)


@settings(max_examples=60)
@given(
    template=st.sampled_from(
        ["out/{device_id}", "out/{device_id}/{device_id}", "out/{point}", "out/{1}/{device_id}"]
    ),
    messages=st.lists(st.tuples(_levels, _levels, _levels), min_size=1, max_size=30),
)
def test_memoised_topics_are_those_rendered_afresh(
    template: str, messages: list[tuple[str, str, str]]
) -> None:
    from linewatch_ingest.rules import TopicTemplate

    memo = TopicTemplate.compile(template, "in/+/telemetry")
    for line, device_id, point in messages:
        topic = f"in/{line}/telemetry"
        fresh = TopicTemplate.compile(template, "in/+/telemetry")  # an empty memo
        assert memo.render(topic, device_id=device_id, point=point) == fresh.render(
            topic, device_id=device_id, point=point
        )


def test_curves_without_attrs_share_one_empty_mapping_nobody_can_change() -> None:
    from linewatch_ingest.payload import parse_telemetry

    def payload(msg_id: str) -> bytes:
        return b'{"device_id":"d","point":"p","ts":1,"msg_id":"%s","values":[1,2]}' % (
            msg_id.encode()
        )

    a, b = (parse_telemetry(payload(m)) for m in ("m1", "m2"))
    assert a.attrs == {}
    assert a.attrs is b.attrs
    with pytest.raises(TypeError):
        a.attrs["k"] = "v"
    with pytest.raises(TypeError):
        a.attrs.update(k="v")
    assert b.attrs == {}
