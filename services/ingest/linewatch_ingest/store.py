"""The ingest tables (own SQLModel registry) and every query ingest runs.

Tables: ``ingest_rule`` (rules changed at run time), ``ingest_telemetry`` and
``ingest_verdict`` (the archive; ``(rule, msg_id, device_id, ts_ms)`` is unique, which is
also what makes a redelivered message recognisable after a restart: a redelivery has the
device, msg_id and ts of one handled before), ``ingest_deadletter`` and
``ingest_alarm``. Archive rows are written many at a time in one transaction
(SQLAlchemy's multi-row ``INSERT … VALUES`` batches on both databases, with
``ON CONFLICT DO NOTHING`` so a replayed batch is harmless). Only parameterised SQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import Field, SQLModel, col, select

from linewatch.runtime.db import Database, service_registry
from linewatch.runtime.errors import AlreadyExists, InvalidArgument, NotFound
from linewatch_ingest.config import RuleConfig

__all__ = [
    "TELEMETRY_COLUMNS",
    "VERDICT_COLUMNS",
    "AlarmRow",
    "Base",
    "DeadLetterRow",
    "IngestStore",
    "Page",
    "Query",
    "RuleRow",
    "TelemetryRow",
    "VerdictRow",
]

TELEMETRY_COLUMNS = ("rule", "msg_id", "device_id", "point", "ts_ms", "topic", "samples", "attrs")
"""Column order of the telemetry rows :meth:`IngestStore.archive` takes."""
VERDICT_COLUMNS = (
    "rule", "msg_id", "device_id", "point", "ts_ms", "model", "model_version", "label", "ok",
    "scores", "latency_ms", "trace_id", "topic", "attrs",
)  # fmt: skip
"""Column order of the verdict rows :meth:`IngestStore.archive` takes."""

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id_column() -> Any:
    return Field(default=None, sa_column=sa.Column(_ID, primary_key=True, autoincrement=True))


def _text_column(default: str) -> Any:
    # a server default, so the column can be added to a table that has rows
    return Field(
        default=default,
        sa_column=sa.Column(sa.String, nullable=False, server_default=default),
    )


class Base(SQLModel, registry=service_registry()):
    """Base of the ingest tables."""


class RuleRow(Base, table=True):
    """A rule, as JSON of :class:`RuleConfig`."""

    __tablename__ = "ingest_rule"
    name: str = Field(primary_key=True, max_length=100)
    spec: str
    updated_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class TelemetryRow(Base, table=True):
    """One archived curve (PostgreSQL: partitioned by day on ts_ms, key (id, ts_ms))."""

    __tablename__ = "ingest_telemetry"
    __table_args__ = (
        sa.Index("uq_ingest_telemetry_key", "rule", "msg_id", "device_id", "ts_ms", unique=True),
        sa.Index("ix_ingest_telemetry_device_ts", "device_id", "ts_ms"),
        sa.Index("ix_ingest_telemetry_ts", "ts_ms"),
    )
    id: int | None = _id_column()
    rule: str
    msg_id: str
    device_id: str
    point: str
    ts_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    topic: str
    samples: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    attrs: str = "{}"


class VerdictRow(Base, table=True):
    """One archived verdict (PostgreSQL: partitioned by day on ts_ms, key (id, ts_ms))."""

    __tablename__ = "ingest_verdict"
    __table_args__ = (
        sa.Index("uq_ingest_verdict_key", "rule", "msg_id", "device_id", "ts_ms", unique=True),
        sa.Index("ix_ingest_verdict_device_ts", "device_id", "ts_ms"),
        sa.Index("ix_ingest_verdict_ts", "ts_ms"),
    )
    id: int | None = _id_column()
    rule: str
    msg_id: str
    device_id: str
    point: str
    ts_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    model: str
    model_version: str
    label: str
    ok: bool
    scores: str
    latency_ms: float
    trace_id: str
    topic: str
    attrs: str = "{}"


class DeadLetterRow(Base, table=True):
    """A message that failed validation, kept with its reason and original bytes."""

    __tablename__ = "ingest_deadletter"
    id: int | None = _id_column()
    rule: str
    topic: str
    reason: str
    payload: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    device_id: str = ""
    point: str = ""
    received_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, index=True))


class AlarmRow(Base, table=True):
    """An alarm: active until its condition ends, then cleared; acknowledged by a person
    at most once (see :mod:`linewatch_ingest.alarm_store`)."""

    __tablename__ = "ingest_alarm"
    id: int | None = _id_column()
    rule: str
    device_id: str
    state: str = "active"
    message: str = ""
    count: int = 0
    raised_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, index=True))
    cleared_at_ms: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    delivery: str = "pending"
    #: Device command ids the alarm sent, comma-separated.
    commands: str = ""
    #: ``verdicts`` (not-ok verdicts), ``no_data`` (a silent device), ``deadletters``.
    kind: str = _text_column("verdicts")
    severity: str = _text_column("warning")
    acked_at_ms: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    acked_by: str = _text_column("")
    ack_note: str = _text_column("")
    escalated_at_ms: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))


@dataclass(frozen=True, slots=True)
class Query:
    """Archive filter: device, point, time range [start_ms, end_ms), paging."""

    device_id: str = ""
    point: str = ""
    start_ms: int | None = None
    end_ms: int | None = None
    page_size: int = 100
    page_token: str = ""
    label: str = ""
    state: str = ""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of rows, newest first, and the token for the next one ("" at the end)."""

    rows: list[Any]
    next_page_token: str


