"""Simulated devices that follow the OTA device protocol (docs/devices.md) to the letter.

Each device announces itself with ``request`` at boot (its version and hardware). On
``metadata`` it checks the ``manifest``: its ed25519 ``manifest_signature`` over the
canonical JSON with the published keys (``GET /v1/firmware/keys``, or ``ListSigningKeys``),
that it names this image (sha256, version), this device's hardware, and a security counter
not below the installed one; without a manifest it checks the legacy signature over the
sha256. Anything wrong is reported as ``verify`` with ``ok: false`` and the ``error``. It
then downloads the image
over HTTP in ``chunk_size`` Range requests while hashing it, reports ``progress``
(downloading, then installing) and finally ``verify``. Many devices share one MQTT
connection and one HTTP connection pool; a bounded number download at a time.

Behaviours (for tests and demos): ``ok``; ``fail`` (reports ``ok: false``);
``bad_checksum`` (reports a wrong sha256 with ``ok: true``); ``silent`` (never answers).

``linewatch ota simulate --devices N`` runs :func:`simulate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import os
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
import httpx
from linewatch_ota.signing import verify_signature

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.runtime.signatures import KeyRing, canonical_json

__all__ = [
    "Behaviour",
    "SimulatedFleet",
    "fetch_public_key",
    "fetch_published_keys",
    "fetch_signing_keys",
    "simulate",
]

log = logging.getLogger(__name__)

HTTP_ATTEMPTS = 3


class Behaviour(enum.StrEnum):
    """How a simulated device reacts to an update."""

    OK = "ok"
    FAIL = "fail"
    BAD_CHECKSUM = "bad_checksum"
    SILENT = "silent"


@dataclass
class _Device:
    device_id: str
    behaviour: Behaviour
    version: str
    hw: str = "sim"
    #: The security counter of the installed image (anti-rollback).
    security_counter: int = 0
    #: update_id → the verify payload it sent (a repeated metadata gets it again).
    done: dict[str, dict[str, object]] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Metadata:
    device_id: str
    update_id: str
    version: str
    url: str
    size: int
    sha256: str
    chunk_size: int
    signature: str
    manifest: dict[str, object] | None = None
    manifest_signature: str = ""


def _parse_metadata(device_id: str, payload: bytes) -> _Metadata:
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("metadata must be a JSON object")
    meta = _Metadata(
        device_id=device_id,
        update_id=str(data["update_id"]),
        version=str(data["version"]),
        url=str(data["url"]),
        size=int(data["size"]),
        sha256=str(data["sha256"]).lower(),
        chunk_size=int(data["chunk_size"]),
        signature=str(data["signature"]),
        manifest=data["manifest"] if isinstance(data.get("manifest"), dict) else None,
        manifest_signature=str(data.get("manifest_signature", "")),
    )
    if meta.size < 0 or meta.chunk_size <= 0 or len(meta.sha256) != 64:
        raise ValueError("metadata: bad size, chunk_size or sha256")
    return meta


class SimulatedFleet:
    """A fleet of simulated devices on one MQTT connection."""

    def __init__(
        self,
        *,
        mqtt_url: str,
        device_ids: list[str],
        public_key: str = "",
        keys: Mapping[str, str] | None = None,
        topic_root: str = "ota",
        behaviours: dict[str, Behaviour] | None = None,
        current_version: str = "1.0.0",
        hw: str = "sim",
        concurrency: int = 64,
    ) -> None:
        """``keys`` (key id → base64 public key, as published) verify manifests; the
        legacy ``public_key`` verifies metadata without one (and manifests, without keys)."""
        behaviours = behaviours or {}
        self.topic_root = topic_root
        self.public_key = public_key
        if keys is None and not public_key:
            raise ValueError("a simulated fleet needs keys or public_key")
        self.keys = KeyRing.from_config(keys if keys is not None else {"legacy": public_key})
        self.devices = {
            d: _Device(d, behaviours.get(d, Behaviour.OK), current_version, hw) for d in device_ids
        }
        self.mqtt = MqttClient(
            MqttConfig(url=mqtt_url, receive_maximum=max(concurrency * 4, 100)),
            client_id=f"linewatch-ota-sim-{uuid.uuid4().hex[:10]}",
            clean_start=True,
        )
        self.http = httpx.AsyncClient(
            timeout=30.0,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self.downloads = 0
        self._queue: asyncio.Queue[_Metadata] = asyncio.Queue(maxsize=concurrency * 4)
        self._concurrency = concurrency
        self._workers: list[asyncio.Task[None]] = []
        # Below the broker's in-flight limit per connection (mosquitto: 20).
        self._publishing = asyncio.Semaphore(16)

    def version_of(self, device_id: str) -> str:
        """The firmware version a device runs now."""
        return self.devices[device_id].version

    async def start(self, *, boot: bool = True) -> None:
        """Connect, subscribe to metadata and (``boot``) send every device's ``request``."""
        await self.mqtt.subscribe(f"{self.topic_root}/+/metadata", self._on_metadata)
        await self.mqtt.connect()
        self._workers = [
            asyncio.create_task(self._worker(), name=f"ota-sim-{i}")
            for i in range(self._concurrency)
        ]
        if boot:
            await self.boot(list(self.devices))

    async def boot(self, device_ids: list[str]) -> None:
        """Publish ``request`` for each device, as at power-on."""
        for device_id in device_ids:
            dev = self.devices[device_id]
            body = {"current_version": dev.version, "hw": dev.hw}
            await self._publish(device_id, "request", body)

    async def stop(self) -> None:
        """Stop the workers and close the connections."""
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.mqtt.disconnect()
        await self.http.aclose()

    async def _publish(self, device_id: str, kind: str, body: Mapping[str, object]) -> None:
        async with self._publishing:
            await self.mqtt.publish(
                f"{self.topic_root}/{device_id}/{kind}", json.dumps(body, separators=(",", ":"))
            )

    async def _on_metadata(self, message: MqttMessage) -> None:
        parts = message.topic[len(self.topic_root) + 1 :].split("/")
        dev = self.devices.get(parts[0]) if len(parts) == 2 else None
        if dev is None or dev.behaviour is Behaviour.SILENT:
            return
        try:
            meta = _parse_metadata(dev.device_id, message.payload)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("simulated device %s: bad metadata: %s", dev.device_id, exc)
            return
        if meta.update_id in dev.done:  # repeated metadata: say again how it went
            await self._publish(dev.device_id, "verify", dev.done[meta.update_id])
            return
        if meta.update_id in dev.busy:
            return
        dev.busy.add(meta.update_id)
        await self._queue.put(meta)

    async def _worker(self) -> None:
        while True:
            meta = await self._queue.get()
            dev = self.devices[meta.device_id]
            try:
                verify = await self._update(dev, meta)
                dev.done[meta.update_id] = verify
                await self._publish(dev.device_id, "verify", verify)
            except Exception as exc:  # a device never crashes; the server times it out
                log.warning("simulated device %s: update failed: %s", dev.device_id, exc)
            finally:
                dev.busy.discard(meta.update_id)

    async def _update(self, dev: _Device, meta: _Metadata) -> dict[str, object]:
        verify: dict[str, object] = {
            "update_id": meta.update_id,
            "version": meta.version,
            "sha256": meta.sha256,
            "ok": False,
        }
        problem = self._check(dev, meta)
        if problem:
            log.warning("simulated device %s: refused: %s", dev.device_id, problem)
            verify["error"] = problem
            return verify
        digest = hashlib.sha256()
        offset = 0
        while offset < meta.size:
            end = min(meta.size, offset + meta.chunk_size)
            digest.update(await self._get_range(meta.url, offset, end))
            offset = end
            percent = int(offset * 100 / meta.size)
            await self._publish(
                dev.device_id,
                "progress",
                {"update_id": meta.update_id, "state": "downloading", "percent": percent},
            )
        self.downloads += 1
        got = digest.hexdigest()
        await self._publish(
            dev.device_id,
            "progress",
            {"update_id": meta.update_id, "state": "installing", "percent": 0},
        )
        verify["sha256"] = got
        verify["ok"] = got == meta.sha256 and dev.behaviour is not Behaviour.FAIL
        if dev.behaviour is Behaviour.BAD_CHECKSUM:
            verify["sha256"] = hashlib.sha256(b"corrupted" + got.encode()).hexdigest()
            verify["ok"] = True
        if verify["ok"] and dev.behaviour is Behaviour.OK:
            dev.version = meta.version
            if meta.manifest is not None:
                dev.security_counter = int(str(meta.manifest.get("security_counter", 0)))
        return verify

    def _check(self, dev: _Device, meta: _Metadata) -> str:  # noqa: PLR0911 (one per check)
        """Why this device must not install ``meta`` ("" when it may)."""
        if meta.manifest is None:
            if self.public_key and verify_signature(self.public_key, meta.sha256, meta.signature):
                return ""
            return "no manifest, and the legacy signature does not verify"
        manifest = meta.manifest
        if self.keys.verify(canonical_json(manifest), meta.manifest_signature) is None:
            return "manifest signature does not verify with a published key"
        if manifest.get("sha256") != meta.sha256 or manifest.get("version") != meta.version:
            return "the manifest is of another image"
        hardware = manifest.get("hardware") or []
        if isinstance(hardware, list) and hardware and dev.hw not in hardware:
            return f"the image is for hardware {hardware}, not {dev.hw}"
        counter = manifest.get("security_counter", 0)
        if not isinstance(counter, int) or counter < dev.security_counter:
            return "security counter below the installed image's"
        return ""

    async def _get_range(self, url: str, start: int, end: int) -> bytes:
        headers = {"Range": f"bytes={start}-{end - 1}"}
        for attempt in range(HTTP_ATTEMPTS):
            try:
                response = await self.http.get(url, headers=headers)
            except httpx.HTTPError:
                if attempt == HTTP_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            if response.status_code == 206:
                body = response.content
            elif response.status_code == 200:
                body = response.content[start:end]
            else:
                raise RuntimeError(f"GET {url}: HTTP {response.status_code}")
            if len(body) != end - start:
                raise RuntimeError(f"GET {url}: {len(body)} bytes, expected {end - start}")
            return body
        raise RuntimeError("unreachable")


