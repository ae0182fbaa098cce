"""Rollouts: create, read, pause, resume, cancel; per-state device counts.

Every write runs in one transaction under the process's write lock (SQLite has one
writer; PostgreSQL rows are additionally locked ``FOR UPDATE``), and each state change
is published to the :class:`~linewatch_ota.events.EventHub` after it committed.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from linewatch.runtime.db import Database
from linewatch.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from linewatch.v1 import ota_pb2
from linewatch_ota.catalog import Catalog
from linewatch_ota.convert import PRIORITY_RANK, rollout_pb, update_pb
from linewatch_ota.events import EventHub
from linewatch_ota.gate import Gate
from linewatch_ota.plan_convert import add_plan, attach_plan, new_plan, rebase_waves
from linewatch_ota.schedule import Schedule
from linewatch_ota.store import ACTIVE_STATES, DeviceRow, DeviceUpdateRow, RolloutRow
from linewatch_ota.waves import Wave, split

__all__ = ["MAX_DEVICES", "RolloutSpec", "Rollouts", "validate_device_id"]

MAX_DEVICES = 100_000
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def validate_device_id(device_id: str) -> str:
    """``device_id`` if usable as one MQTT topic level, else InvalidArgument."""
    if not _DEVICE_ID.match(device_id):
        raise InvalidArgument(
            f"device id {device_id!r}: 1..128 letters, digits and . _ : - (no / + # or spaces)"
        )
    return device_id


class RolloutSpec:
    """A validated CreateRollout request."""

    def __init__(
        self,
        *,
        firmware_id: str,
        devices: list[str],
        priority: str,
        error_threshold: float,
        timeout_s: int,
        max_retries: int,
        allow_downgrade: bool = False,
        waves: list[Wave] | None = None,
        gate: Gate | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        if not devices:
            raise InvalidArgument("a rollout needs at least one device (devices or group)")
        if len(devices) > MAX_DEVICES:
            raise InvalidArgument(f"at most {MAX_DEVICES} devices per rollout")
        if not 0.0 <= error_threshold <= 1.0:
            raise InvalidArgument(f"error_threshold {error_threshold}: must be within 0..1")
        if priority not in PRIORITY_RANK:
            raise InvalidArgument(f"priority {priority!r}: must be security or normal")
        if timeout_s < 1 or max_retries < 0 or max_retries > 100:
            raise InvalidArgument("timeout_s must be ≥ 1 and max_retries within 0..100")
        self.firmware_id = firmware_id
        self.devices = list(dict.fromkeys(validate_device_id(d) for d in devices))
        self.priority = priority
        self.error_threshold = error_threshold
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.allow_downgrade = allow_downgrade
        self.waves = list(waves or [])
        self.gate = (gate or Gate()).validate()
        self.schedule = (schedule or Schedule()).validate()
        split(self.devices, self.waves)  # validates the waves

    @property
    def planned(self) -> bool:
        """Whether it needs a plan (waves, a gate or a schedule) beyond "all at once"."""
        return bool(self.waves) or self.gate.cycles > 0 or self.schedule != Schedule()


class Rollouts:
    """Rollout operations over the database."""

    def __init__(
        self, *, db: Database, catalog: Catalog, events: EventHub, write_lock: asyncio.Lock
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.events = events
        self.write_lock = write_lock

    async def create(self, spec: RolloutSpec) -> ota_pb2.Rollout:
        """Queue one update per device.

        Raises:
            NotFound: the firmware does not exist.
        """
        fw = await self.catalog.get(spec.firmware_id)
        now = time.time()
        skipped = await self._on_version(spec.devices, fw.version)
        devices = [d for d in spec.devices if d not in skipped]
        waves = split(devices, spec.waves)
        rollout = RolloutRow(
            id=uuid.uuid4().hex,
            firmware_id=fw.id,
            priority=spec.priority,
            state="running" if devices else "completed",
            reason="" if devices else f"every device already runs {fw.version}",
            error_threshold=spec.error_threshold,
            timeout_s=spec.timeout_s,
            max_retries=spec.max_retries,
            devices_json=json.dumps(devices),
            allow_downgrade=spec.allow_downgrade,
            created_at=now,
            updated_at=now,
        )
        rows = [
            {
                "id": uuid.uuid4().hex,
                "device_id": device,
                "rollout_id": rollout.id,
                "firmware_id": fw.id,
                "version": fw.version,
                "priority": spec.priority,
                "priority_rank": PRIORITY_RANK[spec.priority],
                "state": "queued",
                "percent": 0,
                "attempts": 0,
                "reason": "",
                "timeout_s": spec.timeout_s,
                "max_retries": spec.max_retries,
                "deadline": None,
                "created_at": now,
                "updated_at": now,
                "wave": index,
            }
            for index, wave in enumerate(waves)
            for device in wave
        ]
        plan = new_plan(rollout.id, spec, waves, skipped, now) if spec.planned or skipped else None
        async with self.write_lock, self.db.session() as session:
            session.add(rollout)
            if plan is not None:
                session.add(plan[0])
                session.add_all(plan[1])
            await session.flush()
            table = DeviceUpdateRow.__table__  # type: ignore[attr-defined]
            for start in range(0, len(rows), 1000):
                await (await session.connection()).execute(
                    sa.insert(table), rows[start : start + 1000]
                )
        counts = {"queued": len(rows)} if rows else {}
        message = rollout_pb(rollout, counts)
        if plan is not None:
            add_plan(message, plan[0], plan[1], {})
        self.events.publish(ota_pb2.StreamOtaEventsResponse(rollout=message))
        return message

    async def _on_version(self, devices: list[str], version: str) -> set[str]:
        """The devices whose last OTA request reported ``version`` already."""
        found: set[str] = set()
        async with self.db.session() as session:
            for start in range(0, len(devices), 1000):
                rows = await session.exec(
                    select(DeviceRow.device_id).where(
                        col(DeviceRow.device_id).in_(devices[start : start + 1000]),
                        DeviceRow.current_version == version,
                    )
                )
                found.update(rows.all())
        return found

    async def _message(self, session: AsyncSession, row: RolloutRow) -> ota_pb2.Rollout:
        message = rollout_pb(row, await self.counts(session, row.id))
        await attach_plan(session, message)
        return message

    async def counts(self, session: AsyncSession, rollout_id: str) -> dict[str, int]:
        """Devices per update state within one rollout."""
        result = await (await session.connection()).execute(
            sa.select(col(DeviceUpdateRow.state), sa.func.count())
            .where(col(DeviceUpdateRow.rollout_id) == rollout_id)
            .group_by(col(DeviceUpdateRow.state))
        )
        return {str(state): int(n) for state, n in result.all()}

    async def get(self, rollout_id: str) -> ota_pb2.Rollout:
        """One rollout with its counts.

        Raises:
            NotFound: no such rollout.
        """
        async with self.db.session() as session:
            row = await session.get(RolloutRow, rollout_id)
            if row is None:
                raise NotFound(f"rollout {rollout_id!r} not found")
            return await self._message(session, row)

    async def list_rollouts(self, *, offset: int, limit: int) -> list[ota_pb2.Rollout]:
        """Rollouts, newest first."""
        async with self.db.session() as session:
            rows = await session.exec(
                select(RolloutRow)
                .order_by(col(RolloutRow.created_at).desc(), col(RolloutRow.id))
                .offset(offset)
                .limit(limit)
            )
            return [await self._message(session, r) for r in rows.all()]

    async def _set_state(
        self, rollout_id: str, allowed_from: set[str], new: str, reason: str
    ) -> ota_pb2.Rollout:
        cancelled: list[DeviceUpdateRow] = []
        async with self.write_lock, self.db.session() as session:
            row = await session.get(RolloutRow, rollout_id, with_for_update=True)
            if row is None:
                raise NotFound(f"rollout {rollout_id!r} not found")
            if row.state != new:
                if row.state not in allowed_from:
                    raise FailedPrecondition(
                        f"rollout {rollout_id} is {row.state}; cannot make it {new}"
                    )
                now = time.time()
                if new == "running":
                    row.failed_baseline = (await self.counts(session, rollout_id)).get("failed", 0)
                    await rebase_waves(session, rollout_id)
                if new == "cancelled":
                    cancelled = await self._cancel_updates(session, rollout_id, now)
                row.state = new
                row.reason = reason
                row.updated_at = now
                session.add(row)
                await session.flush()
            message = await self._message(session, row)
        for update in cancelled:
            self.events.publish(ota_pb2.StreamOtaEventsResponse(device_update=update_pb(update)))
        self.events.publish(ota_pb2.StreamOtaEventsResponse(rollout=message))
        return message

    @staticmethod
    async def _cancel_updates(
        session: AsyncSession, rollout_id: str, now: float
    ) -> list[DeviceUpdateRow]:
        result = await session.exec(
            select(DeviceUpdateRow)
            .where(
                DeviceUpdateRow.rollout_id == rollout_id,
                col(DeviceUpdateRow.state).in_(("queued", *ACTIVE_STATES)),
            )
            .order_by(col(DeviceUpdateRow.id))
            .with_for_update()
        )
        rows = list(result.all())
        for update in rows:
            update.state = "cancelled"
            update.reason = "rollout cancelled"
            update.deadline = None
            update.updated_at = now
            session.add(update)
        return rows

    async def pause(self, rollout_id: str, reason: str = "paused by request") -> ota_pb2.Rollout:
        """Stop starting new updates; active ones finish."""
        return await self._set_state(rollout_id, {"running"}, "paused", reason)

    async def resume(self, rollout_id: str) -> ota_pb2.Rollout:
        """Start updates again; only failures after now count towards the threshold."""
        return await self._set_state(rollout_id, {"paused"}, "running", "")

    async def cancel(self, rollout_id: str) -> ota_pb2.Rollout:
        """Cancel every queued and active update of the rollout."""
        return await self._set_state(
            rollout_id, {"running", "paused"}, "cancelled", "cancelled by request"
        )

    async def rollout_updates(
        self, rollout_id: str, *, offset: int, limit: int
    ) -> list[ota_pb2.DeviceUpdate]:
        """A rollout's updates in wave, then device order."""
        async with self.db.session() as session:
            if await session.get(RolloutRow, rollout_id) is None:
                raise NotFound(f"rollout {rollout_id!r} not found")
            rows = await session.exec(
                select(DeviceUpdateRow)
                .where(DeviceUpdateRow.rollout_id == rollout_id)
                .order_by(col(DeviceUpdateRow.wave), col(DeviceUpdateRow.device_id))
                .offset(offset)
                .limit(limit)
            )
            return [update_pb(r) for r in rows.all()]

    async def device_updates(self, device_id: str) -> list[ota_pb2.DeviceUpdate]:
        """A device's updates: active first, then queued in start order, then history."""
        validate_device_id(device_id)
        async with self.db.session() as session:
            result = await session.exec(
                select(DeviceUpdateRow).where(DeviceUpdateRow.device_id == device_id)
            )
            rows = list(result.all())
        active = [r for r in rows if r.state in ACTIVE_STATES]
        queued = sorted(
            (r for r in rows if r.state == "queued"),
            key=lambda r: (-r.priority_rank, r.created_at, r.id),
        )
        done = sorted(
            (r for r in rows if r.state not in ACTIVE_STATES and r.state != "queued"),
            key=lambda r: -r.updated_at,
        )
        return [update_pb(r) for r in (*active, *queued, *done)]
