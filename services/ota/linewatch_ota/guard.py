"""Which images a device may be offered: its hardware, and never older than what it runs.

Devices say what they run and on which hardware in ``ota/{device_id}/request``
(``current_version``, ``hw``); the OTA service remembers the last report per device
(:class:`~linewatch_ota.store.DeviceRow`). Before an update is offered (started by the
scheduler, or re-sent when the device asks), :func:`refusal` decides:

- an image for other hardware (its manifest names hardware, and not the device's) is
  refused: the update is **cancelled** with a reason saying so;
- an image older than the device's ``current_version`` is refused the same way, unless
  the rollout has ``allow_downgrade``;
- when the image names hardware but the device has not yet said which it has, the update
  **waits** queued (its reason says for what) until the device's ``request`` arrives.

A refusal is no failure of the device: cancelled updates do not count against a
rollout's error threshold, and the reason is visible in ``GET /v1/ota/devices/{id}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from linewatch_ota.store import DeviceRow, FirmwareRow

__all__ = ["Refusal", "hardware_of", "refusal", "version_key"]

_PARTS = re.compile(r"\d+|[A-Za-z]+")


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order of versions: ``1.10.0`` > ``1.9.2`` > ``1.9``; letters after digits."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.lower()) for part in _PARTS.findall(version)
    )


def hardware_of(fw: FirmwareRow) -> list[str]:
    """The hardware revisions an image is for (empty: any)."""
    value = json.loads(fw.hardware_json or "[]")
    return [str(h) for h in value] if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an update is not offered now: ``cancel`` for good, or ``wait`` for a report."""

    action: Literal["cancel", "wait"]
    reason: str


def refusal(fw: FirmwareRow, device: DeviceRow | None, *, allow_downgrade: bool) -> Refusal | None:
    """Whether (and why) ``fw`` must not be offered to ``device`` now; None: offer it."""
    hardware = hardware_of(fw)
    if hardware:
        if device is None or not device.hw:
            return Refusal(
                "wait",
                f"waiting for the device to report its hardware (image is for "
                f"{', '.join(hardware)})",
            )
        if device.hw not in hardware:
            return Refusal(
                "cancel",
                f"refused: image is for hardware {', '.join(hardware)}, the device is {device.hw}",
            )
    if (
        not allow_downgrade
        and device is not None
        and device.current_version
        and version_key(fw.version) < version_key(device.current_version)
    ):
        return Refusal(
            "cancel",
            f"refused: downgrade from {device.current_version} to {fw.version} "
            "(the rollout does not allow downgrades)",
        )
    return None
