"""Property tests of the MQTT wire codec (linewatch.runtime.mqtt_codec).

Every packet type round-trips encode → decode in MQTT 3.1.1 and 5; a stream of packets
cut at every byte boundary (and fed byte by byte, and in random chunks) yields the same
packets; varint limits hold; malformed input raises ProtocolError, never anything else.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linewatch.runtime.mqtt_codec import (
    MAX_REMAINING_LENGTH,
    MQTT_5,
    MQTT_311,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    Connack,
    Connect,
    Disconnect,
    MalformedPacket,
    Oversized,
    Packet,
    Pingreq,
    Pingresp,
    Properties,
    ProtocolError,
    Publish,
    PubReply,
    StreamSplitter,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
    decode,
    decode_properties,
    decode_varint,
    encode,
    encode_property_values,
    encode_varint,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
pid = st.integers(1, 0xFFFF)


def _maybe(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | s


properties = st.builds(
    Properties,
    payload_format_indicator=_maybe(st.integers(0, 1)),
    message_expiry_interval=_maybe(u32),
    content_type=_maybe(text),
    response_topic=_maybe(text),
    correlation_data=_maybe(st.binary(max_size=20)),
    subscription_identifiers=st.lists(st.integers(1, MAX_REMAINING_LENGTH), max_size=2).map(tuple),
    session_expiry_interval=_maybe(u32),
    assigned_client_identifier=_maybe(text),
    server_keep_alive=_maybe(u16),
    reason_string=_maybe(text),
    receive_maximum=_maybe(st.integers(1, 0xFFFF)),
    topic_alias_maximum=_maybe(u16),
    maximum_qos=_maybe(st.integers(0, 1)),
    retain_available=_maybe(st.integers(0, 1)),
    user_properties=st.lists(st.tuples(text, text), max_size=3).map(tuple),
    maximum_packet_size=_maybe(st.integers(1, 0xFFFFFFFF)),
    shared_subscription_available=_maybe(st.integers(0, 1)),
)


def packets(version: int) -> st.SearchStrategy[Packet]:
    """Every packet type linewatch uses, valid for ``version``."""
    v5 = version == MQTT_5
    props = properties if v5 else st.just(Properties())
    reason = u8 if v5 else st.just(0)
    will = st.builds(
        Will, topic=text, payload=st.binary(max_size=30), qos=st.integers(0, 2),
        retain=st.booleans(), properties=props,
    )  # fmt: skip
    return st.one_of(
        st.builds(
            Connect,
            client_id=text,
            protocol_version=st.just(version),
            clean_start=st.booleans(),
            keepalive=u16,
            username=_maybe(text),
            password=_maybe(st.binary(max_size=20)),
            will=_maybe(will),
            properties=props,
        ),
        st.builds(Connack, session_present=st.booleans(), reason_code=u8, properties=props),
        st.integers(0, 2).flatmap(
            lambda qos: st.builds(
                Publish,
                topic=text,
                payload=st.binary(max_size=300),
                qos=st.just(qos),
                retain=st.booleans(),
                dup=st.booleans(),
                packet_id=pid if qos else st.just(0),
                properties=props,
            )
        ),
        st.builds(
            PubReply,
            kind=st.sampled_from([PUBACK, PUBREC, PUBREL, PUBCOMP]),
            packet_id=pid,
            reason_code=reason,
            properties=props,
        ),
        st.builds(
            Subscribe,
            packet_id=pid,
            topics=st.lists(
                st.tuples(text, st.integers(0, 0x2F if v5 else 2)), min_size=1, max_size=4
            ).map(tuple),
            properties=props,
        ),
        st.builds(
            Suback,
            packet_id=pid,
            reason_codes=st.lists(u8, min_size=1, max_size=4).map(tuple),
            properties=props,
        ),
        st.builds(
            Unsubscribe,
            packet_id=pid,
            topics=st.lists(text, min_size=1, max_size=4).map(tuple),
            properties=props,
        ),
        st.builds(
            Unsuback,
            packet_id=pid,
            reason_codes=st.lists(u8, max_size=4).map(tuple) if v5 else st.just(()),
            properties=props,
        ),
        st.just(Pingreq()),
        st.just(Pingresp()),
        st.builds(Disconnect, reason_code=reason, properties=props),
    )


def split(stream: bytes, chunks: list[bytes], version: int) -> list[Packet]:
    got: list[tuple[int, bytes]] = []
    splitter = StreamSplitter(lambda first, body: got.append((first, body)))
    for chunk in chunks:
        splitter.feed(chunk)
    assert splitter.buffered == 0
    return [decode(first, body, version) for first, body in got]


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
@SETTINGS
@given(data=st.data())
def test_every_packet_round_trips(version: int, data: st.DataObject) -> None:
    packet = data.draw(packets(version))
    wire = encode(packet, version)
    first, body = wire[0], wire[1:]
    length, start = decode_varint(body, 0)
    assert length == len(body) - start
    assert decode(first, body[start:], version) == packet


@pytest.mark.parametrize("version", [MQTT_311, MQTT_5])
@SETTINGS
@given(data=st.data())
def test_every_split_of_the_stream_yields_the_same_packets(
    version: int, data: st.DataObject
) -> None:
    sent = data.draw(st.lists(packets(version), min_size=1, max_size=5))
    stream = b"".join(encode(p, version) for p in sent)
    # two chunks, cut at every byte boundary
    for cut in range(len(stream) + 1):
        assert split(stream, [stream[:cut], stream[cut:]], version) == sent
    # byte by byte
    assert split(stream, [stream[i : i + 1] for i in range(len(stream))], version) == sent
    # random chunking, bytearray and memoryview chunks too
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    edges = [0, *cuts, len(stream)]
    chunks: list[Any] = [stream[a:b] for a, b in itertools.pairwise(edges)]
    chunks = [bytearray(c) if i % 3 == 1 else memoryview(c) if i % 3 == 2 else c
              for i, c in enumerate(chunks)]  # fmt: skip
    assert split(stream, chunks, version) == sent


@given(st.integers(0, MAX_REMAINING_LENGTH))
def test_varint_round_trips_in_its_shortest_form(n: int) -> None:
    wire = encode_varint(n)
    assert len(wire) == (1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4)
    assert decode_varint(wire, 0) == (n, len(wire))


def test_varint_limits() -> None:
    assert encode_varint(MAX_REMAINING_LENGTH) == b"\xff\xff\xff\x7f"
    assert decode_varint(b"\xff\xff\xff\x7f", 0) == (MAX_REMAINING_LENGTH, 4)
    with pytest.raises(ProtocolError, match="out of range"):
        encode_varint(MAX_REMAINING_LENGTH + 1)
    with pytest.raises(ProtocolError, match="out of range"):
        encode_varint(-1)
    with pytest.raises(MalformedPacket, match="longer than four bytes"):
        decode_varint(b"\xff\xff\xff\xff\x01", 0)
    with pytest.raises(MalformedPacket, match="shortest form"):
        decode_varint(b"\x80\x00", 0)
    with pytest.raises(MalformedPacket, match="ends inside"):
        decode_varint(b"\x80\x80", 0)


@pytest.mark.parametrize(
    ("stream", "match"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "longer than 4 bytes"),
        (b"\x30\xff\xff\xff\x80", "longer than 4 bytes"),
        (b"\x30\x80\x00", "shortest form"),
        (b"\x30\x81\x80\x00", "shortest form"),
    ],
)
def test_splitter_refuses_a_bad_remaining_length_in_any_chunking(stream: bytes, match: str) -> None:
    for cut in range(len(stream) + 1):
        splitter = StreamSplitter(lambda first, body: None)
        with pytest.raises(MalformedPacket, match=match):
            _feed(splitter, stream[:cut], stream[cut:])


def _feed(splitter: StreamSplitter, *chunks: bytes) -> None:
    for chunk in chunks:
        splitter.feed(chunk)


@SETTINGS
@given(first=u8, body=st.binary(max_size=64), version=st.sampled_from([MQTT_311, MQTT_5]))
def test_malformed_packets_raise_protocol_error_only(first: int, body: bytes, version: int) -> None:
    try:
        decode(first, body, version)
    except ProtocolError as exc:
        message = str(exc)
        assert message  # a message saying what is wrong


@SETTINGS
@given(stream=st.binary(max_size=200), cut=st.integers(0, 200))
def test_splitter_on_garbage_delivers_or_refuses_never_hangs(stream: bytes, cut: int) -> None:
    got: list[tuple[int, bytes]] = []
    splitter = StreamSplitter(lambda first, body: got.append((first, body)))
    try:
        splitter.feed(stream[:cut])
        splitter.feed(stream[cut:])
    except MalformedPacket:
        return
    assert sum(1 + len(encode_varint(len(b))) + len(b) for _, b in got) + splitter.buffered == len(
        stream
    )


@SETTINGS
@given(
    sizes=st.lists(st.integers(0, 400), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 3000), max_size=6),
)
def test_oversized_packets_are_skipped_and_the_rest_delivered(
    sizes: list[int], cuts: list[int]
) -> None:
    limit = 200
    sent = [Publish(f"t/{i}", bytes([i]) * n, qos=1, packet_id=i + 1) for i, n in enumerate(sizes)]
    stream = b"".join(encode(p, MQTT_5) for p in sent)
    got: list[tuple[int, bytes]] = []
    skipped: list[Oversized] = []
    splitter = StreamSplitter(
        lambda first, body: got.append((first, body)), max_size=limit, on_oversized=skipped.append,
        head_bytes=10,
    )  # fmt: skip
    edges = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    for a, b in itertools.pairwise(edges):
        splitter.feed(stream[a:b])
    wires = [encode(p, MQTT_5) for p in sent]
    small = [p for p, w in zip(sent, wires, strict=True) if len(w) - 1 - _vlen(w) <= limit]
    big = [w for w in wires if len(w) - 1 - _vlen(w) > limit]
    assert [decode(f, b, MQTT_5) for f, b in got] == small
    assert [(s.first, s.length, s.head) for s in skipped] == [
        (w[0], len(w) - 1 - _vlen(w), w[1 + _vlen(w) : 11 + _vlen(w)]) for w in big
    ]
    assert splitter.buffered == 0


def _vlen(wire: bytes) -> int:
    return decode_varint(wire, 1)[1] - 1


def test_large_packet_reassembly_is_linear() -> None:
    """A 32 MiB PUBLISH fed in 1 KiB chunks: with ``bytes +=`` this copies ~16 TiB and
    would never finish within the test timeout; reassembled in place it takes a moment."""
    payload = bytes(range(256)) * (32 * 4096)
    wire = encode(Publish("big", payload, qos=1, packet_id=7))
    got: list[tuple[int, bytes]] = []
    splitter = StreamSplitter(lambda first, body: got.append((first, body)))
    view = memoryview(wire)
    for i in range(0, len(wire), 1024):
        splitter.feed(view[i : i + 1024])
    assert len(got) == 1
    packet = decode(*got[0])
    assert isinstance(packet, Publish)
    assert packet.payload == payload


def test_sink_can_halt_the_splitter() -> None:
    got: list[int] = []

    def sink(first: int, body: bytes) -> None:
        got.append(first)
        splitter.halt()

    splitter = StreamSplitter(sink)
    splitter.feed(b"\xc0\x00\xd0\x00\xc0")
    splitter.feed(b"\x00")
    assert got == [0xC0]
    assert splitter.buffered == 0


def test_encode_refuses_what_cannot_go_on_the_wire() -> None:
    with pytest.raises(ProtocolError, match="65535"):
        encode(Publish("x" * 70_000, b""))
    with pytest.raises(ProtocolError, match="packet id"):
        encode(Publish("t", b"", qos=1, packet_id=0))
    with pytest.raises(ProtocolError, match="out of range"):
        encode(Connack(properties=Properties(receive_maximum=70_000)))
    with pytest.raises(ProtocolError, match="UTF-8"):
        encode(Publish("\ud800", b""))


@SETTINGS
@given(
    response_topic=text.filter(bool),
    correlation_data=st.binary(max_size=40),
    users=st.lists(st.tuples(text, text), max_size=3).map(tuple),
    packet_id=pid,
)
def test_request_response_properties_round_trip(
    response_topic: str, correlation_data: bytes, users: tuple[tuple[str, str], ...], packet_id: int
) -> None:
    """A device command's PUBLISH: response topic and correlation data (the client joins
    them with the user properties into one block) decode back unchanged."""
    block = encode_property_values(
        Properties(response_topic=response_topic, correlation_data=correlation_data)
    ) + encode_property_values(Properties(user_properties=users))
    decoded, end = decode_properties(encode_varint(len(block)) + block, 0)
    want = Properties(
        response_topic=response_topic, correlation_data=correlation_data, user_properties=users
    )
    assert decoded == want
    assert end == len(encode_varint(len(block))) + len(block)
    packet = Publish("devices/d1/commands", b"{}", 1, False, False, packet_id, want)
    wire = encode(packet, MQTT_5)
    length, start = decode_varint(wire, 1)
    assert start + length == len(wire)
    assert decode(wire[0], wire[start:], MQTT_5) == packet
