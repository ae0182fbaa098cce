"""Configuration of the ingest service (``LINEWATCH_INGEST__<KEY>``).

The shape follows seed 002: named brokers, then rules that refer to them::

    brokers:
      plant: {url: mqtt://127.0.0.1:1883}
    rules:
      - name: demo
        broker: plant
        source_topic: plant/+/+/telemetry
        model: curve-quality
        output_topic: plant/{1}/{2}/verdict

Rules given here are written to the database at start when no rule of that name exists
there yet; from then on the database (changed over gRPC) is authoritative.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from linewatch.runtime.config import GrpcConfig, MqttConfig, ServiceConfig

__all__ = [
    "AlarmRuleConfig",
    "BatchConfig",
    "InferenceTarget",
    "IngestConfig",
    "RuleConfig",
    "WebhookConfig",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlarmRuleConfig(_Strict):
    """Raise an alarm when a device has ``threshold`` not-ok verdicts in ``window_s``."""

    threshold: int = Field(default=0, ge=0)
    """0 disables the alarm."""
    window_s: int = Field(default=60, ge=1)
    webhook_url: str = ""
    webhook_format: str = Field(default="generic", pattern="^(generic|feishu)$")
    webhook_secret: str = ""


class RuleConfig(_Strict):
    """A topic filter → a model → an output topic, with archive and alarm actions."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    broker: str = "default"
    source_topic: str = Field(min_length=1)
    model: str = Field(min_length=1)
    model_version: str = ""
    output_topic: str = Field(min_length=1)
    qos: int = Field(default=1, ge=0, le=2)
    archive: bool = True
    alarm: AlarmRuleConfig = AlarmRuleConfig()
    enabled: bool = True


class BatchConfig(_Strict):
    """Micro-batching: one batch is scored, published and archived (one transaction) together."""

    max_size: int = Field(default=256, ge=1, le=4096)
    max_delay_ms: float = Field(default=5.0, ge=0, le=10_000)


class InferenceTarget(_Strict):
    """The inference service ingest scores curves with."""

    target: str = "127.0.0.1:50052"
    timeout_s: float = Field(default=10.0, gt=0)
    """A batch without an answer in this time is resent (on a fresh stream)."""
    max_inflight: int = Field(default=64, ge=1)
    """Batches on the stream awaiting answers at once."""
    retry_max_delay_s: float = Field(default=5.0, gt=0)


class WebhookConfig(_Strict):
    """Delivery of alarm webhooks."""

    timeout_s: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    backoff_s: float = Field(default=0.5, gt=0)
    rate_per_minute: int = Field(default=30, ge=1)
    """Most webhook calls per rule and minute; more wait their turn."""


def _default_rules() -> tuple[RuleConfig, ...]:
    return (
        RuleConfig(
            name="demo",
            broker="default",
            source_topic="plant/+/+/telemetry",
            model="curve-quality",
            output_topic="plant/{1}/{2}/verdict",
        ),
    )


class IngestConfig(ServiceConfig):
    """Settings of the ingest service; the defaults run the ``make run`` demo rule."""

    grpc: GrpcConfig = GrpcConfig(port=50051)
    client_id: str = ""
    """Base MQTT client id (each rule connects as ``<client_id>-<rule>``); empty: host-based."""
    brokers: dict[str, MqttConfig] = Field(default_factory=lambda: {"default": MqttConfig()})
    rules: tuple[RuleConfig, ...] = Field(default_factory=_default_rules)
    inference: InferenceTarget = InferenceTarget()
    batch: BatchConfig = BatchConfig()
    webhook: WebhookConfig = WebhookConfig()
    queue_size: int = Field(default=4096, ge=1)
    """QoS 0 messages waiting for a batch, per rule, beyond which more are dropped (and
    counted). QoS 1/2 rules are bounded by the broker's flow control (``receive_maximum``)."""
    receive_maximum: int = Field(default=512, ge=1, le=65535)
    """Unacknowledged messages the broker may have in flight to each of a rule's sessions
    (a broker's own limit may be lower: a stock Mosquitto's is 20); a rule holds at most
    ``sessions`` times this many, which bounds its memory and its queueing delay."""
    sessions: int = Field(default=8, ge=1, le=64)
    """MQTT sessions per rule on one shared subscription (``$share/linewatch-ingest-<rule>/``):
    the broker's inflight window per session (Mosquitto's stock ``max_inflight_messages``
    is 20) times this is what may be unacknowledged at once. 1: the plain filter, for a
    broker without shared subscriptions."""
    workers: int = Field(default=4, ge=1, le=256)
    """Batches of one rule being scored/published/archived at once."""
    deadletter_topic: str = "linewatch/deadletter"
    dedup_cache: int = Field(default=200_000, ge=0)
    """msg_ids remembered in memory: the latest half of this many at least, at most this
    many (the archive is asked about a redelivered message it does not remember)."""
    stream_buffer: int = Field(default=1000, ge=1)
    """Items buffered per live-stream subscriber before it starts losing items."""
    max_page_size: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _rules_name_brokers(self) -> IngestConfig:
        names: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.broker not in self.brokers:
                raise ValueError(f"rules.{i}.broker: no broker named {rule.broker!r}")
            if rule.name in names:
                raise ValueError(f"rules.{i}.name: {rule.name!r} is used twice")
            names.add(rule.name)
        return self
