"""Keyset pages of archived verdicts joined to their curves and operator labels.

A page is first cut from ``ingest_verdict`` alone (``id > last ORDER BY id LIMIT n``, a
range scan of the primary key), then joined to ``ingest_telemetry`` on the verdict's
unique key and to ``ingest_verdict_label``. Cutting first matters: joined directly,
SQLite's planner walks the telemetry index by rule and sorts the whole rule for every
page (quadratic in the archive); the subquery, walked by the primary key
(filters written with :func:`unindexed`), keeps each page's cost to its own rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from linewatch_ingest.quality_tables import label_table
from linewatch_ingest.store import TelemetryRow, VerdictRow

__all__ = ["unindexed", "verdict_page"]

_v: sa.Table = VerdictRow.__table__  # type: ignore[attr-defined]
_t: sa.Table = TelemetryRow.__table__  # type: ignore[attr-defined]
_l = label_table


def unindexed(column: Any) -> Any:
    """``column`` as an expression no index can serve (``col || ''``, ``col + 0``).

    Filters of a keyset page are written with it, so both databases walk the primary key
    (``id > last ORDER BY id LIMIT n``: a range scan filtered row by row). Given an index
    whose prefix matches a filter (``rule``, ``device_id``), SQLite's planner would rather
    read every matching row and sort them all, for every page.
    """
    if isinstance(column.type, sa.Integer):
        return column + 0
    return column.concat("")


def verdict_page(
    columns: Sequence[str],
    conds: Sequence[sa.ColumnElement[bool]],
    *,
    after: int,
    size: int,
    samples: bool,
    labelled_only: bool = False,
) -> sa.Select[Any]:
    """Verdict ``columns`` (names of ``ingest_verdict``; ``id`` first) of the page after
    id ``after``, then ``operator_label`` and ``note``, then ``samples`` when asked (None
    for a verdict whose curve is not archived). A page has ``size`` rows unless it is the
    last.

    ``conds`` are over ``ingest_verdict``'s columns, written with :func:`unindexed`. With
    ``labelled_only`` the page is cut from labelled verdicts only.
    """
    inner: Any = sa.select(_v).where(*conds, _v.c.id > after)
    if labelled_only:
        inner = inner.where(sa.exists().where(_l.c.verdict_id == _v.c.id))
    page = inner.order_by(_v.c.id).limit(size).subquery("page")
    source: Any = page
    if samples:
        source = source.join(
            _t,
            sa.and_(
                _t.c.rule == page.c.rule,
                _t.c.msg_id == page.c.msg_id,
                _t.c.device_id == page.c.device_id,
                _t.c.ts_ms == page.c.ts_ms,
            ),
            isouter=True,  # a page keeps its size; a verdict without its curve has None
        )
    source = source.join(_l, _l.c.verdict_id == page.c.id, isouter=True)
    cols: list[Any] = [page.c[name] for name in columns]
    cols += [_l.c.label.label("operator_label"), _l.c.note.label("note")]
    if samples:
        cols.append(_t.c.samples)
    return sa.select(*cols).select_from(source).order_by(page.c.id)
