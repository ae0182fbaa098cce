"""Validation of incoming telemetry at the edge (the payload of docs/topics.md).

:func:`parse_telemetry` turns raw MQTT payload bytes into a :class:`Telemetry` or raises
:class:`BadPayload` whose message says exactly what is wrong; the pipeline sends those to
the dead-letter topic and table.

Two paths, one verdict: in the usual payload (the curve its only array) simdjson reads
the curve straight into a float64 buffer, without a Python float per sample, and orjson
the rest (a whole parse: 16 -> 10 us in a microbenchmark of the benchmark's payloads);
anything else, and anything the fast path refuses, is decoded again by the full path
(orjson), which alone decides what is wrong and says so. So both paths accept exactly the
same payloads.

Multi-channel telemetry (``"channels": {"pressure": [...], "force": [...]}`` instead of
``point`` + ``values``) always takes the full path: each channel is checked like
``values``; the message's ``values`` are the channels concatenated in the payload's
order, ``channel_names`` / ``channel_lengths`` say how to split them, and ``point`` is
the payload's ``point`` if given, else the channel names joined by ``,``.
"""

from __future__ import annotations

import json
import math
import re
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import orjson
import simdjson

from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.jsonguard import json_depth_error

__all__ = [
    "MAX_CHANNELS",
    "MAX_PAYLOAD_BYTES",
    "MAX_VALUES",
    "BadPayload",
    "Telemetry",
    "parse_telemetry",
]

MAX_VALUES = 65_536
MAX_CHANNELS = 16
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
"""Far beyond any valid message (65,536 numbers and their attrs); refused undecoded."""
MAX_ID_LENGTH = 200
_MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class BadPayload(InvalidArgument):
    """The payload is not valid telemetry; the message is the reason."""


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
    channel_names: tuple[str, ...] = ()
    """Multi-channel telemetry: the channels in ``values``, in order (empty: one curve)."""
    channel_lengths: tuple[int, ...] = ()
    """Multi-channel telemetry: the samples of each channel in ``values``."""


