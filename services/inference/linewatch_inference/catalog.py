"""The registry in the database every replica shares: models (promoted and shadow version),
versions, promotion history, and package files as content-addressed blobs.

Tables (own SQLModel registry, created at start):

- ``inference_model``: one row per model name: ``promoted_version``, ``shadow_version``.
- ``inference_model_version``: one row per (name, version): the package sha256, its
  manifest (JSON), source URL, who loaded it and when, ``kind`` (``url``: the package is
  a blob here; ``dir``: every replica has it in its ``model_dir``) and ``state``
  (``serving`` or ``unloaded``: a ``model_dir`` version an operator unloaded).
- ``inference_promotion``: who promoted which version when, and from which.
- ``inference_package``: the file loaded by URL (``.zip`` or bare ``.onnx``) by sha256.

A version and its blob are written in one transaction, so no replica ever sees a version
whose package is missing; a blob is verified against its sha256 when read. The first
version recorded under a name is promoted by a conditional update (``WHERE
promoted_version = ''``), so two replicas starting together cannot both promote.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel

from linewatch.runtime.db import Database, service_registry
from linewatch.runtime.errors import FailedPrecondition, NotFound
from linewatch.runtime.migrations import MigrationHistory, migrate

__all__ = [
    "Base",
    "Catalog",
    "ModelRow",
    "PackageRow",
    "PromotionRow",
    "Snapshot",
    "VersionRecord",
    "VersionRow",
]

FIRST_LOAD = "registry"
"""``by`` of the promotion made when a name's first version is loaded."""


class Base(SQLModel, registry=service_registry()):
    """Base of the inference service's tables."""


class ModelRow(Base, table=True):
    __tablename__ = "inference_model"

    name: str = Field(primary_key=True, max_length=64)
    promoted_version: str = Field(default="", max_length=32)
    shadow_version: str = Field(default="", max_length=32)


class VersionRow(Base, table=True):
    __tablename__ = "inference_model_version"

    name: str = Field(primary_key=True, max_length=64)
    version: str = Field(primary_key=True, max_length=32)
    sha256: str = Field(max_length=64)
    manifest_json: str = Field(sa_type=sa.Text)
    bare_manifest: str = Field(default="", sa_type=sa.Text)
    """For a bare ``.onnx``: the manifest text it was loaded with (needed to stage it)."""
    signature: str = Field(default="", max_length=128)
    source_url: str = Field(default="", max_length=2048)
    kind: str = Field(max_length=8)
    state: str = Field(default="serving", max_length=16)
    loaded_at: dt.datetime = Field(sa_type=sa.DateTime(timezone=True))
    loaded_by: str = Field(default="", max_length=128)


class PromotionRow(Base, table=True):
    __tablename__ = "inference_promotion"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, index=True)
    from_version: str = Field(default="", max_length=32)
    to_version: str = Field(max_length=32)
    by: str = Field(default="", max_length=128)
    at: dt.datetime = Field(sa_type=sa.DateTime(timezone=True))


class PackageRow(Base, table=True):
    __tablename__ = "inference_package"

    sha256: str = Field(primary_key=True, max_length=64)
    size: int = Field(sa_type=sa.BigInteger)
    data: bytes = Field(sa_type=sa.LargeBinary)


_MODEL = ModelRow.__table__  # type: ignore[attr-defined]
_VERSION = VersionRow.__table__  # type: ignore[attr-defined]
_PROMOTION = PromotionRow.__table__  # type: ignore[attr-defined]
_PACKAGE = PackageRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class VersionRecord:
    """A version as the catalog keeps it."""

    name: str
    version: str
    sha256: str
    manifest_json: str
    kind: str
    source_url: str = ""
    bare_manifest: str = ""
    signature: str = ""
    state: str = "serving"
    loaded_at: dt.datetime | None = None
    loaded_by: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything replicas converge on: per model (promoted, shadow), and every version."""

    models: dict[str, tuple[str, str]]
    versions: dict[tuple[str, str], VersionRecord]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


HISTORY = MigrationHistory("inference", Path(__file__).with_name("migrations"), Base.metadata)
"""The registry tables' migration history (revisions in ``migrations/``)."""


