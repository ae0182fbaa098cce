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

__all__ = ["MsgKey", "RecentIds"]

MsgKey = tuple[str, str, int]
"""``(device_id, msg_id, ts_ms)``."""


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
