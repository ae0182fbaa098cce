"""Two ingest replicas on one PostgreSQL database and one (real) Mosquitto.

Each message gets exactly one verdict and one archive row; a rule change made through
one replica, or in SQL, reaches the other within a second; envelope rules run on the
slot-0 replica alone and move with the slot; the status sums both replicas.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any

import pytest
import sqlalchemy as sa
from linewatch_ingest.app import IngestService, running
from linewatch_ingest.config import IngestConfig, ModelParams, RuleConfig
from linewatch_ingest.store import TelemetryRow, VerdictRow
from pydantic import ValidationError

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch.v1 import ingest_pb2
from linewatch_dev.testing import Mosquitto

from .conftest import Collector, Inference, curve_payload, demo_rule, eventually, ingest_config


@pytest.fixture
def pg_url(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        pytest.skip("several replicas need PostgreSQL (SQLite is refused: see below)")
    return database_url


def _config(
    broker: Mosquitto, url: str, inference: Inference, prefix: str, base: str, **kw: Any
) -> IngestConfig:
    return ingest_config(
        mqtt_url=broker.url,
        database_url=url,
        inference=inference,
        prefix=prefix,
        replicas=2,
        status_interval_s=0.2,
        client_id=base,
        **kw,
    )


async def _slots(*services: IngestService) -> list[int | None]:
    async def held() -> bool:
        return all(s.controller.slot is not None for s in services)

    assert await eventually(held, timeout=10)
    return [s.controller.slot for s in services]


async def _connected(service: IngestService, rule: str) -> bool:
    worker = service.controller.worker(rule)
    return worker is not None and worker.client.connected


def test_several_replicas_refuse_sqlite(sqlite_url: str) -> None:
    with pytest.raises(ValidationError, match="PostgreSQL"):
        IngestConfig(replicas=2, database_url=sqlite_url)


async def test_two_replicas_split_a_topic_once_and_share_rule_changes(
    mosquitto: Mosquitto, pg_url: str, topic_prefix: str, inference: Inference
) -> None:
    p = topic_prefix
    base = f"lwrep-{uuid.uuid4().hex[:6]}"
    n = 300
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running(_config(mosquitto, pg_url, inference, p, base)))
        b = await stack.enter_async_context(running(_config(mosquitto, pg_url, inference, p, base)))
        assert sorted(await _slots(a, b)) == [0, 1]  # type: ignore[type-var]
        for s in (a, b):
            assert await eventually(lambda s=s: _connected(s, "demo"), timeout=10)
            worker = s.controller.worker("demo")
            assert worker is not None
            assert worker.client.filters[0].startswith("$share/")
        verdicts = await stack.enter_async_context(Collector(mosquitto.url, f"{p}/+/+/verdict"))
        pub = await stack.enter_async_context(
            MqttClient(MqttConfig(url=mosquitto.url), clean_start=True)
        )
        for i in range(n):
            await pub.publish(
                f"{p}/A/dev-{i % 7}/telemetry",
                curve_payload(f"dev-{i % 7}", msg_id=f"m{i}", seed=i),
                qos=1,
            )
        await verdicts.wait_for(n, timeout=60)
        await asyncio.sleep(0.5)  # a duplicate verdict would arrive meanwhile
        ids = [v["msg_id"] for v in verdicts.payloads()]
        assert sorted(ids) == sorted(f"m{i}" for i in range(n))
        assert await eventually(lambda: _count(a, VerdictRow, "demo", n), timeout=10), (
            "one archive row per message"
        )
        assert await a.store.count(TelemetryRow, "demo") == n
        # both replicas took part, and the status sums them
        local = [s.controller.status().rules[0].verdicts for s in (a, b)]
        assert sum(local) == n
        assert all(local), local

        async def totals() -> bool:
            st = await a.controller.cluster_status()
            return st.rules[0].verdicts == n and len(st.rules[0].replicas) == 2

        assert await eventually(totals, timeout=5)
        st = await b.controller.cluster_status()
        assert sorted(r.verdicts for r in st.rules[0].replicas) == sorted(local)

        # a rule created through A runs on B within a second
        extra = demo_rule(f"{p}/x", name="extra", output_topic=f"{p}/x/{{1}}/{{2}}/verdict")
        await a.controller.create_rule(extra)
        started = time.monotonic()
        assert await eventually(lambda: _connected(b, "extra"), timeout=5)
        print(f"rule applied by the other replica in {time.monotonic() - started:.3f} s")
        assert b.controller.get_rule("extra") == extra
        # an update and a delete made in SQL reach both replicas
        table = sa.table("ingest_rule", sa.column("name"), sa.column("spec"))
        changed = extra.model_copy(update={"qos": 0})
        async with a.store.db.connect() as conn:
            await conn.execute(
                sa.update(table)
                .where(table.c.name == "extra")
                .values(spec=changed.model_dump_json())
            )

        async def updated() -> bool:
            return all(s.controller.get_rule("extra").qos == 0 for s in (a, b))

        assert await eventually(updated, timeout=5)
        async with a.store.db.connect() as conn:
            await conn.execute(sa.delete(table).where(table.c.name == "extra"))

        async def deleted() -> bool:
            return all("extra" not in {r.name for r in s.controller.list_rules()} for s in (a, b))

        assert await eventually(deleted, timeout=5)
        assert b.controller.worker("extra") is None
        # pausing through one replica pauses the rule on both
        await a.controller.tell_replicas("pause", "demo")

        async def paused(state: int) -> bool:
            return all(s.controller.status().rules[0].state == state for s in (a, b))

        assert await eventually(lambda: paused(ingest_pb2.WORKER_STATE_PAUSED), timeout=5)
        await a.controller.tell_replicas("resume", "demo")
        assert await eventually(lambda: paused(ingest_pb2.WORKER_STATE_RUNNING), timeout=5)


async def _count(service: IngestService, model: type, rule: str, n: int) -> bool:
    return await service.store.count(model, rule) == n


def _cycle(i: int, device: str) -> bytes:
    values = [100.0 + 10.0 * (k % 16) / 16 + 0.01 * (i % 3) for k in range(128)]
    return json.dumps(
        {
            "device_id": device,
            "point": "force",
            "ts": 1763800000000 + i,
            "values": values,
            "msg_id": f"c{i}",
        }
    ).encode()


async def test_envelope_rule_runs_on_slot_zero_and_moves_with_it(
    mosquitto: Mosquitto, pg_url: str, topic_prefix: str, inference: Inference
) -> None:
    p = topic_prefix
    base = f"lwenv-{uuid.uuid4().hex[:6]}"
    rule = RuleConfig(
        name="env",
        source_topic=f"{p}/+/cycle",
        model="envelope",
        output_topic=f"{p}/{{1}}/judged",
        model_params=ModelParams(teach_in=10, length=128),
    )
    async with AsyncExitStack() as stack:
        out = await stack.enter_async_context(Collector(mosquitto.url, f"{p}/+/judged"))
        pub = await stack.enter_async_context(
            MqttClient(MqttConfig(url=mosquitto.url), clean_start=True)
        )
        first = AsyncExitStack()
        a = await first.enter_async_context(
            running(_config(mosquitto, pg_url, inference, p, base, rules=[rule]))
        )
        await _slots(a)
        b = await stack.enter_async_context(
            running(_config(mosquitto, pg_url, inference, p, base, rules=[rule]))
        )
        assert await _slots(a, b) == [0, 1]
        assert await eventually(lambda: _connected(a, "env"), timeout=10)
        assert b.controller.worker("env") is None  # only slot 0 consumes it
        for i in range(6):
            await pub.publish(f"{p}/press-1/cycle", _cycle(i, "press-1"), qos=1)
        await out.wait_for(6)
        await first.aclose()  # slot 0 goes away; its session keeps what comes next
        for i in range(6, 14):
            await pub.publish(f"{p}/press-1/cycle", _cycle(i, "press-1"), qos=1)
        c = await stack.enter_async_context(
            running(_config(mosquitto, pg_url, inference, p, base, rules=[rule]))
        )
        assert await _slots(c) == [0]  # the replacement takes the free slot
        got = await out.wait_for(14, timeout=30)
        by_id = {v["msg_id"]: v["label"] for v in got}
        assert sorted(by_id) == sorted(f"c{i}" for i in range(14))
        assert len(got) == 14
        # teach-in continued where slot 0 left it: ten learning, in order
        assert [by_id[f"c{i}"] for i in range(10)] == ["learning"] * 10
        assert [by_id[f"c{i}"] for i in range(10, 14)] == ["ok"] * 4
