"""Schema migrations (Alembic): one history per service, applied at start.

A service with a database keeps its revisions in ``linewatch_<svc>/migrations/`` and
declares them once::

    HISTORY = MigrationHistory("ingest", Path(__file__).parent / "migrations", Base.metadata)

Then ``await migrate(db, HISTORY)`` at start (and ``python -m linewatch_<svc> migrate``,
the Helm hook Job) upgrades the database to the newest revision. Each history has its
own version table (``alembic_version_<svc>``), so services may share one database. On
PostgreSQL an advisory lock serialises replicas starting together. A database created by
the release before migrations existed (tables present, no version table) is stamped
with the first revision (``0001``, that release's schema) and upgraded from there.

Revisions are written by ``make migration SERVICE=<svc> MSG="..."`` (autogenerate
against a scratch SQLite database at head); SQLite runs in batch mode (table rebuilds).
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from linewatch.runtime.db import Database

__all__ = [
    "BASELINE",
    "MigrationHistory",
    "alembic_config",
    "current_revision",
    "migrate",
    "run_env",
    "schema_drift",
]

log = logging.getLogger(__name__)

ENV_DIR = Path(__file__).with_name("migration_env")
"""The shared ``env.py`` and revision template."""
BASELINE = "0001"
"""The first revision of every history: the schema of the release before migrations."""
_PARTITION = re.compile(r".+_(p\d{8}|default)$")


@dataclass(frozen=True)
class MigrationHistory:
    """One service's revisions and the tables they must produce."""

    service: str
    versions: Path
    metadata: sa.MetaData
    #: Tables of other owners in the same database that this history leaves alone.
    foreign_tables: frozenset[str] = field(default_factory=frozenset)

    @property
    def version_table(self) -> str:
        """The table holding this history's current revision."""
        return f"alembic_version_{self.service}"

    def owns(self, table: str) -> bool:
        """Whether a table in the database belongs to this history (for comparisons).

        Partitions (``<table>_pYYYYMMDD``, ``<table>_default``) are not in the
        metadata: they are created and dropped at run time.
        """
        if table in self.foreign_tables or _PARTITION.match(table):
            return False
        return table in self.metadata.tables or table.startswith(f"{self.service}_")

    def head(self) -> str:
        """The newest revision id."""
        heads = ScriptDirectory.from_config(alembic_config(self)).get_heads()
        if len(heads) != 1:
            raise RuntimeError(f"{self.service}: migration history has heads {heads}")
        return heads[0]


def alembic_config(history: MigrationHistory, connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration for one history (no ini file)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(ENV_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(history.versions))
    cfg.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    cfg.set_main_option("truncate_slug_length", "40")
    cfg.attributes["history"] = history
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _include_name(history: MigrationHistory) -> Any:
    def include(name: str | None, type_: str, _parents: Any) -> bool:
        if type_ == "table" and name is not None:
            return history.owns(name)
        return True

    return include


def run_env(cfg: Config) -> None:
    """Body of the shared ``env.py``: run the migrations on the given connection."""
    from alembic import context

    history: MigrationHistory = cfg.attributes["history"]
    connection: sa.Connection | None = cfg.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run on a connection (linewatch.runtime.migrations)")
    context.configure(
        connection=connection,
        target_metadata=history.metadata,
        version_table=history.version_table,
        render_as_batch=True,
        compare_type=True,
        include_name=_include_name(history),
    )
    with context.begin_transaction():
        context.run_migrations()


def _lock(conn: sa.Connection, history: MigrationHistory) -> None:
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(f"linewatch-migrate-{history.service}".encode())
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _upgrade(conn: sa.Connection, history: MigrationHistory, revision: str) -> None:
    _lock(conn, history)
    cfg = alembic_config(history, conn)
    tables = set(sa.inspect(conn).get_table_names())
    if history.version_table not in tables and tables & set(history.metadata.tables):
        log.info(
            "%s: database of the release before migrations: stamping %s", history.service, BASELINE
        )
        command.stamp(cfg, BASELINE)
    command.upgrade(cfg, revision)


async def migrate(db: Database, history: MigrationHistory, revision: str = "head") -> str:
    """Upgrade the database to ``revision`` (default: the newest); returns the revision now."""
    async with db.engine.begin() as conn:
        await conn.run_sync(_upgrade, history, revision)
    now = await current_revision(db, history)
    log.info("%s: schema at revision %s", history.service, now)
    return now or ""


async def current_revision(db: Database, history: MigrationHistory) -> str | None:
    """The database's revision of this history (None: never migrated)."""

    def read(conn: sa.Connection) -> str | None:
        ctx = MigrationContext.configure(conn, opts={"version_table": history.version_table})
        return ctx.get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(read)


async def schema_drift(db: Database, history: MigrationHistory) -> list[Any]:
    """Differences between the database and the history's metadata (``[]``: none).

    Run on a database at head, a non-empty answer means a table or column was declared
    without a revision (``make migration``).
    """

    def compare(conn: sa.Connection) -> list[Any]:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": _include_name(history),
                "version_table": history.version_table,
            },
        )
        return list(compare_metadata(ctx, history.metadata))

    async with db.engine.connect() as conn:
        return await conn.run_sync(compare)


def _revision_ids(history: MigrationHistory) -> list[str]:
    script = ScriptDirectory.from_config(alembic_config(history))
    return [rev.revision for rev in script.walk_revisions()]


def autogenerate(history: MigrationHistory, message: str, scratch: Path) -> Path:
    """Write the next revision of a history: the metadata compared with its head.

    ``scratch`` is a SQLite file (created, migrated to head, then compared). Returns the
    revision file. Review it: autogenerate does not see renames or data moves.
    """
    ids = [int(r) for r in _revision_ids(history) if r.isdigit()]
    rev_id = f"{max(ids, default=0) + 1:04d}"
    engine = sa.create_engine(f"sqlite:///{scratch}")
    try:
        with engine.begin() as conn:
            cfg = alembic_config(history, conn)
            command.upgrade(cfg, "head")
            script = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
    finally:
        engine.dispose()
    if script is None or isinstance(script, list):
        raise RuntimeError("alembic wrote no single revision")
    return Path(script.path)
