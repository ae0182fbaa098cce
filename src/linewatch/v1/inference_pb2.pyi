import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_LOADING: _ClassVar[ModelState]
    MODEL_STATE_READY: _ClassVar[ModelState]
    MODEL_STATE_FAILED: _ClassVar[ModelState]
    MODEL_STATE_UNLOADED: _ClassVar[ModelState]
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_LOADING: ModelState
MODEL_STATE_READY: ModelState
MODEL_STATE_FAILED: ModelState
MODEL_STATE_UNLOADED: ModelState

class CurveBatch(_message.Message):
    __slots__ = ("model", "version", "samples_f32", "lengths", "channels")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_F32_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    samples_f32: bytes
    lengths: _containers.RepeatedScalarFieldContainer[int]
    channels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., samples_f32: _Optional[bytes] = ..., lengths: _Optional[_Iterable[int]] = ..., channels: _Optional[_Iterable[str]] = ...) -> None: ...

class Score(_message.Message):
    __slots__ = ("label", "ok", "probabilities")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    label: str
    ok: bool
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, label: _Optional[str] = ..., ok: _Optional[bool] = ..., probabilities: _Optional[_Iterable[float]] = ...) -> None: ...

class BatchScores(_message.Message):
    __slots__ = ("model", "version", "labels", "scores", "probabilities_f32", "ok_labels")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_F32_FIELD_NUMBER: _ClassVar[int]
    OK_LABELS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    scores: _containers.RepeatedCompositeFieldContainer[Score]
    probabilities_f32: bytes
    ok_labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., scores: _Optional[_Iterable[_Union[Score, _Mapping]]] = ..., probabilities_f32: _Optional[bytes] = ..., ok_labels: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictStreamRequest(_message.Message):
    __slots__ = ("batch_id", "batch", "trace_context", "packed_scores")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    PACKED_SCORES_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    batch: CurveBatch
    trace_context: _containers.ScalarMap[str, str]
    packed_scores: bool
    def __init__(self, batch_id: _Optional[int] = ..., batch: _Optional[_Union[CurveBatch, _Mapping]] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., packed_scores: _Optional[bool] = ...) -> None: ...

class PredictStreamResponse(_message.Message):
    __slots__ = ("batch_id", "result", "error_code", "error_message")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    result: BatchScores
    error_code: int
    error_message: str
    def __init__(self, batch_id: _Optional[int] = ..., result: _Optional[_Union[BatchScores, _Mapping]] = ..., error_code: _Optional[int] = ..., error_message: _Optional[str] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: CurveBatch
    def __init__(self, batch: _Optional[_Union[CurveBatch, _Mapping]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: BatchScores
    def __init__(self, result: _Optional[_Union[BatchScores, _Mapping]] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("version", "state", "reason", "sha256", "input_length", "labels", "ok_labels", "source_url", "loaded_at", "loaded_by", "channels")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    INPUT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OK_LABELS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URL_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    LOADED_BY_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    version: str
    state: ModelState
    reason: str
    sha256: str
    input_length: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    ok_labels: _containers.RepeatedScalarFieldContainer[str]
    source_url: str
    loaded_at: _timestamp_pb2.Timestamp
    loaded_by: str
    channels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., reason: _Optional[str] = ..., sha256: _Optional[str] = ..., input_length: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., ok_labels: _Optional[_Iterable[str]] = ..., source_url: _Optional[str] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., loaded_by: _Optional[str] = ..., channels: _Optional[_Iterable[str]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "latest_version", "versions", "shadow_version", "promoted_version", "promoted_ready")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_READY_FIELD_NUMBER: _ClassVar[int]
    name: str
    latest_version: str
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    shadow_version: str
    promoted_version: str
    promoted_ready: bool
    def __init__(self, name: _Optional[str] = ..., latest_version: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., shadow_version: _Optional[str] = ..., promoted_version: _Optional[str] = ..., promoted_ready: _Optional[bool] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("url", "sha256", "md5_base64", "manifest", "signature")
    URL_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MD5_BASE64_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    url: str
    sha256: str
    md5_base64: str
    manifest: str
    signature: str
    def __init__(self, url: _Optional[str] = ..., sha256: _Optional[str] = ..., md5_base64: _Optional[str] = ..., manifest: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: Model
    version: str
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ..., version: _Optional[str] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetShadowRequest(_message.Message):
    __slots__ = ("name", "shadow_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHADOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    shadow_version: str
    def __init__(self, name: _Optional[str] = ..., shadow_version: _Optional[str] = ...) -> None: ...

class SetShadowResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class GetShadowStatsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetShadowStatsResponse(_message.Message):
    __slots__ = ("name", "version", "shadow_version", "compared", "agreed", "agreement_rate")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHADOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPARED_FIELD_NUMBER: _ClassVar[int]
    AGREED_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_RATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    shadow_version: str
    compared: int
    agreed: int
    agreement_rate: float
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., shadow_version: _Optional[str] = ..., compared: _Optional[int] = ..., agreed: _Optional[int] = ..., agreement_rate: _Optional[float] = ...) -> None: ...

class PromoteModelRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class PromoteModelResponse(_message.Message):
    __slots__ = ("model", "promotion")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    model: Model
    promotion: Promotion
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ..., promotion: _Optional[_Union[Promotion, _Mapping]] = ...) -> None: ...

class Promotion(_message.Message):
    __slots__ = ("name", "from_version", "to_version", "by", "at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    from_version: str
    to_version: str
    by: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., from_version: _Optional[str] = ..., to_version: _Optional[str] = ..., by: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListPromotionsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListPromotionsResponse(_message.Message):
    __slots__ = ("promotions",)
    PROMOTIONS_FIELD_NUMBER: _ClassVar[int]
    promotions: _containers.RepeatedCompositeFieldContainer[Promotion]
    def __init__(self, promotions: _Optional[_Iterable[_Union[Promotion, _Mapping]]] = ...) -> None: ...