async def fetch_published_keys(base_url: str, *, timeout: float = 10.0) -> dict[str, str]:
    """The keys devices trust, from the gateway's ``GET /v1/firmware/keys``."""
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as http:
        response = await http.get(f"{base_url.rstrip('/')}/v1/firmware/keys")
        response.raise_for_status()
        data = response.json()
    return {str(k["id"]): str(k["ed25519"]) for k in data["keys"]}


def _ota_channel(ota_grpc: str, token: str | None) -> grpc.aio.Channel:
    """A channel to the OTA service carrying ``token`` (default: ``LINEWATCH_GRPC_TOKEN``,
    else ``make run``'s ``dev-token``)."""
    from pydantic import SecretStr

    from linewatch.runtime.config import GrpcClientConfig
    from linewatch.runtime.grpc_auth import open_channel

    if token is None:
        token = os.environ.get("LINEWATCH_GRPC_TOKEN", "dev-token")
    return open_channel(ota_grpc, GrpcClientConfig(token=SecretStr(token)))


async def fetch_signing_keys(
    ota_grpc: str, *, timeout: float = 10.0, token: str | None = None
) -> dict[str, str]:
    """The keys devices trust, asked of the OTA service over gRPC (``ListSigningKeys``)."""
    from linewatch.v1 import ota_pb2, ota_pb2_grpc

    async with _ota_channel(ota_grpc, token) as channel:
        stub = ota_pb2_grpc.OtaServiceStub(channel)
        reply = await stub.ListSigningKeys(ota_pb2.ListSigningKeysRequest(), timeout=timeout)
    return {k.id: k.ed25519 for k in reply.keys}


