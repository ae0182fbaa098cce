"""Gateway configuration: HTTP listener, tokens, backend addresses, limits, SSE tuning.

``make run`` passes ``LINEWATCH_GATEWAY__TOKENS=[dev-token]``; with no token configured
every write is refused (401) and the gateway says so in its log at start.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from linewatch.runtime.config import ServiceConfig

__all__ = ["GatewayConfig"]


class GatewayConfig(ServiceConfig):
    """Everything the gateway reads from YAML or ``LINEWATCH_GATEWAY__<KEY>``."""

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    #: Bearer tokens allowed to write (and read).
    tokens: list[str] = Field(default_factory=list)
    #: Bearer tokens allowed to read only (a write with one of these is 403).
    read_tokens: list[str] = Field(default_factory=list)
    #: Reads need a token too.
    read_auth: bool = False
    ingest_addr: str = "127.0.0.1:50051"
    inference_addr: str = "127.0.0.1:50052"
    sync_addr: str = "127.0.0.1:50053"
    ota_addr: str = "127.0.0.1:50054"
    #: Deadline of every unary backend call.
    backend_timeout_s: float = Field(default=10.0, gt=0)
    cors_origins: list[str] = Field(default_factory=list)
    #: Largest JSON request body.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Largest firmware upload (the OTA service's own limit defaults to 256 MiB too).
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    #: Events kept per stream for ``Last-Event-ID`` resume.
    sse_replay: int = Field(default=1000, ge=0, le=1_000_000)
    #: Events queued per client before the client is dropped as too slow.
    sse_client_queue: int = Field(default=256, ge=1, le=100_000)
    #: Seconds between heartbeat comments on an idle stream.
    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    #: Cap of the upstream reconnect backoff.
    sse_reconnect_max_s: float = Field(default=10.0, gt=0)
    #: Proxies (addresses, CIDRs, or ``*``) whose ``X-Forwarded-For`` names the client;
    #: empty: the connecting peer is the client.
    trusted_proxies: list[str] = Field(default_factory=list)
    #: Most SSE connections in total, and per client address (over either: 503).
    sse_max_clients: int = Field(default=1000, ge=1, le=1_000_000)
    sse_max_clients_per_address: int = Field(default=20, ge=1, le=100_000)
    #: How long a stream token (``POST /v1/stream/token``) opens streams.
    stream_token_ttl_s: float = Field(default=300.0, ge=10, le=86_400)
    #: The key stream tokens are signed with (give replicas the same one); empty: random
    #: per process.
    stream_token_secret: SecretStr = SecretStr("")

    @field_validator("tokens", "read_tokens")
    @classmethod
    def _tokens_not_blank(cls, value: list[str]) -> list[str]:
        for token in value:
            if not token.strip() or token != token.strip():
                raise ValueError("a token must be non-empty and have no surrounding spaces")
        return value
