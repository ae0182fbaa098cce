"""The quality gate's regressions as plant alarms in ingest (``RaiseAlarm``/``ClearAlarms``).

The rollout's state says what the alarms should be, so nothing is queued that a restart
could lose: a wave the gate found regressed (its ``gate_json`` has a regressed device)
of a rollout still paused on it (the wave is ``regressed``) should have one critical
``quality_gate`` alarm per regressed device, rule ``rollout/<id>/wave/<n>``; once the
rollout is resumed (the operator accepts the wave), cancelled or completed, none.

:meth:`GateAlarms.sync` (each scheduler tick, outside any transaction) tells ingest what
it has not confirmed yet. Ingest raises an alarm of a kind, rule and device at most once
(a retried or repeated report returns the first), so a report lost to a restart or an
ingest outage is simply sent again, and never raises a second alarm. While ingest does
not answer, the next sync retries.
"""

from __future__ import annotations

import json
import logging
import time

from sqlmodel import col, select

from linewatch.runtime.db import Database
from linewatch.runtime.errors import Unavailable
from linewatch_ota.ingest_client import IngestCounts
from linewatch_ota.plan_store import WaveRow
from linewatch_ota.store import DeviceUpdateRow, RolloutRow

__all__ = ["KIND", "GateAlarms", "alarm_rule"]

log = logging.getLogger(__name__)

KIND = "quality_gate"
#: Seconds between two syncs.
SYNC_EVERY_S = 1.0


def alarm_rule(rollout_id: str, index: int | None = None) -> str:
    """``rollout/<id>/wave/<n>`` (the wave's alarms), ``rollout/<id>`` (all of them)."""
    return f"rollout/{rollout_id}" if index is None else f"rollout/{rollout_id}/wave/{index + 1}"


def _pct(not_ok: int, total: int) -> str:
    return f"{not_ok / total * 100 if total else 0.0:.1f} %"


class GateAlarms:
    """Keeps ingest's ``quality_gate`` alarms in step with the rollouts' gate pauses."""

    def __init__(self, *, db: Database, ingest: IngestCounts) -> None:
        self.db = db
        self.ingest = ingest
        self._done: dict[tuple[str, int], bool] = {}
        """(rollout, wave) → whether its alarms were last confirmed raised (True) or
        cleared (False) by ingest."""
        self._at = 0.0
        self._failing = False

    async def sync(self) -> None:
        """Raise or clear what ingest has not confirmed; retried next time on failure."""
        now = time.time()
        if not self.ingest.configured or now - self._at < SYNC_EVERY_S:
            return
        self._at = now
        async with self.db.session() as session:
            rows = await session.exec(
                select(WaveRow, RolloutRow)
                .join(RolloutRow, col(RolloutRow.id) == col(WaveRow.rollout_id))
                .where(col(WaveRow.gate_json).contains('"regressed": true'))
            )
            due = []
            for wave, rollout in rows.all():
                active = rollout.state == "paused" and wave.state == "regressed"
                if self._done.get((wave.rollout_id, wave.index)) is not active:
                    due.append((wave.rollout_id, wave.index, wave.gate_json, active))
            versions = {}
            for rollout_id in {d[0] for d in due if d[3]}:
                found = await session.exec(
                    select(DeviceUpdateRow.version)
                    .where(DeviceUpdateRow.rollout_id == rollout_id)
                    .limit(1)
                )
                versions[rollout_id] = next(iter(found.all()), "")
        for rollout_id, index, gate_json, active in due:
            try:
                if active:
                    await self._raise(rollout_id, index, gate_json, versions[rollout_id])
                else:
                    await self.ingest.clear_alarms(KIND, alarm_rule(rollout_id, index))
            except Unavailable as exc:
                if not self._failing:  # once per outage, not once a second
                    log.warning(
                        "quality gate alarm not sent yet (retried)",
                        extra={"fields": {"rollout_id": rollout_id, "error": str(exc)}},
                    )
                self._failing = True
                return
            self._failing = False
            self._done[(rollout_id, index)] = active

    async def _raise(self, rollout_id: str, index: int, gate_json: str, version: str) -> None:
        for result in json.loads(gate_json):
            if not result.get("regressed"):
                continue
            device = str(result["device_id"])
            before = _pct(int(result["before_not_ok"]), int(result["before_total"]))
            after = _pct(int(result["after_not_ok"]), int(result["after_total"]))
            message = (
                f"quality gate paused rollout {rollout_id} at wave {index + 1}: "
                f"{device}: {before} → {after} not ok after {version}"
            )
            await self.ingest.raise_alarm(
                kind=KIND,
                rule=alarm_rule(rollout_id, index),
                device_id=device,
                severity="critical",
                message=message,
                count=int(result["after_not_ok"]),
            )
