"""Validation of incoming telemetry (SPEC "Telemetry in") at the edge.

:func:`parse_telemetry` turns raw MQTT payload bytes into a :class:`Telemetry` or raises
:class:`BadPayload` whose message says exactly what is wrong; the pipeline sends those to
the dead-letter topic and table.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from linewatch.runtime.errors import InvalidArgument

__all__ = ["MAX_VALUES", "BadPayload", "Telemetry", "parse_telemetry"]

MAX_VALUES = 65_536
MAX_ID_LENGTH = 200
_MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_FORBIDDEN_ID_CHARS = frozenset("/+#\x00")


class BadPayload(InvalidArgument):
    """The payload breaks SPEC "Telemetry in"; the message is the reason."""


@dataclass(slots=True)
class Telemetry:
    """One validated curve message."""

    device_id: str
    point: str
    ts_ms: int
    values: npt.NDArray[np.float32]
    msg_id: str
    attrs: dict[str, str] = field(default_factory=dict)
    has_msg_id: bool = True


def _ident(data: dict[str, Any], key: str) -> str:
    if key not in data:
        raise BadPayload(f"{key}: missing")
    value = data[key]
    if not isinstance(value, str):
        raise BadPayload(f"{key}: must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise BadPayload(f"{key}: must be 1..{MAX_ID_LENGTH} characters")
    if _FORBIDDEN_ID_CHARS.intersection(value):
        raise BadPayload(f"{key}: must not contain '/', '+', '#' or NUL")
    return value


def _timestamp(data: dict[str, Any]) -> int:
    if "ts" not in data:
        raise BadPayload("ts: missing")
    ts = data["ts"]
    if isinstance(ts, bool):
        raise BadPayload("ts: must be epoch milliseconds or an RFC 3339 string, got bool")
    if isinstance(ts, int | float):
        if not math.isfinite(ts) or not 0 <= ts <= _MAX_TS_MS:
            raise BadPayload(f"ts: {ts!r} is not a valid epoch-milliseconds time")
        return int(ts)
    if isinstance(ts, str):
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError as exc:
            raise BadPayload(f"ts: {ts[:40]!r} is not an RFC 3339 time") from exc
        if parsed.tzinfo is None:
            raise BadPayload(f"ts: {ts[:40]!r} has no time zone offset (RFC 3339 needs one)")
        return int(parsed.timestamp() * 1000)
    raise BadPayload(
        f"ts: must be epoch milliseconds or an RFC 3339 string, got {type(ts).__name__}"
    )


def _values(data: dict[str, Any]) -> npt.NDArray[np.float32]:
    if "values" not in data:
        raise BadPayload("values: missing")
    values = data["values"]
    if not isinstance(values, list):
        raise BadPayload(f"values: must be an array of numbers, got {type(values).__name__}")
    if not values:
        raise BadPayload("values: empty (1..65536 numbers needed)")
    if len(values) > MAX_VALUES:
        raise BadPayload(f"values: {len(values)} numbers, at most {MAX_VALUES} allowed")
    try:
        arr = np.asarray(values)
    except (ValueError, OverflowError) as exc:
        raise BadPayload("values: must be a flat array of numbers") from exc
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        raise BadPayload("values: must be a flat array of numbers (no strings, bools, nulls)")
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 → inf: refused below
        out = arr.astype("<f4")  # little-endian on every host: archived and sent as bytes
    finite = np.isfinite(out)
    if not finite.all():
        index = int(np.argmin(finite))
        raise BadPayload(f"values: not a finite number at index {index} ({values[index]!r})")
    return out


def _attrs(data: dict[str, Any]) -> dict[str, str]:
    attrs = data.get("attrs")
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise BadPayload(f"attrs: must be an object, got {type(attrs).__name__}")
    out: dict[str, str] = {}
    for key, value in attrs.items():
        if isinstance(value, dict | list):
            raise BadPayload(f"attrs.{key}: must be a string, number or bool")
        out[str(key)] = "" if value is None else str(value)
    return out


def parse_telemetry(payload: bytes, *, fallback_msg_id: str | None = None) -> Telemetry:
    """Validate one telemetry payload.

    Args:
        payload: the raw MQTT payload.
        fallback_msg_id: the id to use when the message carries no ``msg_id``
            (default: a random one).

    Raises:
        BadPayload: what is wrong, naming the field.
    """
    try:
        data = orjson.loads(payload)
    except ValueError:
        # orjson refuses NaN/Infinity literals outright; the standard parser takes them,
        # so the reason can name the field and index (or say why it is not JSON)
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadPayload(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadPayload(f"not a JSON object (got {type(data).__name__})")
    device_id = _ident(data, "device_id")
    point = _ident(data, "point")
    ts_ms = _timestamp(data)
    values = _values(data)
    raw_id = data.get("msg_id")
    if raw_id is not None and (not isinstance(raw_id, str) or not raw_id):
        raise BadPayload("msg_id: must be a non-empty string when given")
    if raw_id is not None and len(raw_id) > MAX_ID_LENGTH:
        raise BadPayload(f"msg_id: longer than {MAX_ID_LENGTH} characters")
    return Telemetry(
        device_id=device_id,
        point=point,
        ts_ms=ts_ms,
        values=values,
        msg_id=raw_id or fallback_msg_id or uuid.uuid4().hex,
        attrs=_attrs(data),
        has_msg_id=raw_id is not None,
    )
