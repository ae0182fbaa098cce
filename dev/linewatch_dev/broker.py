"""The embedded MQTT broker for laptops with none (amqtt, MQTT 3.1.1, in-process).

``make run`` uses the broker at 127.0.0.1:1883 when one answers there and starts this one
otherwise. It keeps nothing on disk: for a plant, use Mosquitto or EMQX.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

__all__ = ["EmbeddedBroker", "broker_answers"]

log = logging.getLogger(__name__)


def broker_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


class EmbeddedBroker:
    """An amqtt broker bound to ``host:port`` for the lifetime of an ``async with``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._broker: object | None = None

    async def start(self) -> None:
        """Start listening.

        Raises:
            OSError: the port cannot be bound (taken, or not permitted).
        """
        from amqtt.broker import Broker
        from amqtt.errors import BrokerError

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        broker = Broker(config)
        try:
            await broker.start()
        except BrokerError as exc:
            # amqtt wraps the bind error; callers handle a port problem as an OSError
            cause = exc.__cause__
            if isinstance(cause, OSError):
                raise OSError(cause.errno, cause.strerror or str(cause)) from exc
            raise OSError(f"embedded broker cannot start: {exc}") from exc
        self._broker = broker
        log.info("embedded MQTT broker listening", extra={"fields": {"port": self.port}})

    async def stop(self) -> None:
        """Stop and drop every session."""
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await self._broker.shutdown()  # type: ignore[attr-defined]
            self._broker = None

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set."""
        async with self:
            await stop.wait()
