"""PostgreSQL archive tables partitioned by time (native declarative partitioning).

Table and column names in the SQL are the code's own identifiers (checked by
``_ident``), never input; values are bound parameters.

An archive table ``t`` is ``PARTITION BY RANGE (ts_ms)`` with one partition per UTC day,
``t_pYYYYMMDD`` covering ``[day, day + 1)`` in epoch milliseconds, created ahead of time,
and ``t_default`` for rows outside every day partition (a device clock far off, and the
rows retention keeps past their day: see :func:`drop_partitions_before`). Primary and
unique keys include ``ts_ms`` (PostgreSQL requires the partition key in them).

Expired days are dropped whole (``DROP TABLE`` of the partition: no row-by-row delete, no
dead tuples, the disk space comes back at once). Synchronous SQL on a ``sa.Connection``
(migrations) or through ``AsyncConnection.run_sync``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

__all__ = [
    "DAY_MS",
    "Partition",
    "convert_to_partitioned",
    "drop_partition",
    "drop_partitions_before",
    "ensure_partitions",
    "expired_partitions",
    "list_partitions",
]

DAY_MS = 86_400_000
_NAME = re.compile(r"^(?P<table>.+)_p(?P<day>\d{8})$")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Partition:
    """One day partition: ``[start_ms, end_ms)``."""

    name: str
    start_ms: int
    end_ms: int


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


def _day_name(table: str, day: int) -> str:
    date = dt.datetime.fromtimestamp(day * 86_400, tz=dt.UTC).strftime("%Y%m%d")
    return f"{table}_p{date}"


def list_partitions(conn: sa.Connection, table: str) -> list[Partition]:
    """The day partitions of a table, oldest first (the default partition not included)."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :t"
        ),
        {"t": table},
    ).scalars()
    out: list[Partition] = []
    for name in rows:
        match = _NAME.match(name)
        if match and match["table"] == table:
            day = dt.datetime.strptime(match["day"], "%Y%m%d").replace(tzinfo=dt.UTC)
            start = int(day.timestamp() * 1000)
            out.append(Partition(name, start, start + DAY_MS))
    return sorted(out, key=lambda p: p.start_ms)


def _create_day(conn: sa.Connection, table: str, day: int) -> None:
    """Create one day partition, moving its rows out of the default partition first."""
    name, default = _day_name(table, day), f"{table}_default"
    lo, hi = day * DAY_MS, (day + 1) * DAY_MS
    conn.execute(sa.text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)"))
    conn.execute(
        sa.text(
            f"WITH moved AS (DELETE FROM {default} WHERE ts_ms >= :lo AND ts_ms < :hi "  # noqa: S608
            f"RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        ),
        {"lo": lo, "hi": hi},
    )
    conn.execute(
        sa.text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")
    )


def ensure_partitions(
    conn: sa.Connection, table: str, now_ms: int, days_ahead: int, days: Iterable[int] = ()
) -> int:
    """Create the day partitions of today and ``days_ahead`` days on (and of ``days``,
    epoch day numbers), where missing. Returns how many were created."""
    _ident(table)
    have = {p.start_ms // DAY_MS for p in list_partitions(conn, table)}
    today = now_ms // DAY_MS
    wanted = sorted({*range(today, today + days_ahead + 1), *days} - have)
    for day in wanted:
        _create_day(conn, table, day)
    return len(wanted)


def expired_partitions(conn: sa.Connection, table: str, cutoff_ms: int) -> list[Partition]:
    """The day partitions wholly older than ``cutoff_ms``, oldest first."""
    _ident(table)
    return [p for p in list_partitions(conn, table) if p.end_ms <= cutoff_ms]


def drop_partition(conn: sa.Connection, table: str, part: Partition, keep_where: str = "") -> int:
    """Drop one day partition (run it in a transaction of its own: it locks the parent).

    ``keep_where`` (SQL on the partition's rows, alias ``r``): rows to keep past their
    day. They are copied out first (a temporary table; the parent is not locked yet), then
    the partition is detached, the copies inserted into the parent (they land in the
    default partition) and the partition dropped: the parent is locked only for that
    last short step. Returns the rows kept.
    """
    _ident(table)
    kept = 0
    if keep_where:
        conn.execute(
            sa.text(
                f"CREATE TEMP TABLE _lw_keep ON COMMIT DROP AS "  # noqa: S608
                f"SELECT r.* FROM {part.name} r WHERE {keep_where}"
            )
        )
        conn.execute(sa.text(f"ALTER TABLE {table} DETACH PARTITION {part.name}"))
        result = conn.execute(sa.text(f"INSERT INTO {table} SELECT * FROM _lw_keep"))  # noqa: S608
        kept = int(result.rowcount or 0)
    conn.execute(sa.text(f"DROP TABLE {part.name}"))
    return kept


def drop_partitions_before(
    conn: sa.Connection, table: str, cutoff_ms: int, keep_where: str = ""
) -> tuple[int, int]:
    """Drop every day partition wholly older than ``cutoff_ms`` in this one transaction
    (:func:`drop_partition` each; a migration or a test). Returns ``(dropped, kept)``."""
    dropped = kept = 0
    for part in expired_partitions(conn, table, cutoff_ms):
        kept += drop_partition(conn, table, part, keep_where)
        dropped += 1
    return dropped, kept


def convert_to_partitioned(
    conn: sa.Connection, table: str, indexes: dict[str, tuple[str, bool]], now_ms: int
) -> None:
    """Rebuild a plain table ``(id BIGSERIAL PK, ..., ts_ms BIGINT)`` as a partitioned one,
    keeping its rows, ids and sequence (a migration step).

    ``indexes``: name -> (column list, unique) to create on the new parent.
    """
    _ident(table)
    old = f"{table}_unpartitioned"
    conn.execute(sa.text(f"ALTER TABLE {table} RENAME TO {old}"))
    conn.execute(sa.text(f"ALTER TABLE {old} RENAME CONSTRAINT {table}_pkey TO {old}_pkey"))
    for name in indexes:
        conn.execute(sa.text(f"ALTER INDEX IF EXISTS {_ident(name)} RENAME TO {name}_old"))
    conn.execute(
        sa.text(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS) PARTITION BY RANGE (ts_ms)")
    )
    conn.execute(
        sa.text(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id, ts_ms)")
    )
    for name, (columns, unique) in indexes.items():
        kind = "UNIQUE INDEX" if unique else "INDEX"
        conn.execute(sa.text(f"CREATE {kind} {name} ON {table} ({columns})"))
    conn.execute(sa.text(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT"))
    # Days with rows get a partition (ten years back at most; the rest stay in default).
    today = now_ms // DAY_MS
    days = conn.execute(sa.text(f"SELECT DISTINCT ts_ms / {DAY_MS} FROM {old}")).scalars()  # noqa: S608
    recent = [int(d) for d in days if today - 3650 <= int(d) <= today + 7]
    ensure_partitions(conn, table, now_ms, 7, days=recent)
    conn.execute(sa.text(f"INSERT INTO {table} SELECT * FROM {old}"))  # noqa: S608
    conn.execute(sa.text(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id"))
    conn.execute(sa.text(f"DROP TABLE {old}"))
