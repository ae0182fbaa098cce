"""The MQTT session state (linewatch.runtime.mqtt_session): packet ids, the publish window
and what is sent again after a reconnect."""

from __future__ import annotations

import asyncio

import pytest

from linewatch.runtime.mqtt_codec import MQTT_5, PUBREL, Publish, PubReply, decode, encode
from linewatch.runtime.mqtt_session import PublishBatch, Session


def _publish(session: Session, batch: PublishBatch, payload: bytes) -> int:
    mid = session.next_id()
    session.track(mid, encode(Publish("t", payload, qos=1, packet_id=mid)), batch)
    return mid


async def test_window_ids_and_resend_in_order_with_dup() -> None:
    loop = asyncio.get_running_loop()
    session = Session(window=3)
    batch = PublishBatch(loop, qos=1, retain=False)
    mids = [_publish(session, batch, bytes([i])) for i in range(3)]
    assert mids == [1, 2, 3]
    assert not session.has_room()
    batch.all_sent()
    assert not batch.future.done()

    assert session.acknowledged(2)
    assert not session.acknowledged(2)  # a second PUBACK for the same id: not ours
    assert session.has_room()
    # after a reconnect: the unacknowledged ones again, in order, flagged DUP
    again = [decode(p[0], p[2:], MQTT_5) for p in session.resend()]
    assert again == [
        Publish("t", b"\x00", qos=1, dup=True, packet_id=1),
        Publish("t", b"\x02", qos=1, dup=True, packet_id=3),
    ]
    session.acknowledged(1)
    session.acknowledged(3)
    assert batch.future.done()


async def test_ids_skip_those_in_use_and_wrap() -> None:
    loop = asyncio.get_running_loop()
    session = Session()
    batch = PublishBatch(loop, qos=1, retain=False)
    session._next = 65_535
    assert _publish(session, batch, b"") == 65_535
    assert _publish(session, batch, b"") == 1  # wraps past 65,535
    session._next = 65_535
    assert session.next_id() == 2  # 65,535 and 1 are still in use
    session.control[3] = loop.create_future()
    assert session.next_id() == 4


async def test_qos2_released_publish_is_resent_as_pubrel() -> None:
    loop = asyncio.get_running_loop()
    session = Session()
    batch = PublishBatch(loop, qos=2, retain=False)
    mid = session.next_id()
    session.track(mid, encode(Publish("t", b"x", qos=2, packet_id=mid)), batch)
    assert session.received(mid)  # PUBREC came
    [packet] = session.resend()
    assert decode(packet[0], packet[2:], MQTT_5) == PubReply(PUBREL, mid)
    assert session.acknowledged(mid)  # PUBCOMP


async def test_waiting_for_room_is_fifo_and_woken_by_an_ack() -> None:
    loop = asyncio.get_running_loop()
    session = Session(window=1)
    batch = PublishBatch(loop, qos=1, retain=False)
    mid = _publish(session, batch, b"")
    order: list[str] = []

    async def wait(name: str) -> None:
        await session.wait_for_room()
        order.append(name)

    waiters = [asyncio.create_task(wait(n)) for n in ("a", "b")]
    await asyncio.sleep(0)
    session.acknowledged(mid)  # wakes one: the first in line
    await asyncio.sleep(0)
    assert order == ["a"]
    session.wake()
    await asyncio.gather(*waiters)
    assert order == ["a", "b"]


async def test_lost_connection_fails_waiting_subscribes() -> None:
    session = Session()
    future: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
    session.control[session.next_id()] = future
    session.fail_control(ConnectionError("lost"))
    with pytest.raises(ConnectionError):
        await future
    assert not session.control