class Catalog:
    """Reads and writes the registry tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _insert(self, table: sa.Table) -> Any:
        return (sqlite.insert if self.db.is_sqlite else postgresql.insert)(table)

    async def create(self) -> None:
        """Upgrade the registry tables to the newest revision (its migration history)."""
        await migrate(self.db, HISTORY)

    async def record(self, rec: VersionRecord, blob: bytes | None, *, keep: bool = False) -> bool:
        """Record a version serving (and its blob), promote it if the name has no promoted
        version; returns whether it was promoted. ``keep``: leave an existing row of the
        same sha256 as it is (a replica re-reading its ``model_dir`` at start)."""
        now = _now()
        async with self.db.connect() as conn:
            if blob is not None:
                await conn.execute(
                    self._insert(_PACKAGE)
                    .values(sha256=rec.sha256, size=len(blob), data=blob)
                    .on_conflict_do_nothing(index_elements=["sha256"])
                )
            values = {
                "name": rec.name,
                "version": rec.version,
                "sha256": rec.sha256,
                "manifest_json": rec.manifest_json,
                "bare_manifest": rec.bare_manifest,
                "signature": rec.signature,
                "source_url": rec.source_url,
                "kind": rec.kind,
                "state": "serving",
                "loaded_at": now,
                "loaded_by": rec.loaded_by,
            }
            stmt = self._insert(_VERSION).values(**values)
            update = {k: stmt.excluded[k] for k in values if k not in ("name", "version")}
            where = _VERSION.c.sha256 != stmt.excluded.sha256 if keep else None
            old = (
                await conn.execute(
                    sa.select(_VERSION.c.sha256).where(
                        _VERSION.c.name == rec.name, _VERSION.c.version == rec.version
                    )
                )
            ).scalar_one_or_none()
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["name", "version"], set_=update, where=where
                )
            )
            if old is not None and old != rec.sha256:
                await self._drop_blob(conn, old)
            await conn.execute(
                self._insert(_MODEL)
                .values(name=rec.name)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            promoted = await conn.execute(
                sa.update(_MODEL)
                .where(_MODEL.c.name == rec.name, _MODEL.c.promoted_version == "")
                .values(promoted_version=rec.version)
            )
            if promoted.rowcount != 1:
                return False
            await conn.execute(
                sa.insert(_PROMOTION).values(
                    name=rec.name, from_version="", to_version=rec.version, by=FIRST_LOAD, at=now
                )
            )
            return True

    async def unload(self, name: str, versions: list[str]) -> None:
        """Versions stop serving: ``url`` ones are forgotten (with their blobs), ``dir``
        ones stay as ``unloaded`` (not served from ``model_dir`` again)."""
        async with self.db.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(_VERSION.c.version, _VERSION.c.kind, _VERSION.c.sha256).where(
                        _VERSION.c.name == name, _VERSION.c.version.in_(versions)
                    )
                )
            ).all()
            for version, kind, sha in rows:
                key = (_VERSION.c.name == name) & (_VERSION.c.version == version)
                if kind == "dir":
                    await conn.execute(sa.update(_VERSION).where(key).values(state="unloaded"))
                else:
                    await conn.execute(sa.delete(_VERSION).where(key))
                    await self._drop_blob(conn, sha)
            values: dict[str, str] = {}
            model = await self._model(conn, name)
            if model is not None and model[1] in versions:
                values["shadow_version"] = ""
            serving = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(_VERSION)
                    .where(_VERSION.c.name == name, _VERSION.c.state == "serving")
                )
            ).scalar_one()
            if not serving:
                values.update(promoted_version="", shadow_version="")
            if values:
                await conn.execute(sa.update(_MODEL).where(_MODEL.c.name == name).values(**values))

    async def _drop_blob(self, conn: Any, sha: str) -> None:
        used = (
            await conn.execute(sa.select(sa.func.count()).where(_VERSION.c.sha256 == sha))
        ).scalar_one()
        if not used:
            await conn.execute(sa.delete(_PACKAGE).where(_PACKAGE.c.sha256 == sha))

    async def _model(self, conn: Any, name: str) -> tuple[str, str] | None:
        row = (
            await conn.execute(
                sa.select(_MODEL.c.promoted_version, _MODEL.c.shadow_version).where(
                    _MODEL.c.name == name
                )
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def promote(self, name: str, version: str, by: str) -> PromotionRow:
        """Make ``version`` the promoted one and record it in the history.

        Raises:
            NotFound: No such model, or the version is not loaded.
        """
        async with self.db.connect() as conn:
            model = await self._model(conn, name)
            if model is None:
                raise NotFound(f"model {name!r} is not loaded")
            state = (
                await conn.execute(
                    sa.select(_VERSION.c.state).where(
                        _VERSION.c.name == name, _VERSION.c.version == version
                    )
                )
            ).scalar_one_or_none()
            if state != "serving":
                raise NotFound(f"model {name!r} has no version {version!r} loaded to promote")
            row = PromotionRow(
                name=name, from_version=model[0], to_version=version, by=by, at=_now()
            )
            await conn.execute(
                sa.update(_MODEL).where(_MODEL.c.name == name).values(promoted_version=version)
            )
            await conn.execute(
                sa.insert(_PROMOTION).values(
                    name=name, from_version=row.from_version, to_version=version, by=by, at=row.at
                )
            )
        return row

    async def set_shadow(self, name: str, version: str) -> None:
        """Attach (or with ``""`` detach) the shadow version of ``name``."""
        async with self.db.connect() as conn:
            await conn.execute(
                sa.update(_MODEL).where(_MODEL.c.name == name).values(shadow_version=version)
            )

    async def promotions(self, name: str) -> list[PromotionRow]:
        """The promotions of ``name``, newest first."""
        async with self.db.connect() as conn:
            rows = await conn.execute(
                sa.select(_PROMOTION)
                .where(_PROMOTION.c.name == name)
                .order_by(_PROMOTION.c.id.desc())
            )
            return [
                PromotionRow(
                    id=r.id,
                    name=r.name,
                    from_version=r.from_version,
                    to_version=r.to_version,
                    by=r.by,
                    at=_utc(r.at),
                )
                for r in rows
            ]

    async def snapshot(self) -> Snapshot:
        """Every model and version (what each replica converges to)."""
        async with self.db.connect() as conn:
            models = {
                r.name: (r.promoted_version, r.shadow_version)
                for r in await conn.execute(sa.select(_MODEL))
            }
            versions = {
                (r.name, r.version): VersionRecord(
                    name=r.name,
                    version=r.version,
                    sha256=r.sha256,
                    manifest_json=r.manifest_json,
                    kind=r.kind,
                    source_url=r.source_url,
                    bare_manifest=r.bare_manifest,
                    signature=r.signature,
                    state=r.state,
                    loaded_at=_utc(r.loaded_at),
                    loaded_by=r.loaded_by,
                )
                for r in await conn.execute(sa.select(_VERSION))
            }
        return Snapshot(models, versions)

    async def blob(self, sha256: str) -> bytes:
        """A package file, verified against its sha256.

        Raises:
            NotFound: Not there (the version was unloaded or replaced meanwhile).
            FailedPrecondition: Its bytes do not hash to ``sha256``.
        """
        async with self.db.connect() as conn:
            data = (
                await conn.execute(sa.select(_PACKAGE.c.data).where(_PACKAGE.c.sha256 == sha256))
            ).scalar_one_or_none()
        if data is None:
            raise NotFound(f"package {sha256} is not in the registry database")
        if hashlib.sha256(data).hexdigest() != sha256:
            raise FailedPrecondition(f"package {sha256} in the registry database is corrupt")
        return bytes(data)
