"""Property-based fuzzing of the device protocol (hypothesis).

Unit level: :func:`parse_message` accepts a message or raises :class:`InvalidMessage`
with a reason, whatever the topic and bytes. Live: fuzzed messages on the device topics
of a running OTA service each end acknowledged, every refused one as a dead letter with
its reason, and the service keeps answering.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from linewatch_ota.device_protocol import InvalidMessage, parse_message

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.v1 import ota_pb2
from linewatch_dev.ota_testing import OtaRunner
from linewatch_dev.testing import fuzz_corpus

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=70))
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_kinds = st.sampled_from(["request", "progress", "verify"])


@st.composite
def device_message(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(device_id, kind, payload): protocol-shaped bodies with broken fields, or garbage."""
    kind = draw(_kinds)
    shape = draw(st.sampled_from(["shaped", "shaped", "json", "bytes"]))
    if shape == "bytes":
        payload = draw(st.binary(max_size=200))
    elif shape == "json":
        payload = json.dumps(draw(_json)).encode()
    else:
        body: dict[str, Any] = {
            "current_version": draw(st.one_of(st.just("1.2.0"), _scalars)),
            "update_id": draw(st.one_of(st.uuids().map(str), _scalars)),
            "state": draw(st.one_of(st.sampled_from(["downloading", "installing"]), _scalars)),
            "percent": draw(st.one_of(st.integers(-5, 105), _scalars)),
            "version": draw(st.one_of(st.just("1.3.0"), _scalars)),
            "sha256": draw(st.one_of(st.just("ab" * 32), _scalars)),
            "ok": draw(st.one_of(st.booleans(), _scalars)),
        }
        payload = json.dumps(body).encode()
    # any device id a broker passes on (no control characters: mosquitto drops a client
    # that publishes to such a topic); the service validates the rest
    printable = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/+#")
    device = draw(st.one_of(st.just("dev-1"), st.text(printable, min_size=1, max_size=12)))
    return device, kind, payload


@settings(max_examples=400, deadline=None)
@given(msg=device_message(), extra=st.text(max_size=10))
def test_parse_accepts_or_says_why(msg: tuple[str, str, bytes], extra: str) -> None:
    device, kind, payload = msg
    for topic in (f"ota/{device}/{kind}", f"ota/{device}/{kind}/{extra}", f"ota/{extra}"):
        try:
            parsed = parse_message("ota", topic, payload)
        except InvalidMessage as exc:
            reason = str(exc)
        else:
            reason = ""
            assert parsed.kind == kind
            assert parsed.device_id == device
        assert reason or parsed


async def test_fuzzed_device_messages_are_acknowledged_or_dead_lettered(ota: OtaRunner) -> None:
    root = ota.topic_root
    corpus: list[tuple[str, str, bytes]] = fuzz_corpus(device_message(), 120)
    corpus += [("dev-9", "progress", b"\xff not json"), ("dev-9", "request", b"[]")]
    refused = 0
    for device, kind, payload in corpus:
        try:
            parse_message(root, f"{root}/{device}/{kind}", payload)
        except InvalidMessage:
            refused += 1
    letters: list[MqttMessage] = []

    async def collect(message: MqttMessage) -> None:
        letters.append(message)

    async with (
        MqttClient(MqttConfig(url=ota.mqtt_url), clean_start=True) as watcher,
        MqttClient(MqttConfig(url=ota.mqtt_url), clean_start=True) as device_side,
    ):
        await watcher.subscribe(f"{root}/deadletter", collect)
        await asyncio.sleep(0.2)
        for device, kind, payload in corpus:
            # QoS 1: returns once the service acknowledged (it never holds a bad message)
            await device_side.publish(f"{root}/{device}/{kind}", payload, timeout=10)
        async with asyncio.timeout(15):
            while len(letters) < refused:  # noqa: ASYNC110 (another process publishes)
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    assert len(letters) == refused
    bodies = [json.loads(m.payload) for m in letters]
    assert all(b["source"] == "ota" and b["reason"] for b in bodies)
    assert {b["topic"] for b in bodies} <= {f"{root}/{d}/{k}" for d, k, _ in corpus}
    # still serving
    listed = await ota.stub.ListRollouts(ota_pb2.ListRolloutsRequest())
    assert list(listed.rollouts) == []
