"""Typed service configuration: one YAML file plus ``LINEWATCH_<SERVICE>__<KEY>`` variables.

Each service declares a pydantic model deriving from :class:`ServiceConfig`. Values come,
lowest priority first, from the model's defaults, the YAML file, then the environment::

    LINEWATCH_INGEST__GRPC__PORT=50061        -> grpc.port
    LINEWATCH_INGEST__DATABASE_URL=postgresql+asyncpg://...

Environment values are parsed as YAML scalars/collections (``true``, ``5``, ``[a, b]``).
Any error raises :class:`~linewatch.runtime.errors.ConfigError` with one line that names
the offending key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from linewatch.runtime.errors import ConfigError

__all__ = [
    "GrpcAuthConfig",
    "GrpcCaller",
    "GrpcClientConfig",
    "GrpcConfig",
    "GrpcTlsConfig",
    "MqttConfig",
    "ServiceConfig",
    "load_config",
]

C = TypeVar("C", bound="ServiceConfig")

ENV_PREFIX = "LINEWATCH_"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The roles a caller may have (see :mod:`linewatch.runtime.grpc_auth` for what each allows).
ROLES = ("operator", "gateway", "ingest", "ota", "read-only")


class GrpcCaller(_Strict):
    """One caller a gRPC server accepts: its token (or the token's sha256) and permissions.

    Exactly one of ``token``, ``token_file`` and ``sha256`` is given. ``methods`` are
    extra glob patterns over full method names (``/linewatch.v1.SyncService/*``) on top of
    ``role``'s.
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    role: str = Field(default="", pattern=r"^(|operator|gateway|ingest|ota|read-only)$")
    methods: list[str] = Field(default_factory=list)
    token: SecretStr = SecretStr("")
    token_file: Path | None = None
    sha256: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")

    @model_validator(mode="after")
    def _one_source(self) -> GrpcCaller:
        given = [
            bool(self.token.get_secret_value()),
            self.token_file is not None,
            bool(self.sha256),
        ]
        if sum(given) != 1:
            raise ValueError(f"caller {self.name}: give exactly one of token, token_file, sha256")
        if not self.role and not self.methods:
            raise ValueError(f"caller {self.name}: give a role or methods")
        return self


class GrpcAuthConfig(_Strict):
    """Who may call this server. With ``enabled`` and no caller, every call but health
    and reflection is refused (UNAUTHENTICATED)."""

    enabled: bool = True
    callers: list[GrpcCaller] = Field(default_factory=list)
    #: A YAML/JSON list of callers (same fields), e.g. mounted from a Secret.
    callers_file: Path | None = None


class GrpcTlsConfig(_Strict):
    """Server TLS: certificate and key; with ``client_ca_file`` clients must present a
    certificate signed by it (mTLS)."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> GrpcTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file (or neither)")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ValueError("client_ca_file needs cert_file and key_file")
        return self

    @property
    def enabled(self) -> bool:
        """Whether the server speaks TLS."""
        return self.cert_file is not None


class GrpcClientConfig(_Strict):
    """How this service calls other services: its own token, and TLS/mTLS when set."""

    token: SecretStr = SecretStr("")
    token_file: Path | None = None
    #: Speak TLS (implied by ``ca_file``/``cert_file``); system roots when no ``ca_file``.
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: The name expected in the servers' certificates, when it is not the target's host.
    server_name: str = ""

    @model_validator(mode="after")
    def _pair(self) -> GrpcClientConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file (or neither)")
        if self.token.get_secret_value() and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether channels speak TLS."""
        return self.tls or self.ca_file is not None or self.cert_file is not None


class GrpcConfig(_Strict):
    """Where a service's gRPC server listens, who may call it, and how it calls others."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    grace_s: float = Field(default=5.0, ge=0)
    max_message_mb: int = Field(default=64, ge=1, le=1024)
    #: A plaintext port serving only ``grpc.health.v1`` (for Kubernetes gRPC probes,
    #: which cannot speak TLS); 0: none.
    health_port: int = Field(default=0, ge=0, le=65535)
    auth: GrpcAuthConfig = GrpcAuthConfig()
    tls: GrpcTlsConfig = GrpcTlsConfig()
    client: GrpcClientConfig = GrpcClientConfig()


class MqttConfig(_Strict):
    """One MQTT broker connection.

    TLS: an ``mqtts://`` URL verifies the broker against ``ca_file`` (or the system's CAs)
    and presents ``cert_file``/``key_file`` when given; ``tls_insecure`` skips the broker's
    certificate check (for a lab broker only).
    """

    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = ""
    username: str = ""
    password: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_insecure: bool = False
    keepalive_s: int = Field(default=30, ge=5, le=65535)
    session_expiry_s: int = Field(default=3600, ge=0)
    receive_maximum: int = Field(default=1000, ge=1, le=65535)
    reconnect_max_delay_s: float = Field(default=30.0, gt=0)
    max_packet_size: int = Field(default=4 * 1024 * 1024, ge=1024, le=268_435_460)
    """The largest packet taken from the broker (announced to it; MQTT 5). 4 MiB holds a
    telemetry message of 65,536 samples written with 17 significant digits (~1.6 MB)."""

    def replica_session(self, shared_group: str, shared_expiry_s: int) -> MqttConfig:
        """The settings of a replica's sessions: with a ``shared_group`` (``$share/<group>/``
        subscriptions) they expire after at most ``shared_expiry_s``.

        The broker keeps handing a disconnected session its share of a shared
        subscription's messages until the session expires. A restarted container (same
        client id) resumes its session within that window; a replaced pod (new host name,
        new client id) leaves it behind, and an hour's expiry would let it swallow its
        share for an hour.
        """
        if not shared_group:
            return self
        expiry = min(self.session_expiry_s, shared_expiry_s)
        return self.model_copy(update={"session_expiry_s": expiry})


class ServiceConfig(_Strict):
    """What every service has; services add their own fields."""

    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    grpc: GrpcConfig = GrpcConfig()
    metrics_port: int = Field(default=0, ge=0, le=65535)
    #: Where metrics listen; empty: the gRPC host.
    metrics_host: str = ""
    database_url: str = ""
    data_dir: Path = Path(".linewatch")

    @model_validator(mode="before")
    @classmethod
    def _keep_nested_defaults(cls, data: Any) -> Any:
        """A section given in part keeps what the service's own default sets: with
        ``grpc: GrpcConfig(port=50052)`` as the default, ``LINEWATCH_INFERENCE__GRPC__AUTH__…``
        alone leaves the port at 50052 (not GrpcConfig's 0)."""
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for name, info in cls.model_fields.items():
            value, default = out.get(name), info.default
            if isinstance(value, Mapping) and isinstance(default, BaseModel):
                base = default.model_dump(exclude_defaults=True)
                if base:
                    out[name] = _deep_merge(base, value)
        return out


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides(service: str, environ: Mapping[str, str]) -> dict[str, Any]:
    prefix = f"{ENV_PREFIX}{service.upper()}__"
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(prefix):
            continue
        path = [part.lower() for part in name[len(prefix) :].split("__") if part]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: not a valid value ({exc.__class__.__name__})") from exc
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: conflicts with another variable")
        node[path[-1]] = value
    return tree


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path}: not valid YAML{where}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping")
    return data


def _describe(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    key = ".".join(str(part) for part in err["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{source}: {key}: {err['msg']}{more}"


def load_config(
    model: type[C],
    *,
    service: str,
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> C:
    """Load and validate a service's configuration.

    Args:
        model: the service's configuration model.
        service: the service name, used for the environment prefix.
        path: the YAML file; ``None`` reads ``LINEWATCH_<SERVICE>_CONFIG`` if set.
        environ: the environment (defaults to ``os.environ``).

    Returns:
        The validated, frozen configuration.

    Raises:
        ConfigError: one line naming the file or variable and the key that is wrong.
    """
    env = os.environ if environ is None else environ
    if path is None:
        path = env.get(f"{ENV_PREFIX}{service.upper()}_CONFIG") or None
    data: dict[str, Any] = _read_yaml(Path(path)) if path else {}
    data = _deep_merge(data, _env_overrides(service, env))
    source = f"config {path}" if path else f"{service} config"
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc
