"""Rollout plans: rows made from a request, their protobuf view, per-wave counts."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from linewatch.v1 import ota_pb2
from linewatch_ota.gate import Gate
from linewatch_ota.plan_store import RolloutPlanRow, WaveRow
from linewatch_ota.schedule import MaintenanceWindow, Schedule
from linewatch_ota.store import DeviceUpdateRow
from linewatch_ota.waves import Wave

if TYPE_CHECKING:
    from linewatch_ota.rollouts import RolloutSpec

__all__ = [
    "GATE_METHOD_FROM_PB",
    "add_plan",
    "attach_plan",
    "gate_from_pb",
    "new_plan",
    "rebase_waves",
    "schedule_from_pb",
    "wave_counts",
    "waves_from_pb",
]

GATE_METHOD_FROM_PB = {
    ota_pb2.GATE_METHOD_UNSPECIFIED: "z_test",
    ota_pb2.GATE_METHOD_Z_TEST: "z_test",
    ota_pb2.GATE_METHOD_BETA_BINOMIAL: "beta_binomial",
}
_GATE_METHOD_TO_PB = {"z_test": ota_pb2.GATE_METHOD_Z_TEST, "beta_binomial": 2}


def waves_from_pb(waves: Any) -> list[Wave]:
    return [
        Wave(
            count=w.count,
            percent=w.percent,
            error_threshold=w.error_threshold if w.HasField("error_threshold") else None,
            soak_s=w.soak_s,
        )
        for w in waves
    ]


def gate_from_pb(gate: ota_pb2.QualityGate) -> Gate:
    return Gate(
        cycles=gate.cycles,
        confidence=gate.confidence or 0.95,
        method=GATE_METHOD_FROM_PB.get(gate.method, "?"),
        max_wait_s=gate.max_wait_s or 600,
    )


def schedule_from_pb(pb: ota_pb2.Schedule) -> Schedule:
    return Schedule(
        start_at=pb.start_at.ToNanoseconds() / 1e9 if pb.HasField("start_at") else None,
        time_zone=pb.time_zone,
        windows=tuple(
            MaintenanceWindow(tuple(w.weekdays), w.start_minute, w.end_minute) for w in pb.windows
        ),
        idle_s=pb.idle_s,
        line_idle=pb.line_idle,
    )


def new_plan(
    rollout_id: str, spec: RolloutSpec, waves: list[list[str]], skipped: set[str], now: float
) -> tuple[RolloutPlanRow, list[WaveRow]]:
    """The plan row and one row per wave (the first running)."""
    asked = spec.waves or [Wave()]
    plan = RolloutPlanRow(
        rollout_id=rollout_id,
        gate_json=json.dumps(dataclasses.asdict(spec.gate)),
        schedule_json=json.dumps(spec.schedule.to_json()),
        skipped_json=json.dumps(sorted(skipped)),
        current_wave=0,
    )
    rows = [
        WaveRow(
            rollout_id=rollout_id,
            index=i,
            size=len(devices),
            error_threshold=_threshold(asked[i].error_threshold, spec.error_threshold),
            soak_s=asked[i].soak_s,
            state="running" if i == 0 else "pending",
            started_at=now if i == 0 else None,
        )
        for i, devices in enumerate(waves)
    ]
    return plan, rows


def _threshold(wave: float | None, rollout: float) -> float:
    return rollout if wave is None else wave


def _nanos(t: float | None) -> int:
    return int((t or 0.0) * 1e9)


def add_plan(
    msg: ota_pb2.Rollout,
    plan: RolloutPlanRow,
    waves: list[WaveRow],
    counts: dict[int, dict[str, int]],
) -> None:
    """Fill the plan's fields of a Rollout message."""
    gate = Gate(**json.loads(plan.gate_json))
    schedule = Schedule.from_json(json.loads(plan.schedule_json))
    msg.skipped.extend(json.loads(plan.skipped_json))
    msg.current_wave = plan.current_wave
    msg.gate.CopyFrom(
        ota_pb2.QualityGate(
            cycles=gate.cycles,
            confidence=gate.confidence,
            method=_GATE_METHOD_TO_PB.get(gate.method, 0),  # type: ignore[arg-type]
            max_wait_s=gate.max_wait_s,
        )
    )
    sched = ota_pb2.Schedule(
        time_zone=schedule.time_zone, idle_s=schedule.idle_s, line_idle=schedule.line_idle
    )
    if schedule.start_at is not None:
        sched.start_at.FromNanoseconds(_nanos(schedule.start_at))
    for w in schedule.windows:
        sched.windows.add(weekdays=w.weekdays, start_minute=w.start_minute, end_minute=w.end_minute)
    msg.schedule.CopyFrom(sched)
    for row in waves:
        status = msg.waves.add(
            index=row.index,
            size=row.size,
            state=row.state,
            error_threshold=row.error_threshold,
            soak_s=row.soak_s,
            counts=counts.get(row.index, {}),
        )
        if row.started_at is not None:
            status.started_at.FromNanoseconds(_nanos(row.started_at))
        if row.installed_at is not None:
            status.installed_at.FromNanoseconds(_nanos(row.installed_at))
        for result in json.loads(row.gate_json):
            status.gate.add(**result)


async def wave_counts(session: AsyncSession, rollout_id: str) -> dict[int, dict[str, int]]:
    """Devices per update state within each wave of a rollout."""
    result = await (await session.connection()).execute(
        sa.select(col(DeviceUpdateRow.wave), col(DeviceUpdateRow.state), sa.func.count())
        .where(col(DeviceUpdateRow.rollout_id) == rollout_id)
        .group_by(col(DeviceUpdateRow.wave), col(DeviceUpdateRow.state))
    )
    out: dict[int, dict[str, int]] = {}
    for wave, state, n in result.all():
        out.setdefault(int(wave), {})[str(state)] = int(n)
    return out


async def load_plan(
    session: AsyncSession, rollout_id: str
) -> tuple[RolloutPlanRow, list[WaveRow]] | None:
    plan = await session.get(RolloutPlanRow, rollout_id)
    if plan is None:
        return None
    rows = await session.exec(
        select(WaveRow).where(WaveRow.rollout_id == rollout_id).order_by(col(WaveRow.index))
    )
    return plan, list(rows.all())


async def attach_plan(session: AsyncSession, msg: ota_pb2.Rollout) -> None:
    """Add the rollout's plan, if it has one, to ``msg``."""
    loaded = await load_plan(session, msg.id)
    if loaded is not None:
        add_plan(msg, loaded[0], loaded[1], await wave_counts(session, msg.id))


async def rebase_waves(session: AsyncSession, rollout_id: str) -> None:
    """On resume: only failures from now count against each wave's threshold."""
    counts = await wave_counts(session, rollout_id)
    loaded = await load_plan(session, rollout_id)
    if loaded is None:
        return
    for row in loaded[1]:
        row.failed_baseline = counts.get(row.index, {}).get("failed", 0)
        session.add(row)
