"""Several ingest replicas on one PostgreSQL database and one broker.

With ``replicas`` > 1 (PostgreSQL only, the configuration refuses SQLite):

- **Slot**: the replica claims one of ``replicas`` slots (:class:`~linewatch.runtime.claims.
  SlotClaim`) before it consumes; its MQTT client ids are ``<client_id>-r<slot>-<rule>``,
  so a replacement of a killed replica resumes its persistent sessions (the broker keeps
  queueing a shared subscription's share to a disconnected member). Losing the slot's
  database connection stops every rule until the slot is claimed again.
- **Envelope rules** are consumed by the slot-0 replica alone, on one session (teach-in
  needs a device's cycles in order); the others take them over when they hold slot 0.
- **Rule changes**: a trigger on ``ingest_rule`` sends the rule's name on
  :data:`CHANNEL` for every insert, update and delete (whoever made it: a replica or SQL
  in the database); every replica listens and applies the stored rule
  (:meth:`IngestController.apply_stored`); after a reconnect it reads every rule again.
  An envelope reset is sent as ``reset:<rule>:<device>:<point>`` to the slot-0 replica;
  ``pause:<rule>`` / ``resume:<rule>`` to all (pausing is not stored: a replica started
  later runs the rule). Start/stop of every rule and the worker count act on the replica
  that answers.
- **Status**: every replica writes its per-rule counters to ``ingest_replica_status``
  each ``status_interval_s``; ``GetIngestStatus`` sums the replicas seen in the last
  :data:`FRESH_S` seconds and lists each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field

from linewatch.runtime.claims import SlotClaim, lock_key
from linewatch.runtime.db import Database
from linewatch.runtime.errors import NotFound
from linewatch.runtime.notify import Listener, notify
from linewatch.v1 import ingest_pb2
from linewatch_ingest.store import Base, now_ms

__all__ = ["CHANNEL", "FRESH_S", "ReplicaStatusRow", "Replicas", "create_rule_trigger"]

log = logging.getLogger(__name__)

CHANNEL = "linewatch_ingest_rules"
FRESH_S = 10.0
"""A replica whose status row is older than this is left out of the totals."""


class ReplicaStatusRow(Base, table=True):
    """One replica's counters of one rule (written periodically by that replica)."""

    __tablename__ = "ingest_replica_status"
    replica: str = Field(primary_key=True, max_length=100)
    rule: str = Field(primary_key=True, max_length=100)
    host: str = Field(max_length=200)
    state: int
    received: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    verdicts: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    dead_letters: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    duplicates: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    messages_per_s: float
    verdicts_per_s: float
    updated_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