_SQLITE_CHUNKS = (256, 64, 16, 4, 1)
"""Rows per SQLite statement (at most 256 x 14 parameters, well under its 32,766)."""


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return int(time.time() * 1000)


class IngestStore:
    """Every database access of ingest."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self) -> None:
        """Upgrade the schema to the newest revision (``linewatch_ingest/migrations``)."""
        from linewatch.runtime.migrations import migrate
        from linewatch_ingest.schema import HISTORY

        await migrate(self.db, HISTORY)

    def _insert(self, table: sa.Table) -> Any:
        if self.db.is_sqlite:
            return sqlite.insert(table).on_conflict_do_nothing()
        return postgresql.insert(table).on_conflict_do_nothing()

    # --- rules ---------------------------------------------------------------------

    async def list_rules(self) -> list[RuleConfig]:
        """Every stored rule, by name."""
        table = RuleRow.__table__  # type: ignore[attr-defined]
        async with self.db.connect() as conn:
            rows = (await conn.execute(sa.select(table.c.spec).order_by(table.c.name))).all()
        return [RuleConfig.model_validate_json(row.spec) for row in rows]

    async def create_rule(self, rule: RuleConfig) -> None:
        """Store a new rule.

        Raises:
            AlreadyExists: a rule of that name exists.
        """
        table = RuleRow.__table__  # type: ignore[attr-defined]
        async with self.db.connect() as conn:
            result = await conn.execute(
                self._insert(table).values(
                    name=rule.name, spec=rule.model_dump_json(), updated_at_ms=now_ms()
                )
            )
            if result.rowcount == 0:
                raise AlreadyExists(f"rule {rule.name!r} exists")

    async def update_rule(self, rule: RuleConfig) -> None:
        """Replace a stored rule.

        Raises:
            NotFound: no rule of that name.
        """
        table = RuleRow.__table__  # type: ignore[attr-defined]
        async with self.db.connect() as conn:
            result = await conn.execute(
                sa.update(table)
                .where(table.c.name == rule.name)
                .values(spec=rule.model_dump_json(), updated_at_ms=now_ms())
            )
            if result.rowcount == 0:
                raise NotFound(f"no rule {rule.name!r}")

    async def delete_rule(self, name: str) -> None:
        """Delete a stored rule.

        Raises:
            NotFound: no rule of that name.
        """
        table = RuleRow.__table__  # type: ignore[attr-defined]
        async with self.db.connect() as conn:
            result = await conn.execute(sa.delete(table).where(table.c.name == name))
            if result.rowcount == 0:
                raise NotFound(f"no rule {name!r}")

    # --- archive -------------------------------------------------------------------

    async def archive(
        self, telemetry: Sequence[tuple[Any, ...]], verdicts: Sequence[tuple[Any, ...]]
    ) -> None:
        """Write telemetry and verdict rows in one transaction (duplicates are skipped).

        Rows are tuples in :data:`TELEMETRY_COLUMNS` / :data:`VERDICT_COLUMNS` order. SQLite
        gets multi-row ``INSERT OR IGNORE`` statements (a few per batch, not one per row);
        PostgreSQL gets ``COPY`` into a per-connection staging table, then one
        ``INSERT … SELECT … ON CONFLICT DO NOTHING``.
        """
        async with self.db.engine.connect() as conn:
            await self.archive_on(conn, telemetry, verdicts)

    async def archive_on(
        self,
        conn: AsyncConnection,
        telemetry: Sequence[tuple[Any, ...]],
        verdicts: Sequence[tuple[Any, ...]],
    ) -> None:
        """:meth:`archive` on a connection the caller holds across transactions (the
        archive writer's: no pool checkout, ping and reset per transaction)."""
        async with conn.begin():
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            if self.db.is_sqlite:
                # sqlite3 opens its transaction implicitly; SQLAlchemy commits it
                await self._insert_sqlite(driver, "ingest_telemetry", TELEMETRY_COLUMNS, telemetry)
                await self._insert_sqlite(driver, "ingest_verdict", VERDICT_COLUMNS, verdicts)
            else:
                # asyncpg is in autocommit until told otherwise
                async with driver.transaction():
                    await self._copy_postgres(
                        driver, "ingest_telemetry", TELEMETRY_COLUMNS, telemetry
                    )
                    await self._copy_postgres(driver, "ingest_verdict", VERDICT_COLUMNS, verdicts)

    @staticmethod
    async def _insert_sqlite(
        driver: Any, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        # Multi-row statements of a few fixed sizes: few round trips to the driver's thread
        # (executemany would take and release the GIL once per row, and each time wait
        # for the event loop to let it go), and few distinct statements, which sqlite3
        # keeps prepared in its statement cache.
        head = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608
        group = "(" + ", ".join("?" for _ in columns) + ")"
        start = 0
        for size in _SQLITE_CHUNKS:
            statement = head + ", ".join(group for _ in range(size))
            while len(rows) - start >= size:
                chunk = rows[start : start + size]
                await driver.execute(statement, [value for row in chunk for value in row])
                start += size

    @staticmethod
    async def _copy_postgres(
        driver: Any, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        if not rows:
            return
        names = ", ".join(columns)
        stage = f"_lw_stage_{table}"
        await driver.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
            f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await driver.copy_records_to_table(stage, records=rows, columns=columns)
        await driver.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} "  # noqa: S608
            "ON CONFLICT DO NOTHING"
        )

    async def archived_keys(
        self, rule: str, keys: Iterable[tuple[str, str, int]]
    ) -> set[tuple[str, str, int]]:
        """Those of ``keys`` (``(device_id, msg_id, ts_ms)``) with an archived verdict."""
        wanted = set(keys)
        if not wanted:
            return set()
        table = VerdictRow.__table__  # type: ignore[attr-defined]
        async with self.db.connect() as conn:
            rows = await conn.execute(
                sa.select(table.c.device_id, table.c.msg_id, table.c.ts_ms).where(
                    table.c.rule == rule, table.c.msg_id.in_(sorted({k[1] for k in wanted}))
                )
            )
            return {key for row in rows if (key := (row[0], row[1], row[2])) in wanted}

    async def recent_keys(self, rule: str, limit: int) -> list[tuple[str, str, int]]:
        """``(device_id, msg_id, ts_ms)`` of the rule's latest ``limit`` verdicts."""
        if limit <= 0:
            return []
        table = VerdictRow.__table__  # type: ignore[attr-defined]
        async with self.db.connect() as conn:
            rows = await conn.execute(
                sa.select(table.c.device_id, table.c.msg_id, table.c.ts_ms)
                .where(table.c.rule == rule)
                .order_by(table.c.id.desc())
                .limit(limit)
            )
            return [(row[0], row[1], row[2]) for row in rows]

    async def add_dead_letters(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store dead letters."""
        if not rows:
            return
        async with self.db.connect() as conn:
            await conn.execute(
                sa.insert(DeadLetterRow.__table__),  # type: ignore[attr-defined]
                list(rows),
            )

    # --- alarms --------------------------------------------------------------------

    async def raise_alarm(self, *, rule: str, device_id: str, message: str, count: int) -> int:
        """Record a new active alarm; returns its id."""
        table = AlarmRow.__table__  # type: ignore[attr-defined]
        async with self.db.connect() as conn:
            result = await conn.execute(
                sa.insert(table)
                .values(
                    rule=rule,
                    device_id=device_id,
                    state="active",
                    message=message,
                    count=count,
                    raised_at_ms=now_ms(),
                    delivery="pending",
                )
                .returning(table.c.id)
            )
            return int(result.scalar_one())

    async def clear_alarm(self, alarm_id: int) -> None:
        """Mark an alarm cleared now."""
        table = AlarmRow.__table__  # type: ignore[attr-defined]
        async with self.db.connect() as conn:
            await conn.execute(
                sa.update(table)
                .where(table.c.id == alarm_id)
                .values(state="cleared", cleared_at_ms=now_ms())
            )

    async def set_alarm_delivery(self, alarm_id: int, delivery: str) -> None:
        """Record how the webhook delivery of an alarm went."""
        table = AlarmRow.__table__  # type: ignore[attr-defined]
        async with self.db.connect() as conn:
            await conn.execute(
                sa.update(table).where(table.c.id == alarm_id).values(delivery=delivery)
            )

    async def add_alarm_commands(self, alarm_id: int, command_ids: list[str]) -> None:
        """Record device commands an alarm sent."""
        async with self.db.session() as session:
            row = await session.get(AlarmRow, alarm_id, with_for_update=True)
            if row is None:
                return
            row.commands = ",".join([*filter(None, row.commands.split(",")), *command_ids])
            session.add(row)

    async def get_alarm(self, alarm_id: int) -> AlarmRow:
        """One alarm.

        Raises:
            NotFound: no such alarm.
        """
        async with self.db.session() as session:
            row = await session.get(AlarmRow, alarm_id)
        if row is None:
            raise NotFound(f"no alarm {alarm_id}")
        return row

    async def active_alarms(self) -> list[AlarmRow]:
        """Alarms still active (to resume tracking them after a restart)."""
        async with self.db.session() as session:
            result = await session.exec(select(AlarmRow).where(col(AlarmRow.state) == "active"))
            return list(result.all())

    # --- queries -------------------------------------------------------------------

    async def _page(
        self,
        model: type[Base],
        query: Query,
        *,
        time_column: str,
        max_page: int,
        extra: Sequence[sa.ColumnElement[bool]] = (),
    ) -> Page:
        table: sa.Table = model.__table__  # type: ignore[attr-defined]
        size = max(1, min(query.page_size or 100, max_page))
        conds: list[sa.ColumnElement[bool]] = list(extra)
        if query.device_id:
            conds.append(table.c.device_id == query.device_id)
        if query.point and "point" in table.c:
            conds.append(table.c.point == query.point)
        if query.start_ms is not None:
            conds.append(table.c[time_column] >= query.start_ms)
        if query.end_ms is not None:
            conds.append(table.c[time_column] < query.end_ms)
        if query.page_token:
            try:
                last = int(query.page_token)
            except ValueError as exc:
                raise InvalidArgument("page_token: not a token this server issued") from exc
            conds.append(table.c.id < last)
        stmt = select(model).where(*conds).order_by(table.c.id.desc()).limit(size + 1)
        async with self.db.session() as session:
            rows: list[Any] = list((await session.exec(stmt)).all())
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = str(rows[-1].id)
        return Page(rows, token)

    async def query_telemetry(self, query: Query, *, max_page: int = 1000) -> Page:
        """Archived curves, newest first."""
        return await self._page(TelemetryRow, query, time_column="ts_ms", max_page=max_page)

    async def query_verdicts(self, query: Query, *, max_page: int = 1000) -> Page:
        """Archived verdicts, newest first."""
        extra = [VerdictRow.__table__.c.label == query.label] if query.label else []  # type: ignore[attr-defined]
        return await self._page(
            VerdictRow, query, time_column="ts_ms", max_page=max_page, extra=extra
        )

    async def query_dead_letters(self, query: Query, *, max_page: int = 1000) -> Page:
        """Dead letters, newest first."""
        return await self._page(
            DeadLetterRow, query, time_column="received_at_ms", max_page=max_page
        )

    async def query_alarms(self, query: Query, *, max_page: int = 1000) -> Page:
        """Alarms, newest first."""
        extra = [AlarmRow.__table__.c.state == query.state] if query.state else []  # type: ignore[attr-defined]
        return await self._page(
            AlarmRow, query, time_column="raised_at_ms", max_page=max_page, extra=extra
        )

    async def count(self, model: type[Base], rule: str | None = None) -> int:
        """Rows of a table (optionally of one rule)."""
        table: sa.Table = model.__table__  # type: ignore[attr-defined]
        stmt = sa.select(sa.func.count()).select_from(table)
        if rule is not None:
            stmt = stmt.where(table.c.rule == rule)
        async with self.db.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())


def scores_json(scores: dict[str, float]) -> str:
    """Scores as compact JSON for the archive."""
    return orjson.dumps(scores).decode()
