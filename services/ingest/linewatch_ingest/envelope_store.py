"""Persistence of the envelope model: one row per (rule, device, point).

While teaching, the row holds the resampled curves taught so far (float32, row-major);
once fitted, the band's centre and spread. The band's width comes from the rule, so a
rule update that only changes the width keeps the band; one that changes the resampled
length (or teach-in before the band is fitted) starts teach-in again. Only
parameterised SQL; upserts on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field

from linewatch.runtime.db import Database
from linewatch_ingest.store import Base, now_ms

__all__ = ["EnvelopeRow", "EnvelopeStore", "StoredEnvelope"]


class EnvelopeRow(Base, table=True):
    """The teach-in or the band of one (rule, device, point)."""

    __tablename__ = "ingest_envelope"
    rule: str = Field(primary_key=True, max_length=100)
    device_id: str = Field(primary_key=True, max_length=200)
    point: str = Field(primary_key=True, max_length=200)
    length: int
    learned: int
    taught: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    centre: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    spread: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    updated_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


@dataclass(frozen=True, slots=True)
class StoredEnvelope:
    """A row, decoded."""

    device_id: str
    point: str
    length: int
    taught: npt.NDArray[np.float32]
    """[n, length]: the curves taught so far (empty once fitted)."""
    centre: npt.NDArray[np.float32] | None
    spread: npt.NDArray[np.float32] | None


def _f32(data: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


class EnvelopeStore:
    """Reads and writes ``ingest_envelope``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._created = False
        self._table: sa.Table = EnvelopeRow.__table__  # type: ignore[attr-defined]

    async def create(self) -> None:
        """Create the table when missing (once per instance)."""
        if not self._created:
            async with self.db.engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all, tables=[self._table])
            self._created = True

    async def load(self, rule: str) -> list[StoredEnvelope]:
        """Every envelope of a rule."""
        await self.create()
        t = self._table
        async with self.db.connect() as conn:
            rows = (await conn.execute(sa.select(t).where(t.c.rule == rule))).all()
        out: list[StoredEnvelope] = []
        for row in rows:
            taught = _f32(row.taught)
            fitted = bool(row.centre)
            out.append(
                StoredEnvelope(
                    row.device_id,
                    row.point,
                    row.length,
                    taught.reshape(-1, row.length) if len(taught) else taught.reshape(0, 0),
                    _f32(row.centre) if fitted else None,
                    _f32(row.spread) if fitted else None,
                )
            )
        return out

    async def save(self, rule: str, envelopes: Sequence[StoredEnvelope]) -> None:
        """Insert or replace envelopes of a rule (one transaction)."""
        if not envelopes:
            return
        await self.create()
        t = self._table
        now = now_ms()
        rows: list[dict[str, Any]] = [
            {
                "rule": rule,
                "device_id": e.device_id,
                "point": e.point,
                "length": e.length,
                "learned": len(e.taught),
                "taught": np.ascontiguousarray(e.taught, dtype="<f4").tobytes(),
                "centre": b"" if e.centre is None else e.centre.astype("<f4").tobytes(),
                "spread": b"" if e.spread is None else e.spread.astype("<f4").tobytes(),
                "updated_at_ms": now,
            }
            for e in envelopes
        ]
        insert: Any = (sqlite if self.db.is_sqlite else postgresql).insert(t)
        stmt = insert.on_conflict_do_update(
            index_elements=[t.c.rule, t.c.device_id, t.c.point],
            set_={
                name: insert.excluded[name]
                for name in ("length", "learned", "taught", "centre", "spread", "updated_at_ms")
            },
        )
        async with self.db.connect() as conn:
            await conn.execute(stmt, rows)

    async def delete(self, rule: str, device_id: str = "", point: str = "") -> int:
        """Forget envelopes of a rule (of one device, and point, when given)."""
        await self.create()
        t = self._table
        conds = [t.c.rule == rule]
        if device_id:
            conds.append(t.c.device_id == device_id)
        if point:
            conds.append(t.c.point == point)
        async with self.db.connect() as conn:
            result = await conn.execute(sa.delete(t).where(*conds))
            return int(result.rowcount or 0)