_TRIGGER = [
    """CREATE OR REPLACE FUNCTION linewatch_ingest_rule_notify() RETURNS trigger AS $$
    BEGIN
      PERFORM pg_notify('linewatch_ingest_rules', COALESCE(NEW.name, OLD.name));
      RETURN NULL;
    END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS linewatch_ingest_rule_notify ON ingest_rule",
    """CREATE TRIGGER linewatch_ingest_rule_notify AFTER INSERT OR UPDATE OR DELETE
    ON ingest_rule FOR EACH ROW EXECUTE FUNCTION linewatch_ingest_rule_notify()""",
]


async def create_rule_trigger(db: Database) -> None:
    """The rule-change trigger and the status table (PostgreSQL; replicas may race)."""
    table: sa.Table = ReplicaStatusRow.__table__  # type: ignore[attr-defined]
    async with db.connect() as conn:
        await conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("ingest-schema")}
        )  # replicas starting together
        await conn.run_sync(Base.metadata.create_all, tables=[table])
        for stmt in _TRIGGER:
            await conn.execute(sa.text(stmt))


class Replicas:
    """The slot, the rule-change listener and the status writer of one replica."""

    def __init__(self, controller: Any, db: Database, *, replicas: int, interval_s: float):
        self.controller = controller
        self.db = db
        self.replicas = replicas
        self.interval_s = interval_s
        self.host = socket.gethostname()
        self.claim = SlotClaim(db, "linewatch-ingest", replicas, on_lost=self._lost)
        self.listener = Listener(db, CHANNEL, self._notice, on_reconnect=self._resync)
        self._tasks: list[asyncio.Task[None]] = []
        self._table: sa.Table = ReplicaStatusRow.__table__  # type: ignore[attr-defined]

    @property
    def name(self) -> str:
        """This replica's name in the status (``r<slot>``)."""
        return f"r{self.claim.slot}"

    async def prepare(self) -> None:
        """Create the trigger and the status table."""
        await create_rule_trigger(self.db)

    async def start(self) -> None:
        """Claim a slot (waiting as a standby while all are held), then consume."""
        slot = await self.claim.acquire()
        self.controller.slot = slot
        self.listener.start()
        await self.controller.start()
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._write_status(), name="replica-status"))

    async def close(self) -> None:
        """Stop listening and writing; give the slot up (after the rules stopped)."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.listener.close()
        await self.claim.release()

    async def _lost(self) -> None:
        """The slot's connection broke: stop consuming as that slot, claim one again."""
        await self.controller.stop(grace=0)
        self._tasks.append(asyncio.create_task(self.start(), name="replica-reclaim"))

    async def _resync(self) -> None:
        await self.controller.resync()

    async def _notice(self, payload: str) -> None:
        action, colon, rule = payload.partition(":")  # rule names have no ':'
        if colon and action in ("pause", "resume"):
            with contextlib.suppress(NotFound):  # a rule this replica does not know yet
                getattr(self.controller, action)(rule)
            return
        if payload.startswith("reset:"):
            _, rule, device_id, point = payload.split(":", 3)
            await self.controller.reset_local(rule, device_id, point)
            return
        await self.controller.apply_stored(payload)

    async def send(self, payload: str) -> None:
        """A notice to every replica (this one included)."""
        await notify(self.db, CHANNEL, payload)

    async def send_reset(self, rule: str, device_id: str, point: str) -> None:
        """Tell the replica consuming an envelope rule that its bands were reset."""
        await notify(self.db, CHANNEL, f"reset:{rule}:{device_id}:{point}")

    # --- status ------------------------------------------------------------------------

    async def _write_status(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.write_status()
            except Exception as exc:
                log.warning("replica status not written: %r", exc)

    async def write_status(self) -> None:
        """Write this replica's counters of every rule it runs."""
        if self.claim.slot is None:
            return
        rows = [
            {
                "replica": self.name,
                "rule": s.name,
                "host": self.host,
                "state": int(s.state),
                "received": s.received,
                "verdicts": s.verdicts,
                "dead_letters": s.dead_letters,
                "duplicates": s.duplicates,
                "messages_per_s": s.messages_per_s,
                "verdicts_per_s": s.verdicts_per_s,
                "updated_at_ms": now_ms(),
            }
            for s in self.controller.local_status().rules
        ]
        if not rows:
            return
        t = self._table
        insert = postgresql.insert(t)
        stmt = insert.on_conflict_do_update(
            index_elements=[t.c.replica, t.c.rule],
            set_={c: insert.excluded[c] for c in rows[0] if c not in ("replica", "rule")},
        )
        async with self.db.connect() as conn:
            await conn.execute(stmt, rows)

    async def aggregate(
        self, local: ingest_pb2.GetIngestStatusResponse
    ) -> ingest_pb2.GetIngestStatusResponse:
        """Totals of every fresh replica (this one's own figures live) and each replica."""
        await self.write_status()
        t = self._table
        since = now_ms() - int(FRESH_S * 1000)
        async with self.db.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(t).where(t.c.updated_at_ms >= since).order_by(t.c.replica)
                )
            ).all()
        by_rule: dict[str, list[Any]] = {}
        for row in rows:
            by_rule.setdefault(row.rule, []).append(row)
        out = ingest_pb2.GetIngestStatusResponse()
        out.CopyFrom(local)
        out.replica = self.name
        for status in out.rules:
            seen = by_rule.get(status.name, [])
            for row in seen:
                status.replicas.append(
                    ingest_pb2.ReplicaRuleStatus(
                        replica=row.replica,
                        host=row.host,
                        state=ingest_pb2.WorkerState.ValueType(row.state),
                        received=row.received,
                        verdicts=row.verdicts,
                        dead_letters=row.dead_letters,
                        duplicates=row.duplicates,
                        messages_per_s=row.messages_per_s,
                        verdicts_per_s=row.verdicts_per_s,
                    )
                )
            if seen:
                status.received = sum(r.received for r in seen)
                status.verdicts = sum(r.verdicts for r in seen)
                status.dead_letters = sum(r.dead_letters for r in seen)
                status.duplicates = sum(r.duplicates for r in seen)
                status.messages_per_s = sum(r.messages_per_s for r in seen)
                status.verdicts_per_s = sum(r.verdicts_per_s for r in seen)
        return out
