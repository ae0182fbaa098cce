"""Configuration of the OTA service (``LINEWATCH_OTA__<KEY>`` variables override YAML)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from linewatch.runtime.config import GrpcConfig, MqttConfig, ServiceConfig
from linewatch.runtime.retention import RetentionConfig
from linewatch.runtime.signatures import KEY_ID_PATTERN
from linewatch_ota.devices_config import DevicesConfig

__all__ = ["OtaConfig", "OtaRetention"]


class OtaRetention(RetentionConfig):
    """How long OTA keeps history, in days (0: forever, the default).

    ``command_days``: device commands in a final state, by creation; ``update_days``:
    device updates in a final state of rollouts that are completed or cancelled.
    """

    command_days: float = Field(default=0, ge=0)
    update_days: float = Field(default=0, ge=0)


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
    #: With ``shared_group``: the MQTT session expiry (s) of this replica's sessions. A
    #: restarted container (same host name, same client id) resumes its session and gets
    #: its unacknowledged messages again; a replaced pod (new host name) leaves its session
    #: behind, and the broker keeps handing that session its share of the device messages
    #: until it expires (``mqtt.session_expiry_s``, an hour by default). Messages it held
    #: are recovered by the update deadlines (metadata sent again, the device answers).
    shared_session_expiry_s: int = Field(default=30, ge=0, le=86400)
    firmware_dir: Path | None = None
    max_firmware_mb: int = Field(default=256, ge=1, le=16384)
    signing_key_path: Path | None = None
    #: Sign uploads that carry no offline signature with the service's own key (the PEM at
    #: ``signing_key_path``, created when absent). Off: every upload must be signed offline.
    own_signing_key: bool = True
    #: The own key's id ("" = ``ota-`` + the start of its public key's sha256).
    signing_key_id: str = Field(default="", pattern=f"({KEY_ID_PATTERN})?")
    #: Public keys (key id → base64 raw ed25519) offline manifest signatures may be by;
    #: also the place for a rotated-out own key while devices still hold its images.
    trusted_keys: dict[str, str] = Field(default_factory=dict)
    #: A key ring file, ``{"keys": [{"id", "ed25519"}]}`` (e.g. a mounted Secret).
    trusted_keys_file: Path | None = None
    #: Where devices download from: ``<public_base_url>/v1/firmware/{id}/download``.
    public_base_url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://")
    chunk_size: int = Field(default=524288, ge=1024, le=64 * 1024 * 1024)
    default_timeout_s: int = Field(default=300, ge=1)
    default_max_retries: int = Field(default=3, ge=0, le=100)
    #: How often the scheduler looks at deadlines, queues and rollout progress.
    tick_interval_s: float = Field(default=1.0, gt=0, le=60)
    #: At most this many updates notified / downloading / installing at once, over all
    #: rollouts (0 = no cap): keeps a large wave from flooding the broker's queues.
    max_active_updates: int = Field(default=0, ge=0, le=1_000_000)
    #: Ingest's gRPC address (``host:port``): the quality gate and idle windows ask it for
    #: verdict counts with this service's token (``grpc.client``). "" = rollouts with a
    #: gate or an idle rule wait (and say so) until it is set.
    ingest_addr: str = ""
    ingest_timeout_s: float = Field(default=5.0, gt=0, le=60)
    #: Device groups a rollout may target by name.
    groups: dict[str, list[str]] = Field(default_factory=dict)
    #: Serve ranged firmware downloads directly on this port (0 = off; the gateway does it).
    http_port: int = Field(default=0, ge=0, le=65535)
    #: Device commands, presence and inventory (the DeviceService).
    devices: DevicesConfig = DevicesConfig()
    retention: OtaRetention = OtaRetention()

    @model_validator(mode="after")
    def _some_key(self) -> OtaConfig:
        if not self.own_signing_key and not self.trusted_keys and self.trusted_keys_file is None:
            raise ValueError("own_signing_key is off: trusted_keys or trusted_keys_file needed")
        return self

    def session_mqtt(self) -> MqttConfig:
        """The MQTT settings of this replica's sessions (shorter-lived when shared)."""
        return self.mqtt.replica_session(self.shared_group, self.shared_session_expiry_s)

    def resolved_firmware_dir(self) -> Path:
        """The directory firmware images live in."""
        return self.firmware_dir or self.data_dir / "firmware"

    def resolved_signing_key_path(self) -> Path:
        """The ed25519 private key file (PEM, PKCS#8)."""
        return self.signing_key_path or self.data_dir / "ota-signing-key.pem"
