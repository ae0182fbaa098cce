"""The scheduler: starts queued updates, retries silent ones, watches rollout health.

Every tick (or sooner when woken):

1. active updates past their deadline get their metadata again (``attempts`` + 1), or
   fail once ``max_retries`` re-sends went unanswered;
2. running rollouts are evaluated: paused when the failed share exceeds the error
   threshold (counting only failures since the last resume), completed when every
   update is terminal;
3. each device without an active update starts its next queued update of a running
   rollout, security before normal, then oldest. The partial unique index makes the
   start of a second active update for one device fail, so replicas cannot both start
   one; a loser just skips that device. An image the device must not get (other
   hardware, a downgrade; :mod:`linewatch_ota.guard`) is cancelled with the reason
   instead, and one for hardware the device has not reported yet waits.
"""

from __future__ import annotations

import asyncio
import logging
import time

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from linewatch.runtime.db import Database
from linewatch.v1 import ota_pb2
from linewatch_ota.convert import rollout_pb, update_pb
from linewatch_ota.events import EventHub
from linewatch_ota.guard import Refusal, refusal
from linewatch_ota.metrics import ROLLOUTS, UPDATES
from linewatch_ota.plan_store import RolloutPlanRow, WaveRow
from linewatch_ota.publisher import MetadataPublisher
from linewatch_ota.rollouts import Rollouts
from linewatch_ota.store import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    DeviceRow,
    DeviceUpdateRow,
    RolloutRow,
)
from linewatch_ota.wave_progress import WavePlans

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

BATCH = 5000
METRICS_EVERY_S = 5.0


