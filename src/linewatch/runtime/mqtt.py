"""One small typed adapter over gmqtt: the only place linewatch touches an MQTT library.

What it guarantees:

- MQTT 5 (falls back to 3.1.1 when the broker refuses 5), persistent session
  (``clean_start=False`` + session expiry) unless asked otherwise.
- QoS 1 by default. A received message is acknowledged only after its handler finished;
  a handler that raises leaves it unacknowledged, so the broker redelivers it after a
  reconnect. A handler is a coroutine function, or (for hot paths) a plain function that
  returns ``None`` (done) or an awaitable (no task is made per message). A handler that
  returns :data:`DEFERRED` (or whose awaitable resolves to it) acknowledges the message
  itself, later, by calling ``message.ack()``; one that never calls it leaves the message
  to be redelivered.
- :meth:`MqttClient.publish` / :meth:`MqttClient.publish_many` resolve when the broker
  acknowledged (PUBACK) every message. At most the broker's *receive maximum* publishes
  are in flight; more wait in line (FIFO) for a PUBACK to free a packet id. If the
  broker lost the session over a reconnect, unacknowledged publishes are sent again.
- Reconnects forever with capped exponential backoff and jitter, and re-subscribes.
- User properties in and out (trace context travels there), shared subscriptions
  (``$share/<group>/<filter>``) and ``receive_maximum`` flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import gmqtt
from gmqtt.mqtt.connection import MQTTConnection
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError, MqttPackageHandler
from gmqtt.mqtt.protocol import BaseMQTTProtocol, MQTTProtocol

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.errors import ConfigError, InvalidArgument, LinewatchError, Unavailable

__all__ = ["DEFERRED", "Ack", "MqttClient", "MqttMessage", "topic_matches"]

log = logging.getLogger(__name__)


class _Deferred:
    """The type of :data:`DEFERRED`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED: Any = _Deferred()
"""What a handler returns when it will call ``message.ack()`` itself."""


class Ack:
    """Acknowledges one received message (PUBACK, or PUBREC for QoS 2) when called.

    Calling it again, or after the connection it came on was lost, does nothing: after a
    reconnect the broker redelivers the message under a new packet id, so an old id is
    never acknowledged. A QoS 0 message has nothing to acknowledge.
    """

    __slots__ = ("_client", "_conn", "_mid", "_qos")

    def __init__(self, client: _GmqttClient | None = None, mid: int = 0, qos: int = 0) -> None:
        self._client = client
        self._mid = mid
        self._qos = qos
        self._conn = client.connection if client is not None else None

    def __call__(self) -> None:
        client = self._client
        if client is None:
            return
        self._client = None
        conn = self._conn
        if client.connection is conn and not conn.is_closing():
            # PUBACK (QoS 1) or PUBREC (QoS 2) without reason code: success, in 3.1.1 and 5
            header = b"\x50\x02" if self._qos == 2 else b"\x40\x02"
            conn._protocol.write_data(header + self._mid.to_bytes(2, "big"))


_NO_ACK = Ack()


