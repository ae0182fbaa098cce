"""MQTT 3.1.1 and 5 wire codec: pure encode/decode of the packets linewatch uses.

No I/O and no state beyond :class:`StreamSplitter`'s buffer. Every packet type linewatch
sends or receives round-trips (:func:`encode` then :func:`decode` gives an equal packet):
CONNECT/CONNACK, PUBLISH, PUBACK/PUBREC/PUBREL/PUBCOMP, SUBSCRIBE/SUBACK,
UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP and DISCONNECT, with MQTT 5 properties (user
properties, receive maximum, maximum packet size, session expiry, response topic,
correlation data, …).

Anything malformed raises :class:`ProtocolError` (or its subclass :class:`MalformedPacket`)
with one line saying what is wrong; nothing here ever waits for more input than a packet's
header announces. :class:`StreamSplitter` cuts packets out of a byte stream as it arrives,
in any chunking; a large packet is reassembled in one growing ``bytearray`` (linear in its
size), and one over the maximum packet size is skipped without being buffered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "CONNACK",
    "CONNECT",
    "DISCONNECT",
    "MAX_REMAINING_LENGTH",
    "MQTT_5",
    "MQTT_311",
    "PINGREQ",
    "PINGRESP",
    "PUBACK",
    "PUBCOMP",
    "PUBLISH",
    "PUBREC",
    "PUBREL",
    "SUBACK",
    "SUBSCRIBE",
    "UNSUBACK",
    "UNSUBSCRIBE",
    "Connack",
    "Connect",
    "Disconnect",
    "MalformedPacket",
    "Oversized",
    "Packet",
    "Pingreq",
    "Pingresp",
    "Properties",
    "ProtocolError",
    "PubReply",
    "Publish",
    "StreamSplitter",
    "Suback",
    "Subscribe",
    "Unsuback",
    "Unsubscribe",
    "Will",
    "decode",
    "decode_properties",
    "decode_varint",
    "encode",
    "encode_properties",
    "encode_property_values",
    "encode_string",
    "encode_varint",
]

MQTT_311 = 4
MQTT_5 = 5

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
PUBREC = 0x50
PUBREL = 0x60
PUBCOMP = 0x70
SUBSCRIBE = 0x80
SUBACK = 0x90
UNSUBSCRIBE = 0xA0
UNSUBACK = 0xB0
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

MAX_REMAINING_LENGTH = 268_435_455
"""The largest remaining length four varint bytes can say (MQTT's hard limit)."""


class ProtocolError(ValueError):
    """The peer broke the MQTT protocol (or a packet to send cannot be encoded)."""


class MalformedPacket(ProtocolError):
    """Bytes that are not a well-formed MQTT packet."""


# --- primitives --------------------------------------------------------------------------


def encode_varint(n: int) -> bytes:
    """MQTT's variable byte integer (1..4 bytes) for ``0 <= n <= 268,435,455``."""
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ProtocolError(f"variable byte integer out of range: {n}")
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:  # two bytes: every telemetry message
        return bytes((n & 0x7F | 0x80, n >> 7))
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(
    data: bytes | bytearray | memoryview, pos: int, end: int | None = None
) -> tuple[int, int]:
    """The variable byte integer at ``pos`` (before ``end``) and the position after it.

    Raises:
        MalformedPacket: more than four bytes, a non-minimal encoding, or cut short.
    """
    end = len(data) if end is None else end
    value = 0
    shift = 0
    for i in range(pos, min(pos + 4, end)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and i > pos:
                raise MalformedPacket("variable byte integer not in its shortest form")
            return value, i + 1
        shift += 7
    if end - pos >= 4:
        raise MalformedPacket("variable byte integer longer than four bytes")
    raise MalformedPacket("packet ends inside a variable byte integer")


def encode_string(text: str) -> bytes:
    """An MQTT UTF-8 string (two-byte length first)."""
    try:
        data = text.encode()
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"string {text[:40]!r} is not encodable as UTF-8") from exc
    return _binary(data)


def _binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ProtocolError(f"field longer than 65535 bytes ({len(data)})")
    return len(data).to_bytes(2, "big") + data


class _Reader:
    """Reads fields of one packet body; every read past its end is a MalformedPacket."""

    __slots__ = ("data", "end", "pos", "what")

    def __init__(self, data: bytes | memoryview, what: str, pos: int = 0, end: int = -1) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end < 0 else end
        self.what = what

    def left(self) -> int:
        return self.end - self.pos

    def _take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise MalformedPacket(f"{self.what}: packet ends early")
        chunk = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return chunk

    def byte(self) -> int:
        if self.pos >= self.end:
            raise MalformedPacket(f"{self.what}: packet ends early")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        return int.from_bytes(self._take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def varint(self) -> int:
        value, pos = decode_varint(self.data, self.pos, self.end)
        self.pos = pos
        return value

    def binary(self) -> bytes:
        return self._take(self.u16())

    def string(self) -> str:
        raw = self.binary()
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise MalformedPacket(f"{self.what}: a string is not valid UTF-8") from exc

    def rest(self) -> bytes:
        return self._take(self.left())

    def done(self) -> None:
        if self.pos != self.end:
            raise MalformedPacket(f"{self.what}: {self.left()} unexpected trailing byte(s)")


# --- properties --------------------------------------------------------------------------


@dataclass(slots=True)
class Properties:
    """MQTT 5 properties of a packet (``None``: absent). 3.1.1 packets have none."""

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None

    def empty(self) -> bool:
        """Whether no property is set."""
        return self == _NO_PROPERTIES


_NO_PROPERTIES = Properties()

# identifier → (attribute, kind)
_PROPERTY_TABLE: dict[int, tuple[str, str]] = {
    0x01: ("payload_format_indicator", "byte"),
    0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "str"),
    0x08: ("response_topic", "str"),
    0x09: ("correlation_data", "bin"),
    0x0B: ("subscription_identifiers", "varint"),
    0x11: ("session_expiry_interval", "u32"),
    0x12: ("assigned_client_identifier", "str"),
    0x13: ("server_keep_alive", "u16"),
    0x15: ("authentication_method", "str"),
    0x16: ("authentication_data", "bin"),
    0x17: ("request_problem_information", "byte"),
    0x18: ("will_delay_interval", "u32"),
    0x19: ("request_response_information", "byte"),
    0x1A: ("response_information", "str"),
    0x1C: ("server_reference", "str"),
    0x1F: ("reason_string", "str"),
    0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"),
    0x23: ("topic_alias", "u16"),
    0x24: ("maximum_qos", "byte"),
    0x25: ("retain_available", "byte"),
    0x26: ("user_properties", "pair"),
    0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_subscription_available", "byte"),
    0x29: ("subscription_identifier_available", "byte"),
    0x2A: ("shared_subscription_available", "byte"),
}
_PROPERTY_IDS = {name: (pid, kind) for pid, (name, kind) in _PROPERTY_TABLE.items()}
_PROPERTY_ORDER = [f.name for f in fields(Properties)]
_LIMITS = {"byte": 0xFF, "u16": 0xFFFF, "u32": 0xFFFFFFFF}


def _encode_value(kind: str, name: str, value: Any) -> bytes:
    if kind in _LIMITS:
        if not 0 <= value <= _LIMITS[kind]:
            raise ProtocolError(f"property {name}: {value} out of range")
        return int(value).to_bytes({"byte": 1, "u16": 2, "u32": 4}[kind], "big")
    if kind == "varint":
        return encode_varint(value)
    if kind == "str":
        return encode_string(value)
    if kind == "bin":
        return _binary(bytes(value))
    key, val = value
    return encode_string(key) + encode_string(val)


def encode_properties(props: Properties) -> bytes:
    """The properties block: its length (varint) and the properties."""
    if props is _NO_PROPERTIES or props.empty():
        return b"\x00"
    block = encode_property_values(props)
    return encode_varint(len(block)) + block


def encode_property_values(props: Properties) -> bytes:
    """The properties without the block's length (to join with others into one block)."""
    out: list[bytes] = []
    for name in _PROPERTY_ORDER:
        value = getattr(props, name)
        pid, kind = _PROPERTY_IDS[name]
        if name in {"user_properties", "subscription_identifiers"}:
            for item in value:
                out.append(bytes((pid,)) + _encode_value(kind, name, item))
        elif value is not None:
            out.append(bytes((pid,)) + _encode_value(kind, name, value))
    return b"".join(out)


def decode_properties(  # noqa: PLR0912 (one branch per kind)
    data: bytes | memoryview, pos: int, what: str = "properties", end: int | None = None
) -> tuple[Properties, int]:
    """The properties block at ``pos`` (within ``data[:end]``) and the position after it.

    Raises:
        MalformedPacket: unknown property, a repeated one that may appear once, or a
            block that runs past the data.
    """
    reader = _Reader(data, what, pos, len(data) if end is None else end)
    length = reader.varint()
    stop = reader.pos + length
    if stop > reader.end:
        raise MalformedPacket(f"{what}: properties run past the packet")
    reader.end = stop
    props = Properties()
    seen: set[int] = set()
    users: list[tuple[str, str]] = []
    subids: list[int] = []
    while reader.left():
        pid = reader.varint()
        entry = _PROPERTY_TABLE.get(pid)
        if entry is None:
            raise MalformedPacket(f"{what}: unknown property 0x{pid:02x}")
        name, kind = entry
        if kind == "pair":
            users.append((reader.string(), reader.string()))
            continue
        if kind == "varint":
            subids.append(reader.varint())
            continue
        if pid in seen:
            raise MalformedPacket(f"{what}: property {name} given twice")
        seen.add(pid)
        value: Any
        if kind == "byte":
            value = reader.byte()
        elif kind == "u16":
            value = reader.u16()
        elif kind == "u32":
            value = reader.u32()
        elif kind == "str":
            value = reader.string()
        else:
            value = reader.binary()
        setattr(props, name, value)
    if users:
        props.user_properties = tuple(users)
    if subids:
        props.subscription_identifiers = tuple(subids)
    return props, stop


# --- packets -----------------------------------------------------------------------------


@dataclass(slots=True)
class Will:
    """The will message of a CONNECT."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Connect:
    client_id: str
    protocol_version: int = MQTT_5
    clean_start: bool = True
    keepalive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Connack:
    session_present: bool = False
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class PubReply:
    """PUBACK, PUBREC, PUBREL or PUBCOMP (``kind``)."""

    kind: int
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    topics: tuple[tuple[str, int], ...]
    """(filter, options): QoS in bits 0-1; MQTT 5 adds no-local (bit 2),
    retain-as-published (bit 3) and retain handling (bits 4-5)."""
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Suback:
    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topics: tuple[str, ...]
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Unsuback:
    packet_id: int
    reason_codes: tuple[int, ...] = ()
    """MQTT 5 only (3.1.1's UNSUBACK has none)."""
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Pingreq:
    pass


@dataclass(slots=True)
class Pingresp:
    pass


@dataclass(slots=True)
class Disconnect:
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


Packet = (
    Connect
    | Connack
    | Publish
    | PubReply
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
)


def _frame(header: int, body: bytes) -> bytes:
    return bytes((header,)) + encode_varint(len(body)) + body


def _packet_id(pid: int) -> bytes:
    if not 1 <= pid <= 0xFFFF:
        raise ProtocolError(f"packet id {pid} out of range 1..65535")
    return pid.to_bytes(2, "big")


def _props(props: Properties, version: int) -> bytes:
    return encode_properties(props) if version >= MQTT_5 else b""


def encode(packet: Packet, version: int = MQTT_5) -> bytes:  # noqa: PLR0911, PLR0912 (one branch per type)
    """The bytes of ``packet`` on the wire (``version``: 4 for 3.1.1, 5 for MQTT 5; a
    CONNECT uses its own ``protocol_version``).

    Raises:
        ProtocolError: the packet cannot be encoded (a field out of range, too long).
    """
    if isinstance(packet, Publish):
        if packet.qos not in (0, 1, 2):
            raise ProtocolError(f"PUBLISH qos {packet.qos}")
        header = PUBLISH | packet.qos << 1 | packet.retain | packet.dup << 3
        body = encode_string(packet.topic)
        if packet.qos:
            body += _packet_id(packet.packet_id)
        return _frame(header, body + _props(packet.properties, version) + packet.payload)
    if isinstance(packet, PubReply):
        header = packet.kind | (0x02 if packet.kind == PUBREL else 0)
        if packet.kind not in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            raise ProtocolError(f"not a publish reply: 0x{packet.kind:02x}")
        body = _packet_id(packet.packet_id)
        if version >= MQTT_5 and (packet.reason_code or not packet.properties.empty()):
            body += bytes((packet.reason_code,))
            if not packet.properties.empty():
                body += encode_properties(packet.properties)
        return _frame(header, body)
    if isinstance(packet, Connect):
        return _encode_connect(packet)
    if isinstance(packet, Connack):
        body = bytes((int(packet.session_present), packet.reason_code))
        return _frame(CONNACK, body + _props(packet.properties, version))
    if isinstance(packet, Subscribe):
        if not packet.topics:
            raise ProtocolError("SUBSCRIBE without a topic filter")
        body = _packet_id(packet.packet_id) + _props(packet.properties, version)
        body += b"".join(encode_string(f) + bytes((opts,)) for f, opts in packet.topics)
        return _frame(SUBSCRIBE | 0x02, body)
    if isinstance(packet, Suback):
        body = _packet_id(packet.packet_id) + _props(packet.properties, version)
        return _frame(SUBACK, body + bytes(packet.reason_codes))
    if isinstance(packet, Unsubscribe):
        if not packet.topics:
            raise ProtocolError("UNSUBSCRIBE without a topic filter")
        body = _packet_id(packet.packet_id) + _props(packet.properties, version)
        body += b"".join(encode_string(f) for f in packet.topics)
        return _frame(UNSUBSCRIBE | 0x02, body)
    if isinstance(packet, Unsuback):
        body = _packet_id(packet.packet_id)
        if version >= MQTT_5:
            body += encode_properties(packet.properties) + bytes(packet.reason_codes)
        return _frame(UNSUBACK, body)
    if isinstance(packet, Pingreq):
        return b"\xc0\x00"
    if isinstance(packet, Pingresp):
        return b"\xd0\x00"
    if isinstance(packet, Disconnect):
        if version < MQTT_5 or (packet.reason_code == 0 and packet.properties.empty()):
            return b"\xe0\x00"
        body = bytes((packet.reason_code,))
        if not packet.properties.empty():
            body += encode_properties(packet.properties)
        return _frame(DISCONNECT, body)
    raise ProtocolError(f"cannot encode {type(packet).__name__}")


def _encode_connect(p: Connect) -> bytes:
    if p.protocol_version not in (MQTT_311, MQTT_5):
        raise ProtocolError(f"protocol version {p.protocol_version} (4 or 5 only)")
    v5 = p.protocol_version >= MQTT_5
    flags = 0x02 if p.clean_start else 0
    if p.will is not None:
        if p.will.qos not in (0, 1, 2):
            raise ProtocolError(f"will qos {p.will.qos}")
        flags |= 0x04 | p.will.qos << 3 | p.will.retain << 5
    if p.password is not None:
        flags |= 0x40
    if p.username is not None:
        flags |= 0x80
    if not 0 <= p.keepalive <= 0xFFFF:
        raise ProtocolError(f"keepalive {p.keepalive} out of range")
    parts = [
        encode_string("MQTT"),
        bytes((p.protocol_version, flags)),
        p.keepalive.to_bytes(2, "big"),
    ]
    if v5:
        parts.append(encode_properties(p.properties))
    parts.append(encode_string(p.client_id))
    if p.will is not None:
        if v5:
            parts.append(encode_properties(p.will.properties))
        parts += [encode_string(p.will.topic), _binary(p.will.payload)]
    if p.username is not None:
        parts.append(encode_string(p.username))
    if p.password is not None:
        parts.append(_binary(p.password))
    return _frame(CONNECT, b"".join(parts))


_NAMES = {
    CONNECT: "CONNECT",
    CONNACK: "CONNACK",
    PUBLISH: "PUBLISH",
    PUBACK: "PUBACK",
    PUBREC: "PUBREC",
    PUBREL: "PUBREL",
    PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK",
    PINGREQ: "PINGREQ",
    PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT",
}
# the fixed header's low four bits each packet type must have
_FLAGS = {SUBSCRIBE: 0x02, UNSUBSCRIBE: 0x02, PUBREL: 0x02}


def decode(  # noqa: PLR0912, PLR0915 (one branch per packet type)
    first: int, body: bytes | memoryview, version: int = MQTT_5
) -> Packet:
    """The packet with fixed-header byte ``first`` and remaining bytes ``body``.

    Raises:
        MalformedPacket: the bytes are not a well-formed packet of that type.
    """
    kind = first & 0xF0
    name = _NAMES.get(kind)
    if name is None:
        raise MalformedPacket(f"unknown packet type {first >> 4}")
    if kind != PUBLISH and first & 0x0F != _FLAGS.get(kind, 0):
        raise MalformedPacket(f"{name}: reserved flags 0x{first & 0x0F:x} set")
    r = _Reader(body, name)
    v5 = version >= MQTT_5
    packet: Packet
    if kind == PUBLISH:
        qos = (first >> 1) & 0x03
        if qos == 3:
            raise MalformedPacket("PUBLISH: qos 3")
        topic = r.string()
        pid = r.u16() if qos else 0
        if qos and pid == 0:
            raise MalformedPacket("PUBLISH: packet id 0")
        props = _read_props(r) if v5 else Properties()
        return Publish(topic, r.rest(), qos, bool(first & 0x01), bool(first & 0x08), pid, props)
    if kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        pid = r.u16()
        reason = r.byte() if v5 and r.left() else 0
        props = _read_props(r) if v5 and r.left() else Properties()
        packet = PubReply(kind, pid, reason, props)
    elif kind == CONNECT:
        return _decode_connect(r)
    elif kind == CONNACK:
        flags = r.byte()
        if flags & 0xFE:
            raise MalformedPacket("CONNACK: reserved flags set")
        reason = r.byte()
        props = _read_props(r) if v5 and r.left() else Properties()
        packet = Connack(bool(flags & 0x01), reason, props)
    elif kind == SUBSCRIBE:
        pid = r.u16()
        props = _read_props(r) if v5 else Properties()
        topics: list[tuple[str, int]] = []
        while r.left():
            topics.append((r.string(), r.byte()))
        if not topics:
            raise MalformedPacket("SUBSCRIBE: no topic filter")
        packet = Subscribe(pid, tuple(topics), props)
    elif kind == SUBACK:
        pid = r.u16()
        props = _read_props(r) if v5 else Properties()
        packet = Suback(pid, tuple(r.rest()), props)
    elif kind == UNSUBSCRIBE:
        pid = r.u16()
        props = _read_props(r) if v5 else Properties()
        filters: list[str] = []
        while r.left():
            filters.append(r.string())
        if not filters:
            raise MalformedPacket("UNSUBSCRIBE: no topic filter")
        packet = Unsubscribe(pid, tuple(filters), props)
    elif kind == UNSUBACK:
        pid = r.u16()
        if v5:
            props = _read_props(r)
            packet = Unsuback(pid, tuple(r.rest()), props)
        else:
            packet = Unsuback(pid)
    elif kind == PINGREQ:
        packet = Pingreq()
    elif kind == PINGRESP:
        packet = Pingresp()
    else:
        reason = r.byte() if v5 and r.left() else 0
        props = _read_props(r) if v5 and r.left() else Properties()
        packet = Disconnect(reason, props)
    r.done()
    return packet


def _read_props(r: _Reader) -> Properties:
    props, r.pos = decode_properties(r.data, r.pos, r.what, r.end)
    return props


def _decode_connect(r: _Reader) -> Connect:
    if r.string() != "MQTT":
        raise MalformedPacket("CONNECT: protocol name is not MQTT")
    level = r.byte()
    if level not in (MQTT_311, MQTT_5):
        raise ProtocolError(f"CONNECT: unsupported protocol level {level}")
    flags = r.byte()
    if flags & 0x01:
        raise MalformedPacket("CONNECT: reserved flag set")
    keepalive = r.u16()
    v5 = level >= MQTT_5
    props = _read_props(r) if v5 else Properties()
    client_id = r.string()
    will = None
    if flags & 0x04:
        will_props = _read_props(r) if v5 else Properties()
        qos = (flags >> 3) & 0x03
        if qos == 3:
            raise MalformedPacket("CONNECT: will qos 3")
        will = Will(r.string(), r.binary(), qos, bool(flags & 0x20), will_props)
    elif flags & 0x38:
        raise MalformedPacket("CONNECT: will qos/retain without a will")
    username = r.string() if flags & 0x80 else None
    password = r.binary() if flags & 0x40 else None
    r.done()
    return Connect(client_id, level, bool(flags & 0x02), keepalive, username, password, will, props)


# --- stream splitting --------------------------------------------------------------------


@dataclass(slots=True)
class Oversized:
    """A packet over the maximum size that was skipped: its fixed-header byte, its
    remaining length and its first bytes (up to ``head_bytes`` of the splitter), enough to
    read a PUBLISH's topic and packet id and acknowledge it."""

    first: int
    length: int
    head: bytes


PacketSink = Callable[[int, bytes], None]
OversizedSink = Callable[[Oversized], None]


class StreamSplitter:
    """Cuts MQTT packets out of a byte stream, chunk by chunk.

    ``feed(chunk)`` calls ``on_packet(first_byte, body)`` for every packet completed by
    the chunk. A partial packet waits in a ``bytearray`` that grows by each chunk (no
    ``bytes +=``: reassembly is linear in the packet's size). A packet whose remaining
    length exceeds ``max_size`` is skipped as it streams past (never buffered) and
    reported to ``on_oversized`` once its last byte went by.

    Raises (from :meth:`feed`):
        MalformedPacket: a remaining length that is not a valid varint; the stream cannot
            be resynchronised, so the connection must be closed.
    """

    __slots__ = (
        "_buf",
        "_halted",
        "_head",
        "_head_bytes",
        "_skip",
        "_skip_first",
        "_skip_len",
        "max_size",
        "on_oversized",
        "on_packet",
    )

    def __init__(
        self,
        on_packet: PacketSink,
        *,
        max_size: int = MAX_REMAINING_LENGTH,
        on_oversized: OversizedSink | None = None,
        head_bytes: int = 2 + 0xFFFF + 2,
    ) -> None:
        self.on_packet = on_packet
        self.on_oversized = on_oversized
        self.max_size = max_size
        self._buf = bytearray()
        self._skip = 0
        self._skip_first = 0
        self._skip_len = 0
        self._head = bytearray()
        self._head_bytes = head_bytes
        self._halted = False

    @property
    def buffered(self) -> int:
        """Bytes of a partial packet waiting for the rest."""
        return len(self._buf)

    def halt(self) -> None:
        """Stop delivering packets (the connection is being closed); drops the buffer."""
        self._halted = True
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next chunk of the stream."""
        if self._halted:
            return
        if self._skip:
            data = self._skipping(data)
            if not data:
                return
        if self._buf:
            self._buf += data
            buf = self._buf
            view = memoryview(buf)
            try:
                pos = self._split(view, len(buf))
            finally:
                view.release()
            if pos < 0:  # halted
                return
            if pos:
                del buf[:pos]
            if self._skip:  # an oversized packet starts in the buffer: stream the rest past
                rest = bytes(buf)
                self._buf = bytearray()
                self._skipping_start(rest)
            return
        raw = data if isinstance(data, bytes) else bytes(data)
        pos = self._split(raw, len(raw))
        if pos < 0:  # halted
            return
        if self._skip:
            self._skipping_start(raw[pos:])
        elif pos < len(raw):
            self._buf = bytearray(raw[pos:])

    def _split(self, data: bytes | memoryview, size: int) -> int:
        """Deliver the complete packets in ``data``; the offset of what is left (-1: the
        sink halted the splitter)."""
        on_packet = self.on_packet
        max_size = self.max_size
        pos = 0
        while size - pos >= 2:
            byte = data[pos + 1]
            if byte < 0x80:  # the common case: a one-byte remaining length
                length = byte
                i = pos + 2
            else:
                length = 0
                shift = 0
                i = pos + 1
                while True:
                    if i >= size:
                        if i - pos > 4:
                            raise MalformedPacket(
                                "remaining length: variable byte integer longer than 4 bytes"
                            )
                        return pos  # the length itself is cut by the chunk
                    byte = data[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        if byte == 0:
                            raise MalformedPacket(
                                "remaining length: variable byte integer not in shortest form"
                            )
                        break
                    shift += 7
                    if shift > 21:
                        raise MalformedPacket(
                            "remaining length: variable byte integer longer than 4 bytes"
                        )
            if length > max_size:
                self._skip = length
                self._skip_first = data[pos]
                self._skip_len = length
                self._head = bytearray()
                return i  # the caller streams the body past
            end = i + length
            if end > size:
                return pos
            on_packet(data[pos], bytes(data[i:end]))
            if self._halted:
                return -1
            pos = end
        return pos

    def _skipping_start(self, data: bytes) -> None:
        rest = self._skipping(data)
        if rest:
            self.feed(rest)

    def _skipping(self, data: bytes | bytearray | memoryview) -> bytes:
        """Stream part of an oversized packet past; returns what follows it."""
        take = min(self._skip, len(data))
        room = self._head_bytes - len(self._head)
        if room > 0:
            self._head += data[: min(room, take)]
        self._skip -= take
        if self._skip:
            return b""
        skipped = Oversized(self._skip_first, self._skip_len, bytes(self._head))
        self._head = bytearray()
        if self.on_oversized is not None:
            self.on_oversized(skipped)
        return bytes(data[take:])
