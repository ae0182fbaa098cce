"""What the alarm engine tracks: its kinds, a window per (kind, rule, device), the events
it records and the webhook calls it queues (:mod:`linewatch_ingest.alarms`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from linewatch_ingest.config import AlarmRuleConfig
from linewatch_ingest.webhooks import Hook

__all__ = [
    "DEADLETTERS",
    "NO_DATA",
    "REPORTED_KINDS",
    "VERDICTS",
    "Delivery",
    "Event",
    "Key",
    "Track",
    "message",
]

VERDICTS, NO_DATA, DEADLETTERS = "verdicts", "no_data", "deadletters"
#: Kinds other services may raise (``RaiseAlarm``).
REPORTED_KINDS = frozenset({"quality_gate"})
Key = tuple[str, str, str]
"""(alarm kind, rule, device id)"""


@dataclass
class Track:
    """The window of one (kind, rule, device)."""

    kind: str
    times: deque[float] = field(default_factory=deque)
    active: bool = False
    alarm_rule: AlarmRuleConfig | None = None
    """None: restored after a restart, its rule not seen since."""
    restored: bool = False
    """Active before a restart: its window's history is unknown, so it is held active for
    one window after the restart unless the count since then keeps it longer."""
    hold_until: float | None = None


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # "raise" | "clear"
    key: Key
    count: int
    alarm_rule: AlarmRuleConfig | None


@dataclass(frozen=True, slots=True)
class Delivery:
    event: str
    alarm_id: int
    hook: Hook
    alarm_rule: AlarmRuleConfig


def message(key: Key, count: int, rule: AlarmRuleConfig) -> str:
    kind, name, device = key
    if kind == NO_DATA:
        return f"{device}: no data for {rule.no_data_s}s (rule {name})"
    if kind == DEADLETTERS:
        return f"rule {name}: {count} dead letters within {rule.deadletter_window_s}s"
    return f"{device}: {count} not-ok verdicts within {rule.window_s}s (rule {name})"
