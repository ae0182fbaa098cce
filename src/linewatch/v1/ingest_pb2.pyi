import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from linewatch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WindowMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_MODE_UNSPECIFIED: _ClassVar[WindowMode]
    WINDOW_MODE_PASS: _ClassVar[WindowMode]
    WINDOW_MODE_AVOID: _ClassVar[WindowMode]

class WindowSide(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_SIDE_UNSPECIFIED: _ClassVar[WindowSide]
    WINDOW_SIDE_LEFT: _ClassVar[WindowSide]
    WINDOW_SIDE_RIGHT: _ClassVar[WindowSide]
    WINDOW_SIDE_TOP: _ClassVar[WindowSide]
    WINDOW_SIDE_BOTTOM: _ClassVar[WindowSide]
    WINDOW_SIDE_ANY: _ClassVar[WindowSide]

class WindowAxis(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_AXIS_UNSPECIFIED: _ClassVar[WindowAxis]
    WINDOW_AXIS_FRACTION: _ClassVar[WindowAxis]
    WINDOW_AXIS_INDEX: _ClassVar[WindowAxis]

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_RUNNING: _ClassVar[WorkerState]
    WORKER_STATE_STOPPED: _ClassVar[WorkerState]
    WORKER_STATE_PAUSED: _ClassVar[WorkerState]

class AlarmState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALARM_STATE_UNSPECIFIED: _ClassVar[AlarmState]
    ALARM_STATE_ACTIVE: _ClassVar[AlarmState]
    ALARM_STATE_CLEARED: _ClassVar[AlarmState]

class ExportKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_KIND_UNSPECIFIED: _ClassVar[ExportKind]
    EXPORT_KIND_CURVES: _ClassVar[ExportKind]
    EXPORT_KIND_TELEMETRY: _ClassVar[ExportKind]
    EXPORT_KIND_VERDICTS: _ClassVar[ExportKind]
    EXPORT_KIND_ALARMS: _ClassVar[ExportKind]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_CSV: _ClassVar[ExportFormat]
    EXPORT_FORMAT_PARQUET: _ClassVar[ExportFormat]
WINDOW_MODE_UNSPECIFIED: WindowMode
WINDOW_MODE_PASS: WindowMode
WINDOW_MODE_AVOID: WindowMode
WINDOW_SIDE_UNSPECIFIED: WindowSide
WINDOW_SIDE_LEFT: WindowSide
WINDOW_SIDE_RIGHT: WindowSide
WINDOW_SIDE_TOP: WindowSide
WINDOW_SIDE_BOTTOM: WindowSide
WINDOW_SIDE_ANY: WindowSide
WINDOW_AXIS_UNSPECIFIED: WindowAxis
WINDOW_AXIS_FRACTION: WindowAxis
WINDOW_AXIS_INDEX: WindowAxis
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_RUNNING: WorkerState
WORKER_STATE_STOPPED: WorkerState
WORKER_STATE_PAUSED: WorkerState
ALARM_STATE_UNSPECIFIED: AlarmState
ALARM_STATE_ACTIVE: AlarmState
ALARM_STATE_CLEARED: AlarmState
EXPORT_KIND_UNSPECIFIED: ExportKind
EXPORT_KIND_CURVES: ExportKind
EXPORT_KIND_TELEMETRY: ExportKind
EXPORT_KIND_VERDICTS: ExportKind
EXPORT_KIND_ALARMS: ExportKind
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_CSV: ExportFormat
EXPORT_FORMAT_PARQUET: ExportFormat

class Broker(_message.Message):
    __slots__ = ("name", "url", "username", "password", "client_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    username: str
    password: str
    client_id: str
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., client_id: _Optional[str] = ...) -> None: ...

class AlarmRule(_message.Message):
    __slots__ = ("threshold", "window_s", "webhook_url", "webhook_format", "webhook_secret", "on_raise", "on_clear", "command_cooldown_s", "severity", "no_data_s", "deadletter_threshold", "deadletter_window_s", "escalate_after_s", "escalate_webhook_url", "escalate_webhook_format", "escalate_webhook_secret")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FORMAT_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    ON_RAISE_FIELD_NUMBER: _ClassVar[int]
    ON_CLEAR_FIELD_NUMBER: _ClassVar[int]
    COMMAND_COOLDOWN_S_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    NO_DATA_S_FIELD_NUMBER: _ClassVar[int]
    DEADLETTER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DEADLETTER_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    ESCALATE_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    ESCALATE_WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    ESCALATE_WEBHOOK_FORMAT_FIELD_NUMBER: _ClassVar[int]
    ESCALATE_WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    threshold: int
    window_s: int
    webhook_url: str
    webhook_format: str
    webhook_secret: str
    on_raise: AlarmCommand
    on_clear: AlarmCommand
    command_cooldown_s: int
    severity: str
    no_data_s: int
    deadletter_threshold: int
    deadletter_window_s: int
    escalate_after_s: int
    escalate_webhook_url: str
    escalate_webhook_format: str
    escalate_webhook_secret: str
    def __init__(self, threshold: _Optional[int] = ..., window_s: _Optional[int] = ..., webhook_url: _Optional[str] = ..., webhook_format: _Optional[str] = ..., webhook_secret: _Optional[str] = ..., on_raise: _Optional[_Union[AlarmCommand, _Mapping]] = ..., on_clear: _Optional[_Union[AlarmCommand, _Mapping]] = ..., command_cooldown_s: _Optional[int] = ..., severity: _Optional[str] = ..., no_data_s: _Optional[int] = ..., deadletter_threshold: _Optional[int] = ..., deadletter_window_s: _Optional[int] = ..., escalate_after_s: _Optional[int] = ..., escalate_webhook_url: _Optional[str] = ..., escalate_webhook_format: _Optional[str] = ..., escalate_webhook_secret: _Optional[str] = ...) -> None: ...

class AlarmCommand(_message.Message):
    __slots__ = ("name", "params_json", "devices", "timeout_s", "expires_s")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    params_json: str
    devices: _containers.RepeatedScalarFieldContainer[str]
    timeout_s: int
    expires_s: int
    def __init__(self, name: _Optional[str] = ..., params_json: _Optional[str] = ..., devices: _Optional[_Iterable[str]] = ..., timeout_s: _Optional[int] = ..., expires_s: _Optional[int] = ...) -> None: ...

class MonitorWindow(_message.Message):
    __slots__ = ("name", "x_axis", "x_min", "x_max", "y_min", "y_max", "mode", "enter", "exit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    X_AXIS_FIELD_NUMBER: _ClassVar[int]
    X_MIN_FIELD_NUMBER: _ClassVar[int]
    X_MAX_FIELD_NUMBER: _ClassVar[int]
    Y_MIN_FIELD_NUMBER: _ClassVar[int]
    Y_MAX_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ENTER_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    x_axis: WindowAxis
    x_min: float
    x_max: float
    y_min: float
    y_max: float
    mode: WindowMode
    enter: WindowSide
    exit: WindowSide
    def __init__(self, name: _Optional[str] = ..., x_axis: _Optional[_Union[WindowAxis, str]] = ..., x_min: _Optional[float] = ..., x_max: _Optional[float] = ..., y_min: _Optional[float] = ..., y_max: _Optional[float] = ..., mode: _Optional[_Union[WindowMode, str]] = ..., enter: _Optional[_Union[WindowSide, str]] = ..., exit: _Optional[_Union[WindowSide, str]] = ...) -> None: ...

class ModelParams(_message.Message):
    __slots__ = ("teach_in", "width", "length", "max_shift", "windows")
    TEACH_IN_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_SHIFT_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    teach_in: int
    width: float
    length: int
    max_shift: float
    windows: _containers.RepeatedCompositeFieldContainer[MonitorWindow]
    def __init__(self, teach_in: _Optional[int] = ..., width: _Optional[float] = ..., length: _Optional[int] = ..., max_shift: _Optional[float] = ..., windows: _Optional[_Iterable[_Union[MonitorWindow, _Mapping]]] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("name", "broker", "source_topic", "model", "model_version", "output_topic", "qos", "archive", "alarm", "enabled", "model_params", "target")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BROKER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOPIC_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MODEL_PARAMS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    broker: str
    source_topic: str
    model: str
    model_version: str
    output_topic: str
    qos: int
    archive: bool
    alarm: AlarmRule
    enabled: bool
    model_params: ModelParams
    target: str
    def __init__(self, name: _Optional[str] = ..., broker: _Optional[str] = ..., source_topic: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., output_topic: _Optional[str] = ..., qos: _Optional[int] = ..., archive: _Optional[bool] = ..., alarm: _Optional[_Union[AlarmRule, _Mapping]] = ..., enabled: _Optional[bool] = ..., model_params: _Optional[_Union[ModelParams, _Mapping]] = ..., target: _Optional[str] = ...) -> None: ...

class ListRulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    def __init__(self, rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ...) -> None: ...

class GetRuleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ...) -> None: ...

class CreateRuleRequest(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ...) -> None: ...

class CreateRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ...) -> None: ...

class UpdateRuleRequest(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ...) -> None: ...

class UpdateRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ...) -> None: ...

class DeleteRuleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteRuleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RuleStatus(_message.Message):
    __slots__ = ("name", "state", "messages_per_s", "verdicts_per_s", "received", "verdicts", "dead_letters", "pre_queue", "post_queue", "last_error", "lag_ms", "duplicates", "replicas")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_PER_S_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    PRE_QUEUE_FIELD_NUMBER: _ClassVar[int]
    POST_QUEUE_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAG_MS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: WorkerState
    messages_per_s: float
    verdicts_per_s: float
    received: int
    verdicts: int
    dead_letters: int
    pre_queue: int
    post_queue: int
    last_error: str
    lag_ms: float
    duplicates: int
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaRuleStatus]
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[WorkerState, str]] = ..., messages_per_s: _Optional[float] = ..., verdicts_per_s: _Optional[float] = ..., received: _Optional[int] = ..., verdicts: _Optional[int] = ..., dead_letters: _Optional[int] = ..., pre_queue: _Optional[int] = ..., post_queue: _Optional[int] = ..., last_error: _Optional[str] = ..., lag_ms: _Optional[float] = ..., duplicates: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[ReplicaRuleStatus, _Mapping]]] = ...) -> None: ...