@dataclass(slots=True)
class MqttMessage:
    """One received message (not frozen: a frozen dataclass costs four times as much to
    make, and one is made per message)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    dup: bool = False
    user_properties: tuple[tuple[str, str], ...] = ()
    ack: Ack = _NO_ACK
    """Acknowledges the message; for handlers that return :data:`DEFERRED`."""

    def user_property(self, name: str) -> str | None:
        """The first user property called ``name`` (case-insensitive), if any."""
        lname = name.lower()
        for key, value in self.user_properties:
            if key.lower() == lname:
                return value
        return None


Handler = Callable[[MqttMessage], Awaitable[Any] | None]
"""Called per message; the message is acknowledged once the returned awaitable is done
(unless the handler returns, or the awaitable resolves to, :data:`DEFERRED`)."""

Outgoing = tuple[str, bytes | str, Sequence[tuple[str, str]]]
"""One message for :meth:`MqttClient.publish_many`: topic, payload, user properties."""

Dispatch = Callable[[MqttMessage], Awaitable[Any] | None]


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches an MQTT topic filter (``+``, ``#``, ``$share/g/``)."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) < 3:
            return False
        topic_filter = parts[2]
    flevels = topic_filter.split("/")
    tlevels = topic.split("/")
    if topic.startswith("$") and flevels[0] in {"+", "#"}:
        return False
    for i, flevel in enumerate(flevels):
        if flevel == "#":
            return True
        if i >= len(tlevels):
            return False
        if flevel not in {"+", tlevels[i]}:
            return False
    return len(flevels) == len(tlevels)


def _parse_url(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in {"mqtt", "mqtts", "tcp", "ssl"}:
        raise ConfigError(f"mqtt url {url!r}: scheme must be mqtt:// or mqtts://")
    tls = parts.scheme in {"mqtts", "ssl"}
    if not parts.hostname:
        raise ConfigError(f"mqtt url {url!r}: no host")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ConfigError(f"mqtt url {url!r}: bad port") from exc
    return parts.hostname, port, tls


class _Protocol(MQTTProtocol):  # type: ignore[misc]
    """gmqtt's protocol with a direct read path and coalesced writes.

    Reading: gmqtt feeds every received chunk through an ``asyncio.StreamReader`` to a
    read-loop task that copies it twice more and wakes up once per 64 KiB. Here packets
    are cut out of each chunk as it arrives and handed to the connection at once; a
    partial packet waits for the next chunk. (Flow control stays with MQTT: the broker
    sends at most our receive maximum of unacknowledged messages.)

    Writing: gmqtt writes every packet with its own ``send()`` system call; at thousands
    of messages a second (a PUBACK in, a verdict and its PUBACK out per message) those
    calls cost more than the rest of the pipeline. PUBLISH and acknowledgement packets
    are joined and written when the event loop finishes its turn. Every other packet
    (CONNECT, SUBSCRIBE, PINGREQ, DISCONNECT, …) flushes what is waiting and goes out at
    once, so the order on the wire never changes and nothing is held back on close.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._rest = b""

    def connection_made(self, transport: asyncio.Transport) -> None:
        # gmqtt's own read loop is not started: data_received cuts the packets
        BaseMQTTProtocol.connection_made(self, transport)

    def data_received(self, data: bytes) -> None:
        if self._rest:
            data = self._rest + data
        connection = self._connection
        if connection is None:  # not handed to its MQTTConnection yet
            self._rest = data
            return
        handler = connection._handler
        if handler.current_connection is not connection:
            # a superseded connection's last bytes (as gmqtt's put_package drops them)
            self._rest = b""
            return
        connection._last_data_in = time.monotonic()
        handle = handler._handle_packet
        size = len(data)
        pos = 0
        while size - pos >= 2:
            length = 0
            shift = 0
            i = pos + 1
            while True:
                if i >= size:
                    self._rest = data[pos:]
                    return
                byte = data[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
                if shift > 21:  # a remaining length of more than four bytes: not MQTT
                    log.error("malformed MQTT packet; closing the connection")
                    self._rest = b""
                    self._transport.close()
                    return
            end = i + length
            if end > size:
                break
            try:
                handle(data[pos], data[i:end])
            except Exception:  # one bad packet must not stop the connection (as in gmqtt)
                log.exception("failed to handle an MQTT packet")
            pos = end
            if self._transport.is_closing():
                self._rest = b""
                return
        self._rest = data[pos:] if pos else data

    def eof_received(self) -> bool:
        self._transport.close()  # the broker closed its side: the connection is lost
        return False

    def write_data(self, data: bytes) -> None:
        packet_type = data[0] & 0xF0 if data else 0
        self._pending.append(bytes(data))
        if packet_type in _DEFERRABLE:
            if self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)
        else:
            self.flush()

    def flush(self) -> None:
        """Write what is waiting now."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            super().write_data(data)


# PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP
_DEFERRABLE = frozenset({0x30, 0x40, 0x50, 0x60, 0x70})


class _GmqttClient(gmqtt.Client):  # type: ignore[misc]
    """gmqtt with PUBACK futures, a FIFO publish window, acknowledgement after the
    handler without a task per message, and a growing reconnect backoff."""

    def __init__(
        self, *args: Any, backoff: Callable[[int], float], dispatch: Dispatch, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._acks: dict[int, _Acks] = {}
        self._backoff = backoff
        self._id_waiters: deque[asyncio.Future[None]] = deque()
        self._resend: asyncio.Future[None] | None = None
        _PackageHandler.adopt(self._package_handler, self, dispatch)

    @property
    def connection(self) -> Any:
        """The current connection (a new one after each reconnect)."""
        return self._connection

    # --- publish window ------------------------------------------------------------

    def publish_packet(self, topic: bytes, payload: bytes, properties: bytes, acks: _Acks) -> None:
        """Send one PUBLISH now (``topic`` as an MQTT string, ``properties`` as the
        properties block); for QoS 1/2 ``acks`` counts it until its PUBACK.

        Raises:
            OverflowError: the broker's receive maximum is reached (no free packet id).
        """
        header = bytes((0x30 | acks.qos << 1 | acks.retain,))
        if acks.qos:
            mid = self._package_handler.id_generator.next_id()
            head = b"".join((topic, _u16(mid), properties))
            packet = b"".join((header, _varint(len(head) + len(payload)), head, payload))
            self._persistent_storage.push_message(mid, packet)
            self._acks[mid] = acks
            acks.left += 1
        else:
            head = topic + properties
            packet = b"".join((header, _varint(len(head) + len(payload)), head, payload))
        self._connection._protocol.write_data(packet)

    async def wait_for_id(self, *, first: bool = False) -> None:
        """Wait in line until a PUBACK frees a packet id (or a reconnect resets them)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._id_waiters.appendleft(waiter)
        else:
            self._id_waiters.append(waiter)
        try:
            # the timeout only guards against a wake-up lost to a dropped connection
            async with asyncio.timeout(1.0):
                await waiter
        except TimeoutError:
            pass
        finally:
            if not waiter.done():
                with contextlib.suppress(ValueError):
                    self._id_waiters.remove(waiter)

    def wake_id_waiters(self, n: int | None = None) -> None:
        """Let ``n`` (default: all) publishers waiting for a packet id try again."""
        while self._id_waiters and (n is None or n > 0):
            waiter = self._id_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if n is not None:
                    n -= 1

    def _remove_message_from_queue(self, mid: int) -> None:
        super()._remove_message_from_queue(mid)
        acks = self._acks.pop(mid, None)
        if acks is not None:
            acks.acked()
        self.wake_id_waiters(1)

    def _clear_resend_qos_queue(self) -> None:
        # The broker has no session for us (it lost it, or it is a new broker): gmqtt
        # would forget the unacknowledged publishes and their PUBACK futures would never
        # resolve. Nothing accepted may be lost, so send them again in the new session.
        if not self._persistent_storage.is_empty:
            log.warning("broker lost the session; resending unacknowledged publishes")
            self._resend = asyncio.ensure_future(self._resend_qos_messages())
        self.wake_id_waiters()

    async def _create_connection(
        self, host: str, port: int, ssl: Any, clean_session: bool, keepalive: int
    ) -> MQTTConnection:
        # gmqtt's own, with _Protocol in place of its protocol class
        self._exit_reconnecting_state()
        self._package_handler.clear_topics_aliases()
        self._connack_received.clear()
        self._connection_lost.clear()
        factory = partial(
            _Protocol,
            connection_state=self._connection_state,
            id_generator=self._package_handler.id_generator,
        )
        transport, protocol = await asyncio.get_running_loop().create_connection(
            factory, host, port, ssl=ssl
        )
        return MQTTConnection(
            transport,
            protocol,
            clean_session,
            keepalive,
            package_handler=self._package_handler,
            logger=self._logger,
        )

    async def reconnect(self, delay: bool = False) -> None:
        if delay:
            self.reconnect_delay = self._backoff(self._connection_state.failed_connections)
        await super().reconnect(delay=delay)


