"""The dead-letter message every service publishes on ``linewatch/deadletter``: one JSON
shape for a refused input, whichever service refused it (``source``, ``reason``,
``topic``, ``received_at_ms``, then the payload as text or ``payload_base64``; see
docs/topics.md)."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson

__all__ = ["MAX_PAYLOAD_COPY", "dead_letter_body"]

MAX_PAYLOAD_COPY = 65_536
"""Bytes of the refused payload copied into the dead letter."""


def dead_letter_body(
    *, source: str, topic: str, payload: bytes, reason: str, **extra: Any
) -> bytes:
    """The dead letter of ``payload`` received on ``topic`` and refused for ``reason``.

    The payload is copied as text when it is UTF-8, else as ``payload_base64`` (at most
    :data:`MAX_PAYLOAD_COPY` bytes; ``truncated`` says when it was cut).
    """
    body: dict[str, Any] = {
        "source": source,
        # a reason may quote hostile input: lone surrogates (valid in JSON escapes, not in
        # UTF-8) are written as escapes rather than failing the dead letter
        "reason": reason[:4096].encode("utf-8", "backslashreplace").decode("utf-8"),
        "topic": topic,
        "received_at_ms": int(time.time() * 1000),
        **extra,
    }
    copy = payload[:MAX_PAYLOAD_COPY]
    try:
        body["payload"] = copy.decode("utf-8")
    except UnicodeDecodeError:
        body["payload_base64"] = base64.b64encode(copy).decode()
    if len(payload) > MAX_PAYLOAD_COPY:
        body["truncated"] = True
    return orjson.dumps(body)
