"""Device presence and inventory, kept in memory and written behind to ``ota_inventory``.

A device is online while its retained ``devices/{id}/status`` says ``online`` (its will
says ``offline``) or while it has published anything within the last
:data:`ONLINE_WINDOW_S` seconds. Firmware version and hardware come from its OTA
``request``; points and attributes from its telemetry. Changes are flushed to the database
in batches (every few seconds), so heavy telemetry costs no write per message; after a
restart the table is read back and the broker redelivers the retained status.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from linewatch.runtime.errors import NotFound
from linewatch_ota.command_store import CommandStore, InventoryRow

__all__ = ["ONLINE_WINDOW_S", "DeviceState", "Inventory"]

ONLINE_WINDOW_S = 60.0
MAX_POINTS = 256
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_LEN = 256


@dataclass(slots=True)
class DeviceState:
    """What is known of one device."""

    device_id: str
    status: str = ""
    last_seen: float | None = None
    #: Last message other than a status message (the "published within 60 s" rule).
    last_traffic: float | None = None
    firmware_version: str = ""
    hardware: str = ""
    points: set[str] = field(default_factory=set)
    attributes: dict[str, str] = field(default_factory=dict)

    def online(self, now: float) -> bool:
        """Whether the device counts as online at ``now``."""
        if self.status == "online":
            return True
        return self.last_traffic is not None and now - self.last_traffic < ONLINE_WINDOW_S

    def row(self) -> InventoryRow:
        return InventoryRow(
            device_id=self.device_id,
            status=self.status,
            last_seen=self.last_seen,
            last_traffic=self.last_traffic,
            firmware_version=self.firmware_version,
            hardware=self.hardware,
            points_json=json.dumps(sorted(self.points)),
            attributes_json=json.dumps(self.attributes, sort_keys=True),
        )

    @classmethod
    def from_row(cls, row: InventoryRow) -> DeviceState:
        points = json.loads(row.points_json or "[]")
        attrs = json.loads(row.attributes_json or "{}")
        return cls(
            device_id=row.device_id,
            status=row.status,
            last_seen=row.last_seen,
            last_traffic=row.last_traffic,
            firmware_version=row.firmware_version,
            hardware=row.hardware,
            points={str(p) for p in points} if isinstance(points, list) else set(),
            attributes=(
                {str(k): str(v) for k, v in attrs.items()} if isinstance(attrs, dict) else {}
            ),
        )


class Inventory:
    """The devices this service has heard of."""

    def __init__(self, store: CommandStore, *, max_devices: int = 1_000_000) -> None:
        self.store = store
        self.max_devices = max_devices
        self._devices: dict[str, DeviceState] = {}
        self._dirty: set[str] = set()

    async def load(self) -> None:
        """Read the inventory back from the database (at start)."""
        for row in await self.store.load_devices():
            self._devices.setdefault(row.device_id, DeviceState.from_row(row))

    def __len__(self) -> int:
        return len(self._devices)

    def _state(self, device_id: str) -> DeviceState | None:
        state = self._devices.get(device_id)
        if state is None:
            if len(self._devices) >= self.max_devices:
                return None
            state = self._devices[device_id] = DeviceState(device_id)
        self._dirty.add(device_id)
        return state

    def on_status(self, device_id: str, status: str, now: float | None = None) -> bool:
        """A ``devices/{id}/status`` message; True when the device came online."""
        now = time.time() if now is None else now
        state = self._state(device_id)
        if state is None:
            return False
        was = state.online(now)
        state.status = status
        state.last_seen = now
        return state.online(now) and not was

    def on_traffic(
        self,
        device_id: str,
        *,
        now: float | None = None,
        point: str | None = None,
        attributes: dict[str, str] | None = None,
        firmware_version: str | None = None,
        hardware: str | None = None,
    ) -> bool:
        """Any other message of the device; True when the device came online."""
        now = time.time() if now is None else now
        state = self._state(device_id)
        if state is None:
            return False
        was = state.online(now)
        state.last_seen = now
        state.last_traffic = now
        if point and len(state.points) < MAX_POINTS:
            state.points.add(point[:MAX_ATTRIBUTE_LEN])
        if attributes:
            for key, value in attributes.items():
                if key in state.attributes or len(state.attributes) < MAX_ATTRIBUTES:
                    state.attributes[key[:MAX_ATTRIBUTE_LEN]] = value[:MAX_ATTRIBUTE_LEN]
        if firmware_version:
            state.firmware_version = firmware_version
        if hardware:
            state.hardware = hardware
        return not was

    def online_ids(self, now: float | None = None) -> set[str]:
        now = time.time() if now is None else now
        return {d for d, s in self._devices.items() if s.online(now)}

    def matching(self, predicate: Callable[[DeviceState], bool]) -> list[str]:
        """Ids of the devices ``predicate`` accepts, sorted (groups, line peers)."""
        return sorted(d for d, s in self._devices.items() if predicate(s))

    def get(self, device_id: str) -> DeviceState:
        state = self._devices.get(device_id)
        if state is None:
            raise NotFound(f"device {device_id!r} not known")
        return state

    def list(
        self, *, prefix: str = "", online_only: bool = False, offset: int = 0, limit: int = 100
    ) -> list[DeviceState]:
        """Devices in id order, filtered."""
        now = time.time()
        ids = sorted(d for d in self._devices if d.startswith(prefix))
        out: list[DeviceState] = []
        skipped = 0
        for device_id in ids:
            state = self._devices[device_id]
            if online_only and not state.online(now):
                continue
            if skipped < offset:
                skipped += 1
                continue
            out.append(state)
            if len(out) >= limit:
                break
        return out

    async def flush(self) -> None:
        """Write changed devices to the database."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        rows = [self._devices[d].row() for d in sorted(dirty) if d in self._devices]
        try:
            await self.store.save_devices(rows)
        except BaseException:
            self._dirty |= dirty
            raise