class _PackageHandler(MqttPackageHandler):  # type: ignore[misc]
    """gmqtt's packet handler with a fast path for PUBLISH and PUBACK, acknowledging QoS
    1/2 messages when their handler is done without a task per message (gmqtt wraps
    every handler call in a task).

    The fast path parses a PUBLISH without properties (the usual case) in place; one with
    properties (user properties, topic alias, …) goes through gmqtt's own parser.
    """

    _client: _GmqttClient
    _dispatch: Dispatch

    @classmethod
    def adopt(cls, handler: MqttPackageHandler, client: _GmqttClient, dispatch: Dispatch) -> None:
        """Turn gmqtt's own handler (made in ``Client.__init__``) into this one in place."""
        handler.__class__ = cls
        handler._client = client
        handler._dispatch = dispatch

    def _handle_packet(self, cmd: int, packet: bytes) -> None:
        kind = cmd & 0xF0
        if kind == 0x30:
            self._handle_publish_packet(cmd, packet)
        elif kind == 0x40:
            mid = (packet[0] << 8) | packet[1]
            self.id_generator.free_id(mid)
            self._remove_message_from_queue(mid)
        else:
            super()._handle_packet(cmd, packet)
            return
        self._last_msg_in = time.monotonic()

    def _handle_publish_packet(self, cmd: int, packet: bytes) -> None:
        qos = (cmd >> 1) & 0x03
        end = 2 + ((packet[0] << 8) | packet[1])
        pos = end + 2 if qos else end
        if qos == 0 or len(packet) <= pos:
            super()._handle_publish_packet(cmd, packet)
            return
        if self._connection_state.protocol_version >= MQTTv50:
            if packet[pos] != 0:  # properties: gmqtt parses them
                super()._handle_publish_packet(cmd, packet)
                return
            pos += 1
        try:
            topic = packet[2:end].decode()
        except UnicodeDecodeError:
            super()._handle_publish_packet(cmd, packet)
            return
        if not topic:
            super()._handle_publish_packet(cmd, packet)
            return
        ack = Ack(self._client, (packet[end] << 8) | packet[end + 1], qos)
        self._deliver(
            MqttMessage(topic, packet[pos:], qos, bool(cmd & 0x01), bool(cmd & 0x08), (), ack)
        )

    def _handle_qos_1_publish_packet(
        self, mid: int, packet: bytes, topic: str, properties: dict[str, Any]
    ) -> None:
        self._deliver(_message(topic, packet, 1, properties, Ack(self._client, mid, 1)))

    def _handle_qos_2_publish_packet(
        self, mid: int, packet: bytes, topic: str, properties: dict[str, Any]
    ) -> None:
        self._deliver(_message(topic, packet, 2, properties, Ack(self._client, mid, 2)))

    def _deliver(self, message: MqttMessage) -> None:
        ack = message.ack
        try:
            pending = self._dispatch(message)
        except Exception as exc:
            # no acknowledgement: the broker redelivers the message after a reconnect
            _log_handler_error(exc)
            return
        if pending is None:
            ack()
        elif pending is not DEFERRED:
            asyncio.ensure_future(pending).add_done_callback(partial(_ack_when_ok, ack))


