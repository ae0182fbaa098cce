"""One small typed adapter over gmqtt: the only place linewatch touches an MQTT library.

What it guarantees:

- MQTT 5 (falls back to 3.1.1 when the broker refuses 5), persistent session
  (``clean_start=False`` + session expiry) unless asked otherwise.
- QoS 1 by default. A received message is acknowledged only after its handler returned;
  a handler that raises leaves it unacknowledged, so the broker redelivers it after a
  reconnect.
- :meth:`MqttClient.publish` resolves when the broker acknowledged (PUBACK) the message.
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
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311, PubAckReasonCode
from gmqtt.mqtt.handler import MQTTConnectError

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.errors import ConfigError, InvalidArgument, Unavailable

__all__ = ["MqttClient", "MqttMessage", "topic_matches"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MqttMessage:
    """One received message."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    dup: bool = False
    user_properties: tuple[tuple[str, str], ...] = ()

    def user_property(self, name: str) -> str | None:
        """The first user property called ``name`` (case-insensitive), if any."""
        lname = name.lower()
        for key, value in self.user_properties:
            if key.lower() == lname:
                return value
        return None


Handler = Callable[[MqttMessage], Awaitable[None]]


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


class _GmqttClient(gmqtt.Client):  # type: ignore[misc]
    """gmqtt with PUBACK futures and a backoff that grows between reconnect attempts."""

    def __init__(self, *args: Any, backoff: Callable[[int], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._backoff = backoff
        self.acked = asyncio.Event()

    def publish_tracked(self, message: gmqtt.Message) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        mid, package = self._connection.publish(message)
        if message.qos > 0:
            self._persistent_storage.push_message(mid, package)
            self._acks[mid] = fut
        else:
            fut.set_result(None)
        return fut

    def _remove_message_from_queue(self, mid: int) -> None:
        super()._remove_message_from_queue(mid)
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)
        self.acked.set()

    async def reconnect(self, delay: bool = False) -> None:
        if delay:
            self.reconnect_delay = self._backoff(self._connection_state.failed_connections)
        await super().reconnect(delay=delay)


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
        if self.connected:
            self._send_subscribe(sub)

    async def unsubscribe(self, topic_filter: str) -> None:
        """Stop receiving ``topic_filter``."""
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
    ) -> None:
        """Publish and, for QoS ≥ 1, wait for the broker's acknowledgement.

        Raises:
            Unavailable: not connected, or no acknowledgement within ``timeout``; the
                message stays queued and is re-sent after a reconnect.
        """
        await self.wait_connected(timeout)
        kwargs: dict[str, Any] = {}
        if user_properties and self.protocol_version == MQTTv50:
            kwargs["user_property"] = list(user_properties)
        message = gmqtt.Message(topic, payload, qos=qos, retain=retain, **kwargs)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        fut = self._client.publish_tracked(message)
                        break
                    except OverflowError:
                        # The broker's receive maximum of unacknowledged publishes is
                        # reached: wait for a PUBACK to free a packet id, then retry.
                        self._client.acked.clear()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(0.05):
                                await self._client.acked.wait()
                await asyncio.shield(fut)
        except TimeoutError as exc:
            raise Unavailable(f"no PUBACK for {topic!r} within {timeout}s") from exc

    # --- gmqtt callbacks -----------------------------------------------------------

    def _on_connect(self, client: Any, flags: int, rc: int, properties: Any) -> None:
        log.info("mqtt connected", extra={"fields": {"broker": f"{self._host}:{self._port}"}})
        for sub in self._subs.values():
            self._send_subscribe(sub)
        self._connected.set()

    def _on_disconnect(self, client: Any, packet: Any, exc: Any = None) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._closing:
            log.warning(
                "mqtt connection lost; reconnecting",
                extra={"fields": {"broker": f"{self._host}:{self._port}"}},
            )

    async def _on_message(
        self, client: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]
    ) -> int:
        handler = self._handler_for(topic)
        if handler is None:
            return int(PubAckReasonCode.SUCCESS.value)
        raw_props = properties.get("user_property") or ()
        user_props = tuple((str(k), str(v)) for k, v in raw_props)
        message = MqttMessage(
            topic=topic,
            payload=bytes(payload),
            qos=qos,
            retain=bool(properties.get("retain", False)),
            dup=bool(properties.get("dup", False)),
            user_properties=user_props,
        )
        # An exception propagates to gmqtt, which then sends no PUBACK: the broker
        # redelivers the message on the next connection.
        await handler(message)
        return int(PubAckReasonCode.SUCCESS.value)

    def _handler_for(self, topic: str) -> Handler | None:
        for sub in self._subs.values():
            if topic_matches(sub.topic_filter, topic):
                return sub.handler
        return None
