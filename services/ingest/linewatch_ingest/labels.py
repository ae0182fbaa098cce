"""Operator labels: set one on an archived verdict, read them back, list and filter them.

A label must be one the verdict's model can give (its manifest's labels, of any loaded
version) or ``ok``; the model's labels come from :data:`LabelSource` (the inference
service's ``GetModel`` in the service, the built-in envelope's own labels).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from linewatch.runtime.errors import InvalidArgument, NotFound
from linewatch_ingest.config import IngestConfig
from linewatch_ingest.inference_client import InferenceClient
from linewatch_ingest.quality_tables import label_table
from linewatch_ingest.store import IngestStore, VerdictRow, now_ms

__all__ = [
    "ENVELOPE_LABELS",
    "LabelBook",
    "LabelPage",
    "LabelSource",
    "OperatorLabel",
    "labels_from",
]

#: What the built-in envelope model says (``learning`` is no part's label).
ENVELOPE_LABELS = frozenset({"ok", "out_of_envelope"})

#: The labels a model can give, by model name.
LabelSource = Callable[[str], Awaitable[Iterable[str]]]

_verdicts: sa.Table = VerdictRow.__table__  # type: ignore[attr-defined]
_MAX_NOTE = 2000


@dataclass(frozen=True, slots=True)
class OperatorLabel:
    """A stored label."""

    verdict_id: int
    label: str
    note: str
    labelled_by: str
    labelled_at_ms: int


@dataclass(frozen=True, slots=True)
class LabelPage:
    """Labels with their verdict rows, newest verdict first, and the next page's token."""

    items: list[tuple[OperatorLabel, Any]]
    next_page_token: str


def _label(row: Any) -> OperatorLabel:
    return OperatorLabel(
        int(row.verdict_id), row.label, row.note, row.labelled_by, int(row.labelled_at_ms)
    )


class LabelBook:
    """Every access to ``ingest_verdict_label``."""

    def __init__(self, store: IngestStore, labels_of: LabelSource) -> None:
        self._store = store
        self._labels_of = labels_of

    async def set(
        self, verdict_id: int, label: str, note: str, by: str
    ) -> tuple[OperatorLabel, Any]:
        """Record (or replace) the operator's label of a verdict; returns it and the
        verdict's row.

        Raises:
            InvalidArgument: the label is not one of the model's, or the note is too long.
            NotFound: no archived verdict of that id.
        """
        if len(note) > _MAX_NOTE:
            raise InvalidArgument(f"note: at most {_MAX_NOTE} characters")
        async with self._store.db.connect() as conn:
            verdict = (
                await conn.execute(sa.select(_verdicts).where(_verdicts.c.id == verdict_id))
            ).first()
        if verdict is None:
            raise NotFound(f"no verdict {verdict_id}")
        allowed = {"ok", *await self._labels_of(verdict.model)}
        if label not in allowed:
            raise InvalidArgument(
                f"label: {label!r} is not a label of model {verdict.model!r} "
                f"(one of {', '.join(sorted(allowed))})"
            )
        values: dict[str, Any] = {
            "verdict_id": verdict_id,
            "label": label,
            "note": note,
            "labelled_by": by,
            "labelled_at_ms": now_ms(),
        }
        dialect: Any = sqlite if self._store.db.is_sqlite else postgresql
        stmt = dialect.insert(label_table).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[label_table.c.verdict_id],
            set_={k: stmt.excluded[k] for k in values if k != "verdict_id"},
        )
        async with self._store.db.connect() as conn:
            await conn.execute(stmt)
        return OperatorLabel(**values), verdict

    async def of(self, verdict_ids: Iterable[int]) -> dict[int, OperatorLabel]:
        """The labels of those verdicts that have one."""
        ids = sorted(set(verdict_ids))
        if not ids:
            return {}
        async with self._store.db.connect() as conn:
            rows = await conn.execute(
                sa.select(label_table).where(label_table.c.verdict_id.in_(ids))
            )
            return {int(r.verdict_id): _label(r) for r in rows}

    async def list(
        self,
        *,
        rule: str = "",
        device_id: str = "",
        label: str = "",
        disagree: bool = False,
        page_size: int = 100,
        page_token: str = "",
        max_page: int = 1000,
    ) -> LabelPage:
        """Labels with their verdicts, filtered; ``disagree``: only those where the
        operator's label differs from the model's."""
        size = max(1, min(page_size or 100, max_page))
        conds: list[sa.ColumnElement[bool]] = []
        if rule:
            conds.append(_verdicts.c.rule == rule)
        if device_id:
            conds.append(_verdicts.c.device_id == device_id)
        if label:
            conds.append(label_table.c.label == label)
        if disagree:
            conds.append(label_table.c.label != _verdicts.c.label)
        if page_token:
            try:
                conds.append(label_table.c.verdict_id < int(page_token))
            except ValueError as exc:
                raise InvalidArgument("page_token: not a token this server issued") from exc
        stmt = (
            sa.select(
                _verdicts,
                label_table.c.label.label("op_label"),
                label_table.c.note.label("op_note"),
                label_table.c.labelled_by,
                label_table.c.labelled_at_ms,
            )
            .join(_verdicts, _verdicts.c.id == label_table.c.verdict_id)
            .where(*conds)
            .order_by(label_table.c.verdict_id.desc())
            .limit(size + 1)
        )
        async with self._store.db.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = str(rows[-1].id)
        return LabelPage(
            [
                (
                    OperatorLabel(
                        int(r.id), r.op_label, r.op_note, r.labelled_by, int(r.labelled_at_ms)
                    ),
                    r,
                )
                for r in rows
            ],
            token,
        )


def labels_from(store: IngestStore, inference: InferenceClient, config: IngestConfig) -> LabelBook:
    """The label book of the service: a model's labels are the envelope's own, those
    configured for a plain-OIP model, or those of every version inference has loaded."""
    oip = {**config.inference.models}
    for target in config.targets.values():
        oip.update(target.models)

    async def labels_of(model: str) -> Iterable[str]:
        if model == "envelope":
            return ENVELOPE_LABELS
        if model in oip:
            return oip[model].labels
        info = await inference.get_model(model)
        return {label for version in info.versions for label in version.labels}

    return LabelBook(store, labels_of)
