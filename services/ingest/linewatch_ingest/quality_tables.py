"""The quality-loop tables: operator labels and shadow (candidate) verdicts.

Kept apart from the archive tables (``ingest_verdict`` becomes time-partitioned), keyed
so they join back to it:

- ``ingest_verdict_label``: one row per labelled verdict (``verdict_id`` is the primary
  key; labelling again replaces the row).
- ``ingest_shadow_verdict``: what a candidate version said about an archived curve. Shadow
  scoring runs before the archive has given the verdict its id, so a row carries the
  verdict's unique key ``(rule, msg_id, device_id, ts_ms)`` and joins on it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Field

from linewatch_ingest.store import Base

__all__ = ["ShadowVerdictRow", "VerdictLabelRow", "label_table", "shadow_table"]


class VerdictLabelRow(Base, table=True):
    """What an operator says a part really was."""

    __tablename__ = "ingest_verdict_label"
    verdict_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        )
    )
    label: str = Field(index=True)
    note: str = ""
    labelled_by: str = ""
    labelled_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class ShadowVerdictRow(Base, table=True):
    """A candidate version's verdict on a curve the promoted version scored."""

    __tablename__ = "ingest_shadow_verdict"
    __table_args__ = (sa.Index("ix_ingest_shadow_verdict_model", "model", "version"),)
    rule: str = Field(primary_key=True)
    msg_id: str = Field(primary_key=True)
    device_id: str = Field(primary_key=True)
    ts_ms: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    model: str
    version: str = Field(primary_key=True)
    label: str
    ok: bool
    score: float = 0.0


label_table: sa.Table = VerdictLabelRow.__table__  # type: ignore[attr-defined]
shadow_table: sa.Table = ShadowVerdictRow.__table__  # type: ignore[attr-defined]
