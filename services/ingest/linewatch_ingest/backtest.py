"""Backtests: replay an archived period of a rule through a candidate model version or
an alarm rule, and report what it would have decided.

The archive is read in big pages (keyset on the verdict id, curves joined to their
verdicts and operator labels); a page is scored in large batches (several in flight) by
the inference service with the version named explicitly; the alarm rule is replayed on
the page's verdicts in archive time (the same "N not-ok within M seconds per device"
windows as :class:`~linewatch_ingest.alarms.AlarmEngine`). Reading and scoring overlap:
the next page is read while the current one is scored.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from linewatch.runtime.errors import InvalidArgument
from linewatch_ingest.archive_pages import unindexed, verdict_page
from linewatch_ingest.config import AlarmRuleConfig
from linewatch_ingest.inference_client import InferenceClient
from linewatch_ingest.store import IngestStore, VerdictRow

__all__ = ["Backtest", "BacktestAlarm", "BacktestReport", "read_pages"]

_v: sa.Table = VerdictRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class BacktestAlarm:
    """An alarm the replay raised."""

    device_id: str
    raised_at_ms: int
    count: int
    labelled_ok: int


@dataclass(slots=True)
class BacktestReport:
    """What the replay decided."""

    rule: str
    model: str
    model_version: str
    curves: int = 0
    changed: int = 0
    labelled: int = 0
    backtest_correct: int = 0
    archived_correct: int = 0
    labelled_otherwise: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    alarms: list[BacktestAlarm] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def curves_per_s(self) -> float:
        return self.curves / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class _Page:
    ids: list[int]
    devices: list[str]
    ts: list[int]
    versions: list[str]
    labels: list[str]
    oks: list[bool]
    operator: list[str | None]
    samples: list[bytes]


async def read_pages(
    store: IngestStore,
    rule: str,
    start_ms: int | None,
    end_ms: int | None,
    *,
    page_rows: int = 20_000,
    with_samples: bool = True,
) -> Any:
    """The rule's archived verdicts in the period, oldest first, a page at a time."""
    conds: list[sa.ColumnElement[bool]] = [unindexed(_v.c.rule) == rule]
    if start_ms is not None:
        conds.append(unindexed(_v.c.ts_ms) >= start_ms)
    if end_ms is not None:
        conds.append(unindexed(_v.c.ts_ms) < end_ms)
    columns = ("id", "device_id", "ts_ms", "model_version", "label", "ok")
    last = 0
    while True:
        query = verdict_page(columns, conds, after=last, size=page_rows, samples=with_samples)
        async with store.db.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return
        last = int(rows[-1][0])
        full = len(rows) == page_rows
        if with_samples:
            rows = [r for r in rows if r[8] is not None]
        if rows:
            cols = list(zip(*rows, strict=True))
            yield _Page(
                list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]), list(cols[4]),
                [bool(x) for x in cols[5]], list(cols[6]),
                list(cols[8]) if with_samples else [],
            )  # fmt: skip
        if not full:
            return


class _AlarmReplay:
    """The alarm engine's windows, in archive time."""

    def __init__(self, alarm: AlarmRuleConfig) -> None:
        self.alarm = alarm
        self._times: dict[str, deque[tuple[int, bool]]] = {}
        self._active: set[str] = set()
        self.raised: list[BacktestAlarm] = []

    def observe(self, device: str, ts_ms: int, ok: bool, labelled_ok: bool) -> None:
        window = self._times.setdefault(device, deque())
        if not ok:
            window.append((ts_ms, labelled_ok))
        while window and ts_ms - window[0][0] > self.alarm.window_s * 1000:
            window.popleft()
        count = len(window)
        if device not in self._active and count >= self.alarm.threshold:
            self._active.add(device)
            self.raised.append(
                BacktestAlarm(device, ts_ms, count, sum(1 for _, lab in window if lab))
            )
        elif device in self._active and count < self.alarm.threshold:
            self._active.discard(device)


class Backtest:
    """One replay (:meth:`run`)."""

    def __init__(
        self,
        store: IngestStore,
        inference: InferenceClient | None,
        *,
        rule: str,
        model: str,
        model_version: str,
        alarm: AlarmRuleConfig | None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        max_changes: int = 100,
        score_batch: int = 2048,
        inflight: int = 4,
    ) -> None:
        if model_version and inference is None:
            raise InvalidArgument("model_version: this rule's model is not scored by inference")
        if not model_version and (alarm is None or alarm.threshold <= 0):
            raise InvalidArgument("model_version or an alarm rule (threshold > 0): one needed")
        self._store = store
        self._inference = inference
        self.report = BacktestReport(rule, model, model_version)
        self._alarm = _AlarmReplay(alarm) if alarm is not None and alarm.threshold > 0 else None
        self._start, self._end = start_ms, end_ms
        self._max_changes = max_changes or 100
        self._batch = score_batch
        self._slots = asyncio.Semaphore(inflight)

    async def run(self) -> BacktestReport:
        """Replay the period."""
        began = time.perf_counter()
        scoring = bool(self.report.model_version)
        pending: asyncio.Task[tuple[list[str], list[bool]]] | None = None
        previous: _Page | None = None
        async for page in read_pages(
            self._store, self.report.rule, self._start, self._end, with_samples=scoring
        ):
            if pending is not None and previous is not None:
                self._account(previous, *await pending)
            previous = page
            pending = asyncio.create_task(self._score(page)) if scoring else None
            if not scoring:
                self._account(page, page.labels, page.oks)
        if pending is not None and previous is not None:
            self._account(previous, *await pending)
        if self._alarm is not None:
            self.report.alarms = self._alarm.raised
        self.report.seconds = time.perf_counter() - began
        return self.report

    async def _score(self, page: _Page) -> tuple[list[str], list[bool]]:
        assert self._inference is not None
        inference = self._inference

        async def one(chunk: Sequence[bytes]) -> tuple[list[str], list[bool]]:
            async with self._slots:
                result = await inference.predict(
                    model=self.report.model,
                    version=self.report.model_version,
                    samples_f32=b"".join(chunk),
                    lengths=[len(b) // 4 for b in chunk],
                )
            self.report.model_version = result.version
            names = np.array(result.labels, dtype=object)[result.label_index]
            return list(names), list(result.ok)

        parts = await asyncio.gather(
            *(
                one(page.samples[i : i + self._batch])
                for i in range(0, len(page.samples), self._batch)
            )
        )
        return [x for p in parts for x in p[0]], [x for p in parts for x in p[1]]

    def _account(self, page: _Page, labels: list[str], oks: list[bool]) -> None:
        r = self.report
        r.curves += len(page.ids)
        for i, (label, ok) in enumerate(zip(labels, oks, strict=True)):
            operator = page.operator[i]
            if operator is not None:
                r.labelled += 1
                r.backtest_correct += label == operator
                r.archived_correct += page.labels[i] == operator
            if label != page.labels[i]:
                r.changed += 1
                if operator is not None and operator != label:
                    r.labelled_otherwise += 1
                if len(r.changes) < self._max_changes:
                    r.changes.append(
                        {
                            "verdict_id": page.ids[i],
                            "device_id": page.devices[i],
                            "ts_ms": page.ts[i],
                            "archived_version": page.versions[i],
                            "archived_label": page.labels[i],
                            "label": label,
                            "ok": ok,
                            "operator_label": operator or "",
                        }
                    )
            if self._alarm is not None:
                self._alarm.observe(
                    page.devices[i], page.ts[i], ok, operator is not None and operator == "ok"
                )
