"""Configuration of the OTA service (``LINEWATCH_OTA__<KEY>`` variables override YAML)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from linewatch.runtime.config import GrpcConfig, MqttConfig, ServiceConfig
from linewatch_ota.devices_config import DevicesConfig

__all__ = ["OtaConfig"]


class OtaConfig(ServiceConfig):
    """Everything the OTA service reads at start.

    Empty ``database_url`` means ``<data_dir>/ota.db``; unset ``firmware_dir`` means
    ``<data_dir>/firmware``; unset ``signing_key_path`` means
    ``<data_dir>/ota-signing-key.pem`` (generated on first start when absent).
    """

    grpc: GrpcConfig = GrpcConfig(port=50054)
    mqtt: MqttConfig = MqttConfig()
    #: Topic root of the device protocol: ``<topic_root>/{device_id}/metadata`` etc.
    topic_root: str = Field(default="ota", pattern=r"^[^#+]+$")
    #: Device messages that fail validation go here with the reason ("" = log only).
    deadletter_topic: str = Field(default="linewatch/deadletter", pattern=r"^[^#+]*$")
    #: ``$share/<group>/`` subscriptions so replicas split the device messages ("" = off).
    shared_group: str = Field(default="", pattern=r"^[^/#+]*$")
    firmware_dir: Path | None = None
    max_firmware_mb: int = Field(default=256, ge=1, le=16384)
    signing_key_path: Path | None = None
    #: Where devices download from: ``<public_base_url>/v1/firmware/{id}/download``.
    public_base_url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://")
    chunk_size: int = Field(default=524288, ge=1024, le=64 * 1024 * 1024)
    default_timeout_s: int = Field(default=300, ge=1)
    default_max_retries: int = Field(default=3, ge=0, le=100)
    #: How often the scheduler looks at deadlines, queues and rollout progress.
    tick_interval_s: float = Field(default=1.0, gt=0, le=60)
    #: Device groups a rollout may target by name.
    groups: dict[str, list[str]] = Field(default_factory=dict)
    #: Serve ranged firmware downloads directly on this port (0 = off; the gateway does it).
    http_port: int = Field(default=0, ge=0, le=65535)
    #: Device commands, presence and inventory (the DeviceService).
    devices: DevicesConfig = DevicesConfig()

    def resolved_firmware_dir(self) -> Path:
        """The directory firmware images live in."""
        return self.firmware_dir or self.data_dir / "firmware"

    def resolved_signing_key_path(self) -> Path:
        """The ed25519 private key file (PEM, PKCS#8)."""
        return self.signing_key_path or self.data_dir / "ota-signing-key.pem"
