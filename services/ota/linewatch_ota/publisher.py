"""Sends ``ota/{device_id}/metadata``: ``update_id``, ``version``, ``url``, ``size``,
``sha256``, ``chunk_size``, ``priority`` and ``signature`` (base64 ed25519 over the
sha256), the fields devices rely on (docs/devices.md)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from linewatch.runtime.errors import LinewatchError
from linewatch.runtime.mqtt import MqttClient
from linewatch.runtime.telemetry import inject_user_properties
from linewatch_ota.catalog import Catalog, manifest_of
from linewatch_ota.metrics import METADATA_SENT
from linewatch_ota.store import DeviceUpdateRow, FirmwareRow

__all__ = ["MetadataPublisher", "metadata_payload"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


def metadata_payload(
    update: DeviceUpdateRow, fw: FirmwareRow, *, base_url: str, chunk_size: int
) -> dict[str, object]:
    """The metadata message of one update (the OTA device protocol's ``metadata``).

    ``signature`` (over the sha256) stays for old devices; new ones verify
    ``manifest_signature`` over the canonical JSON of ``manifest`` with the key ``key_id``
    (published at ``GET /v1/firmware/keys``).
    """
    return {
        "update_id": update.id,
        "version": fw.version,
        "url": f"{base_url.rstrip('/')}/v1/firmware/{fw.id}/download",
        "size": fw.size,
        "sha256": fw.sha256,
        "chunk_size": chunk_size,
        "priority": update.priority,
        "signature": fw.signature,
        "manifest": manifest_of(fw),
        "manifest_signature": fw.manifest_signature,
        "key_id": fw.key_id,
    }


class MetadataPublisher:
    """Publishes metadata messages with a bounded number in flight.

    The bound stays below the broker's receive maximum (mosquitto: 20 in flight per
    connection by default); beyond it the MQTT library runs out of packet ids.
    """

    def __init__(
        self,
        *,
        mqtt: MqttClient,
        catalog: Catalog,
        topic_root: str,
        base_url: str,
        chunk_size: int,
        concurrency: int = 16,
    ) -> None:
        self.mqtt = mqtt
        self.catalog = catalog
        self.topic_root = topic_root
        self.base_url = base_url
        self.chunk_size = chunk_size
        self._sem = asyncio.Semaphore(concurrency)

    async def send(
        self,
        updates: Sequence[DeviceUpdateRow],
        *,
        reason: str,
        contexts: Mapping[str, Context] | None = None,
    ) -> None:
        """Publish each update's metadata; a failed publish is retried at its deadline.

        ``contexts`` maps a device to the trace its metadata continues (the device's own
        request); the metadata carries it as its MQTT 5 ``traceparent``.
        """
        async with asyncio.TaskGroup() as group:
            for update in updates:
                await self._sem.acquire()
                ctx = contexts.get(update.device_id) if contexts else None
                group.create_task(self._send_one(update, reason, ctx))

    async def _send_one(self, update: DeviceUpdateRow, reason: str, ctx: Context | None) -> None:
        topic = f"{self.topic_root}/{update.device_id}/metadata"
        try:
            with tracer.start_as_current_span(
                f"{topic} publish",
                context=ctx,
                kind=SpanKind.PRODUCER,
                attributes={"messaging.system": "mqtt", "messaging.destination.name": topic,
                            "linewatch.update_id": update.id, "linewatch.reason": reason},
            ):  # fmt: skip
                fw = await self.catalog.get(update.firmware_id)
                body = metadata_payload(
                    update, fw, base_url=self.base_url, chunk_size=self.chunk_size
                )
                await self.mqtt.publish(
                    topic,
                    json.dumps(body, separators=(",", ":")),
                    qos=1,
                    user_properties=inject_user_properties(),
                    timeout=10.0,
                )
            METADATA_SENT.labels(reason).inc()
        except (LinewatchError, OverflowError) as exc:
            log.warning(
                "metadata not sent; retried at the deadline",
                extra={"fields": {"device_id": update.device_id, "error": str(exc)}},
            )
        finally:
            self._sem.release()