async def fetch_public_key(
    ota_grpc: str, *, timeout: float = 10.0, token: str | None = None
) -> str:
    """The OTA service's signing public key (base64), asked over gRPC with ``token``."""
    from linewatch.v1 import ota_pb2, ota_pb2_grpc

    async with _ota_channel(ota_grpc, token) as channel:
        stub = ota_pb2_grpc.OtaServiceStub(channel)
        reply = await stub.GetSigningKey(ota_pb2.GetSigningKeyRequest(), timeout=timeout)
    return str(reply.public_key)


async def simulate(
    *,
    mqtt_url: str,
    devices: int,
    prefix: str = "sim-ota",
    fail_share: float = 0.0,
    topic_root: str = "ota",
    public_key: str | None = None,
    ota_grpc: str = "127.0.0.1:50054",
    current_version: str = "1.0.0",
    concurrency: int = 64,
    seed: int | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ``devices`` simulated devices ``<prefix>-0001``… until ``stop`` (or cancelled).

    Args:
        mqtt_url: the broker.
        devices: how many devices.
        prefix: device id prefix.
        fail_share: the share of devices (0..1) that report ``ok: false``.
        topic_root: the OTA topic root (``ota``).
        public_key: base64 ed25519 public key; ``None`` asks ``ota_grpc`` for it.
        ota_grpc: the OTA service's gRPC address (only used without ``public_key``).
        current_version: the version the devices run at start.
        concurrency: how many devices download at the same time.
        seed: random seed for picking the failing devices.
        stop: set it to stop; without it, runs until cancelled.
    """
    if devices < 1 or not 0.0 <= fail_share <= 1.0:
        raise ValueError("devices must be ≥ 1 and fail_share within 0..1")
    key = public_key or await fetch_public_key(ota_grpc)
    keys = None if public_key else await fetch_signing_keys(ota_grpc)
    ids = [f"{prefix}-{i:04d}" for i in range(1, devices + 1)]
    failing = random.Random(seed).sample(ids, round(fail_share * devices))
    fleet = SimulatedFleet(
        mqtt_url=mqtt_url,
        device_ids=ids,
        public_key=key,
        keys=keys,
        topic_root=topic_root,
        behaviours=dict.fromkeys(failing, Behaviour.FAIL),
        current_version=current_version,
        concurrency=concurrency,
    )
    await fleet.start()
    print(f"ota simulator: {devices} devices {ids[0]}..{ids[-1]} on {mqtt_url}", flush=True)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await fleet.stop()
