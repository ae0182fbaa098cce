from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TableStorage(_message.Message):
    __slots__ = ("table", "rows", "bytes", "partitions")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    table: str
    rows: int
    bytes: int
    partitions: int
    def __init__(self, table: _Optional[str] = ..., rows: _Optional[int] = ..., bytes: _Optional[int] = ..., partitions: _Optional[int] = ...) -> None: ...

class RetentionKind(_message.Message):
    __slots__ = ("kind", "rows_deleted", "partitions_dropped", "rows_kept", "seconds")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROWS_DELETED_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    ROWS_KEPT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    rows_deleted: int
    partitions_dropped: int
    rows_kept: int
    seconds: float
    def __init__(self, kind: _Optional[str] = ..., rows_deleted: _Optional[int] = ..., partitions_dropped: _Optional[int] = ..., rows_kept: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class GetStorageRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStorageResponse(_message.Message):
    __slots__ = ("service", "database", "database_bytes", "tables", "last_retention_ms", "last_retention", "schema_revision", "retention_enabled")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    DATABASE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    LAST_RETENTION_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_RETENTION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_REVISION_FIELD_NUMBER: _ClassVar[int]
    RETENTION_ENABLED_FIELD_NUMBER: _ClassVar[int]
    service: str
    database: str
    database_bytes: int
    tables: _containers.RepeatedCompositeFieldContainer[TableStorage]
    last_retention_ms: int
    last_retention: _containers.RepeatedCompositeFieldContainer[RetentionKind]
    schema_revision: str
    retention_enabled: bool
    def __init__(self, service: _Optional[str] = ..., database: _Optional[str] = ..., database_bytes: _Optional[int] = ..., tables: _Optional[_Iterable[_Union[TableStorage, _Mapping]]] = ..., last_retention_ms: _Optional[int] = ..., last_retention: _Optional[_Iterable[_Union[RetentionKind, _Mapping]]] = ..., schema_revision: _Optional[str] = ..., retention_enabled: _Optional[bool] = ...) -> None: ...

class RunRetentionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunRetentionResponse(_message.Message):
    __slots__ = ("kinds",)
    KINDS_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedCompositeFieldContainer[RetentionKind]
    def __init__(self, kinds: _Optional[_Iterable[_Union[RetentionKind, _Mapping]]] = ...) -> None: ...

class VacuumRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VacuumResponse(_message.Message):
    __slots__ = ("database_bytes_before", "database_bytes_after")
    DATABASE_BYTES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    DATABASE_BYTES_AFTER_FIELD_NUMBER: _ClassVar[int]
    database_bytes_before: int
    database_bytes_after: int
    def __init__(self, database_bytes_before: _Optional[int] = ..., database_bytes_after: _Optional[int] = ...) -> None: ...
