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

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_NORMAL: _ClassVar[Priority]
    PRIORITY_SECURITY: _ClassVar[Priority]

class RolloutState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLOUT_STATE_UNSPECIFIED: _ClassVar[RolloutState]
    ROLLOUT_STATE_RUNNING: _ClassVar[RolloutState]
    ROLLOUT_STATE_PAUSED: _ClassVar[RolloutState]
    ROLLOUT_STATE_COMPLETED: _ClassVar[RolloutState]
    ROLLOUT_STATE_CANCELLED: _ClassVar[RolloutState]

class UpdateState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPDATE_STATE_UNSPECIFIED: _ClassVar[UpdateState]
    UPDATE_STATE_QUEUED: _ClassVar[UpdateState]
    UPDATE_STATE_NOTIFIED: _ClassVar[UpdateState]
    UPDATE_STATE_DOWNLOADING: _ClassVar[UpdateState]
    UPDATE_STATE_INSTALLING: _ClassVar[UpdateState]
    UPDATE_STATE_SUCCEEDED: _ClassVar[UpdateState]
    UPDATE_STATE_FAILED: _ClassVar[UpdateState]
    UPDATE_STATE_CANCELLED: _ClassVar[UpdateState]

class GateMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GATE_METHOD_UNSPECIFIED: _ClassVar[GateMethod]
    GATE_METHOD_Z_TEST: _ClassVar[GateMethod]
    GATE_METHOD_BETA_BINOMIAL: _ClassVar[GateMethod]
PRIORITY_UNSPECIFIED: Priority
PRIORITY_NORMAL: Priority
PRIORITY_SECURITY: Priority
ROLLOUT_STATE_UNSPECIFIED: RolloutState
ROLLOUT_STATE_RUNNING: RolloutState
ROLLOUT_STATE_PAUSED: RolloutState
ROLLOUT_STATE_COMPLETED: RolloutState
ROLLOUT_STATE_CANCELLED: RolloutState
UPDATE_STATE_UNSPECIFIED: UpdateState
UPDATE_STATE_QUEUED: UpdateState
UPDATE_STATE_NOTIFIED: UpdateState
UPDATE_STATE_DOWNLOADING: UpdateState
UPDATE_STATE_INSTALLING: UpdateState
UPDATE_STATE_SUCCEEDED: UpdateState
UPDATE_STATE_FAILED: UpdateState
UPDATE_STATE_CANCELLED: UpdateState
GATE_METHOD_UNSPECIFIED: GateMethod
GATE_METHOD_Z_TEST: GateMethod
GATE_METHOD_BETA_BINOMIAL: GateMethod