def _message(
    topic: str, payload: bytes, qos: int, properties: dict[str, Any], ack: Ack
) -> MqttMessage:
    """A message from what gmqtt's own parser hands over."""
    raw_props = properties.get("user_property")
    return MqttMessage(
        topic,
        payload,
        qos,
        bool(properties.get("retain", False)),
        bool(properties.get("dup", False)),
        tuple((str(k), str(v)) for k, v in raw_props) if raw_props else (),
        ack,
    )


def _ack_when_ok(ack: Ack, done: asyncio.Future[Any]) -> None:
    if done.cancelled():
        return
    if (exc := done.exception()) is not None:
        _log_handler_error(exc)
        return
    if done.result() is not DEFERRED:
        ack()


class _Acks:
    """One :meth:`MqttClient.publish_many` call: its QoS and retain flag, and the
    PUBACKs it waits for."""

    __slots__ = ("_sent", "future", "left", "qos", "retain")

    def __init__(self, loop: asyncio.AbstractEventLoop, qos: int, retain: bool) -> None:
        self.qos = qos
        self.retain = retain
        self.future: asyncio.Future[None] = loop.create_future()
        self.left = 0
        self._sent = False

    def acked(self) -> None:
        self.left -= 1
        if self._sent and self.left <= 0 and not self.future.done():
            self.future.set_result(None)

    def all_sent(self) -> None:
        self._sent = True
        if self.left <= 0 and not self.future.done():
            self.future.set_result(None)


