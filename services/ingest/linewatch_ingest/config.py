"""Configuration of the ingest service (``LINEWATCH_INGEST__<KEY>``).

Named brokers, then rules that refer to them by name::

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
from linewatch.runtime.fetch import AllowedNetworks
from linewatch.runtime.retention import RetentionConfig

__all__ = [
    "ENVELOPE",
    "AlarmCommandConfig",
    "AlarmRuleConfig",
    "BatchConfig",
    "InferenceTarget",
    "IngestConfig",
    "IngestRetention",
    "ModelParams",
    "MonitorWindow",
    "OipModel",
    "RuleConfig",
    "WebhookConfig",
]

ENVELOPE = "envelope"
"""The built-in teach-in model's name: a rule with this model learns a reference band."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlarmCommandConfig(_Strict):
    """A device command an alarm sends (through the OTA service's DeviceService)."""

    name: str = Field(min_length=1, max_length=128)
    params: dict[str, object] = Field(default_factory=dict)
    devices: tuple[str, ...] = Field(default=(), max_length=1000)
    """Send to these devices (a group); empty: the device that raised the alarm."""
    timeout_s: int = Field(default=0, ge=0, le=86_400)
    expires_s: int = Field(default=0, ge=0, le=86_400 * 30)


WEBHOOK_FORMATS = "^(generic|feishu|dingtalk|wecom|slack)$"


class AlarmRuleConfig(_Strict):
    """Raise an alarm when a device has ``threshold`` not-ok verdicts in ``window_s``;
    when a device sent nothing for ``no_data_s``; when the rule has
    ``deadletter_threshold`` dead letters within ``deadletter_window_s``."""

    threshold: int = Field(default=0, ge=0)
    """0 disables the not-ok verdict alarm."""
    window_s: int = Field(default=60, ge=1)
    severity: str = Field(default="warning", pattern="^(info|warning|critical)$")
    no_data_s: int = Field(default=0, ge=0, le=86_400 * 30)
    """A device (seen since ingest started) silent this long raises a ``no_data`` alarm;
    0: off."""
    deadletter_threshold: int = Field(default=0, ge=0)
    """This many dead letters of the rule within ``deadletter_window_s`` raise a
    ``deadletters`` alarm (device ``""``); 0: off."""
    deadletter_window_s: int = Field(default=60, ge=1, le=86_400)
    webhook_url: str = ""
    webhook_format: str = Field(default="generic", pattern=WEBHOOK_FORMATS)
    webhook_secret: str = ""
    escalate_after_s: int = Field(default=0, ge=0, le=86_400 * 30)
    """An alarm still active and unacknowledged this long is escalated once: a second
    webhook call (to ``escalate_webhook_url``, else ``webhook_url``); 0: never."""
    escalate_webhook_url: str = ""
    escalate_webhook_format: str = Field(default="", pattern="^$|" + WEBHOOK_FORMATS)
    """Empty: ``webhook_format``."""
    escalate_webhook_secret: str = ""
    """Empty: ``webhook_secret`` when the escalation goes to ``webhook_url``."""
    on_raise: AlarmCommandConfig | None = None
    """A device command sent once per raise."""
    on_clear: AlarmCommandConfig | None = None
    """A device command sent once per clear."""
    command_cooldown_s: int = Field(default=0, ge=0, le=86_400)
    """After a command went to a device for this rule, none again for so long."""


_SIDE = "^(any|left|right|top|bottom)$"


