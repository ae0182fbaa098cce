"""The per-device update state machine: which transitions are legal, as pure functions.

::

    queued ─▶ notified ─▶ downloading ─▶ installing ─▶ succeeded
       │          │            │              │      └▶ failed
       └──────────┴────────────┴──────────────┴──────▶ cancelled / failed

A device message only ever moves an update forward; one that would move it back
(out of order) or that arrives after the end (duplicate) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "RANK",
    "Transition",
    "can_transition",
    "is_active",
    "is_terminal",
    "on_progress",
    "on_verify",
]

#: How far along each state is; terminal states share the highest rank.
RANK: dict[str, int] = {
    "queued": 0,
    "notified": 1,
    "downloading": 2,
    "installing": 3,
    "succeeded": 4,
    "failed": 4,
    "cancelled": 4,
}

_LEGAL: dict[str, frozenset[str]] = {
    "queued": frozenset({"notified", "cancelled", "failed"}),
    "notified": frozenset({"downloading", "installing", "succeeded", "failed", "cancelled"}),
    "downloading": frozenset({"downloading", "installing", "succeeded", "failed", "cancelled"}),
    "installing": frozenset({"installing", "succeeded", "failed", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


def can_transition(current: str, new: str) -> bool:
    """Whether ``current → new`` is legal."""
    return new in _LEGAL.get(current, frozenset())


def is_terminal(state: str) -> bool:
    """succeeded, failed or cancelled."""
    return state in {"succeeded", "failed", "cancelled"}


def is_active(state: str) -> bool:
    """notified, downloading or installing: the device is working on it."""
    return state in {"notified", "downloading", "installing"}


@dataclass(frozen=True, slots=True)
class Transition:
    """What a device message does to an update (``None`` fields: unchanged)."""

    state: str
    percent: int | None = None
    reason: str = ""


def on_progress(current: str, percent_now: int, state: str, percent: int) -> Transition | None:
    """A ``progress`` message; ``None`` when it changes nothing (stale or duplicate)."""
    if not is_active(current) or not can_transition(current, state):
        return None
    if RANK[state] < RANK[current]:
        return None
    if state == current and percent <= percent_now:
        return None
    return Transition(state=state, percent=percent)


def on_verify(
    current: str,
    *,
    ok: bool,
    sha256: str,
    version: str,
    expected_sha256: str,
    expected_version: str,
    error: str = "",
) -> Transition | None:
    """A ``verify`` message: succeeded only when ok and the checksum and version match."""
    if not is_active(current):
        return None
    if not ok:
        why = f": {error}" if error else ""
        return Transition(state="failed", reason=f"device reported ok: false{why}")
    if sha256.lower() != expected_sha256:
        return Transition(
            state="failed",
            reason=f"sha256 mismatch: device has {sha256[:16]}…, expected {expected_sha256[:16]}…",
        )
    if version != expected_version:
        return Transition(
            state="failed",
            reason=f"version mismatch: device reports {version!r}, expected {expected_version!r}",
        )
    return Transition(state="succeeded", percent=100)
