"""Failure drills: the broker killed and restarted mid-stream, the inference service
killed for a few seconds, the database down for a few seconds. Every accepted message
still ends with exactly one verdict and one archive row (the pipeline never scores or
archives a message twice)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from linewatch_ingest.app import IngestService, running
from linewatch_ingest.store import Query, TelemetryRow, VerdictRow

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch_dev.testing import Mosquitto, Postgres, postgres_bin_dir

from .conftest import Collector, Inference, curve_payload, eventually, ingest_config

N = 300


async def _publish_stream(
    pub: MqttClient,
    prefix: str,
    acked: list[str],
    rate: float,
    gate: asyncio.Event | None = None,
) -> None:
    """Publish N curves at ``rate``/s; each waits for its PUBACK (across reconnects)."""
    payloads = [curve_payload(f"dev-{i % 5}", msg_id=f"m{i:04d}", seed=i % 7) for i in range(N)]
    for i, payload in enumerate(payloads):
        if gate is not None:
            await gate.wait()
        await pub.publish(f"{prefix}/A/dev-{i % 5}/telemetry", payload, timeout=None)
        acked.append(f"m{i:04d}")
        await asyncio.sleep(1 / rate)


async def _archived_ids(ingest: IngestService) -> list[str]:
    page = await ingest.store.query_verdicts(Query(page_size=10_000), max_page=10_000)
    return [row.msg_id for row in page.rows]


async def _check_exactly_once(ingest: IngestService, acked: list[str]) -> None:
    async def done() -> bool:
        return len(set(await _archived_ids(ingest))) >= len(acked)

    finished = await eventually(done, timeout=30, interval=0.3)
    archived = await _archived_ids(ingest)
    missing = sorted(set(acked) - set(archived))
    assert finished, (missing[:20], len(missing), ingest.controller.status())
    assert sorted(archived) == sorted(acked)
    assert await ingest.store.count(TelemetryRow) == len(acked)
    assert await ingest.store.count(VerdictRow) == len(acked)

    # scored and published once each: the pipeline's own count (a batch is counted once
    # its verdicts are acknowledged too, which may come just after its archive rows)
    async def counted() -> bool:
        return bool(ingest.controller.status().rules[0].verdicts >= len(acked))

    assert await eventually(counted, timeout=10, interval=0.05)
    assert ingest.controller.status().rules[0].verdicts == len(acked)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_broker_killed_and_restarted_mid_stream(
    mosquitto: Mosquitto, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    url = mosquitto.url
    config = ingest_config(
        mqtt_url=url, database_url=database_url, inference=inference, prefix=topic_prefix
    )
    acked: list[str] = []
    async with (
        running(config) as ingest,
        Collector(url, f"{topic_prefix}/+/+/verdict") as verdicts,
        MqttClient(MqttConfig(url=url, reconnect_max_delay_s=0.5), client_id="drill-pub") as pub,
    ):
        worker = ingest.controller.worker("demo")
        assert worker is not None
        await worker.client.wait_connected(5)
        await asyncio.sleep(0.2)
        gate = asyncio.Event()
        gate.set()
        publisher = asyncio.create_task(
            _publish_stream(pub, topic_prefix, acked, rate=250, gate=gate)
        )
        assert await eventually(lambda: _at_least(acked, N // 3), timeout=20, interval=0.01)
        # Devices cannot publish while the broker is down; and a broker killed with -9
        # forgets every session, so they resume once ingest has subscribed again.
        gate.clear()
        await asyncio.sleep(0.02)
        mosquitto.kill()
        await asyncio.sleep(1.0)
        mosquitto.start()
        restarted = asyncio.get_running_loop().time()
        assert await eventually(lambda: _async(worker.client.connected), timeout=15)
        print(
            "ingest reconnected "
            f"{asyncio.get_running_loop().time() - restarted:.2f} s after the broker came back"
        )
        await asyncio.sleep(0.3)
        gate.set()
        async with asyncio.timeout(60):
            await publisher
        await _check_exactly_once(ingest, acked)
        # the subscriber saw only real verdicts; those sent after its resubscription all
        seen = Counter(json.loads(m.payload)["msg_id"] for m in verdicts.messages)
        assert set(seen) <= set(acked)
        tail = acked[-N // 3 :]
        assert await eventually(lambda: _async(all(m in seen for m in tail)), timeout=10)


@pytest.mark.slow
async def test_inference_killed_for_a_few_seconds(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=topic_prefix
    )
    acked: list[str] = []
    async with (
        running(config) as ingest,
        Collector(mqtt_url, f"{topic_prefix}/+/+/verdict") as verdicts,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
    ):
        worker = ingest.controller.worker("demo")
        assert worker is not None
        await worker.client.wait_connected(5)
        await asyncio.sleep(0.2)
        publisher = asyncio.create_task(_publish_stream(pub, topic_prefix, acked, rate=250))
        assert await eventually(lambda: _at_least(acked, N // 3), timeout=20, interval=0.01)
        await inference.stop()
        await asyncio.sleep(2.0)
        assert ingest.controller.status().rules[0].post_queue > 0  # held, not dropped
        await inference.start()
        restarted = asyncio.get_running_loop().time()
        before = worker.counters.verdicts

        async def flowing() -> bool:
            return worker.counters.verdicts > before

        assert await eventually(flowing, timeout=30)
        print(
            "ingest scored again "
            f"{asyncio.get_running_loop().time() - restarted:.2f} s after inference came back"
        )
        async with asyncio.timeout(60):
            await publisher
        await _check_exactly_once(ingest, acked)
        await verdicts.wait_for(N, timeout=20)
        seen = Counter(json.loads(m.payload)["msg_id"] for m in verdicts.messages)
        assert sorted(seen) == sorted(acked)
        assert max(seen.values()) == 1


@pytest.mark.slow
@pytest.mark.skipif(postgres_bin_dir() is None, reason="needs PostgreSQL's initdb/pg_ctl")
async def test_database_down_for_a_few_seconds(
    mqtt_url: str, topic_prefix: str, inference: Inference
) -> None:
    pg = Postgres()
    try:
        pg.start()
        config = ingest_config(
            mqtt_url=mqtt_url, database_url=pg.url, inference=inference, prefix=topic_prefix
        )
        acked: list[str] = []
        async with (
            running(config) as ingest,
            MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
        ):
            worker = ingest.controller.worker("demo")
            assert worker is not None
            await worker.client.wait_connected(5)
            await asyncio.sleep(0.2)
            publisher = asyncio.create_task(_publish_stream(pub, topic_prefix, acked, rate=250))
            assert await eventually(lambda: _at_least(acked, N // 3), timeout=20, interval=0.01)
            await asyncio.to_thread(pg.stop, mode="immediate")  # like a crash
            await asyncio.sleep(3.0)
            # nothing archived, so nothing acknowledged: held, not dropped
            held = ingest.controller.status().rules[0]
            assert held.post_queue > 0 or held.pre_queue > 0
            assert "archive" in held.last_error or "dedup" in held.last_error
            await asyncio.to_thread(pg.start)
            restarted = asyncio.get_running_loop().time()
            before = worker.counters.verdicts

            async def flowing() -> bool:
                return worker.counters.verdicts > before

            assert await eventually(flowing, timeout=30)
            recovery = asyncio.get_running_loop().time() - restarted
            print(f"ingest archived again {recovery:.2f} s after PostgreSQL came back")
            async with asyncio.timeout(60):
                await publisher
            await _check_exactly_once(ingest, acked)
    finally:
        await asyncio.to_thread(pg.remove)


async def _at_least(items: list[str], n: int) -> bool:
    return len(items) >= n


async def _async(value: object) -> object:
    return value