class ReplicaRuleStatus(_message.Message):
    __slots__ = ("replica", "host", "state", "received", "verdicts", "dead_letters", "duplicates", "messages_per_s", "verdicts_per_s")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_PER_S_FIELD_NUMBER: _ClassVar[int]
    replica: str
    host: str
    state: WorkerState
    received: int
    verdicts: int
    dead_letters: int
    duplicates: int
    messages_per_s: float
    verdicts_per_s: float
    def __init__(self, replica: _Optional[str] = ..., host: _Optional[str] = ..., state: _Optional[_Union[WorkerState, str]] = ..., received: _Optional[int] = ..., verdicts: _Optional[int] = ..., dead_letters: _Optional[int] = ..., duplicates: _Optional[int] = ..., messages_per_s: _Optional[float] = ..., verdicts_per_s: _Optional[float] = ...) -> None: ...

class GetIngestStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetIngestStatusResponse(_message.Message):
    __slots__ = ("state", "workers", "rules", "replica")
    STATE_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    state: WorkerState
    workers: int
    rules: _containers.RepeatedCompositeFieldContainer[RuleStatus]
    replica: str
    def __init__(self, state: _Optional[_Union[WorkerState, str]] = ..., workers: _Optional[int] = ..., rules: _Optional[_Iterable[_Union[RuleStatus, _Mapping]]] = ..., replica: _Optional[str] = ...) -> None: ...

class StartIngestRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartIngestResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: GetIngestStatusResponse
    def __init__(self, status: _Optional[_Union[GetIngestStatusResponse, _Mapping]] = ...) -> None: ...

class StopIngestRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopIngestResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: GetIngestStatusResponse
    def __init__(self, status: _Optional[_Union[GetIngestStatusResponse, _Mapping]] = ...) -> None: ...

class PauseRuleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PauseRuleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResumeRuleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeRuleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetWorkersRequest(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: int
    def __init__(self, workers: _Optional[int] = ...) -> None: ...

class SetWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: int
    def __init__(self, workers: _Optional[int] = ...) -> None: ...

class ArchiveFilter(_message.Message):
    __slots__ = ("device_id", "point", "time_range", "page")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    point: str
    time_range: _common_pb2.TimeRange
    page: _common_pb2.PageRequest
    def __init__(self, device_id: _Optional[str] = ..., point: _Optional[str] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class TelemetryRecord(_message.Message):
    __slots__ = ("msg_id", "device_id", "point", "ts", "topic", "rule", "curve", "attrs")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MSG_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    CURVE_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    msg_id: str
    device_id: str
    point: str
    ts: _timestamp_pb2.Timestamp
    topic: str
    rule: str
    curve: _common_pb2.Curve
    attrs: _containers.ScalarMap[str, str]
    def __init__(self, msg_id: _Optional[str] = ..., device_id: _Optional[str] = ..., point: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., topic: _Optional[str] = ..., rule: _Optional[str] = ..., curve: _Optional[_Union[_common_pb2.Curve, _Mapping]] = ..., attrs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class VerdictRecord(_message.Message):
    __slots__ = ("msg_id", "device_id", "point", "ts", "rule", "model", "model_version", "label", "ok", "scores", "latency_ms", "trace_id", "topic", "attrs", "traceparent", "envelope", "id", "operator_label", "operator_note")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MSG_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_LABEL_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NOTE_FIELD_NUMBER: _ClassVar[int]
    msg_id: str
    device_id: str
    point: str
    ts: _timestamp_pb2.Timestamp
    rule: str
    model: str
    model_version: str
    label: str
    ok: bool
    scores: _containers.ScalarMap[str, float]
    latency_ms: float
    trace_id: str
    topic: str
    attrs: _containers.ScalarMap[str, str]
    traceparent: str
    envelope: EnvelopeVerdict
    id: int
    operator_label: str
    operator_note: str
    def __init__(self, msg_id: _Optional[str] = ..., device_id: _Optional[str] = ..., point: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rule: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., label: _Optional[str] = ..., ok: _Optional[bool] = ..., scores: _Optional[_Mapping[str, float]] = ..., latency_ms: _Optional[float] = ..., trace_id: _Optional[str] = ..., topic: _Optional[str] = ..., attrs: _Optional[_Mapping[str, str]] = ..., traceparent: _Optional[str] = ..., envelope: _Optional[_Union[EnvelopeVerdict, _Mapping]] = ..., id: _Optional[int] = ..., operator_label: _Optional[str] = ..., operator_note: _Optional[str] = ...) -> None: ...

class WindowVerdict(_message.Message):
    __slots__ = ("name", "ok", "reason", "index")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    name: str
    ok: bool
    reason: str
    index: int
    def __init__(self, name: _Optional[str] = ..., ok: _Optional[bool] = ..., reason: _Optional[str] = ..., index: _Optional[int] = ...) -> None: ...

class EnvelopeVerdict(_message.Message):
    __slots__ = ("outside", "max_deviation", "learned", "teach_in", "windows")
    OUTSIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_DEVIATION_FIELD_NUMBER: _ClassVar[int]
    LEARNED_FIELD_NUMBER: _ClassVar[int]
    TEACH_IN_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    outside: _containers.RepeatedScalarFieldContainer[int]
    max_deviation: float
    learned: int
    teach_in: int
    windows: _containers.RepeatedCompositeFieldContainer[WindowVerdict]
    def __init__(self, outside: _Optional[_Iterable[int]] = ..., max_deviation: _Optional[float] = ..., learned: _Optional[int] = ..., teach_in: _Optional[int] = ..., windows: _Optional[_Iterable[_Union[WindowVerdict, _Mapping]]] = ...) -> None: ...

class DeadLetterRecord(_message.Message):
    __slots__ = ("id", "topic", "reason", "payload", "received_at", "rule")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    id: int
    topic: str
    reason: str
    payload: bytes
    received_at: _timestamp_pb2.Timestamp
    rule: str
    def __init__(self, id: _Optional[int] = ..., topic: _Optional[str] = ..., reason: _Optional[str] = ..., payload: _Optional[bytes] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rule: _Optional[str] = ...) -> None: ...

class AlarmRecord(_message.Message):
    __slots__ = ("id", "rule", "device_id", "state", "message", "count", "raised_at", "cleared_at", "delivery", "command_ids", "kind", "severity", "acknowledged", "acknowledged_by", "acknowledged_at", "ack_note", "escalated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    RAISED_AT_FIELD_NUMBER: _ClassVar[int]
    CLEARED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    COMMAND_IDS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_FIELD_NUMBER: _ClassVar[int]
    ACK_NOTE_FIELD_NUMBER: _ClassVar[int]
    ESCALATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    rule: str
    device_id: str
    state: AlarmState
    message: str
    count: int
    raised_at: _timestamp_pb2.Timestamp
    cleared_at: _timestamp_pb2.Timestamp
    delivery: str
    command_ids: _containers.RepeatedScalarFieldContainer[str]
    kind: str
    severity: str
    acknowledged: bool
    acknowledged_by: str
    acknowledged_at: _timestamp_pb2.Timestamp
    ack_note: str
    escalated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., rule: _Optional[str] = ..., device_id: _Optional[str] = ..., state: _Optional[_Union[AlarmState, str]] = ..., message: _Optional[str] = ..., count: _Optional[int] = ..., raised_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cleared_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivery: _Optional[str] = ..., command_ids: _Optional[_Iterable[str]] = ..., kind: _Optional[str] = ..., severity: _Optional[str] = ..., acknowledged: _Optional[bool] = ..., acknowledged_by: _Optional[str] = ..., acknowledged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ack_note: _Optional[str] = ..., escalated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AckAlarmRequest(_message.Message):
    __slots__ = ("id", "note", "by")
    ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    id: int
    note: str
    by: str
    def __init__(self, id: _Optional[int] = ..., note: _Optional[str] = ..., by: _Optional[str] = ...) -> None: ...

class AckAlarmResponse(_message.Message):
    __slots__ = ("alarm",)
    ALARM_FIELD_NUMBER: _ClassVar[int]
    alarm: AlarmRecord
    def __init__(self, alarm: _Optional[_Union[AlarmRecord, _Mapping]] = ...) -> None: ...

class RaiseAlarmRequest(_message.Message):
    __slots__ = ("kind", "rule", "device_id", "severity", "message", "count")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    rule: str
    device_id: str
    severity: str
    message: str
    count: int
    def __init__(self, kind: _Optional[str] = ..., rule: _Optional[str] = ..., device_id: _Optional[str] = ..., severity: _Optional[str] = ..., message: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class RaiseAlarmResponse(_message.Message):
    __slots__ = ("alarm", "raised")
    ALARM_FIELD_NUMBER: _ClassVar[int]
    RAISED_FIELD_NUMBER: _ClassVar[int]
    alarm: AlarmRecord
    raised: bool
    def __init__(self, alarm: _Optional[_Union[AlarmRecord, _Mapping]] = ..., raised: _Optional[bool] = ...) -> None: ...

class ClearAlarmsRequest(_message.Message):
    __slots__ = ("kind", "rule", "device_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    rule: str
    device_id: str
    def __init__(self, kind: _Optional[str] = ..., rule: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class ClearAlarmsResponse(_message.Message):
    __slots__ = ("cleared",)
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    cleared: int
    def __init__(self, cleared: _Optional[int] = ...) -> None: ...

class QueryTelemetryRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: ArchiveFilter
    def __init__(self, filter: _Optional[_Union[ArchiveFilter, _Mapping]] = ...) -> None: ...

class QueryTelemetryResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[TelemetryRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[TelemetryRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class QueryVerdictsRequest(_message.Message):
    __slots__ = ("filter", "label")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    filter: ArchiveFilter
    label: str
    def __init__(self, filter: _Optional[_Union[ArchiveFilter, _Mapping]] = ..., label: _Optional[str] = ...) -> None: ...

class QueryVerdictsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[VerdictRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[VerdictRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class QueryDeadLettersRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: ArchiveFilter
    def __init__(self, filter: _Optional[_Union[ArchiveFilter, _Mapping]] = ...) -> None: ...

class QueryDeadLettersResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[DeadLetterRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[DeadLetterRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class QueryAlarmsRequest(_message.Message):
    __slots__ = ("filter", "state")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    filter: ArchiveFilter
    state: AlarmState
    def __init__(self, filter: _Optional[_Union[ArchiveFilter, _Mapping]] = ..., state: _Optional[_Union[AlarmState, str]] = ...) -> None: ...

class QueryAlarmsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AlarmRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[AlarmRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamVerdictsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamVerdictsResponse(_message.Message):
    __slots__ = ("verdict",)
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    verdict: VerdictRecord
    def __init__(self, verdict: _Optional[_Union[VerdictRecord, _Mapping]] = ...) -> None: ...

class StreamTelemetryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamTelemetryResponse(_message.Message):
    __slots__ = ("telemetry",)
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    telemetry: TelemetryRecord
    def __init__(self, telemetry: _Optional[_Union[TelemetryRecord, _Mapping]] = ...) -> None: ...

class StreamAlarmsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamAlarmsResponse(_message.Message):
    __slots__ = ("alarm",)
    ALARM_FIELD_NUMBER: _ClassVar[int]
    alarm: AlarmRecord
    def __init__(self, alarm: _Optional[_Union[AlarmRecord, _Mapping]] = ...) -> None: ...

class GetEnvelopeRequest(_message.Message):
    __slots__ = ("rule", "device_id", "point")
    RULE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    rule: str
    device_id: str
    point: str
    def __init__(self, rule: _Optional[str] = ..., device_id: _Optional[str] = ..., point: _Optional[str] = ...) -> None: ...

class GetEnvelopeResponse(_message.Message):
    __slots__ = ("rule", "device_id", "point", "learned", "teach_in", "ready", "width", "centre", "lower", "upper", "windows")
    RULE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    LEARNED_FIELD_NUMBER: _ClassVar[int]
    TEACH_IN_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CENTRE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    rule: str
    device_id: str
    point: str
    learned: int
    teach_in: int
    ready: bool
    width: float
    centre: _containers.RepeatedScalarFieldContainer[float]
    lower: _containers.RepeatedScalarFieldContainer[float]
    upper: _containers.RepeatedScalarFieldContainer[float]
    windows: _containers.RepeatedCompositeFieldContainer[MonitorWindow]
    def __init__(self, rule: _Optional[str] = ..., device_id: _Optional[str] = ..., point: _Optional[str] = ..., learned: _Optional[int] = ..., teach_in: _Optional[int] = ..., ready: _Optional[bool] = ..., width: _Optional[float] = ..., centre: _Optional[_Iterable[float]] = ..., lower: _Optional[_Iterable[float]] = ..., upper: _Optional[_Iterable[float]] = ..., windows: _Optional[_Iterable[_Union[MonitorWindow, _Mapping]]] = ...) -> None: ...

class ResetEnvelopeRequest(_message.Message):
    __slots__ = ("rule", "device_id", "point")
    RULE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    rule: str
    device_id: str
    point: str
    def __init__(self, rule: _Optional[str] = ..., device_id: _Optional[str] = ..., point: _Optional[str] = ...) -> None: ...

class ResetEnvelopeResponse(_message.Message):
    __slots__ = ("reset",)
    RESET_FIELD_NUMBER: _ClassVar[int]
    reset: int
    def __init__(self, reset: _Optional[int] = ...) -> None: ...

class VerdictLabel(_message.Message):
    __slots__ = ("verdict_id", "label", "note", "labelled_by", "labelled_at", "verdict")
    VERDICT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    LABELLED_BY_FIELD_NUMBER: _ClassVar[int]
    LABELLED_AT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    verdict_id: int
    label: str
    note: str
    labelled_by: str
    labelled_at: _timestamp_pb2.Timestamp
    verdict: VerdictRecord
    def __init__(self, verdict_id: _Optional[int] = ..., label: _Optional[str] = ..., note: _Optional[str] = ..., labelled_by: _Optional[str] = ..., labelled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., verdict: _Optional[_Union[VerdictRecord, _Mapping]] = ...) -> None: ...

class SetVerdictLabelRequest(_message.Message):
    __slots__ = ("verdict_id", "label", "note", "labelled_by")
    VERDICT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    LABELLED_BY_FIELD_NUMBER: _ClassVar[int]
    verdict_id: int
    label: str
    note: str
    labelled_by: str
    def __init__(self, verdict_id: _Optional[int] = ..., label: _Optional[str] = ..., note: _Optional[str] = ..., labelled_by: _Optional[str] = ...) -> None: ...

class SetVerdictLabelResponse(_message.Message):
    __slots__ = ("label",)
    LABEL_FIELD_NUMBER: _ClassVar[int]
    label: VerdictLabel
    def __init__(self, label: _Optional[_Union[VerdictLabel, _Mapping]] = ...) -> None: ...

class ListLabelsRequest(_message.Message):
    __slots__ = ("rule", "device_id", "label", "disagree", "page")
    RULE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DISAGREE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    rule: str
    device_id: str
    label: str
    disagree: bool
    page: _common_pb2.PageRequest
    def __init__(self, rule: _Optional[str] = ..., device_id: _Optional[str] = ..., label: _Optional[str] = ..., disagree: _Optional[bool] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListLabelsResponse(_message.Message):
    __slots__ = ("labels", "next_page_token")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[VerdictLabel]
    next_page_token: str
    def __init__(self, labels: _Optional[_Iterable[_Union[VerdictLabel, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReadExportRequest(_message.Message):
    __slots__ = ("kind", "format", "rule", "device_id", "time_range", "labelled", "label")
    KIND_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    LABELLED_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    kind: ExportKind
    format: ExportFormat
    rule: str
    device_id: str
    time_range: _common_pb2.TimeRange
    labelled: bool
    label: str
    def __init__(self, kind: _Optional[_Union[ExportKind, str]] = ..., format: _Optional[_Union[ExportFormat, str]] = ..., rule: _Optional[str] = ..., device_id: _Optional[str] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., labelled: _Optional[bool] = ..., label: _Optional[str] = ...) -> None: ...

class ReadExportResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class GetModelEvaluationRequest(_message.Message):
    __slots__ = ("model", "version", "page")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    page: _common_pb2.PageRequest
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class Disagreement(_message.Message):
    __slots__ = ("verdict_id", "device_id", "ts", "rule", "promoted_version", "promoted_label", "candidate_label", "operator_label")
    VERDICT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_LABEL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_LABEL_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_LABEL_FIELD_NUMBER: _ClassVar[int]
    verdict_id: int
    device_id: str
    ts: _timestamp_pb2.Timestamp
    rule: str
    promoted_version: str
    promoted_label: str
    candidate_label: str
    operator_label: str
    def __init__(self, verdict_id: _Optional[int] = ..., device_id: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rule: _Optional[str] = ..., promoted_version: _Optional[str] = ..., promoted_label: _Optional[str] = ..., candidate_label: _Optional[str] = ..., operator_label: _Optional[str] = ...) -> None: ...

class GetModelEvaluationResponse(_message.Message):
    __slots__ = ("model", "version", "compared", "agreed", "agreement_rate", "labelled", "candidate_correct", "promoted_correct", "candidate_accuracy", "promoted_accuracy", "dropped", "disagreements", "next_page_token")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPARED_FIELD_NUMBER: _ClassVar[int]
    AGREED_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_RATE_FIELD_NUMBER: _ClassVar[int]
    LABELLED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_CORRECT_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_CORRECT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    compared: int
    agreed: int
    agreement_rate: float
    labelled: int
    candidate_correct: int
    promoted_correct: int
    candidate_accuracy: float
    promoted_accuracy: float
    dropped: int
    disagreements: _containers.RepeatedCompositeFieldContainer[Disagreement]
    next_page_token: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., compared: _Optional[int] = ..., agreed: _Optional[int] = ..., agreement_rate: _Optional[float] = ..., labelled: _Optional[int] = ..., candidate_correct: _Optional[int] = ..., promoted_correct: _Optional[int] = ..., candidate_accuracy: _Optional[float] = ..., promoted_accuracy: _Optional[float] = ..., dropped: _Optional[int] = ..., disagreements: _Optional[_Iterable[_Union[Disagreement, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RunBacktestRequest(_message.Message):
    __slots__ = ("rule", "time_range", "model_version", "alarm", "max_changes")
    RULE_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    MAX_CHANGES_FIELD_NUMBER: _ClassVar[int]
    rule: str
    time_range: _common_pb2.TimeRange
    model_version: str
    alarm: AlarmRule
    max_changes: int
    def __init__(self, rule: _Optional[str] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., model_version: _Optional[str] = ..., alarm: _Optional[_Union[AlarmRule, _Mapping]] = ..., max_changes: _Optional[int] = ...) -> None: ...

class BacktestChange(_message.Message):
    __slots__ = ("verdict_id", "device_id", "ts", "archived_version", "archived_label", "label", "ok", "operator_label")
    VERDICT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_LABEL_FIELD_NUMBER: _ClassVar[int]
    verdict_id: int
    device_id: str
    ts: _timestamp_pb2.Timestamp
    archived_version: str
    archived_label: str
    label: str
    ok: bool
    operator_label: str
    def __init__(self, verdict_id: _Optional[int] = ..., device_id: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., archived_version: _Optional[str] = ..., archived_label: _Optional[str] = ..., label: _Optional[str] = ..., ok: _Optional[bool] = ..., operator_label: _Optional[str] = ...) -> None: ...

class BacktestAlarm(_message.Message):
    __slots__ = ("device_id", "raised_at", "count", "labelled_ok")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    RAISED_AT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    LABELLED_OK_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    raised_at: _timestamp_pb2.Timestamp
    count: int
    labelled_ok: int
    def __init__(self, device_id: _Optional[str] = ..., raised_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., count: _Optional[int] = ..., labelled_ok: _Optional[int] = ...) -> None: ...

class RunBacktestResponse(_message.Message):
    __slots__ = ("rule", "model", "model_version", "curves", "changed", "labelled", "backtest_correct", "archived_correct", "labelled_otherwise", "changes", "alarms", "seconds", "curves_per_s")
    RULE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CURVES_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    LABELLED_FIELD_NUMBER: _ClassVar[int]
    BACKTEST_CORRECT_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_CORRECT_FIELD_NUMBER: _ClassVar[int]
    LABELLED_OTHERWISE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    CURVES_PER_S_FIELD_NUMBER: _ClassVar[int]
    rule: str
    model: str
    model_version: str
    curves: int
    changed: int
    labelled: int
    backtest_correct: int
    archived_correct: int
    labelled_otherwise: int
    changes: _containers.RepeatedCompositeFieldContainer[BacktestChange]
    alarms: _containers.RepeatedCompositeFieldContainer[BacktestAlarm]
    seconds: float
    curves_per_s: float
    def __init__(self, rule: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., curves: _Optional[int] = ..., changed: _Optional[int] = ..., labelled: _Optional[int] = ..., backtest_correct: _Optional[int] = ..., archived_correct: _Optional[int] = ..., labelled_otherwise: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[BacktestChange, _Mapping]]] = ..., alarms: _Optional[_Iterable[_Union[BacktestAlarm, _Mapping]]] = ..., seconds: _Optional[float] = ..., curves_per_s: _Optional[float] = ...) -> None: ...

class VerdictCountsDevice(_message.Message):
    __slots__ = ("device_id", "around")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    AROUND_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    around: _timestamp_pb2.Timestamp
    def __init__(self, device_id: _Optional[str] = ..., around: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QueryVerdictCountsRequest(_message.Message):
    __slots__ = ("devices", "window", "last_cycles", "next_cycles")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    LAST_CYCLES_FIELD_NUMBER: _ClassVar[int]
    NEXT_CYCLES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[VerdictCountsDevice]
    window: _common_pb2.TimeRange
    last_cycles: int
    next_cycles: int
    def __init__(self, devices: _Optional[_Iterable[_Union[VerdictCountsDevice, _Mapping]]] = ..., window: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., last_cycles: _Optional[int] = ..., next_cycles: _Optional[int] = ...) -> None: ...

class VerdictCounts(_message.Message):
    __slots__ = ("total", "not_ok")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    NOT_OK_FIELD_NUMBER: _ClassVar[int]
    total: int
    not_ok: int
    def __init__(self, total: _Optional[int] = ..., not_ok: _Optional[int] = ...) -> None: ...

class DeviceVerdictCounts(_message.Message):
    __slots__ = ("device_id", "window", "before", "after", "last_cycle")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LAST_CYCLE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    window: VerdictCounts
    before: VerdictCounts
    after: VerdictCounts
    last_cycle: _timestamp_pb2.Timestamp
    def __init__(self, device_id: _Optional[str] = ..., window: _Optional[_Union[VerdictCounts, _Mapping]] = ..., before: _Optional[_Union[VerdictCounts, _Mapping]] = ..., after: _Optional[_Union[VerdictCounts, _Mapping]] = ..., last_cycle: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QueryVerdictCountsResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DeviceVerdictCounts]
    def __init__(self, devices: _Optional[_Iterable[_Union[DeviceVerdictCounts, _Mapping]]] = ...) -> None: ...
