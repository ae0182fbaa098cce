"""Limits a JSON payload must keep before any parser sees it (no payload, however
malformed, may stop a service).

Every JSON decoder recurses per nesting level (the standard library's raises
RecursionError past about a thousand, orjson refuses past 1024), so a payload nested
20,000 deep is refused here, by a scan of its brackets, before any decoder runs:
deeper than :data:`MAX_DEPTH` is refused. The scan costs nothing for usual payloads: when
the payload holds at most ``MAX_DEPTH`` brackets in all it cannot be deeper.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["MAX_DEPTH", "json_depth_error"]

MAX_DEPTH = 32
"""The deepest nesting of arrays and objects accepted."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", bytes([1, 1, 255, 255]))
"""Opening brackets to int8 +1, closing ones to -1."""


def _few_brackets(payload: bytes, limit: int) -> bool:
    """Whether ``payload`` holds at most ``limit`` opening brackets in all.

    ``find`` from one bracket to the next: a usual payload holds a few, so this is a few
    calls, each cheaper than a ``count`` of the whole payload (which this runs per
    message, on every MQTT intake); it stops at ``limit + 1``.
    """
    n = 0
    for bracket in b"[{":
        pos = payload.find(bracket)
        while pos >= 0:
            n += 1
            if n > limit:
                return False
            pos = payload.find(bracket, pos + 1)
    return True


def json_depth_error(payload: bytes, limit: int = MAX_DEPTH) -> str | None:
    """Why ``payload`` is refused for its nesting (``None``: not nested too deep).

    Brackets inside strings do not count; unbalanced brackets are left to the decoder.
    """
    if _few_brackets(payload, limit):
        return None
    brackets = _STRING.sub(b"", payload).translate(_STEPS, _NOT_BRACKETS)
    # each opening bracket is +1, each closing one -1: the running sum is the depth
    # (vectorised: a payload of millions of brackets costs milliseconds, not seconds)
    if brackets and int(np.cumsum(np.frombuffer(brackets, dtype=np.int8)).max()) > limit:
        return f"JSON nested deeper than {limit} levels"
    return None
