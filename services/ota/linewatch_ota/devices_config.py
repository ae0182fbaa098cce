"""Configuration of device commands and presence (``LINEWATCH_OTA__DEVICES__<KEY>``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DevicesConfig"]


class DevicesConfig(BaseModel):
    """Device commands, presence and inventory, run by the OTA service."""

    model_config = ConfigDict(extra="forbid")

    #: Off: no device commands and no inventory.
    enabled: bool = True
    #: ``<topic_root>/{device_id}/status``, ``.../commands``, ``.../commands/{id}/result``.
    topic_root: str = Field(default="devices", pattern=r"^[^#+]+$")
    #: Telemetry topics read (read-only) for presence, points and attributes.
    telemetry_topics: list[str] = Field(default_factory=list, max_length=64)
    #: The remote-control topic whose messages become one command per listed projector ("" = off).
    projector_topic: str = Field(default="projector-remote-control", pattern=r"^[^#+]*$")
    default_timeout_s: int = Field(default=30, ge=1, le=86_400)
    default_expires_s: int = Field(default=3600, ge=1, le=86_400 * 30)
    #: Commands sent and not yet answered, per device; the next ones wait in order.
    max_in_flight: int = Field(default=1, ge=1, le=100)
    #: How often expiry, timeouts and delivery are checked.
    tick_interval_s: float = Field(default=0.5, gt=0, le=60)
    #: How often presence changes are written to the database.
    flush_interval_s: float = Field(default=2.0, gt=0, le=300)
