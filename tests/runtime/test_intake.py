"""The runtime's MQTT intake on the real broker: poison of every kind is dead-lettered and
acknowledged, a failing commit is retried (nothing acknowledged meanwhile), duplicates in
flight are acknowledged with their original; and the retry helper and JSON depth guard."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.intake import DeadLetter, DeadLetterPolicy, Entry, Intake, describe_error
from linewatch.runtime.jsonguard import MAX_DEPTH, json_depth_error
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.runtime.retry import Backoff, retry


def _parse(msg: MqttMessage) -> dict[str, object]:
    if msg.payload == b"recursion":
        raise RecursionError("maximum recursion depth exceeded")
    if msg.payload == b"memory":
        raise MemoryError
    if msg.payload == b"refused":
        raise InvalidArgument("values: empty")
    if msg.payload == b"skip":
        return None  # type: ignore[return-value]
    data = json.loads(msg.payload)  # bad UTF-8 / not JSON: raises
    assert isinstance(data, dict)
    return data


class _Service:
    def __init__(self) -> None:
        self.committed: list[dict[str, object]] = []
        self.recorded: list[DeadLetter] = []
        self.fail_commits = 0
        self.duplicates = 0
        self.changed = asyncio.Event()

    async def commit(self, entries: list[Entry[dict[str, object]]]) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise ConnectionError("database down")
        self.committed += [e.value for e in entries if e.value is not None]
        self.changed.set()

    async def record(self, letters: object) -> None:
        assert isinstance(letters, list)
        self.recorded += letters
        self.changed.set()

    async def until(self, check: object, timeout: float = 20.0) -> None:
        assert callable(check)
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                await self.changed.wait()


def _intake(url: str, prefix: str, service: _Service, **kw: object) -> Intake[dict[str, object]]:
    return Intake(
        name="test",
        broker=MqttConfig(url=url),
        client_id=f"lwtest-intake-{uuid.uuid4().hex[:8]}",
        topic_filters=[f"{prefix}/in/#"],
        parse=_parse,
        commit=service.commit,
        dead_letters=DeadLetterPolicy(source="test", topic=f"{prefix}/dead", record=service.record),
        clean_start=True,
        batch_delay_s=0.001,
        key=lambda v: v.get("id"),
        on_duplicate=lambda: setattr(service, "duplicates", service.duplicates + 1),
        **kw,  # type: ignore[arg-type]
    )


async def test_poison_of_every_kind_is_dead_lettered_and_the_next_message_handled(
    mqtt_url: str, topic_prefix: str
) -> None:
    service = _Service()
    intake = _intake(mqtt_url, topic_prefix, service, sessions=3)
    dead: list[MqttMessage] = []

    async def on_dead(msg: MqttMessage) -> None:
        dead.append(msg)

    async with MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub:
        await pub.subscribe(f"{topic_prefix}/dead", on_dead)
        await intake.start(wait=True)
        try:
            poison = [
                b"recursion",
                b"memory",
                b"refused",
                b"\xc3\x28 not utf-8",
                b"{not json",
                b"[" * 50_000 + b"]" * 50_000,
            ]
            for payload in poison:
                await pub.publish(f"{topic_prefix}/in/x", payload)
            await pub.publish(f"{topic_prefix}/in/x", b"skip")
            await pub.publish(f"{topic_prefix}/in/x", b'{"id": "good"}')
            await service.until(lambda: len(service.recorded) == len(poison) and service.committed)
            assert service.committed == [{"id": "good"}]
            # three sessions share the subscription: the order across them is the broker's
            reasons = sorted(d.reason.split(":")[0] for d in service.recorded)
            assert reasons == sorted(
                [
                    "payload nested too deeply",
                    "payload too large to decode",
                    "values",
                    "UnicodeDecodeError",
                    "JSONDecodeError",
                    f"JSON nested deeper than {MAX_DEPTH} levels",
                ]
            )
            async with asyncio.timeout(10):
                while len(dead) < len(poison):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert {json.loads(m.payload)["source"] for m in dead} == {"test"}
        finally:
            await intake.stop(grace=1.0)
    assert intake.queued == intake.busy == 0


async def test_a_failing_commit_is_retried_and_duplicates_ride_along(
    mqtt_url: str, topic_prefix: str
) -> None:
    service = _Service()
    service.fail_commits = 2
    intake = _intake(mqtt_url, topic_prefix, service)
    async with MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub:
        await intake.start(wait=True)
        try:
            await pub.publish_many(
                [(f"{topic_prefix}/in/y", b'{"id": "a"}', ())] * 3
                + [(f"{topic_prefix}/in/y", b'{"id": "b"}', ())]
            )
            await service.until(lambda: len(service.committed) >= 2)
            assert sorted(str(v["id"]) for v in service.committed) == ["a", "b"]
            assert service.duplicates == 2
            assert "database down" in intake.last_error
        finally:
            await intake.stop(grace=1.0)


def test_json_depth_guard() -> None:
    assert json_depth_error(b'{"a": [1, 2, {"b": [3]}]}') is None
    assert json_depth_error(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is None
    assert json_depth_error(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)) is not None
    assert json_depth_error(b"{" * 20_000) is not None  # unbalanced: still refused
    # brackets inside strings do not count
    assert json_depth_error(b'{"s": "' + b"[" * 100 + b'"}') is None
    assert json_depth_error(b'{"s": "\\"' + b"[" * 100 + b'"}') is None


def test_describe_error() -> None:
    assert describe_error(InvalidArgument("x: bad")) == "x: bad"
    assert describe_error(RecursionError()) == "payload nested too deeply"
    assert describe_error(ValueError("nope")) == "ValueError: nope"


async def test_retry_waits_out_failures() -> None:
    calls: list[str] = []
    seen: list[str] = []

    async def flaky() -> int:
        calls.append("x")
        if len(calls) < 3:
            raise ConnectionError("down")
        return 7

    got = await retry(flaky, stage="s", on_error=lambda st, exc: seen.append(st), initial=0.001)
    assert got == 7
    assert seen == ["s", "s"]
    backoff = Backoff(0.1, 0.4)
    assert [backoff.next() for _ in range(4)] == [0.1, 0.2, 0.4, 0.4]
    backoff.reset()
    assert backoff.next() == 0.1
    with pytest.raises(ValueError, match="backoff"):
        Backoff(0, 1)
