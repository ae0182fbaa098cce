"""The device-command and inventory tables, and the queries the dispatcher runs on them.

A command row is the durable truth of one command: it is ``queued`` until the dispatcher
claims it for an online device (``sent``, with a deadline), then ends ``succeeded``,
``failed``, ``timed_out``, ``expired`` or ``cancelled``. Rows are ordered per device by
``seq`` (a strictly increasing number given at creation), which is the delivery order.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Field, col, func, select

from linewatch.runtime.db import Database
from linewatch.runtime.errors import FailedPrecondition, NotFound
from linewatch_ota.store import Base

__all__ = [
    "COMMAND_STATES",
    "FINAL_COMMAND_STATES",
    "PENDING_COMMAND_STATES",
    "CommandRow",
    "CommandStore",
    "InventoryRow",
    "Outcome",
]

COMMAND_STATES = (
    "queued",
    "sent",
    "succeeded",
    "failed",
    "timed_out",
    "expired",
    "cancelled",
)
PENDING_COMMAND_STATES = ("queued", "sent")
FINAL_COMMAND_STATES = ("succeeded", "failed", "timed_out", "expired", "cancelled")


class CommandRow(Base, table=True):
    """One command to one device."""

    __tablename__ = "ota_commands"
    __table_args__ = (
        sa.Index("ix_ota_commands_device_seq", "device_id", "seq"),
        sa.Index("ix_ota_commands_state_seq", "state", "seq"),
    )

    id: str = Field(primary_key=True, max_length=32)
    device_id: str = Field(max_length=128)
    #: Delivery order (strictly increasing per service; nanoseconds at creation).
    seq: int = Field(sa_type=sa.BigInteger)
    name: str = Field(max_length=128)
    params_json: str = Field(default="{}", sa_type=sa.Text)
    state: str = Field(max_length=16)
    source: str = Field(default="api", max_length=64)
    timeout_s: int
    expires_at: float
    created_at: float
    sent_at: float | None = None
    #: Epoch seconds after which a sent command counts as timed out.
    deadline: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    result_json: str = Field(default="", sa_type=sa.Text)
    error: str = Field(default="", sa_type=sa.Text)


class InventoryRow(Base, table=True):
    """What the inventory knows of one device (written behind the in-memory presence).

    Not ``ota_devices`` (:class:`linewatch_ota.store.InventoryRow`, what the update guard
    reads from OTA requests): the inventory is written behind, the guard's row in the
    request's transaction."""

    __tablename__ = "ota_inventory"

    device_id: str = Field(primary_key=True, max_length=128)
    status: str = Field(default="", max_length=16)
    last_seen: float | None = None
    last_traffic: float | None = None
    firmware_version: str = Field(default="", max_length=64)
    hardware: str = Field(default="", max_length=64)
    points_json: str = Field(default="[]", sa_type=sa.Text)
    attributes_json: str = Field(default="{}", sa_type=sa.Text)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A device's answer to a command."""

    command_id: str
    device_id: str
    ok: bool
    result_json: str
    error: str


class CommandStore:
    """Queries over :class:`CommandRow`; every method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._last_seq = 0

    def _seq(self) -> int:
        self._last_seq = max(self._last_seq + 1, time.time_ns())
        return self._last_seq

    async def create(self, rows: Sequence[CommandRow]) -> list[CommandRow]:
        """Insert new commands (their ``seq`` is set here, in list order)."""
        async with self.db.session() as session:
            for row in rows:
                row.seq = self._seq()
                session.add(row)
        return list(rows)

    async def get(self, command_id: str, device_id: str | None = None) -> CommandRow:
        async with self.db.session() as session:
            row = await session.get(CommandRow, command_id)
        if row is None or (device_id is not None and row.device_id != device_id):
            raise NotFound(f"command {command_id!r} not found")
        return row

    async def list_for_device(
        self, device_id: str, *, state: str | None, offset: int, limit: int
    ) -> list[CommandRow]:
        """A device's commands, newest first."""
        query = select(CommandRow).where(CommandRow.device_id == device_id)
        if state is not None:
            query = query.where(CommandRow.state == state)
        query = query.order_by(col(CommandRow.seq).desc()).offset(offset).limit(limit)
        async with self.db.session() as session:
            return list((await session.exec(query)).all())

    async def pending_counts(self, device_ids: Iterable[str]) -> dict[str, int]:
        """Queued or sent commands per device."""
        ids = list(device_ids)
        if not ids:
            return {}
        query = (
            select(CommandRow.device_id, func.count())
            .where(
                col(CommandRow.device_id).in_(ids),
                col(CommandRow.state).in_(PENDING_COMMAND_STATES),
            )
            .group_by(col(CommandRow.device_id))
        )
        async with self.db.session() as session:
            return {d: int(n) for d, n in (await session.exec(query)).all()}

    async def cancel(self, command_id: str, device_id: str, now: float) -> CommandRow:
        async with self.db.session() as session:
            row = await session.get(CommandRow, command_id, with_for_update=True)
            if row is None or row.device_id != device_id:
                raise NotFound(f"command {command_id!r} not found")
            if row.state not in PENDING_COMMAND_STATES:
                raise FailedPrecondition(f"command {command_id!r} is already {row.state}")
            row.state = "cancelled"
            row.error = "cancelled"
            row.finished_at = now
            row.deadline = None
            session.add(row)
        return row

    async def sweep(self, now: float) -> list[CommandRow]:
        """Queued commands past their expiry → expired; sent past the deadline → timed_out."""
        async with self.db.session() as session:
            expired = (
                await session.exec(
                    select(CommandRow)
                    .where(CommandRow.state == "queued", col(CommandRow.expires_at) <= now)
                    .order_by(col(CommandRow.seq))
                    .limit(5000)
                    .with_for_update()
                )
            ).all()
            late = (
                await session.exec(
                    select(CommandRow)
                    .where(CommandRow.state == "sent", col(CommandRow.deadline) <= now)
                    .order_by(col(CommandRow.seq))
                    .limit(5000)
                    .with_for_update()
                )
            ).all()
            for row in expired:
                row.state = "expired"
                row.error = "not delivered before it expired"
            for row in late:
                row.state = "timed_out"
                row.error = f"no result within {row.timeout_s}s"
            changed = [*expired, *late]
            for row in changed:
                row.finished_at = now
                row.deadline = None
                session.add(row)
        return list(changed)

    async def claim(
        self, online: set[str], max_in_flight: int, now: float, limit: int = 2000
    ) -> list[CommandRow]:
        """Mark the next deliverable commands of online devices ``sent``, in order.

        Per device, at most ``max_in_flight`` are sent at once, oldest first; a device
        whose oldest pending command is sent but unanswered blocks the next ones when the
        bound is reached.
        """
        if not online:
            return []
        async with self.db.session() as session:
            # only online devices' rows (in chunks: IN lists stay short), so commands
            # waiting for offline devices never crowd out those that can go now
            ids = sorted(online)
            rows: list[CommandRow] = []
            for i in range(0, len(ids), 1000):
                rows += (
                    await session.exec(
                        select(CommandRow)
                        .where(
                            col(CommandRow.state).in_(PENDING_COMMAND_STATES),
                            col(CommandRow.device_id).in_(ids[i : i + 1000]),
                        )
                        .order_by(col(CommandRow.seq))
                        .limit(limit * 4)
                        .with_for_update()
                    )
                ).all()
            rows.sort(key=lambda r: r.seq)
            in_flight: dict[str, int] = {}
            for row in rows:
                if row.state == "sent":
                    in_flight[row.device_id] = in_flight.get(row.device_id, 0) + 1
            claimed: list[CommandRow] = []
            for row in rows:
                if row.state != "queued" or row.device_id not in online or row.expires_at <= now:
                    continue
                if in_flight.get(row.device_id, 0) >= max_in_flight:
                    continue
                in_flight[row.device_id] = in_flight.get(row.device_id, 0) + 1
                row.state = "sent"
                row.sent_at = now
                row.deadline = now + row.timeout_s
                row.attempts += 1
                session.add(row)
                claimed.append(row)
                if len(claimed) >= limit:
                    break
        return claimed

    async def unsend(self, command_ids: Sequence[str]) -> None:
        """Commands whose publish failed go back to ``queued`` (delivered again later)."""
        if not command_ids:
            return
        async with self.db.session() as session:
            rows = (
                await session.exec(
                    select(CommandRow)
                    .where(col(CommandRow.id).in_(list(command_ids)), CommandRow.state == "sent")
                    .with_for_update()
                )
            ).all()
            for row in rows:
                row.state = "queued"
                row.sent_at = None
                row.deadline = None
                session.add(row)

    async def finish(self, outcomes: Sequence[Outcome], now: float) -> tuple[list[CommandRow], int]:
        """Apply device answers; returns (changed rows, answers ignored).

        An answer counts only for a ``sent`` command of the device that answers (a device
        may only answer its own commands); duplicates and late answers change nothing.
        """
        if not outcomes:
            return [], 0
        ids = sorted({o.command_id for o in outcomes})
        async with self.db.session() as session:
            rows = {
                r.id: r
                for r in (
                    await session.exec(
                        select(CommandRow).where(col(CommandRow.id).in_(ids)).with_for_update()
                    )
                ).all()
            }
            changed: list[CommandRow] = []
            ignored = 0
            for outcome in outcomes:
                row = rows.get(outcome.command_id)
                if row is None or row.device_id != outcome.device_id or row.state != "sent":
                    ignored += 1
                    continue
                row.state = "succeeded" if outcome.ok else "failed"
                row.result_json = outcome.result_json
                row.error = outcome.error
                row.finished_at = now
                row.deadline = None
                session.add(row)
                changed.append(row)
        return changed, ignored

    # --- inventory ------------------------------------------------------------------

    async def load_devices(self) -> list[InventoryRow]:
        async with self.db.session() as session:
            return list((await session.exec(select(InventoryRow))).all())

    async def save_devices(self, rows: Sequence[InventoryRow]) -> None:
        """Upsert the given devices (merge by primary key)."""
        if not rows:
            return
        async with self.db.session() as session:
            for row in rows:
                await session.merge(row)
