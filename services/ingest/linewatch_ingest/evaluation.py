"""Shadow evaluation report of a candidate version: agreement with the version that scored
the live verdicts, accuracy of both on operator-labelled curves, and the disagreements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from linewatch.runtime.errors import InvalidArgument
from linewatch_ingest.quality_tables import label_table, shadow_table
from linewatch_ingest.store import IngestStore, VerdictRow

__all__ = ["Evaluation", "evaluate"]

_v: sa.Table = VerdictRow.__table__  # type: ignore[attr-defined]
_s = shadow_table
_l = label_table


@dataclass(slots=True)
class Evaluation:
    """The report (rates are 0 when nothing was compared or labelled)."""

    compared: int = 0
    agreed: int = 0
    labelled: int = 0
    candidate_correct: int = 0
    promoted_correct: int = 0
    disagreements: list[Any] = field(default_factory=list)
    next_page_token: str = ""

    @property
    def agreement_rate(self) -> float:
        return self.agreed / self.compared if self.compared else 0.0

    @property
    def candidate_accuracy(self) -> float:
        return self.candidate_correct / self.labelled if self.labelled else 0.0

    @property
    def promoted_accuracy(self) -> float:
        return self.promoted_correct / self.labelled if self.labelled else 0.0


def _joined() -> Any:
    return _s.join(
        _v,
        sa.and_(
            _v.c.rule == _s.c.rule,
            _v.c.msg_id == _s.c.msg_id,
            _v.c.device_id == _s.c.device_id,
            _v.c.ts_ms == _s.c.ts_ms,
        ),
    ).join(_l, _l.c.verdict_id == _v.c.id, isouter=True)


def _count(cond: sa.ColumnElement[bool]) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)


async def evaluate(
    store: IngestStore,
    model: str,
    version: str,
    *,
    page_size: int = 100,
    page_token: str = "",
    max_page: int = 1000,
) -> Evaluation:
    """The evaluation of ``version`` of ``model`` from the shadow verdicts archived so far.

    Raises:
        InvalidArgument: no model or version given, or a page token not issued here.
    """
    if not model or not version:
        raise InvalidArgument("model and version: both needed")
    size = max(1, min(page_size or 100, max_page))
    which = sa.and_(_s.c.model == model, _s.c.version == version)
    labelled = _l.c.label.is_not(None)
    totals = (
        sa.select(
            sa.func.count(),
            _count(_s.c.label == _v.c.label),
            _count(labelled),
            _count(sa.and_(labelled, _s.c.label == _l.c.label)),
            _count(sa.and_(labelled, _v.c.label == _l.c.label)),
        )
        .select_from(_joined())
        .where(which)
    )
    conds = [which, _s.c.label != _v.c.label]
    if page_token:
        try:
            conds.append(_v.c.id < int(page_token))
        except ValueError as exc:
            raise InvalidArgument("page_token: not a token this server issued") from exc
    page = (
        sa.select(
            _v.c.id,
            _v.c.device_id,
            _v.c.ts_ms,
            _v.c.rule,
            _v.c.model_version,
            _v.c.label,
            _s.c.label.label("candidate_label"),
            _l.c.label.label("operator_label"),
        )
        .select_from(_joined())
        .where(*conds)
        .order_by(_v.c.id.desc())
        .limit(size + 1)
    )
    async with store.db.connect() as conn:
        total = (await conn.execute(totals)).one()
        rows = list((await conn.execute(page)).all())
    token = ""
    if len(rows) > size:
        rows = rows[:size]
        token = str(rows[-1].id)
    return Evaluation(
        compared=int(total[0]),
        agreed=int(total[1]),
        labelled=int(total[2]),
        candidate_correct=int(total[3]),
        promoted_correct=int(total[4]),
        disagreements=rows,
        next_page_token=token,
    )