class MonitorWindow(_Strict):
    """A box over (sample index or time fraction, value) a curve must pass through
    (``mode: pass``, entering and leaving through the given sides) or must not touch
    (``mode: avoid``), as press-fit and screw-driving monitors use."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    x_axis: str = Field(default="fraction", pattern="^(index|fraction)$")
    """``fraction``: x is the time fraction 0..1 of the cycle; ``index``: the sample index."""
    x_min: float = Field(allow_inf_nan=False)
    x_max: float = Field(allow_inf_nan=False)
    y_min: float = Field(allow_inf_nan=False)
    y_max: float = Field(allow_inf_nan=False)
    mode: str = Field(default="pass", pattern="^(pass|avoid)$")
    enter: str = Field(default="left", pattern=_SIDE)
    """The side a ``pass`` window is entered through (``any``: not checked)."""
    exit: str = Field(default="right", pattern=_SIDE)
    """The side a ``pass`` window is left through (``any``: not checked)."""

    @model_validator(mode="after")
    def _box(self) -> MonitorWindow:
        if not self.x_min < self.x_max:
            raise ValueError(f"window {self.name!r}: x_min must be below x_max")
        if not self.y_min < self.y_max:
            raise ValueError(f"window {self.name!r}: y_min must be below y_max")
        if self.x_axis == "fraction" and not (self.x_min >= 0.0 and self.x_max <= 1.0):
            raise ValueError(f"window {self.name!r}: a time fraction must be within 0..1")
        if self.x_axis == "index" and self.x_min < 0:
            raise ValueError(f"window {self.name!r}: a sample index must not be negative")
        return self


class ModelParams(_Strict):
    """Parameters of the built-in ``envelope`` model (ignored by other models)."""

    teach_in: int = Field(default=50, ge=2, le=10_000)
    """Good curves the band is taught from, per (device, point)."""
    width: float = Field(default=4.0, gt=0, le=1000, allow_inf_nan=False)
    """Half-width of the band in robust standard deviations."""
    length: int = Field(default=256, ge=16, le=4096)
    """Samples every curve is resampled to."""
    max_shift: float = Field(default=0.03, ge=0, le=0.25, allow_inf_nan=False)
    """Largest timing shift aligned away, as a fraction of the cycle."""
    windows: tuple[MonitorWindow, ...] = Field(default=(), max_length=32)

    @model_validator(mode="after")
    def _unique(self) -> ModelParams:
        names = [w.name for w in self.windows]
        if len(set(names)) != len(names):
            raise ValueError("windows: names must be unique")
        return self


class RuleConfig(_Strict):
    """A topic filter → a model → an output topic, with archive and alarm actions."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    broker: str = "default"
    source_topic: str = Field(min_length=1)
    model: str = Field(min_length=1)
    model_version: str = Field(default="", pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,31})?$")
    """Pin the rule to this version of its model; empty: the promoted version (moved by
    ``POST /v1/models/{name}/promote``). Verdicts name the version that scored them."""
    output_topic: str = Field(min_length=1)
    qos: int = Field(default=1, ge=0, le=2)
    archive: bool = True
    alarm: AlarmRuleConfig = AlarmRuleConfig()
    enabled: bool = True
    model_params: ModelParams = ModelParams()
    """For ``model: envelope``: teach-in, band width, monitoring windows."""
    target: str = Field(default="", max_length=64)
    """The inference server that scores this rule: a name from ``targets`` (e.g. a
    Triton or KServe endpoint); empty: ``inference``."""


class BatchConfig(_Strict):
    """Micro-batching: one batch is scored, published and archived (one transaction) together."""

    max_size: int = Field(default=256, ge=1, le=4096)
    max_delay_ms: float = Field(default=5.0, ge=0, le=10_000)


class OipModel(_Strict):
    """What ingest must know to score a model through plain OIP ``ModelInfer`` (Triton,
    KServe): the protocol carries no labels, and such a server takes the model's input
    tensor as it is, so ingest resamples and normalises the curves itself."""

    labels: tuple[str, ...] = Field(min_length=2, max_length=1024)
    ok_labels: tuple[str, ...] = ("ok",)
    input_length: int = Field(default=0, ge=0, le=65536)
    """0: the last dimension of the input ``ModelMetadata`` reports."""
    input_name: str = ""
    """Empty: the first input ``ModelMetadata`` reports."""
    output_name: str = ""
    """Empty: the first output ``ModelMetadata`` reports."""
    normalization: str = Field(default="zscore", pattern="^(zscore|none)$")
    channels: tuple[str, ...] = Field(default=(), max_length=64)
    """Input channels in the model's order (multi-channel models: ``[batch, channels,
    input_length]``); empty: one curve per row, ``[batch, input_length]``."""

    @model_validator(mode="after")
    def _ok_known(self) -> OipModel:
        unknown = [label for label in self.ok_labels if label not in self.labels]
        if unknown:
            raise ValueError(f"ok_labels {unknown} are not among labels")
        return self


class InferenceTarget(_Strict):
    """The inference service ingest scores curves with."""

    target: str = "127.0.0.1:50052"
    protocol: str = Field(default="auto", pattern="^(auto|linewatch|oip)$")
    """``linewatch``: the linewatch.v1 PredictStream; ``oip``: Open Inference Protocol v2
    ``ModelInfer`` (Triton, KServe); ``auto``: the stream, and ``ModelInfer`` when the
    server does not implement it."""
    models: dict[str, OipModel] = Field(default_factory=dict)
    """Per model scored through OIP: labels and input (see :class:`OipModel`)."""
    timeout_s: float = Field(default=10.0, gt=0)
    """A batch without an answer in this time is resent (on a fresh stream)."""
    max_inflight: int = Field(default=64, ge=1)
    """Batches on the stream awaiting answers at once."""
    retry_max_delay_s: float = Field(default=5.0, gt=0)
    streams: int = Field(default=1, ge=1, le=64)
    """PredictStream streams kept open. With a ``dns:///<headless service>:<port>`` target
    (every inference replica's address, balanced round robin) set it to at least the
    replica count: each stream lands on a replica, and one going away costs only the
    batches on its stream (they are resent on the others)."""
    rebalance_s: float = Field(default=0.0, ge=0)
    """Drain and reopen each stream after about this long (0: never), so that streams
    spread again over replicas that came back or were added; nothing in flight is lost."""


class WebhookConfig(_Strict):
    """Delivery of alarm webhooks."""

    timeout_s: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    backoff_s: float = Field(default=0.5, gt=0)
    rate_per_minute: int = Field(default=30, ge=1)
    """Most webhook calls per rule and minute; more wait their turn."""
    allowed_networks: AllowedNetworks = ()
    """Non-public networks webhooks may reach (CIDRs; one comma-separated string from
    ``LINEWATCH_INGEST__WEBHOOK__ALLOWED_NETWORKS``). Empty: public addresses only, so a
    rule cannot point a webhook at the plant network unless the deployment allows it."""


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


