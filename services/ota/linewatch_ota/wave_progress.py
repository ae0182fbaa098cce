"""How planned rollouts move: waves, soak, per-wave thresholds, the quality gate, windows.

Each tick the scheduler asks :class:`WavePlans` to

- :meth:`evaluate` a running rollout with a plan (in the scheduler's transaction): pause it
  when the open wave's failed share exceeds the wave's threshold; when every update of the
  wave is terminal, start the wave's soak; after the soak, gate it (or pass it when the
  rollout has no gate); a passed wave opens the next, the last completes the rollout;
- :meth:`run_gates` outside any transaction: ask ingest for each succeeded device's last N
  cycles before its update and next N after, judge them (:mod:`linewatch_ota.gate`) and
  pause the rollout on a regression with the reason, or pass the wave (the regression
  becomes an alarm in ingest: :mod:`linewatch_ota.gate_alarms`). While devices have
  not made N cycles yet, the gate waits (up to ``max_wait_s`` past the soak, then judges
  what there is); while ingest does not answer it waits and retries — it never passes
  without numbers;
- :meth:`startable` which queued candidates may start now: their wave is open, the
  rollout's start time and maintenance windows allow it, and, with an idle rule, ingest
  saw no cycle of the device (or of any device of its line) for ``idle_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict

from prometheus_client import Counter
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from linewatch.runtime.db import Database
from linewatch.runtime.errors import Unavailable
from linewatch.v1 import ota_pb2
from linewatch_ota.convert import rollout_pb
from linewatch_ota.gate import Gate, Judgement, judge, reason
from linewatch_ota.gate_alarms import GateAlarms
from linewatch_ota.ingest_client import IngestCounts
from linewatch_ota.inventory import Inventory
from linewatch_ota.plan_convert import add_plan, load_plan, wave_counts
from linewatch_ota.plan_store import RolloutPlanRow, WaveRow
from linewatch_ota.schedule import Schedule
from linewatch_ota.store import TERMINAL_STATES, DeviceUpdateRow, RolloutRow

__all__ = ["WavePlans"]

log = logging.getLogger(__name__)

GATE_REGRESSIONS = Counter(
    "linewatch_ota_gate_regressions_total",
    "Rollouts paused by the quality gate (a device's not-ok rate rose after the update)",
)
#: How often a waiting gate asks ingest again, per rollout.
GATE_POLL_S = 1.0


class WavePlans:
    """The plan side of the scheduler."""

    def __init__(self, *, db: Database, ingest: IngestCounts, inventory: Inventory | None) -> None:
        self.db = db
        self.ingest = ingest
        self.inventory = inventory
        self.alarms = GateAlarms(db=db, ingest=ingest)
        self._asked: dict[str, float] = {}

    async def evaluate(
        self, session: AsyncSession, rollout: RolloutRow, now: float
    ) -> ota_pb2.Rollout | None:
        """Move one running planned rollout along; its message when it changed."""
        loaded = await load_plan(session, rollout.id)
        if loaded is None:
            return None
        plan, waves = loaded
        counts = await wave_counts(session, rollout.id)
        before = (rollout.state, rollout.reason, [(w.state, w.installed_at) for w in waves])
        wave = waves[plan.current_wave]
        mine = counts.get(wave.index, {})
        failed = mine.get("failed", 0)
        pending = sum(mine.values()) - sum(mine.get(s, 0) for s in TERMINAL_STATES)
        if wave.state == "regressed":  # resumed after a gate pause: the operator accepts it
            self._advance(rollout, plan, waves, now)
        elif wave.state == "running":
            if failed > wave.failed_baseline and failed > wave.error_threshold * wave.size:
                rollout.state = "paused"
                rollout.reason = (
                    f"auto-paused: wave {wave.index + 1}: {failed} of {wave.size} devices "
                    f"failed, above its error threshold {wave.error_threshold:g}"
                )
            elif pending == 0:
                wave.state = "soaking"
                wave.installed_at = now
                session.add(wave)
            else:
                why = Schedule.from_json(json.loads(plan.schedule_json)).why_not_now(now)
                rollout.reason = why
        if wave.state == "soaking" and now >= (wave.installed_at or now) + wave.soak_s:
            gate = Gate(**json.loads(plan.gate_json))
            if gate.cycles and wave.size:
                wave.state = "gating"
                session.add(wave)
            else:
                self._advance(rollout, plan, waves, now)
        elif wave.state == "soaking":
            rollout.reason = f"wave {wave.index + 1} soaking for {wave.soak_s}s"
        after = (rollout.state, rollout.reason, [(w.state, w.installed_at) for w in waves])
        if before == after:
            return None
        rollout.updated_at = now
        session.add(rollout)
        session.add(plan)
        for w in waves:
            session.add(w)
        message = rollout_pb(rollout, _total(counts))
        add_plan(message, plan, waves, counts)
        return message

    @staticmethod
    def _advance(
        rollout: RolloutRow, plan: RolloutPlanRow, waves: list[WaveRow], now: float
    ) -> None:
        waves[plan.current_wave].state = "passed"
        if plan.current_wave + 1 < len(waves):
            plan.current_wave += 1
            nxt = waves[plan.current_wave]
            nxt.state = "running"
            nxt.started_at = now
            rollout.reason = ""
        else:
            rollout.state = "completed"
            rollout.reason = ""
        log.info(
            "rollout wave passed",
            extra={"fields": {"rollout_id": rollout.id, "wave": plan.current_wave}},
        )

    async def run_gates(self, write_lock: asyncio.Lock) -> list[ota_pb2.Rollout]:
        """Judge every wave waiting in ``gating``; the rollouts that changed."""
        async with self.db.session() as session:
            rows = await session.exec(
                select(WaveRow, RolloutRow)
                .join(RolloutRow, col(RolloutRow.id) == col(WaveRow.rollout_id))
                .where(WaveRow.state == "gating", RolloutRow.state == "running")
            )
            due = [(w.rollout_id, w.index) for w, _ in rows.all()]
        out: list[ota_pb2.Rollout] = []
        for rollout_id, index in due:
            now = time.time()
            if now - self._asked.get(rollout_id, 0.0) < GATE_POLL_S:
                continue
            self._asked[rollout_id] = now
            message = await self._gate(rollout_id, index, write_lock)
            if message is not None:
                out.append(message)
        return out

    async def _gate(
        self, rollout_id: str, index: int, write_lock: asyncio.Lock
    ) -> ota_pb2.Rollout | None:
        async with self.db.session() as session:
            plan = await session.get(RolloutPlanRow, rollout_id)
            wave = await session.get(WaveRow, (rollout_id, index))
            if plan is None or wave is None:
                return None
            updates = await session.exec(
                select(DeviceUpdateRow).where(
                    DeviceUpdateRow.rollout_id == rollout_id,
                    DeviceUpdateRow.wave == index,
                    DeviceUpdateRow.state == "succeeded",
                )
            )
            arounds = {u.device_id: u.updated_at for u in updates.all()}
            version = next(iter(await _versions(session, rollout_id)), "")
        gate = Gate(**json.loads(plan.gate_json))
        note = ""
        judgements: list[Judgement] = []
        try:
            answers = await self.ingest.around(arounds, gate.cycles) if arounds else {}
        except Unavailable as exc:
            note = f"quality gate waiting: {exc}"
        else:
            short = [
                d for d in arounds if answers.get(d) is None or answers[d].after[0] < gate.cycles
            ]
            waited = time.time() - ((wave.installed_at or 0.0) + wave.soak_s)
            if short and waited < gate.max_wait_s:
                note = (
                    f"quality gate waiting for {gate.cycles} cycles after the update "
                    f"on {len(short)} of {len(arounds)} devices"
                )
            else:
                for device, counts in sorted(answers.items()):
                    judgements.append(judge(gate, device, counts.before, counts.after))
        return await self._apply(
            rollout_id,
            index=index,
            note=note,
            judgements=judgements,
            version=version,
            write_lock=write_lock,
        )

    async def _apply(
        self,
        rollout_id: str,
        *,
        index: int,
        note: str,
        judgements: list[Judgement],
        version: str,
        write_lock: asyncio.Lock,
    ) -> ota_pb2.Rollout | None:
        now = time.time()
        async with write_lock, self.db.session() as session:
            rollout = await session.get(RolloutRow, rollout_id, with_for_update=True)
            loaded = await load_plan(session, rollout_id)
            if rollout is None or loaded is None or rollout.state != "running":
                return None
            plan, waves = loaded
            wave = waves[index]
            if wave.state != "gating":
                return None
            if note:
                if rollout.reason == note:
                    return None
                rollout.reason = note
            else:
                wave.gate_json = json.dumps([_result(j) for j in judgements])
                worse = [j for j in judgements if j.regressed]
                if worse:
                    worse.sort(key=lambda j: j.after_rate - j.before_rate, reverse=True)
                    more = f" (and {len(worse) - 1} more)" if len(worse) > 1 else ""
                    wave.state = "regressed"
                    rollout.state = "paused"
                    rollout.reason = f"quality gate: {reason(worse[0], version)}{more}"
                    GATE_REGRESSIONS.inc()
                    log.warning(
                        "rollout paused by the quality gate",
                        extra={"fields": {"rollout_id": rollout_id, "reason": rollout.reason}},
                    )
                else:
                    self._advance(rollout, plan, waves, now)
            rollout.updated_at = now
            session.add(rollout)
            session.add(plan)
            for w in waves:
                session.add(w)
            counts = await wave_counts(session, rollout_id)
            message = rollout_pb(rollout, _total(counts))
            add_plan(message, plan, waves, counts)
        return message

    async def held(
        self, session: AsyncSession, candidates: list[tuple[str, str, str]], now: float
    ) -> dict[str, str]:
        """Which of the queued ``(update id, device id, rollout id)`` candidates must wait
        now, and why (start time, maintenance windows, machine not idle)."""
        schedules: dict[str, Schedule] = {}
        for rollout_id in {c[2] for c in candidates}:
            plan = await session.get(RolloutPlanRow, rollout_id)
            if plan is not None:
                schedules[rollout_id] = Schedule.from_json(json.loads(plan.schedule_json))
        out: dict[str, str] = {}
        idle_rules: dict[str, list[tuple[str, str]]] = {}
        for update_id, device_id, rollout_id in candidates:
            schedule = schedules.get(rollout_id)
            if schedule is None:
                continue
            why = schedule.why_not_now(now)
            if why:
                out[update_id] = why
            elif schedule.idle_s:
                idle_rules.setdefault(rollout_id, []).append((update_id, device_id))
        for rollout_id, items in idle_rules.items():
            out.update(await self._not_idle(schedules[rollout_id], items, now))
        return out

    def _peers(self, device_id: str, line_idle: bool) -> list[str]:
        if not line_idle or self.inventory is None:
            return [device_id]
        try:
            line = self.inventory.get(device_id).attributes.get("line", "")
        except Exception:
            return [device_id]
        if not line:
            return [device_id]
        return self.inventory.matching(lambda s: s.attributes.get("line", "") == line)

    async def _not_idle(
        self, schedule: Schedule, items: list[tuple[str, str]], now: float
    ) -> dict[str, str]:
        peers = {d: self._peers(d, schedule.line_idle) for _, d in items}
        every = sorted({p for ps in peers.values() for p in ps})
        try:
            counts = await self.ingest.window(every, now - schedule.idle_s, now + 1.0)
        except Unavailable as exc:
            return {u: f"waiting to judge idleness: {exc}" for u, _ in items}
        what = "its line" if schedule.line_idle else "the machine"
        out: dict[str, str] = {}
        for update_id, device_id in items:
            if any(counts.get(p) is not None and counts[p].window[0] > 0 for p in peers[device_id]):
                out[update_id] = f"waiting for {what} to be idle for {schedule.idle_s}s"
        return out


def _total(counts: dict[int, dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for by_state in counts.values():
        for state, n in by_state.items():
            out[state] = out.get(state, 0) + n
    return out


def _result(j: Judgement) -> dict[str, object]:
    d = asdict(j)
    return {k: d[k] for k in ota_pb2.GateResult.DESCRIPTOR.fields_by_name}


async def _versions(session: AsyncSession, rollout_id: str) -> list[str]:
    rows = await session.exec(
        select(DeviceUpdateRow.version).where(DeviceUpdateRow.rollout_id == rollout_id).limit(1)
    )
    return list(rows.all())
