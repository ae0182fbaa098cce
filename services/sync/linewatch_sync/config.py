"""Configuration of the sync service (``LINEWATCH_SYNC__<KEY>`` variables override YAML)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from linewatch.runtime.config import GrpcConfig, MqttConfig, ServiceConfig
from linewatch.runtime.fetch import AllowedNetworks
from linewatch.runtime.retention import RetentionConfig

__all__ = ["SyncConfig", "SyncRetention"]

DEFAULT_TOPICS = ("sync", "sync-single-work", "holo-file-sync")


class SyncRetention(RetentionConfig):
    """How long sync keeps finished work, in days (0: forever, the default).

    ``dead_job_days``: jobs that gave up (state ``dead``), by their last update;
    ``rejection_days``: refused messages and URLs. Done jobs are the cache's index and stay.
    """

    dead_job_days: float = Field(default=0, ge=0)
    rejection_days: float = Field(default=0, ge=0)


class SyncConfig(ServiceConfig):
    """Everything the sync service reads at start.

    Empty ``database_url`` means ``<data_dir>/sync.db``; unset ``cache_dir`` means
    ``<data_dir>/cache`` (``.linewatch/cache`` with the defaults).
    """

    grpc: GrpcConfig = GrpcConfig(port=50053)
    mqtt: MqttConfig = MqttConfig()
    #: MQTT topics (filters) whose messages carry image URLs.
    topics: tuple[str, ...] = Field(default=DEFAULT_TOPICS, min_length=1)
    #: ``$share/<group>/`` subscriptions so replicas split the intake ("" = off).
    shared_group: str = Field(default="", pattern=r"^[^/#+]*$")
    #: With ``shared_group``: the MQTT session expiry (s) of this replica's sessions. A
    #: restarted container (same ``worker_id``, same client id) resumes its session and gets
    #: its unacknowledged messages again; a replaced pod (new host name) leaves its session
    #: behind, and the broker keeps handing that session its share of the URL messages
    #: until it expires (``mqtt.session_expiry_s``, an hour by default). What that session
    #: held is dropped with it: send again what ListJobs (by ``work_id``) lacks.
    shared_session_expiry_s: int = Field(default=30, ge=0, le=86400)
    #: Refused messages and URLs are published here too ("" = only recorded and logged).
    deadletter_topic: str = Field(default="linewatch/deadletter", pattern=r"^[^#+]*$")
    cache_dir: Path | None = None
    #: Total size limit of the cache in bytes: beyond it the least recently served files
    #: are removed (never one being served or written). 0: no limit.
    cache_max_bytes: int = Field(default=0, ge=0)
    #: Downloads in flight at once, in all.
    concurrency: int = Field(default=32, ge=1, le=1024)
    #: Downloads in flight at once against one host.
    per_host_concurrency: int = Field(default=16, ge=1, le=1024)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=15.0, gt=0)
    #: Whole-download limit (headers and body).
    total_timeout_s: float = Field(default=120.0, gt=0)
    #: Attempts before a job is dead.
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_cap_s: float = Field(default=300.0, gt=0)
    max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    #: Content types accepted (``type/*`` wildcards allowed).
    allowed_content_types: tuple[str, ...] = ("image/*",)
    #: Hosts URLs (and redirects) may point at; empty = any. ``*.example.com`` allowed.
    allowed_hosts: tuple[str, ...] = ()
    #: Non-public networks downloads may reach (CIDRs; one comma-separated string from
    #: ``LINEWATCH_SYNC__ALLOWED_NETWORKS``). Empty: public addresses only.
    allowed_networks: AllowedNetworks = ()
    #: How long a claimed job belongs to its worker before another may take it over.
    lease_s: float = Field(default=600.0, gt=0)
    #: How often the queue is polled when nothing woke the dispatcher.
    poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    #: Identifies this replica's claims; empty = the host name (stable across restarts).
    worker_id: str = Field(default="", max_length=64)
    #: Most URLs accepted in one message or request.
    max_urls_per_request: int = Field(default=10000, ge=1)
    retention: SyncRetention = SyncRetention()

    @model_validator(mode="after")
    def _check(self) -> SyncConfig:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must be >= backoff_base_s")
        if self.lease_s <= self.total_timeout_s:
            raise ValueError("lease_s must exceed total_timeout_s")
        return self

    def session_mqtt(self) -> MqttConfig:
        """The MQTT settings of this replica's sessions (shorter-lived when shared)."""
        return self.mqtt.replica_session(self.shared_group, self.shared_session_expiry_s)

    def resolved_cache_dir(self) -> Path:
        """The cache root directory."""
        return self.cache_dir or self.data_dir / "cache"