class IngestRetention(RetentionConfig):
    """How long ingest keeps each kind of data, in days (0: forever, the default).

    ``flagged_days``: curves and verdicts of not-ok verdicts, and of labelled verdicts
    (``ingest_verdict_label``, when that table exists), are kept this long when it is
    longer than their kind's TTL (audits). Alarms: cleared ones only.
    """

    telemetry_days: float = Field(default=0, ge=0)
    verdict_days: float = Field(default=0, ge=0)
    flagged_days: float = Field(default=0, ge=0)
    deadletter_days: float = Field(default=0, ge=0)
    alarm_days: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _verdicts_outlive_curves(self) -> IngestRetention:
        if self.verdict_days and (
            not self.telemetry_days or self.verdict_days < self.telemetry_days
        ):
            raise ValueError(
                "retention.verdict_days must be 0 or at least telemetry_days "
                "(a curve is kept longer by its verdict)"
            )
        return self


class IngestConfig(ServiceConfig):
    """Settings of the ingest service; the defaults run the ``make run`` demo rule."""

    grpc: GrpcConfig = GrpcConfig(port=50051)
    client_id: str = ""
    """Base MQTT client id (each rule connects as ``<client_id>-<rule>``); empty: host-based."""
    brokers: dict[str, MqttConfig] = Field(default_factory=lambda: {"default": MqttConfig()})
    rules: tuple[RuleConfig, ...] = Field(default_factory=_default_rules)
    inference: InferenceTarget = InferenceTarget()
    targets: dict[str, InferenceTarget] = Field(default_factory=dict)
    """Further inference servers, by name, that rules may choose with ``target``."""
    batch: BatchConfig = BatchConfig()
    webhook: WebhookConfig = WebhookConfig()
    reported_alarms: AlarmRuleConfig = AlarmRuleConfig()
    """Webhooks (``webhook_*``) and escalation (``escalate_*``) of the alarms other
    services raise through ``RaiseAlarm`` (the OTA quality gate's ``quality_gate``); its
    thresholds and windows are not used."""
    devices_addr: str = ""
    """The OTA service's gRPC address (its DeviceService) for alarm commands; empty:
    alarm commands are not sent (and say so in the alarm)."""
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
    broker without shared subscriptions. Rules on the built-in ``envelope`` always use one
    session: teach-in needs a device's cycles in the order the broker has them."""
    workers: int = Field(default=4, ge=1, le=256)
    """Batches of one rule being scored/published/archived at once."""
    deadletter_topic: str = "linewatch/deadletter"
    dedup_cache: int = Field(default=200_000, ge=0)
    """msg_ids remembered in memory: the latest half of this many at least, at most this
    many (the archive is asked about a redelivered message it does not remember)."""
    stream_buffer: int = Field(default=1000, ge=1)
    """Items buffered per live-stream subscriber before it starts losing items."""
    max_page_size: int = Field(default=1000, ge=1)
    retention: IngestRetention = IngestRetention()
    shadow_queue_size: int = Field(default=64, ge=1)
    """Batches waiting to be scored by a model's candidate (shadow) version; beyond it
    they are dropped and counted (``linewatch_ingest_shadow_curves{outcome="dropped"}``)."""
    replicas: int = Field(default=1, ge=1, le=64)
    """Ingest processes sharing this database and broker (at most; the chart sets its
    replica count). Above 1: PostgreSQL only; each process claims one of this many replica
    slots (a standby waits when all are held) and its MQTT client ids follow the slot, so a
    replacement resumes a killed replica's sessions; every rule other than the built-in
    ``envelope`` consumes on the shared subscription; ``envelope`` rules are consumed by
    the slot-0 replica alone (teach-in needs a device's cycles in order); rule changes made
    on any replica, or in the database, reach every replica (LISTEN/NOTIFY)."""
    status_interval_s: float = Field(default=2.0, gt=0, le=60)
    """How often each replica writes its per-rule counters for the aggregated status."""

    @model_validator(mode="after")
    def _replicas_share_postgresql(self) -> IngestConfig:
        if self.replicas > 1 and not self.database_url.startswith("postgresql"):
            raise ValueError(
                "replicas: several ingest replicas need one PostgreSQL database "
                "(database_url); SQLite is one process's database"
            )
        return self

    @model_validator(mode="after")
    def _rules_name_brokers(self) -> IngestConfig:
        names: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.broker not in self.brokers:
                raise ValueError(f"rules.{i}.broker: no broker named {rule.broker!r}")
            if rule.name in names:
                raise ValueError(f"rules.{i}.name: {rule.name!r} is used twice")
            if rule.target and rule.target not in self.targets:
                raise ValueError(f"rules.{i}.target: no target named {rule.target!r}")
            names.add(rule.name)
        return self
