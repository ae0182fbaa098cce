"""Which messages were handled already (a redelivery is a message
whose ``device_id``, ``msg_id`` and ``ts`` all equal those of one already handled).

The window is bounded: the latest ``dedup_cache`` keys in memory, loaded from the
archive's latest verdicts at start (so it survives a restart), and for a message the
broker marks as redelivered (DUP) and memory does not hold, the archive itself (its
unique ``(rule, device_id, msg_id, ts_ms)``). The same ``msg_id`` with another ``ts``, or
from another device, is another key: a new message. A rule with ``archive: false`` has
the memory alone (it does not survive a restart).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MsgKey", "RecentIds", "msg_key"]

MsgKey = str
"""A message's ``device_id``, ``msg_id`` and ``ts_ms`` in one string (:func:`msg_key`)."""


def msg_key(device_id: str, msg_id: str, ts_ms: int) -> MsgKey:
    """The key of ``(device_id, msg_id, ts_ms)``: the three joined by NUL.

    No ``device_id`` holds a NUL (validation refuses it), nor does an integer's text, so
    the key is the first NUL's left, the last NUL's right and what lies between: two
    different triples never make one key. A string rather than the tuple: a message's
    key is hashed several times (the memory of handled ids, the intake's in-flight map,
    settling) and a string's hash is computed once and kept; nor is it an object the
    garbage collector tracks.
    """
    return f"{device_id}\0{msg_id}\0{ts_ms}"


class RecentIds:
    """The keys handled most recently: at least the last ``capacity // 2``, at most
    ``capacity`` (0: none).

    Two generations of sets: a lookup or an insert is a set operation or two, and when
    the newer generation is full the older one is dropped whole, instead of evicting
    one key per insert as an LRU would (which cost more than the lookups it serves).
    """

    def __init__(self, capacity: int) -> None:
        self._generation = max(1, capacity // 2)
        self._enabled = capacity > 0
        self._new: set[MsgKey] = set()
        self._old: set[MsgKey] = set()

    def __contains__(self, item: object) -> bool:
        return item in self._new or item in self._old

    def __len__(self) -> int:
        return len(self._new) + len(self._old - self._new)

    def add_all(self, keys: Iterable[MsgKey]) -> None:
        """Remember ``keys`` (the oldest generation goes once the newest is full)."""
        if not self._enabled:
            return
        self._new.update(keys)
        if len(self._new) >= self._generation:
            self._old = self._new
            self._new = set()
