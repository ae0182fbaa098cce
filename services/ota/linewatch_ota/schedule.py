"""When installs may start: a start time, maintenance windows in the plant's time zone,
and machine-idle rules (judged from ingest's verdict counts by the scheduler)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from linewatch.runtime.errors import InvalidArgument

__all__ = ["MaintenanceWindow", "Schedule"]

MAX_IDLE_S = 7 * 86400


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """ISO weekdays (empty: every day), minutes since local midnight; end < start wraps."""

    weekdays: tuple[int, ...] = ()
    start_minute: int = 0
    end_minute: int = 0

    def validate(self, index: int) -> None:
        if any(not 1 <= d <= 7 for d in self.weekdays):
            raise InvalidArgument(f"schedule.windows[{index}].weekdays: ISO days 1..7")
        for name in ("start_minute", "end_minute"):
            if not 0 <= getattr(self, name) <= 1440:
                raise InvalidArgument(f"schedule.windows[{index}].{name}: within 0..1440")
        if self.start_minute == self.end_minute:
            raise InvalidArgument(f"schedule.windows[{index}]: start and end are equal")

    def contains(self, local: dt.datetime) -> bool:
        minute = local.hour * 60 + local.minute
        day = local.isoweekday()
        if self.start_minute < self.end_minute:
            return (not self.weekdays or day in self.weekdays) and (
                self.start_minute <= minute < self.end_minute
            )
        # crosses midnight: the part after midnight belongs to the day before
        if minute >= self.start_minute:
            return not self.weekdays or day in self.weekdays
        if minute < self.end_minute:
            yesterday = 7 if day == 1 else day - 1
            return not self.weekdays or yesterday in self.weekdays
        return False


@dataclass(frozen=True, slots=True)
class Schedule:
    """A rollout's schedule (all fields default to "any time")."""

    start_at: float | None = None
    time_zone: str = ""
    windows: tuple[MaintenanceWindow, ...] = field(default_factory=tuple)
    idle_s: int = 0
    line_idle: bool = False

    def validate(self) -> Schedule:
        self.zone()
        for i, window in enumerate(self.windows):
            window.validate(i)
        if not 0 <= self.idle_s <= MAX_IDLE_S:
            raise InvalidArgument(f"schedule.idle_s: must be within 0..{MAX_IDLE_S}")
        if self.line_idle and not self.idle_s:
            raise InvalidArgument("schedule.line_idle needs idle_s")
        return self

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.time_zone or "UTC")
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidArgument(f"schedule.time_zone {self.time_zone!r}: unknown") from exc

    def why_not_now(self, now: float) -> str:
        """ "" when installs may start at ``now``, else why not."""
        if self.start_at is not None and now < self.start_at:
            when = dt.datetime.fromtimestamp(self.start_at, dt.UTC).isoformat()
            return f"waiting for the start time {when}"
        if self.windows:
            local = dt.datetime.fromtimestamp(now, self.zone())
            if not any(w.contains(local) for w in self.windows):
                return f"outside the maintenance windows ({self.time_zone or 'UTC'})"
        return ""

    def to_json(self) -> dict[str, Any]:
        return {
            "start_at": self.start_at,
            "time_zone": self.time_zone,
            "windows": [
                {"weekdays": list(w.weekdays), "start": w.start_minute, "end": w.end_minute}
                for w in self.windows
            ],
            "idle_s": self.idle_s,
            "line_idle": self.line_idle,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Schedule:
        return cls(
            start_at=raw.get("start_at"),
            time_zone=str(raw.get("time_zone", "")),
            windows=tuple(
                MaintenanceWindow(tuple(w["weekdays"]), int(w["start"]), int(w["end"]))
                for w in raw.get("windows", [])
            ),
            idle_s=int(raw.get("idle_s", 0)),
            line_idle=bool(raw.get("line_idle", False)),
        )
