"""The OTA tables (own SQLModel registry) and the constraint behind "one active update".

``device_updates`` has a partial unique index on ``device_id`` over the active states
(notified, downloading, installing), on PostgreSQL and SQLite alike: two replicas that
both try to start an update for one device cannot both commit.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from linewatch.runtime.db import service_registry

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "Base",
    "DeviceRow",
    "DeviceUpdateRow",
    "FirmwareRow",
    "RolloutRow",
]

ACTIVE_STATES = ("notified", "downloading", "installing")
TERMINAL_STATES = ("succeeded", "failed", "cancelled")

_ACTIVE_SQL = "state IN ('notified', 'downloading', 'installing')"


class Base(SQLModel, registry=service_registry()):
    """Base of the OTA service's tables."""


class FirmwareRow(Base, table=True):
    """One uploaded image; the bytes live in ``firmware_dir/<sha256>``."""

    __tablename__ = "ota_firmware"
    __table_args__ = (sa.UniqueConstraint("product", "version", name="uq_ota_firmware_version"),)

    id: str = Field(primary_key=True, max_length=32)
    product: str = Field(max_length=128)
    version: str = Field(max_length=64)
    size: int = Field(sa_type=sa.BigInteger)
    sha256: str = Field(max_length=64, index=True)
    #: Legacy: base64 ed25519 over the sha256 hex (own key; "" when signed offline only).
    signature: str = Field(max_length=128)
    filename: str = Field(default="", max_length=255)
    created_at: float
    #: JSON list of the hardware revisions it is for ("[]": any).
    hardware_json: str = Field(
        default="[]", sa_type=sa.Text, sa_column_kwargs={"server_default": "[]"}
    )
    security_counter: int = Field(
        default=0, sa_type=sa.BigInteger, sa_column_kwargs={"server_default": "0"}
    )
    #: base64 ed25519 over the manifest's canonical JSON, and the key that made it.
    manifest_signature: str = Field(
        default="", max_length=128, sa_column_kwargs={"server_default": ""}
    )
    key_id: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})


class RolloutRow(Base, table=True):
    """One rollout of a firmware image to a set of devices."""

    __tablename__ = "ota_rollouts"

    id: str = Field(primary_key=True, max_length=32)
    firmware_id: str = Field(max_length=32, index=True)
    priority: str = Field(max_length=16)
    state: str = Field(max_length=16, index=True)
    error_threshold: float
    timeout_s: int
    max_retries: int
    devices_json: str = Field(sa_type=sa.Text)
    reason: str = Field(default="", sa_type=sa.Text)
    #: Failed count when last resumed: auto-pause needs new failures beyond it.
    failed_baseline: int = 0
    created_at: float
    updated_at: float
    #: Devices reporting a newer version may be offered this (older) image.
    allow_downgrade: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})


class DeviceRow(Base, table=True):
    """What a device last said about itself in ``ota/{device_id}/request``."""

    __tablename__ = "ota_devices"

    device_id: str = Field(primary_key=True, max_length=128)
    current_version: str = Field(default="", max_length=64)
    hw: str = Field(default="", max_length=64)
    updated_at: float


class DeviceUpdateRow(Base, table=True):
    """One device's update within a rollout, and where its state machine is."""

    __tablename__ = "ota_device_updates"
    __table_args__ = (
        sa.Index(
            "ux_ota_one_active_update_per_device",
            "device_id",
            unique=True,
            postgresql_where=sa.text(_ACTIVE_SQL),
            sqlite_where=sa.text(_ACTIVE_SQL),
        ),
        sa.Index("ix_ota_device_updates_queue", "state", "priority_rank", "created_at"),
        sa.Index("ix_ota_device_updates_rollout_state", "rollout_id", "state"),
    )

    id: str = Field(primary_key=True, max_length=32)
    device_id: str = Field(max_length=128, index=True)
    rollout_id: str = Field(max_length=32)
    firmware_id: str = Field(max_length=32)
    version: str = Field(max_length=64)
    priority: str = Field(max_length=16)
    #: 2 for security, 1 for normal: queued updates start highest first, then oldest.
    priority_rank: int
    state: str = Field(max_length=16)
    percent: int = 0
    #: Metadata sends so far (1 after the first notification).
    attempts: int = 0
    reason: str = Field(default="", sa_type=sa.Text)
    timeout_s: int
    max_retries: int
    #: Epoch seconds when the update counts as silent (active states only).
    deadline: float | None = None
    created_at: float
    updated_at: float
    #: The rollout wave it belongs to (0: the first, or the only one).
    wave: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