class Scheduler:
    """The periodic loop that moves updates along."""

    def __init__(
        self,
        *,
        db: Database,
        rollouts: Rollouts,
        publisher: MetadataPublisher,
        events: EventHub,
        write_lock: asyncio.Lock,
        tick_interval_s: float,
        plans: WavePlans,
        max_active: int = 0,
    ) -> None:
        self.plans = plans
        self.max_active = max_active
        self.db = db
        self.rollouts = rollouts
        self.publisher = publisher
        self.events = events
        self.write_lock = write_lock
        self.tick_interval_s = tick_interval_s
        self._wake = asyncio.Event()
        self._metrics_at = 0.0

    def wake(self) -> None:
        """Tick as soon as possible (a device became free, a rollout changed)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; a failing tick is logged and retried."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("scheduler tick failed; retrying")
            try:
                async with asyncio.timeout(self.tick_interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def tick(self) -> None:
        """One pass over deadlines, rollouts and queues."""
        now = time.time()
        changed: list[DeviceUpdateRow] = []
        resend: list[DeviceUpdateRow] = []
        rollout_events: list[ota_pb2.Rollout] = []
        async with self.write_lock, self.db.session() as session:
            await self._expire(session, now, changed, resend)
            await self._evaluate_rollouts(session, now, rollout_events)
        rollout_events += await self.plans.run_gates(self.write_lock)
        await self.plans.alarms.sync()
        async with self.write_lock:
            started, refused = await self._start_queued(now)
        for row in (*changed, *refused, *started):
            self.events.publish(ota_pb2.StreamOtaEventsResponse(device_update=update_pb(row)))
        for message in rollout_events:
            self.events.publish(ota_pb2.StreamOtaEventsResponse(rollout=message))
        if resend:
            await self.publisher.send(resend, reason="retry")
        if started:
            await self.publisher.send(started, reason="start")
        if now - self._metrics_at >= METRICS_EVERY_S:
            self._metrics_at = now
            await self.refresh_metrics()

    async def _expire(
        self,
        session: AsyncSession,
        now: float,
        changed: list[DeviceUpdateRow],
        resend: list[DeviceUpdateRow],
    ) -> None:
        result = await session.exec(
            select(DeviceUpdateRow)
            .where(
                col(DeviceUpdateRow.state).in_(ACTIVE_STATES),
                col(DeviceUpdateRow.deadline) < now,
            )
            .order_by(col(DeviceUpdateRow.id))
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        for row in result.all():
            if row.attempts <= row.max_retries:
                row.attempts += 1
                row.deadline = now + row.timeout_s
                resend.append(row)
            else:
                row.state = "failed"
                row.reason = (
                    f"no progress within {row.timeout_s}s after {row.attempts} "
                    f"notification{'s' if row.attempts != 1 else ''}"
                )
                row.deadline = None
                changed.append(row)
            row.updated_at = now
            session.add(row)

    async def _evaluate_rollouts(
        self, session: AsyncSession, now: float, out: list[ota_pb2.Rollout]
    ) -> None:
        result = await session.exec(
            select(RolloutRow)
            .where(RolloutRow.state == "running")
            .order_by(col(RolloutRow.id))
            .with_for_update(skip_locked=True)
        )
        for rollout in result.all():
            if await session.get(RolloutPlanRow, rollout.id) is not None:
                message = await self.plans.evaluate(session, rollout, now)
                if message is not None:
                    out.append(message)
                continue
            counts = await self.rollouts.counts(session, rollout.id)
            total = sum(counts.values())
            failed = counts.get("failed", 0)
            pending = total - sum(counts.get(s, 0) for s in TERMINAL_STATES)
            if failed > rollout.failed_baseline and failed > rollout.error_threshold * total:
                rollout.state = "paused"
                rollout.reason = (
                    f"auto-paused: {failed} of {total} devices failed, "
                    f"above the error threshold {rollout.error_threshold:g}"
                )
            elif pending == 0:
                rollout.state = "completed"
                rollout.reason = ""
            else:
                continue
            rollout.updated_at = now
            session.add(rollout)
            log.info(
                "rollout %s",
                rollout.state,
                extra={"fields": {"rollout_id": rollout.id, "reason": rollout.reason}},
            )
            out.append(rollout_pb(rollout, counts))

    async def _start_queued(
        self, now: float
    ) -> tuple[list[DeviceUpdateRow], list[DeviceUpdateRow]]:
        """Start what may start; returns (started, refused or newly waiting)."""
        u = DeviceUpdateRow.__table__.alias("u")  # type: ignore[attr-defined]
        a = DeviceUpdateRow.__table__.alias("a")  # type: ignore[attr-defined]
        r = RolloutRow.__table__  # type: ignore[attr-defined]
        w = WaveRow.__table__  # type: ignore[attr-defined]
        busy = (
            sa.select(sa.literal(1))
            .select_from(a)
            .where(a.c.device_id == u.c.device_id, a.c.state.in_(ACTIVE_STATES))
        )
        query = (
            sa.select(u.c.id, u.c.device_id, u.c.firmware_id, r.c.allow_downgrade, u.c.rollout_id)
            .select_from(
                u.join(r, r.c.id == u.c.rollout_id).outerjoin(
                    w, sa.and_(w.c.rollout_id == u.c.rollout_id, w.c.index == u.c.wave)
                )
            )
            .where(
                u.c.state == "queued",
                r.c.state == "running",
                ~sa.exists(busy),
                sa.or_(w.c.rollout_id.is_(None), w.c.state == "running"),
            )
            .order_by(u.c.priority_rank.desc(), u.c.created_at, u.c.id)
        )
        started: list[DeviceUpdateRow] = []
        refused: list[DeviceUpdateRow] = []
        async with self.db.session() as session:
            room = await self._room(session)
            if room <= 0:
                return started, refused
            candidates = (await (await session.connection()).execute(query.limit(room))).all()
            devices = await self._devices(session, {str(c[1]) for c in candidates})
            waits = await self.plans.held(
                session, [(str(c[0]), str(c[1]), str(c[4])) for c in candidates], now
            )
            seen: set[str] = set()
            for update_id, device_id, firmware_id, allow_downgrade, _ in candidates:
                if device_id in seen:
                    continue
                if update_id in waits:
                    seen.add(device_id)
                    row = await self._hold(
                        session, str(update_id), Refusal("wait", waits[update_id]), now
                    )
                    if row is not None:
                        refused.append(row)
                    continue
                fw = await self.publisher.catalog.get(str(firmware_id))
                held = refusal(fw, devices.get(device_id), allow_downgrade=bool(allow_downgrade))
                if held is not None:
                    if held.action == "wait":  # its turn stays; nothing else jumps it
                        seen.add(device_id)
                    row = await self._hold(session, str(update_id), held, now)
                    if row is not None:
                        refused.append(row)
                    continue
                seen.add(device_id)
                row = await self._start_one(session, str(update_id), now)
                if row is not None:
                    started.append(row)
        return started, refused

    async def _room(self, session: AsyncSession) -> int:
        """How many updates may start now (``max_active``: a cap on active ones)."""
        if not self.max_active:
            return BATCH
        active = await (await session.connection()).execute(
            sa.select(sa.func.count())
            .select_from(DeviceUpdateRow.__table__)  # type: ignore[attr-defined]
            .where(col(DeviceUpdateRow.state).in_(ACTIVE_STATES))
        )
        return min(BATCH, self.max_active - int(active.scalar() or 0))

    @staticmethod
    async def _devices(session: AsyncSession, device_ids: set[str]) -> dict[str, DeviceRow]:
        found: dict[str, DeviceRow] = {}
        ids = sorted(device_ids)
        for start in range(0, len(ids), 1000):
            rows = await session.exec(
                select(DeviceRow).where(col(DeviceRow.device_id).in_(ids[start : start + 1000]))
            )
            found.update((d.device_id, d) for d in rows.all())
        return found

    @staticmethod
    async def _hold(
        session: AsyncSession, update_id: str, held: Refusal, now: float
    ) -> DeviceUpdateRow | None:
        """Cancel a refused update, or note why it waits; the row when it changed."""
        row = await session.get(DeviceUpdateRow, update_id, with_for_update=True)
        if row is None or row.state != "queued":
            return None
        if held.action == "cancel":
            row.state = "cancelled"
            row.deadline = None
        elif row.reason == held.reason:
            return None
        row.reason = held.reason
        row.updated_at = now
        session.add(row)
        return row

    @staticmethod
    async def _start_one(
        session: AsyncSession, update_id: str, now: float
    ) -> DeviceUpdateRow | None:
        table = DeviceUpdateRow.__table__  # type: ignore[attr-defined]
        try:
            async with session.begin_nested():
                result = await (await session.connection()).execute(
                    sa.update(table)
                    .where(table.c.id == update_id, table.c.state == "queued")
                    .values(
                        state="notified",
                        reason="",
                        attempts=1,
                        deadline=now + table.c.timeout_s,
                        updated_at=now,
                    )
                    .returning(*table.c)
                )
                row = result.mappings().first()
        except IntegrityError:
            # Another replica started an update for this device first.
            return None
        return DeviceUpdateRow.model_validate(dict(row)) if row is not None else None

    async def refresh_metrics(self) -> None:
        """Set the gauges of updates and rollouts by state."""
        async with self.db.connect() as conn:
            updates = dict(
                (
                    await conn.execute(
                        sa.select(col(DeviceUpdateRow.state), sa.func.count()).group_by(
                            col(DeviceUpdateRow.state)
                        )
                    )
                ).all()
            )
            rollouts = dict(
                (
                    await conn.execute(
                        sa.select(col(RolloutRow.state), sa.func.count()).group_by(
                            col(RolloutRow.state)
                        )
                    )
                ).all()
            )
        for state in ("queued", *ACTIVE_STATES, *TERMINAL_STATES):
            UPDATES.labels(state).set(updates.get(state, 0))
        for state in ("running", "paused", "completed", "cancelled"):
            ROLLOUTS.labels(state).set(rollouts.get(state, 0))
