"""Protobuf messages → JSON objects, and the pydantic models that describe them.

One walk over the message descriptor gives both the JSON the gateway returns and the
schema it documents, so the two cannot drift apart:

- enums become their short lower-case names (``WORKER_STATE_RUNNING`` → ``"running"``);
- timestamps become RFC 3339 strings (``null`` when unset), other unset messages ``null``;
- a ``linewatch.v1.Curve`` becomes ``values``: a list of numbers;
- bytes become base64 strings; maps become objects; every field is always present.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

import numpy as np
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor  # type: ignore[import-untyped,unused-ignore]
from google.protobuf.message import Message  # type: ignore[import-untyped,unused-ignore]
from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = ["enum_name", "enum_value", "message_to_dict", "model_for"]

_CURVE = "linewatch.v1.Curve"
_TIMESTAMP = "google.protobuf.Timestamp"


@cache
def _enum_prefix(enum: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def enum_name(enum: EnumDescriptor, number: int) -> str:
    """The short lower-case name of an enum value (``"running"``)."""
    value = enum.values_by_number.get(number)
    if value is None:
        return "unspecified"
    return str(value.name).removeprefix(_enum_prefix(enum)).lower()


def enum_value(enum: EnumDescriptor, name: str) -> int:
    """The number of a short lower-case enum name; ``ValueError`` when unknown."""
    full = _enum_prefix(enum) + name.upper()
    value = enum.values_by_name.get(full)
    if value is None:
        raise ValueError(f"unknown value {name!r}")
    return int(value.number)


def _timestamp(msg: Any) -> str:
    dt = datetime.fromtimestamp(msg.seconds, UTC).replace(microsecond=msg.nanos // 1000)
    return dt.isoformat().replace("+00:00", "Z")


def _message(value: Any) -> Any:
    name = value.DESCRIPTOR.full_name
    if name == _TIMESTAMP:
        return _timestamp(value)
    if name == _CURVE:
        return np.frombuffer(value.samples_f32, dtype="<f4").astype(float).tolist()
    return message_to_dict(value)


def _single(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_name(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(value)
    return value


def _key(field: FieldDescriptor) -> str:
    if field.message_type is not None and field.message_type.full_name == _CURVE:
        return "values"
    return str(field.name)


def _is_map(field: FieldDescriptor) -> bool:
    return bool(field.message_type is not None and field.message_type.GetOptions().map_entry)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.label == FieldDescriptor.LABEL_REPEATED)


def message_to_dict(msg: Message) -> dict[str, Any]:
    """The JSON object of a message (see the module docstring for the rules)."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if oneof is not None and msg.WhichOneof(oneof.name) != field.name:
            continue
        value = getattr(msg, field.name)
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _single(value_field, v) for k, v in value.items()}
        elif _is_repeated(field):
            out[field.name] = [_single(field, v) for v in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not msg.HasField(field.name):
            out[_key(field)] = [] if field.message_type.full_name == _CURVE else None
        else:
            out[_key(field)] = _single(field, value)
    return out


_SCALARS: dict[int, Any] = {
    FieldDescriptor.TYPE_STRING: str,
    FieldDescriptor.TYPE_BOOL: bool,
    FieldDescriptor.TYPE_DOUBLE: float,
    FieldDescriptor.TYPE_FLOAT: float,
    FieldDescriptor.TYPE_INT32: int,
    FieldDescriptor.TYPE_INT64: int,
    FieldDescriptor.TYPE_UINT32: int,
    FieldDescriptor.TYPE_UINT64: int,
    FieldDescriptor.TYPE_SINT32: int,
    FieldDescriptor.TYPE_SINT64: int,
    FieldDescriptor.TYPE_FIXED32: int,
    FieldDescriptor.TYPE_FIXED64: int,
    FieldDescriptor.TYPE_BYTES: str,
}


def _python_type(field: FieldDescriptor) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        names = tuple(enum_name(field.enum_type, v.number) for v in field.enum_type.values)
        return Literal[names]
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        name = field.message_type.full_name
        if name == _TIMESTAMP:
            return datetime
        if name == _CURVE:
            return list[float]
        return model_for(field.message_type)
    return _SCALARS[field.type]


@cache
def model_for(descriptor: Descriptor) -> type[BaseModel]:
    """The pydantic model of :func:`message_to_dict`'s output for this message type."""
    fields: dict[str, Any] = {}
    for field in descriptor.fields:
        optional = field.containing_oneof is not None
        if _is_map(field):
            value_type = _python_type(field.message_type.fields_by_name["value"])
            fields[field.name] = (dict[str, value_type], Field(default_factory=dict))  # type: ignore[valid-type]
        elif _is_repeated(field):
            fields[field.name] = (list[_python_type(field)], Field(default_factory=list))  # type: ignore[misc]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.full_name == _CURVE:
                fields["values"] = (list[float], Field(default_factory=list))
            else:
                fields[field.name] = (_python_type(field) | None, None)
        elif optional:
            fields[field.name] = (_python_type(field) | None, None)
        else:
            fields[field.name] = (_python_type(field), ...)
    return create_model(  # type: ignore[call-overload, no-any-return, unused-ignore]
        descriptor.name,
        __config__=ConfigDict(extra="allow"),
        **fields,
    )