class Firmware(_message.Message):
    __slots__ = ("id", "product", "version", "size", "sha256", "signature", "filename", "created_at", "hardware", "security_counter", "manifest", "manifest_signature", "key_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    SECURITY_COUNTER_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    product: str
    version: str
    size: int
    sha256: str
    signature: str
    filename: str
    created_at: _timestamp_pb2.Timestamp
    hardware: _containers.RepeatedScalarFieldContainer[str]
    security_counter: int
    manifest: str
    manifest_signature: str
    key_id: str
    def __init__(self, id: _Optional[str] = ..., product: _Optional[str] = ..., version: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., signature: _Optional[str] = ..., filename: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hardware: _Optional[_Iterable[str]] = ..., security_counter: _Optional[int] = ..., manifest: _Optional[str] = ..., manifest_signature: _Optional[str] = ..., key_id: _Optional[str] = ...) -> None: ...

class UploadFirmwareRequest(_message.Message):
    __slots__ = ("metadata", "chunk")
    class Metadata(_message.Message):
        __slots__ = ("product", "version", "filename", "hardware", "signature", "security_counter")
        PRODUCT_FIELD_NUMBER: _ClassVar[int]
        VERSION_FIELD_NUMBER: _ClassVar[int]
        FILENAME_FIELD_NUMBER: _ClassVar[int]
        HARDWARE_FIELD_NUMBER: _ClassVar[int]
        SIGNATURE_FIELD_NUMBER: _ClassVar[int]
        SECURITY_COUNTER_FIELD_NUMBER: _ClassVar[int]
        product: str
        version: str
        filename: str
        hardware: _containers.RepeatedScalarFieldContainer[str]
        signature: str
        security_counter: int
        def __init__(self, product: _Optional[str] = ..., version: _Optional[str] = ..., filename: _Optional[str] = ..., hardware: _Optional[_Iterable[str]] = ..., signature: _Optional[str] = ..., security_counter: _Optional[int] = ...) -> None: ...
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    metadata: UploadFirmwareRequest.Metadata
    chunk: bytes
    def __init__(self, metadata: _Optional[_Union[UploadFirmwareRequest.Metadata, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadFirmwareResponse(_message.Message):
    __slots__ = ("firmware",)
    FIRMWARE_FIELD_NUMBER: _ClassVar[int]
    firmware: Firmware
    def __init__(self, firmware: _Optional[_Union[Firmware, _Mapping]] = ...) -> None: ...

class ListFirmwareRequest(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListFirmwareResponse(_message.Message):
    __slots__ = ("firmware", "next_page_token")
    FIRMWARE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    firmware: _containers.RepeatedCompositeFieldContainer[Firmware]
    next_page_token: str
    def __init__(self, firmware: _Optional[_Iterable[_Union[Firmware, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetFirmwareRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetFirmwareResponse(_message.Message):
    __slots__ = ("firmware",)
    FIRMWARE_FIELD_NUMBER: _ClassVar[int]
    firmware: Firmware
    def __init__(self, firmware: _Optional[_Union[Firmware, _Mapping]] = ...) -> None: ...

class DeleteFirmwareRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteFirmwareResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReadFirmwareRequest(_message.Message):
    __slots__ = ("id", "offset", "length")
    ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    id: str
    offset: int
    length: int
    def __init__(self, id: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ReadFirmwareResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class GetSigningKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSigningKeyResponse(_message.Message):
    __slots__ = ("public_key", "key_id")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    key_id: str
    def __init__(self, public_key: _Optional[str] = ..., key_id: _Optional[str] = ...) -> None: ...

class ListSigningKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SigningKey(_message.Message):
    __slots__ = ("id", "ed25519")
    ID_FIELD_NUMBER: _ClassVar[int]
    ED25519_FIELD_NUMBER: _ClassVar[int]
    id: str
    ed25519: str
    def __init__(self, id: _Optional[str] = ..., ed25519: _Optional[str] = ...) -> None: ...

class ListSigningKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[SigningKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[SigningKey, _Mapping]]] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("id", "firmware_id", "priority", "state", "error_threshold", "timeout_s", "max_retries", "devices", "counts", "reason", "created_at", "updated_at", "allow_downgrade", "waves", "skipped", "gate", "schedule", "current_wave")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    FIRMWARE_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DOWNGRADE_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_WAVE_FIELD_NUMBER: _ClassVar[int]
    id: str
    firmware_id: str
    priority: Priority
    state: RolloutState
    error_threshold: float
    timeout_s: int
    max_retries: int
    devices: _containers.RepeatedScalarFieldContainer[str]
    counts: _containers.ScalarMap[str, int]
    reason: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    allow_downgrade: bool
    waves: _containers.RepeatedCompositeFieldContainer[WaveStatus]
    skipped: _containers.RepeatedScalarFieldContainer[str]
    gate: QualityGate
    schedule: Schedule
    current_wave: int
    def __init__(self, id: _Optional[str] = ..., firmware_id: _Optional[str] = ..., priority: _Optional[_Union[Priority, str]] = ..., state: _Optional[_Union[RolloutState, str]] = ..., error_threshold: _Optional[float] = ..., timeout_s: _Optional[int] = ..., max_retries: _Optional[int] = ..., devices: _Optional[_Iterable[str]] = ..., counts: _Optional[_Mapping[str, int]] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., allow_downgrade: _Optional[bool] = ..., waves: _Optional[_Iterable[_Union[WaveStatus, _Mapping]]] = ..., skipped: _Optional[_Iterable[str]] = ..., gate: _Optional[_Union[QualityGate, _Mapping]] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., current_wave: _Optional[int] = ...) -> None: ...

class WaveSpec(_message.Message):
    __slots__ = ("count", "percent", "error_threshold", "soak_s")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SOAK_S_FIELD_NUMBER: _ClassVar[int]
    count: int
    percent: float
    error_threshold: float
    soak_s: int
    def __init__(self, count: _Optional[int] = ..., percent: _Optional[float] = ..., error_threshold: _Optional[float] = ..., soak_s: _Optional[int] = ...) -> None: ...

class QualityGate(_message.Message):
    __slots__ = ("cycles", "confidence", "method", "max_wait_s")
    CYCLES_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_S_FIELD_NUMBER: _ClassVar[int]
    cycles: int
    confidence: float
    method: GateMethod
    max_wait_s: int
    def __init__(self, cycles: _Optional[int] = ..., confidence: _Optional[float] = ..., method: _Optional[_Union[GateMethod, str]] = ..., max_wait_s: _Optional[int] = ...) -> None: ...

class MaintenanceWindow(_message.Message):
    __slots__ = ("weekdays", "start_minute", "end_minute")
    WEEKDAYS_FIELD_NUMBER: _ClassVar[int]
    START_MINUTE_FIELD_NUMBER: _ClassVar[int]
    END_MINUTE_FIELD_NUMBER: _ClassVar[int]
    weekdays: _containers.RepeatedScalarFieldContainer[int]
    start_minute: int
    end_minute: int
    def __init__(self, weekdays: _Optional[_Iterable[int]] = ..., start_minute: _Optional[int] = ..., end_minute: _Optional[int] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("start_at", "time_zone", "windows", "idle_s", "line_idle")
    START_AT_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    IDLE_S_FIELD_NUMBER: _ClassVar[int]
    LINE_IDLE_FIELD_NUMBER: _ClassVar[int]
    start_at: _timestamp_pb2.Timestamp
    time_zone: str
    windows: _containers.RepeatedCompositeFieldContainer[MaintenanceWindow]
    idle_s: int
    line_idle: bool
    def __init__(self, start_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., time_zone: _Optional[str] = ..., windows: _Optional[_Iterable[_Union[MaintenanceWindow, _Mapping]]] = ..., idle_s: _Optional[int] = ..., line_idle: _Optional[bool] = ...) -> None: ...

class GateResult(_message.Message):
    __slots__ = ("device_id", "before_total", "before_not_ok", "after_total", "after_not_ok", "statistic", "regressed", "note")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BEFORE_NOT_OK_FIELD_NUMBER: _ClassVar[int]
    AFTER_TOTAL_FIELD_NUMBER: _ClassVar[int]
    AFTER_NOT_OK_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    REGRESSED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    before_total: int
    before_not_ok: int
    after_total: int
    after_not_ok: int
    statistic: float
    regressed: bool
    note: str
    def __init__(self, device_id: _Optional[str] = ..., before_total: _Optional[int] = ..., before_not_ok: _Optional[int] = ..., after_total: _Optional[int] = ..., after_not_ok: _Optional[int] = ..., statistic: _Optional[float] = ..., regressed: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class WaveStatus(_message.Message):
    __slots__ = ("index", "size", "state", "error_threshold", "soak_s", "started_at", "installed_at", "gate", "counts")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SOAK_S_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_AT_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    index: int
    size: int
    state: str
    error_threshold: float
    soak_s: int
    started_at: _timestamp_pb2.Timestamp
    installed_at: _timestamp_pb2.Timestamp
    gate: _containers.RepeatedCompositeFieldContainer[GateResult]
    counts: _containers.ScalarMap[str, int]
    def __init__(self, index: _Optional[int] = ..., size: _Optional[int] = ..., state: _Optional[str] = ..., error_threshold: _Optional[float] = ..., soak_s: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., installed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gate: _Optional[_Iterable[_Union[GateResult, _Mapping]]] = ..., counts: _Optional[_Mapping[str, int]] = ...) -> None: ...

class DeviceUpdate(_message.Message):
    __slots__ = ("update_id", "device_id", "rollout_id", "firmware_id", "version", "state", "percent", "attempts", "reason", "priority", "updated_at", "wave")
    UPDATE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    FIRMWARE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    WAVE_FIELD_NUMBER: _ClassVar[int]
    update_id: str
    device_id: str
    rollout_id: str
    firmware_id: str
    version: str
    state: UpdateState
    percent: int
    attempts: int
    reason: str
    priority: Priority
    updated_at: _timestamp_pb2.Timestamp
    wave: int
    def __init__(self, update_id: _Optional[str] = ..., device_id: _Optional[str] = ..., rollout_id: _Optional[str] = ..., firmware_id: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[_Union[UpdateState, str]] = ..., percent: _Optional[int] = ..., attempts: _Optional[int] = ..., reason: _Optional[str] = ..., priority: _Optional[_Union[Priority, str]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., wave: _Optional[int] = ...) -> None: ...

class CreateRolloutRequest(_message.Message):
    __slots__ = ("firmware_id", "devices", "group", "priority", "error_threshold", "timeout_s", "max_retries", "allow_downgrade", "waves", "gate", "schedule", "groups")
    FIRMWARE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ERROR_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DOWNGRADE_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    firmware_id: str
    devices: _containers.RepeatedScalarFieldContainer[str]
    group: str
    priority: Priority
    error_threshold: float
    timeout_s: int
    max_retries: int
    allow_downgrade: bool
    waves: _containers.RepeatedCompositeFieldContainer[WaveSpec]
    gate: QualityGate
    schedule: Schedule
    groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, firmware_id: _Optional[str] = ..., devices: _Optional[_Iterable[str]] = ..., group: _Optional[str] = ..., priority: _Optional[_Union[Priority, str]] = ..., error_threshold: _Optional[float] = ..., timeout_s: _Optional[int] = ..., max_retries: _Optional[int] = ..., allow_downgrade: _Optional[bool] = ..., waves: _Optional[_Iterable[_Union[WaveSpec, _Mapping]]] = ..., gate: _Optional[_Union[QualityGate, _Mapping]] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., groups: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class ListRolloutsRequest(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListRolloutsResponse(_message.Message):
    __slots__ = ("rollouts", "next_page_token")
    ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rollouts: _containers.RepeatedCompositeFieldContainer[Rollout]
    next_page_token: str
    def __init__(self, rollouts: _Optional[_Iterable[_Union[Rollout, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseRolloutRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class PauseRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class ResumeRolloutRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ResumeRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class CancelRolloutRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class GetDeviceUpdatesRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class GetDeviceUpdatesResponse(_message.Message):
    __slots__ = ("device_id", "updates")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    updates: _containers.RepeatedCompositeFieldContainer[DeviceUpdate]
    def __init__(self, device_id: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[DeviceUpdate, _Mapping]]] = ...) -> None: ...

class StreamOtaEventsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamOtaEventsResponse(_message.Message):
    __slots__ = ("rollout", "device_update")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_UPDATE_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    device_update: DeviceUpdate
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., device_update: _Optional[_Union[DeviceUpdate, _Mapping]] = ...) -> None: ...

class GroupFilter(_message.Message):
    __slots__ = ("hardware", "firmware_versions", "lines", "tags", "attributes", "prefix")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    FIRMWARE_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    hardware: _containers.RepeatedScalarFieldContainer[str]
    firmware_versions: _containers.RepeatedScalarFieldContainer[str]
    lines: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    attributes: _containers.ScalarMap[str, str]
    prefix: str
    def __init__(self, hardware: _Optional[_Iterable[str]] = ..., firmware_versions: _Optional[_Iterable[str]] = ..., lines: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., prefix: _Optional[str] = ...) -> None: ...

class Group(_message.Message):
    __slots__ = ("name", "filter", "members", "created_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    filter: GroupFilter
    members: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., filter: _Optional[_Union[GroupFilter, _Mapping]] = ..., members: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateGroupRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: Group
    def __init__(self, group: _Optional[_Union[Group, _Mapping]] = ...) -> None: ...

class CreateGroupResponse(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: Group
    def __init__(self, group: _Optional[_Union[Group, _Mapping]] = ...) -> None: ...

class GetGroupRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetGroupResponse(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: Group
    def __init__(self, group: _Optional[_Union[Group, _Mapping]] = ...) -> None: ...

class ListGroupsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListGroupsResponse(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[Group]
    def __init__(self, groups: _Optional[_Iterable[_Union[Group, _Mapping]]] = ...) -> None: ...

class DeleteGroupRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteGroupResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRolloutUpdatesRequest(_message.Message):
    __slots__ = ("id", "page")
    ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    page: _common_pb2.PageRequest
    def __init__(self, id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListRolloutUpdatesResponse(_message.Message):
    __slots__ = ("updates", "next_page_token")
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[DeviceUpdate]
    next_page_token: str
    def __init__(self, updates: _Optional[_Iterable[_Union[DeviceUpdate, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