def _ident(data: dict[str, Any], key: str) -> str:
    if key not in data:
        raise BadPayload(f"{key}: missing")
    value = data[key]
    if not isinstance(value, str):
        raise BadPayload(f"{key}: must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise BadPayload(f"{key}: must be 1..{MAX_ID_LENGTH} characters")
    if "/" in value or "+" in value or "#" in value or "\0" in value:  # cheaper than a regex
        raise BadPayload(f"{key}: must not contain '/', '+', '#' or NUL")
    return value


def _timestamp(data: dict[str, Any]) -> int:
    if "ts" not in data:
        raise BadPayload("ts: missing")
    ts = data["ts"]
    if type(ts) is int and 0 <= ts <= _MAX_TS_MS:  # the usual case first (never a bool)
        return ts
    if isinstance(ts, bool):
        raise BadPayload("ts: must be epoch milliseconds or an RFC 3339 string, got bool")
    if isinstance(ts, (int, float)):  # a tuple is checked faster than a union
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


_F32_MAX = float(np.finfo(np.float32).max)


def _values(data: dict[str, Any]) -> npt.NDArray[np.float32]:
    if "values" not in data:
        raise BadPayload("values: missing")
    return _numbers(data["values"], "values")


def _channels(
    data: dict[str, Any],
) -> tuple[npt.NDArray[np.float32], tuple[str, ...], tuple[int, ...]]:
    channels = data["channels"]
    if "values" in data:
        raise BadPayload("channels: give either values or channels, not both")
    if not isinstance(channels, dict):
        raise BadPayload(f"channels: must be an object of arrays, got {type(channels).__name__}")
    if not 1 <= len(channels) <= MAX_CHANNELS:
        raise BadPayload(f"channels: {len(channels)} channels, 1..{MAX_CHANNELS} allowed")
    arrays: list[npt.NDArray[np.float32]] = []
    for name, values in channels.items():
        if not _CHANNEL_NAME.match(name):
            raise BadPayload(
                f"channels: name {name[:70]!r} must be 1..64 letters, digits, '_', '.' or '-'"
            )
        arrays.append(_numbers(values, f"channels.{name}"))
    return (
        np.concatenate(arrays),
        tuple(channels),
        tuple(len(a) for a in arrays),
    )


def _numbers(values: Any, where: str) -> npt.NDArray[np.float32]:
    if not isinstance(values, list):
        raise BadPayload(f"{where}: must be an array of numbers, got {type(values).__name__}")
    if not values:
        raise BadPayload(f"{where}: empty (1..65536 numbers needed)")
    if len(values) > MAX_VALUES:
        raise BadPayload(f"{where}: {len(values)} numbers, at most {MAX_VALUES} allowed")
    try:
        arr = np.asarray(values)
    except (ValueError, OverflowError) as exc:
        raise BadPayload(f"{where}: must be a flat array of numbers") from exc
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        raise BadPayload(f"{where}: must be a flat array of numbers (no strings, bools, nulls)")
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 → inf: refused below
        # via float64 as on the fast path (an int beyond 2**53 rounds the same way);
        # little-endian on every host: archived and sent as bytes
        out = arr.astype(np.float64).astype("<f4")
    finite = np.isfinite(out)
    if not finite.all():
        index = int(np.argmin(finite))
        raise BadPayload(f"{where}: not a finite number at index {index} ({values[index]!r})")
    return out


class _NoAttrs(dict[str, str]):
    """The attrs of every curve sent without any: one shared empty dict (a new one per
    message was one more allocation per message), which refuses to be changed."""

    def _refuse(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise TypeError("the empty attrs are shared by every curve without attrs")

    __setitem__ = __delitem__ = __ior__ = _refuse
    update = setdefault = pop = popitem = clear = _refuse


_NO_ATTRS = _NoAttrs()


def _attrs(data: dict[str, Any]) -> dict[str, str]:
    attrs = data.get("attrs")
    if attrs is None:
        return _NO_ATTRS
    if not isinstance(attrs, dict):
        raise BadPayload(f"attrs: must be an object, got {type(attrs).__name__}")
    out: dict[str, str] = {}
    for key, value in attrs.items():
        if isinstance(value, dict | list):
            raise BadPayload(f"attrs.{key}: must be a string, number or bool")
        out[str(key)] = "" if value is None else str(value)
    return out


def parse_telemetry(
    payload: bytes, *, fallback_msg_id: str | None = None, depth_checked: bool = False
) -> Telemetry:
    """Validate one telemetry payload.

    Args:
        payload: the raw MQTT payload.
        fallback_msg_id: the id to use when the message carries no ``msg_id``
            (default: a random one).
        depth_checked: the caller refused payloads nested deeper than
            :data:`~linewatch.runtime.jsonguard.MAX_DEPTH` already (the MQTT intake does,
            before any parser runs); the scan is not repeated.

    Raises:
        BadPayload: what is wrong, naming the field.
    """
    # before either path: no decoder sees a payload nested too deep or too large
    if not depth_checked and (too_deep := json_depth_error(payload)) is not None:
        raise BadPayload(too_deep)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BadPayload(f"payload of {len(payload)} bytes; at most {MAX_PAYLOAD_BYTES}")
    fast = _decode_fast(payload)
    if fast is not None:
        data, samples = fast
        try:
            return _telemetry(data, _checked_samples(samples), fallback_msg_id)
        except BadPayload:
            pass  # the full path names what is wrong
    return _telemetry(_decode(payload), None, fallback_msg_id)


def _decode(payload: bytes) -> dict[str, Any]:
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
    return data


class _FastDecoder:
    """simdjson for payloads shaped as expected; ``None`` sends one to the full path.

    The payload must hold a single ``[``: then the text from it to the next ``]`` is the
    only array, and simdjson reads it as numbers straight into float64 (ints and floats
    alike; anything else refuses). The rest, with ``[]`` in its place, is read by orjson
    exactly as on the full path, and must have that ``[]`` as its ``values`` (the last
    one, as orjson keeps): since the payload had no other array, that is where the curve
    was, so repeated keys, nesting and attrs come out as the full path has them.
    """

    def __init__(self) -> None:
        self._parser = simdjson.Parser()

    def decode(self, payload: bytes) -> tuple[dict[str, Any], npt.NDArray[np.float64]] | None:
        """The payload's fields but ``values``, and its curve (``None``: the full path)."""
        start = payload.find(b"[")
        if start < 0 or payload.find(b"[", start + 1) >= 0:  # not exactly one "["
            return None
        end = payload.find(b"]", start) + 1
        if not end:
            return None
        samples = self._curve(payload[start:end])
        if samples is None:
            return None
        try:
            data = orjson.loads(payload[:start] + b"[]" + payload[end:])
        except ValueError:
            return None
        if type(data) is not dict or data.get("values") != []:
            return None
        del data["values"]
        return data, samples

    def _curve(self, text: bytes) -> npt.NDArray[np.float64] | None:
        """A JSON array of numbers as float64, or ``None``."""
        try:
            doc: Any = self._parser.parse(text)
        except RuntimeError:  # a document of the parser is still referenced somewhere
            self._parser = simdjson.Parser()
            return None
        except ValueError:  # not JSON, NaN literals, numbers out of range, …
            return None
        try:
            return np.frombuffer(doc.as_buffer(of_type="d"), dtype=np.float64)
        except (TypeError, ValueError, AttributeError):  # not an array of numbers
            return None
        finally:
            del doc  # the parser may be reused only once its documents are gone


_decode_fast = _FastDecoder().decode  # a bound method is called faster than an instance

# On the fast path a sample beyond float32 becomes inf in the cast, and the check below
# refuses it; numpy's warning about that overflow says nothing more.
warnings.filterwarnings(
    "ignore", r"overflow encountered in (cast|dot)", RuntimeWarning, __name__.replace(".", r"\.")
)


def _checked_samples(samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    if not 1 <= len(samples) <= MAX_VALUES:
        raise BadPayload("values: length")
    out = samples.astype("<f4")
    # one call for the usual curve: the sum of squares is finite only if every sample is
    # (it may overflow for finite samples too; then each is checked)
    if not math.isfinite(out.dot(out)) and not np.isfinite(out).all():
        raise BadPayload("values: beyond float32")
    return out


def _telemetry(
    data: dict[str, Any], values: npt.NDArray[np.float32] | None, fallback_msg_id: str | None
) -> Telemetry:
    device_id = _ident(data, "device_id")
    names: tuple[str, ...] = ()
    lengths: tuple[int, ...] = ()
    if "channels" in data:
        if values is not None:  # the fast path read values: the full path says why not
            raise BadPayload("channels: give either values or channels, not both")
        values, names, lengths = _channels(data)
        point = _ident(data, "point") if "point" in data else ",".join(names)[:MAX_ID_LENGTH]
    else:
        point = _ident(data, "point")
    ts_ms = _timestamp(data)
    if values is None:
        values = _values(data)
    raw_id = data.get("msg_id")
    if raw_id is not None and (not isinstance(raw_id, str) or not raw_id):
        raise BadPayload("msg_id: must be a non-empty string when given")
    if raw_id is not None and len(raw_id) > MAX_ID_LENGTH:
        raise BadPayload(f"msg_id: longer than {MAX_ID_LENGTH} characters")
    msg_id = raw_id or fallback_msg_id or uuid.uuid4().hex
    has_msg_id = raw_id is not None
    # positional, in the fields' order: keywords cost a third of a microsecond more
    # (this runs for every message)
    return Telemetry(
        device_id, point, ts_ms, values, msg_id, _attrs(data), has_msg_id, names, lengths
    )
