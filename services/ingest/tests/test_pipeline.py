"""Verdicts, archive, dead letters and dedup on the real broker, inference and databases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable

import pytest
from linewatch_ingest.app import running
from linewatch_ingest.store import DeadLetterRow, Query, TelemetryRow, VerdictRow

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient

from .conftest import Collector, Inference, curve_payload, eventually, ingest_config


async def test_good_curves_get_verdicts_and_are_archived(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=topic_prefix
    )
    kinds = ["ok", "spike", "drift", "noise", "step"] * 4
    async with (
        running(config) as ingest,
        Collector(mqtt_url, f"{topic_prefix}/+/+/verdict") as verdicts,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
    ):
        await ingest.controller.worker("demo").client.wait_connected(5)  # type: ignore[union-attr]
        sent = {}
        for i, kind in enumerate(kinds):
            msg_id = f"m{i}-{uuid.uuid4().hex[:6]}"
            sent[msg_id] = kind
            await pub.publish(
                f"{topic_prefix}/A/dev-{i % 3}/telemetry",
                curve_payload(f"dev-{i % 3}", kind=kind, msg_id=msg_id, seed=i),
            )
        got = await verdicts.wait_for(len(kinds))
        by_id = {v["msg_id"]: v for v in got}
        assert set(by_id) == set(sent)
        for msg in verdicts.messages:
            v = json.loads(msg.payload)
            assert msg.topic == f"{topic_prefix}/A/{v['device_id']}/verdict"
            assert set(v) == {
                "device_id", "point", "ts", "msg_id", "model", "model_version", "label",
                "scores", "ok", "latency_ms", "trace_id",
            }  # fmt: skip
            assert v["model"] == "curve-quality"
            assert v["model_version"] == "1"
            assert v["label"] == sent[v["msg_id"]]
            assert v["ok"] is (v["label"] == "ok")
            assert set(v["scores"]) == {"ok", "spike", "drift", "noise", "step"}
            assert len(v["trace_id"]) == 32
            assert v["latency_ms"] > 0
            if ingest.controller.worker("demo").client.protocol_version == 5:  # type: ignore[union-attr]
                traceparent = msg.user_property("traceparent")
                assert traceparent is not None
                assert traceparent.split("-")[1] == v["trace_id"]

        # a device's trace context continues into its verdict
        device_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        await pub.publish(
            f"{topic_prefix}/A/traced/telemetry",
            curve_payload("traced", msg_id="traced-1"),
            user_properties=[("traceparent", f"00-{device_trace}-00f067aa0ba902b7-01")],
        )
        (traced,) = [
            v for v in await verdicts.wait_for(len(kinds) + 1) if v["msg_id"] == "traced-1"
        ]
        if pub.protocol_version == 5:
            assert traced["trace_id"] == device_trace
        kinds.append("ok")
        # the verdict goes out before the archive commit; the ack waits for both
        assert await eventually(
            lambda: _async(ingest.controller.status().rules[0].verdicts == len(kinds))
        )
        store = ingest.store
        assert await store.count(TelemetryRow, "demo") == len(kinds)
        assert await store.count(VerdictRow, "demo") == len(kinds)
        page = await store.query_verdicts(Query(device_id="dev-0", page_size=3))
        assert len(page.rows) == 3
        assert page.next_page_token
        rest = await store.query_verdicts(
            Query(device_id="dev-0", page_size=100, page_token=page.next_page_token)
        )
        assert len(page.rows) + len(rest.rows) == sum(1 for i in range(len(kinds)) if i % 3 == 0)
        spikes = await store.query_verdicts(Query(label="spike"))
        assert len(spikes.rows) == 4
        assert len((await store.query_verdicts(Query(device_id="traced"))).rows) == 1


BAD_PAYLOADS = {
    "not json": (b"{not json", "not JSON"),
    "not an object": (b"[1, 2, 3]", "not a JSON object"),
    "binary": (b"\xff\xfe\x00", "not JSON"),
    "missing device_id": (
        json.dumps({"point": "p", "ts": 1, "values": [1.0]}).encode(),
        "device_id: missing",
    ),
    "missing values": (
        json.dumps({"device_id": "d", "point": "p", "ts": 1}).encode(),
        "values: missing",
    ),
    "missing ts": (
        json.dumps({"device_id": "d", "point": "p", "values": [1]}).encode(),
        "ts: missing",
    ),
    "wrong type device_id": (
        json.dumps({"device_id": 7, "point": "p", "ts": 1, "values": [1]}).encode(),
        "device_id: must be a string",
    ),
    "values not a list": (
        json.dumps({"device_id": "d", "point": "p", "ts": 1, "values": "1,2"}).encode(),
        "values: must be an array",
    ),
    "values with strings": (
        json.dumps({"device_id": "d", "point": "p", "ts": 1, "values": [1, "2"]}).encode(),
        "values: must be a flat array of numbers",
    ),
    "values with bools": (
        json.dumps({"device_id": "d", "point": "p", "ts": 1, "values": [True]}).encode(),
        "values: must be a flat array of numbers",
    ),
    "NaN": (
        b'{"device_id": "d", "point": "p", "ts": 1, "values": [1.0, NaN]}',
        "values: not a finite number at index 1",
    ),
    "Infinity": (
        b'{"device_id": "d", "point": "p", "ts": 1, "values": [Infinity]}',
        "values: not a finite number at index 0",
    ),
    "empty values": (
        json.dumps({"device_id": "d", "point": "p", "ts": 1, "values": []}).encode(),
        "values: empty",
    ),
    "too many values": (
        json.dumps({"device_id": "d", "point": "p", "ts": 1, "values": [0.5] * 65537}).encode(),
        "values: 65537 numbers, at most 65536",
    ),
    "bad ts string": (
        json.dumps({"device_id": "d", "point": "p", "ts": "yesterday", "values": [1]}).encode(),
        "ts: 'yesterday' is not an RFC 3339 time",
    ),
    "ts without zone": (
        json.dumps(
            {"device_id": "d", "point": "p", "ts": "2025-01-01T00:00:00", "values": [1]}
        ).encode(),
        "has no time zone offset",
    ),
    "negative ts": (
        json.dumps({"device_id": "d", "point": "p", "ts": -5, "values": [1]}).encode(),
        "ts: -5 is not a valid epoch-milliseconds time",
    ),
    "bool ts": (
        json.dumps({"device_id": "d", "point": "p", "ts": True, "values": [1]}).encode(),
        "ts: must be epoch milliseconds or an RFC 3339 string, got bool",
    ),
    "wildcard in device_id": (
        json.dumps({"device_id": "a/+", "point": "p", "ts": 1, "values": [1]}).encode(),
        "device_id: must not contain",
    ),
}


async def test_every_kind_of_bad_payload_is_dead_lettered(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=topic_prefix
    )
    async with (
        running(config) as ingest,
        Collector(mqtt_url, f"{topic_prefix}/deadletter") as dead,
        Collector(mqtt_url, f"{topic_prefix}/+/+/verdict") as verdicts,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
    ):
        await ingest.controller.worker("demo").client.wait_connected(5)  # type: ignore[union-attr]
        topics = {}
        for i, (name, (payload, _)) in enumerate(BAD_PAYLOADS.items()):
            topic = f"{topic_prefix}/A/bad-{i}/telemetry"
            topics[topic] = name
            await pub.publish(topic, payload)
        # an RFC 3339 ts is fine
        good = json.loads(curve_payload("good-1"))
        good["ts"] = "2025-11-22T10:00:00.250+08:00"
        await pub.publish(f"{topic_prefix}/A/good-1/telemetry", json.dumps(good))

        got = await dead.wait_for(len(BAD_PAYLOADS))
        assert len(got) == len(BAD_PAYLOADS)
        for body in got:
            name = topics[body["topic"]]
            payload, reason = BAD_PAYLOADS[name]
            assert reason in body["reason"], (name, body["reason"])
            assert body["rule"] == "demo"
            if "payload" in body:  # the topic carries up to 64 KiB; the table all of it
                copied = body["payload"].encode()
                assert copied == payload[: len(copied)]
                assert body.get("truncated", False) == (len(copied) < len(payload))
        (verdict,) = await verdicts.wait_for(1)
        assert verdict["device_id"] == "good-1"
        assert verdict["ts"] == 1763776800250

        page = await ingest.store.query_dead_letters(Query(page_size=1000))
        rows: list[DeadLetterRow] = page.rows
        assert len(rows) == len(BAD_PAYLOADS)
        for row in rows:
            payload, reason = BAD_PAYLOADS[topics[row.topic]]
            assert row.payload == payload
            assert reason in row.reason
        status = ingest.controller.status().rules[0]
        assert status.dead_letters == len(BAD_PAYLOADS)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_redelivered_messages_are_not_scored_twice(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    """SPEC "Telemetry in": a redelivery is (device_id, msg_id, ts) equal to a handled
    message; the same msg_id with another ts, or from another device, is a new message."""
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=topic_prefix
    )

    def payload(device: str, msg_id: str, ts: int) -> bytes:
        body = json.loads(curve_payload(device, msg_id=msg_id))
        body["ts"] = ts
        return json.dumps(body).encode()

    original = payload("dup-1", "seq-1", 1_763_800_000_000)
    async with MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub:
        async with (
            running(config) as ingest,
            Collector(mqtt_url, f"{topic_prefix}/+/+/verdict") as verdicts,
        ):
            await ingest.controller.worker("demo").client.wait_connected(5)  # type: ignore[union-attr]
            for _ in range(4):  # the same message, four times
                await pub.publish(f"{topic_prefix}/A/dup-1/telemetry", original)
            # the device restarted its counter: seq-1 again, with a new ts
            await pub.publish(
                f"{topic_prefix}/A/dup-1/telemetry", payload("dup-1", "seq-1", 1_763_800_009_000)
            )
            # another device with the same msg_id and even the same ts
            await pub.publish(
                f"{topic_prefix}/A/dup-2/telemetry", payload("dup-2", "seq-1", 1_763_800_000_000)
            )
            await verdicts.wait_for(3)
            await eventually(
                lambda: _async(ingest.controller.status().rules[0].received >= 6), timeout=10
            )
            got = sorted((v["device_id"], v["msg_id"], v["ts"]) for v in verdicts.payloads())
            assert got == [
                ("dup-1", "seq-1", 1_763_800_000_000),
                ("dup-1", "seq-1", 1_763_800_009_000),
                ("dup-2", "seq-1", 1_763_800_000_000),
            ]
            assert await eventually(
                lambda: _async(ingest.controller.status().rules[0].duplicates == 3), timeout=10
            )
        # a fresh ingest process (empty memory) recognises the message from the archive
        async with (
            running(config) as ingest,
            Collector(mqtt_url, f"{topic_prefix}/+/+/verdict") as verdicts,
        ):
            await ingest.controller.worker("demo").client.wait_connected(5)  # type: ignore[union-attr]
            await pub.publish(f"{topic_prefix}/A/dup-1/telemetry", original)
            await pub.publish(
                f"{topic_prefix}/A/dup-1/telemetry", curve_payload("dup-1", msg_id="third")
            )
            got_again = await verdicts.wait_for(1)
            await eventually(
                lambda: _async(ingest.controller.status().rules[0].received >= 2), timeout=10
            )
            assert [v["msg_id"] for v in got_again] == ["third"]
            assert ingest.controller.status().rules[0].duplicates == 1
            store = ingest.store
            assert await eventually(lambda: _is(store.count(VerdictRow), 4))
            assert await ingest.store.count(TelemetryRow) == 4


async def _async(value: object) -> object:
    return value


async def _is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected
