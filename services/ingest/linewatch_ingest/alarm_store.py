"""The alarm lifecycle's queries: raise with kind and severity, acknowledge, escalate, and
find the alarms other services raised (by kind, rule and device).

Acknowledging is one conditional ``UPDATE … WHERE acked_at_ms IS NULL``, so two people
acknowledging at once cannot both succeed; the second is told who was first.
"""

from __future__ import annotations

import sqlalchemy as sa

from linewatch.runtime.db import Database
from linewatch.runtime.errors import FailedPrecondition, NotFound
from linewatch_ingest.store import AlarmRow, now_ms

__all__ = ["AlarmStore"]

_TABLE: sa.Table = AlarmRow.__table__  # type: ignore[attr-defined]


class AlarmStore:
    """Alarm rows beyond what :class:`~linewatch_ingest.store.IngestStore` offers."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def raise_alarm(
        self, *, kind: str, rule: str, device_id: str, severity: str, message: str, count: int
    ) -> int:
        """Record a new active alarm; returns its id."""
        async with self.db.connect() as conn:
            result = await conn.execute(
                sa.insert(_TABLE)
                .values(
                    rule=rule,
                    device_id=device_id,
                    kind=kind,
                    severity=severity,
                    state="active",
                    message=message,
                    count=count,
                    raised_at_ms=now_ms(),
                    delivery="pending",
                    commands="",
                    acked_by="",
                    ack_note="",
                )
                .returning(_TABLE.c.id)
            )
            return int(result.scalar_one())

    async def acknowledge(self, alarm_id: int, *, by: str, note: str) -> None:
        """Record who acknowledged an alarm, when, and their note.

        Raises:
            NotFound: no such alarm.
            FailedPrecondition: it was acknowledged before (by whom is in the message).
        """
        async with self.db.connect() as conn:
            done = await conn.execute(
                sa.update(_TABLE)
                .where(_TABLE.c.id == alarm_id, _TABLE.c.acked_at_ms.is_(None))
                .values(acked_at_ms=now_ms(), acked_by=by, ack_note=note)
            )
            if done.rowcount == 1:
                return
            row = (
                await conn.execute(sa.select(_TABLE.c.acked_by).where(_TABLE.c.id == alarm_id))
            ).first()
        if row is None:
            raise NotFound(f"no alarm {alarm_id}")
        raise FailedPrecondition(f"alarm {alarm_id} was already acknowledged by {row[0]}")

    async def mark_escalated(self, alarm_id: int) -> None:
        """Record that an alarm's escalation went out (it never goes twice)."""
        async with self.db.connect() as conn:
            await conn.execute(
                sa.update(_TABLE).where(_TABLE.c.id == alarm_id).values(escalated_at_ms=now_ms())
            )

    async def latest(self, *, kind: str, rule: str, device_id: str) -> int | None:
        """The id of the newest alarm of ``kind``, ``rule`` and device (any state)."""
        async with self.db.connect() as conn:
            found = await conn.execute(
                sa.select(_TABLE.c.id)
                .where(
                    _TABLE.c.kind == kind,
                    _TABLE.c.rule == rule,
                    _TABLE.c.device_id == device_id,
                )
                .order_by(_TABLE.c.id.desc())
                .limit(1)
            )
            return found.scalar_one_or_none()

    async def active_under(self, *, kind: str, rule: str, device_id: str) -> list[int]:
        """Ids of the active alarms of ``kind`` whose rule is ``rule`` or ``rule/…``
        (of ``device_id`` only when given)."""
        under = rule.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
        query = sa.select(_TABLE.c.id).where(
            _TABLE.c.kind == kind,
            _TABLE.c.state == "active",
            sa.or_(_TABLE.c.rule == rule, _TABLE.c.rule.like(under, escape="\\")),
        )
        if device_id:
            query = query.where(_TABLE.c.device_id == device_id)
        async with self.db.connect() as conn:
            return [int(i) for i in (await conn.execute(query)).scalars()]
