"""Property-based fuzzing of telemetry payloads (hypothesis).

Unit level: :func:`parse_telemetry` either accepts a payload or raises
:class:`BadPayload` with a reason, whatever the bytes. Through the real broker and
pipeline: every fuzzed message ends as exactly one verdict or one dead letter (with its
reason, on the topic and in the table), and the service keeps running.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from linewatch_ingest import payload as payload_module
from linewatch_ingest.app import running
from linewatch_ingest.payload import BadPayload, parse_telemetry
from linewatch_ingest.store import DeadLetterRow

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch_dev.testing import fuzz_corpus

from .conftest import Collector, Inference, curve_payload, eventually, ingest_config

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
_values = st.one_of(
    st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=300),
    st.lists(_scalars, max_size=10),
    _json,
)


@st.composite
def telemetry_like(draw: st.DrawFn) -> bytes:
    """Mostly well-formed messages with one or more fields broken, some raw garbage."""
    kind = draw(st.sampled_from(["shaped", "shaped", "shaped", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(_json)).encode()
    body: dict[str, Any] = {
        "device_id": draw(st.one_of(st.text(min_size=1, max_size=12), _scalars)),
        "point": draw(st.one_of(st.just("pressure"), _scalars)),
        "ts": draw(
            st.one_of(
                st.integers(min_value=0, max_value=2**45), st.just("2026-11-30T10:00:00Z"), _json
            )
        ),
        "values": draw(_values),
        "attrs": draw(st.one_of(st.none(), st.dictionaries(st.text(max_size=5), _json))),
    }
    for key in draw(st.lists(st.sampled_from(list(body)), max_size=2)):
        body.pop(key, None)
    if draw(st.booleans()):
        body["msg_id"] = draw(st.one_of(st.text(max_size=10), _scalars))
    return json.dumps(body).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.one_of(telemetry_like(), st.binary(max_size=2000)))
def test_parse_accepts_or_says_why(payload: bytes) -> None:
    try:
        tele = parse_telemetry(payload, fallback_msg_id="fb")
    except BadPayload as exc:
        reason = exc.message
    else:
        reason = ""
        assert tele.device_id
        assert tele.point
        assert tele.msg_id
        assert 1 <= len(tele.values) <= 65_536
        assert tele.values.dtype.str == "<f4"
    assert reason or tele


_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-4e38, max_value=4e38),
)


@st.composite
def fast_shaped(draw: st.DrawFn) -> bytes:
    """Payloads the simdjson fast path takes on: flat curves, scalar fields and attrs."""
    body: dict[str, Any] = {
        "device_id": draw(st.one_of(st.text(min_size=1, max_size=12), _scalars)),
        "point": draw(st.one_of(st.just("pressure"), _scalars)),
        "ts": draw(st.one_of(_numbers, st.just("2026-11-30T10:00:00+01:00"), _scalars)),
        "values": draw(
            st.lists(st.one_of(_numbers, _numbers, _scalars, st.lists(_numbers)), max_size=40)
        ),
        "attrs": draw(st.one_of(st.none(), st.dictionaries(st.text(max_size=5), _scalars))),
    }
    for key in draw(st.lists(st.sampled_from(list(body)), max_size=1)):
        body.pop(key, None)
    if draw(st.booleans()):
        body["msg_id"] = draw(st.one_of(st.text(max_size=10), _scalars))
    return json.dumps(body).encode()


def _outcome(parse: Any, payload: bytes) -> str:
    try:
        tele = parse(payload)
    except BadPayload as exc:
        return f"refused: {exc.message}"
    return repr((tele, tele.values.tobytes()))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.one_of(fast_shaped(), telemetry_like()))
def test_fast_and_full_parsers_agree(payload: bytes) -> None:
    """The simdjson fast path accepts exactly what the full (orjson) path accepts, with the
    same result, and leaves every refusal, and its reason, to the full path."""

    def full(data: bytes) -> Any:
        return payload_module._telemetry(payload_module._decode(data), None, "fb")

    assert _outcome(lambda data: parse_telemetry(data, fallback_msg_id="fb"), payload) == (
        _outcome(full, payload)
    )


_HEAD = b'"device_id":"d","point":"p","ts":1'


@pytest.mark.parametrize(
    "payload",
    [
        b"{" + _HEAD + b',"values":[1,[2]]}',  # simdjson would flatten the nested array
        b'{"device_id":"a",' + _HEAD + b',"values":[1]}',  # repeated key: the last one wins
        b"{" + _HEAD + b',"values":[1],"values":null}',
        b'{"values":null,"device_id":"d","point":"p","ts":1,"attrs":{"values":[1]}}',
        b"{" + _HEAD + b',"values":[1],"attrs":{"a":"x","a":"y"}}',
        b"{" + _HEAD + b',"values":[1,true]}',
        b"{" + _HEAD + b',"values":[1,NaN]}',
        b"{" + _HEAD + b',"values":[1,1e39]}',
        b"{" + _HEAD + b',"values":[9007199254740993,-18446744073709551615]}',
        b"{" + _HEAD + b',"values":[]}',
        b"\xef\xbb\xbf{" + _HEAD + b',"values":[1]}',
        b"[1,2]",
    ],
)
def test_fast_and_full_parsers_agree_on_edge_cases(payload: bytes) -> None:
    def full(data: bytes) -> Any:
        return payload_module._telemetry(payload_module._decode(data), None, "fb")

    assert _outcome(lambda data: parse_telemetry(data, fallback_msg_id="fb"), payload) == (
        _outcome(full, payload)
    )


def test_fast_path_takes_the_usual_payload() -> None:
    assert payload_module._decode_fast(curve_payload("press-1", msg_id="m1")) is not None


def _expected(payloads: list[bytes]) -> tuple[int, int]:
    """(verdicts, dead letters) the pipeline must produce for these payloads."""
    seen: set[tuple[str, str, int]] = set()
    verdicts = dead = 0
    for payload in payloads:
        try:
            tele = parse_telemetry(payload, fallback_msg_id=None)
        except BadPayload:
            dead += 1
            continue
        key = (tele.device_id, tele.msg_id, tele.ts_ms)
        if tele.has_msg_id and key in seen:
            continue  # a redelivery (SPEC: same device, msg_id and ts): not scored again
        seen.add(key)
        verdicts += 1
    return verdicts, dead


@pytest.mark.slow
async def test_fuzzed_messages_end_as_one_verdict_or_one_dead_letter(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    # the fuzzed corpus, with some good curves and plain garbage mixed in for certain
    payloads = fuzz_corpus(telemetry_like(), 150)
    payloads[::30] = [curve_payload(f"dev-{i}", seed=i) for i in range(len(payloads[::30]))]
    payloads[15::30] = [b"\xff garbage"] * len(payloads[15::30])
    want_verdicts, want_dead = _expected(payloads)
    assert want_verdicts >= 5
    assert want_dead >= 5
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=topic_prefix
    )
    async with (
        running(config) as ingest,
        Collector(mqtt_url, f"{topic_prefix}/+/+/verdict") as verdicts,
        Collector(mqtt_url, f"{topic_prefix}/deadletter") as dead,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
    ):
        worker = ingest.controller.worker("demo")
        assert worker is not None
        await worker.client.wait_connected(5)
        await asyncio.sleep(0.2)
        for i, payload in enumerate(payloads):
            await pub.publish(f"{topic_prefix}/L/dev-{i % 3}/telemetry", payload)

        async def settled() -> bool:
            return len(verdicts.messages) + len(dead.messages) >= want_verdicts + want_dead

        assert await eventually(settled, timeout=30)
        await asyncio.sleep(0.5)  # nothing more arrives
        letters = [json.loads(m.payload) for m in dead.messages]
        model_refusals = [d for d in letters if d["reason"].startswith("model:")]
        # a curve the model refuses (e.g. too short) is dead-lettered instead of scored
        assert len(verdicts.messages) + len(model_refusals) == want_verdicts
        assert len(letters) - len(model_refusals) == want_dead
        assert all(d["reason"] and d["source"] == "ingest" for d in letters)
        assert await ingest.store.count(DeadLetterRow) == len(letters)
        status = ingest.controller.status().rules[0]  # still running and counting
        assert status.dead_letters == len(letters)