def _u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def _utf8(text: str) -> bytes:
    data = text.encode()
    if len(data) > 0xFFFF:
        raise InvalidArgument(f"MQTT string longer than 65535 bytes: {text[:40]!r}…")
    return _u16(len(data)) + data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_TOPICS: dict[str, bytes] = {}


def _topic_bytes(topic: str) -> bytes:
    """A topic to publish to as an MQTT string (memoised: a plant has a bounded set)."""
    data = _TOPICS.get(topic)
    if data is None:
        if not topic or "+" in topic or "#" in topic:
            raise InvalidArgument(f"cannot publish to {topic!r}: empty or a wildcard")
        if len(_TOPICS) >= _ROUTE_CACHE:
            _TOPICS.clear()
        data = _TOPICS[topic] = _utf8(topic)
    return data


@dataclass
class _Subscription:
    topic_filter: str
    qos: int
    handler: Handler
    no_local: bool = False
    subscribed: bool = field(default=False)


class MqttClient:
    """An MQTT 5 connection with typed publish/subscribe.

    Use as ``async with MqttClient(config, client_id="ingest-1") as client: ...``.
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        client_id: str | None = None,
        clean_start: bool = False,
        receive_maximum: int | None = None,
        will_topic: str | None = None,
        will_payload: bytes = b"",
    ) -> None:
        self._config = config
        self._host, self._port, self._tls = _parse_url(config.url)
        self.client_id = client_id or config.client_id or f"linewatch-{uuid.uuid4().hex[:12]}"
        self._subs: dict[str, _Subscription] = {}
        self._routes: dict[str, Handler | None] = {}
        """topic → handler, memoised (matching filters per message costs more than a dict)"""
        self._connected = asyncio.Event()
        self._closing = False
        self._will = gmqtt.Message(will_topic, will_payload, qos=1) if will_topic else None
        self._clean_start = clean_start
        self._receive_maximum = receive_maximum or config.receive_maximum
        self.protocol_version = MQTTv50
        self._client = self._make_client()

    def _make_client(self) -> _GmqttClient:
        client = _GmqttClient(
            self.client_id,
            clean_session=self._clean_start,
            optimistic_acknowledgement=False,
            will_message=self._will,
            session_expiry_interval=0 if self._clean_start else self._config.session_expiry_s,
            receive_maximum=self._receive_maximum,
            backoff=self._backoff,
            dispatch=self._dispatch,
        )
        client.set_config({"reconnect_retries": -1, "reconnect_delay": 1})
        if self._config.username:
            client.set_auth_credentials(self._config.username, self._config.password or None)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # --- lifecycle -----------------------------------------------------------------

    def _backoff(self, failures: int) -> float:
        cap = self._config.reconnect_max_delay_s
        base: float = min(cap, 0.25 * (2 ** min(failures, 16)))
        return float(base * random.uniform(0.5, 1.0))

    @property
    def connected(self) -> bool:
        """Whether the connection is up now."""
        return self._connected.is_set()

    async def connect(self, *, timeout: float = 10.0) -> None:
        """Connect (once); later drops are reconnected automatically.

        Raises:
            Unavailable: the broker could not be reached within ``timeout``.
        """
        ctx: ssl.SSLContext | bool = ssl.create_default_context() if self._tls else False
        last: BaseException | None = None
        # MQTT 5 first; a broker that only speaks 3.1.1 (the embedded one) closes the
        # connection, and then 3.1.1 is used (without user properties).
        for version in (MQTTv50, MQTTv311):
            if version != MQTTv50:
                self._client = self._make_client()
            try:
                async with asyncio.timeout(timeout):
                    await self._client.connect(
                        self._host,
                        self._port,
                        ssl=ctx,
                        keepalive=self._config.keepalive_s,
                        version=version,
                    )
                    await self._connected.wait()
            except ConnectionRefusedError as exc:
                last = exc
                await self._abandon()
                break
            except (OSError, TimeoutError, MQTTConnectError) as exc:
                last = exc
                await self._abandon()
                continue
            self.protocol_version = version
            return
        raise Unavailable(
            f"MQTT broker {self._host}:{self._port} unreachable: {last or 'no answer'}"
        ) from last

    async def _abandon(self) -> None:
        with contextlib.suppress(Exception):
            self._client.stop_reconnect()
        with contextlib.suppress(Exception):
            await self._client.disconnect()

    async def disconnect(self) -> None:
        """Disconnect cleanly; no reconnect follows."""
        self._closing = True
        with contextlib.suppress(Exception):
            await self._client.disconnect()
        self._connected.clear()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until connected.

        Raises:
            Unavailable: still not connected after ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError as exc:
            raise Unavailable(f"MQTT broker {self._host}:{self._port} not connected") from exc

    # --- subscribe -----------------------------------------------------------------

    async def subscribe(
        self, topic_filter: str, handler: Handler, *, qos: int = 1, no_local: bool = False
    ) -> None:
        """Subscribe; ``handler`` is awaited for each message before it is acknowledged."""
        if not topic_filter or qos not in {0, 1, 2}:
            raise InvalidArgument(f"bad subscription {topic_filter!r} qos={qos}")
        sub = _Subscription(topic_filter, qos, handler, no_local)
        self._subs[topic_filter] = sub
        self._routes.clear()
        if self.connected:
            self._send_subscribe(sub)

    async def unsubscribe(self, topic_filter: str) -> None:
        """Stop receiving ``topic_filter``."""
        self._routes.clear()
        if self._subs.pop(topic_filter, None) is not None and self.connected:
            self._client.unsubscribe(topic_filter)

    def _send_subscribe(self, sub: _Subscription) -> None:
        self._client.subscribe(
            gmqtt.Subscription(sub.topic_filter, qos=sub.qos, no_local=sub.no_local)
        )
        sub.subscribed = True

    # --- publish -------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        user_properties: Sequence[tuple[str, str]] = (),
        timeout: float | None = 30.0,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> None:
        """Publish and, for QoS ≥ 1, wait for the broker's acknowledgement.

        ``response_topic`` and ``correlation_data`` set the MQTT 5 request/response
        properties (dropped on a 3.1.1 connection, which has no properties).

        Raises:
            Unavailable: not connected, or no acknowledgement within ``timeout``; the
                message stays queued and is re-sent after a reconnect.
        """
        extra = b""
        if response_topic is not None:
            extra += b"\x08" + _utf8(response_topic)
        if correlation_data is not None:
            extra += b"\x09" + _u16(len(correlation_data)) + correlation_data
        await self.publish_many(
            [(topic, payload, user_properties)],
            qos=qos,
            retain=retain,
            timeout=timeout,
            _extra_properties=extra,
        )

    async def publish_many(
        self,
        messages: Sequence[Outgoing],
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = 30.0,
        _extra_properties: bytes = b"",
    ) -> None:
        """Publish several messages in order; returns once the broker acknowledged all.

        Raises:
            InvalidArgument: a topic is empty or holds a wildcard.
            Unavailable: not connected, or not all acknowledged within ``timeout``; the
                unacknowledged ones stay queued and are re-sent after a reconnect.
        """
        if qos not in {0, 1, 2}:
            raise InvalidArgument(f"qos must be 0, 1 or 2, got {qos}")
        acks = _Acks(asyncio.get_running_loop(), qos, retain)
        encoded: dict[int, bytes] = {}  # user properties are often one shared list
        sent = 0
        try:
            async with asyncio.timeout(timeout):
                for topic, payload, user_properties in messages:
                    key = id(user_properties)
                    properties = encoded.get(key)
                    if properties is None:
                        properties = encoded[key] = self._properties(
                            user_properties, _extra_properties
                        )
                    body = payload.encode() if isinstance(payload, str) else bytes(payload)
                    topic_bytes = _topic_bytes(topic)
                    if self._connected.is_set():
                        try:  # the usual case: connected and a packet id free
                            self._client.publish_packet(topic_bytes, body, properties, acks)
                            sent += 1
                            continue
                        except OverflowError:
                            pass
                    await self._send(topic_bytes, body, properties, acks)
                    sent += 1
                acks.all_sent()
                if not acks.future.done():
                    await acks.future
        except TimeoutError as exc:
            raise Unavailable(
                f"{acks.left + len(messages) - sent} publish(es) not acknowledged within {timeout}s"
            ) from exc

    def _properties(self, user_properties: Sequence[tuple[str, str]], extra: bytes = b"") -> bytes:
        """The PUBLISH properties block (MQTT 5), or nothing (3.1.1 has none)."""
        if self.protocol_version != MQTTv50:
            return b""
        block = extra + b"".join(
            b"\x26" + _utf8(str(name)) + _utf8(str(value)) for name, value in user_properties
        )
        return _varint(len(block)) + block

    async def _send(self, topic: bytes, payload: bytes, properties: bytes, acks: _Acks) -> None:
        retried = False
        while True:
            if not self._connected.is_set():
                await self._connected.wait()
            try:
                self._client.publish_packet(topic, payload, properties, acks)
                return
            except OverflowError:
                # the broker's receive maximum of unacknowledged publishes is reached
                await self._client.wait_for_id(first=retried)
                retried = True

    # --- gmqtt callbacks -----------------------------------------------------------

    def _on_connect(self, client: Any, flags: int, rc: int, properties: Any) -> None:
        log.info("mqtt connected", extra={"fields": {"broker": f"{self._host}:{self._port}"}})
        for sub in self._subs.values():
            self._send_subscribe(sub)
        self._connected.set()
        self._client.wake_id_waiters()

    def _on_disconnect(self, client: Any, packet: Any, exc: Any = None) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._closing:
            log.warning(
                "mqtt connection lost; reconnecting",
                extra={"fields": {"broker": f"{self._host}:{self._port}"}},
            )

    def _dispatch(self, message: MqttMessage) -> Awaitable[Any] | None:
        try:
            handler = self._routes[message.topic]
        except KeyError:
            handler = self._handler_for(message.topic)
        return None if handler is None else handler(message)

    def _on_message(
        self, client: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]
    ) -> None:
        # QoS 0 only (QoS 1 and 2 go through _PackageHandler._deliver): nothing to acknowledge
        pending = self._dispatch(_message(topic, payload, qos, properties, _NO_ACK))
        if pending is not None and pending is not DEFERRED:
            asyncio.ensure_future(pending).add_done_callback(_log_failure)

    def _handler_for(self, topic: str) -> Handler | None:
        try:
            return self._routes[topic]
        except KeyError:
            pass
        handler = next(
            (sub.handler for sub in self._subs.values() if topic_matches(sub.topic_filter, topic)),
            None,
        )
        if len(self._routes) >= _ROUTE_CACHE:
            self._routes.clear()
        self._routes[topic] = handler
        return handler


_ROUTE_CACHE = 100_000


def _log_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and (exc := done.exception()) is not None:
        _log_handler_error(exc)


def _log_handler_error(exc: BaseException) -> None:
    # a LinewatchError is the handler saying "not now" (stopped, unavailable): expected
    if not isinstance(exc, LinewatchError):
        log.error("message handler failed", exc_info=exc)
