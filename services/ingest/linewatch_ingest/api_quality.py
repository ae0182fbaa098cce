"""The quality-loop methods of ``linewatch.v1.IngestService``: operator labels, exports,
shadow evaluation and backtests (mixed into :class:`~linewatch_ingest.api.IngestServicer`)."""

# ruff: noqa: N802  (gRPC method names)

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.grpc_auth import current_caller
from linewatch.v1 import ingest_pb2
from linewatch_ingest.backtest import Backtest
from linewatch_ingest.control import IngestController
from linewatch_ingest.convert import stamp, timestamp_ms, verdict_record
from linewatch_ingest.evaluation import evaluate
from linewatch_ingest.export import ExportSpec, Format, Kind, export_chunks
from linewatch_ingest.inference_client import InferenceClient
from linewatch_ingest.labels import LabelBook, OperatorLabel
from linewatch_ingest.rules import rule_from_proto
from linewatch_ingest.shadow import ShadowScorer
from linewatch_ingest.store import IngestStore

__all__ = ["QualityMethods"]

Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

_KINDS: dict[int, Kind] = {
    ingest_pb2.EXPORT_KIND_CURVES: "curves",
    ingest_pb2.EXPORT_KIND_TELEMETRY: "telemetry",
    ingest_pb2.EXPORT_KIND_VERDICTS: "verdicts",
    ingest_pb2.EXPORT_KIND_ALARMS: "alarms",
}
_FORMATS: dict[int, Format] = {
    ingest_pb2.EXPORT_FORMAT_UNSPECIFIED: "csv",
    ingest_pb2.EXPORT_FORMAT_CSV: "csv",
    ingest_pb2.EXPORT_FORMAT_PARQUET: "parquet",
}


def _range(tr: Any) -> tuple[int | None, int | None]:
    start = timestamp_ms(tr.start) if tr.HasField("start") else None
    end = timestamp_ms(tr.end) if tr.HasField("end") else None
    return start, end


def label_proto(label: OperatorLabel, verdict: Any) -> ingest_pb2.VerdictLabel:
    """A stored label with its verdict."""
    return ingest_pb2.VerdictLabel(
        verdict_id=label.verdict_id,
        label=label.label,
        note=label.note,
        labelled_by=label.labelled_by,
        labelled_at=stamp(label.labelled_at_ms),
        verdict=verdict_record(verdict, label.label, label.note),
    )


class QualityMethods:
    """Operator labels, exports, shadow evaluation, backtests."""

    _ctl: IngestController
    _store: IngestStore
    _labels: LabelBook
    _shadow: ShadowScorer | None
    _inference: InferenceClient | None
    _max_page: int

    async def SetVerdictLabel(
        self, request: ingest_pb2.SetVerdictLabelRequest, context: Ctx
    ) -> ingest_pb2.SetVerdictLabelResponse:
        if not request.verdict_id:
            raise InvalidArgument("verdict_id: required")
        if not request.label or len(request.label) > 128:
            raise InvalidArgument("label: 1..128 characters")
        caller = current_caller()
        by = caller.name if caller is not None else ""
        if request.labelled_by:
            by = f"{by}/{request.labelled_by[:128]}" if by else request.labelled_by[:128]
        label, verdict = await self._labels.set(request.verdict_id, request.label, request.note, by)
        return ingest_pb2.SetVerdictLabelResponse(label=label_proto(label, verdict))

    async def ListLabels(
        self, request: ingest_pb2.ListLabelsRequest, context: Ctx
    ) -> ingest_pb2.ListLabelsResponse:
        if request.page.page_size < 0:
            raise InvalidArgument("page.page_size: must not be negative")
        page = await self._labels.list(
            rule=request.rule,
            device_id=request.device_id,
            label=request.label,
            disagree=request.disagree,
            page_size=request.page.page_size,
            page_token=request.page.page_token,
            max_page=self._max_page,
        )
        return ingest_pb2.ListLabelsResponse(
            labels=[label_proto(lab, row) for lab, row in page.items],
            next_page_token=page.next_page_token,
        )

    async def ReadExport(
        self, request: ingest_pb2.ReadExportRequest, context: Ctx
    ) -> AsyncIterator[ingest_pb2.ReadExportResponse]:
        kind = _KINDS.get(request.kind)
        if kind is None:
            raise InvalidArgument("kind: curves, telemetry, verdicts or alarms")
        fmt = _FORMATS.get(request.format)
        if fmt is None:
            raise InvalidArgument("format: csv or parquet")
        start, end = _range(request.time_range)
        spec = ExportSpec(
            kind=kind,
            format=fmt,
            rule=request.rule,
            device_id=request.device_id,
            start_ms=start,
            end_ms=end,
            labelled=request.labelled,
            label=request.label,
        )
        async for chunk in export_chunks(self._store, spec):
            yield ingest_pb2.ReadExportResponse(data=chunk)

    async def GetModelEvaluation(
        self, request: ingest_pb2.GetModelEvaluationRequest, context: Ctx
    ) -> ingest_pb2.GetModelEvaluationResponse:
        if request.page.page_size < 0:
            raise InvalidArgument("page.page_size: must not be negative")
        ev = await evaluate(
            self._store,
            request.model,
            request.version,
            page_size=request.page.page_size,
            page_token=request.page.page_token,
            max_page=self._max_page,
        )
        return ingest_pb2.GetModelEvaluationResponse(
            model=request.model,
            version=request.version,
            compared=ev.compared,
            agreed=ev.agreed,
            agreement_rate=ev.agreement_rate,
            labelled=ev.labelled,
            candidate_correct=ev.candidate_correct,
            promoted_correct=ev.promoted_correct,
            candidate_accuracy=ev.candidate_accuracy,
            promoted_accuracy=ev.promoted_accuracy,
            dropped=self._shadow.dropped if self._shadow is not None else 0,
            disagreements=[
                ingest_pb2.Disagreement(
                    verdict_id=int(r.id),
                    device_id=r.device_id,
                    ts=stamp(int(r.ts_ms)),
                    rule=r.rule,
                    promoted_version=r.model_version,
                    promoted_label=r.label,
                    candidate_label=r.candidate_label,
                    operator_label=r.operator_label or "",
                )
                for r in ev.disagreements
            ],
            next_page_token=ev.next_page_token,
        )

    async def RunBacktest(
        self, request: ingest_pb2.RunBacktestRequest, context: Ctx
    ) -> ingest_pb2.RunBacktestResponse:
        rule = self._ctl.get_rule(request.rule)
        alarm = rule.alarm
        if request.HasField("alarm"):
            probe = ingest_pb2.Rule(
                name=rule.name, source_topic="x", model="x", output_topic="x", alarm=request.alarm
            )
            alarm = rule_from_proto(probe).alarm
        start, end = _range(request.time_range)
        inference = None if rule.model == "envelope" or rule.target else self._inference
        report = await Backtest(
            self._store,
            inference,
            rule=rule.name,
            model=rule.model,
            model_version=request.model_version,
            alarm=alarm,
            start_ms=start,
            end_ms=end,
            max_changes=request.max_changes,
        ).run()
        return ingest_pb2.RunBacktestResponse(
            rule=report.rule,
            model=report.model,
            model_version=report.model_version,
            curves=report.curves,
            changed=report.changed,
            labelled=report.labelled,
            backtest_correct=report.backtest_correct,
            archived_correct=report.archived_correct,
            labelled_otherwise=report.labelled_otherwise,
            changes=[
                ingest_pb2.BacktestChange(
                    verdict_id=c["verdict_id"],
                    device_id=c["device_id"],
                    ts=stamp(c["ts_ms"]),
                    archived_version=c["archived_version"],
                    archived_label=c["archived_label"],
                    label=c["label"],
                    ok=c["ok"],
                    operator_label=c["operator_label"],
                )
                for c in report.changes
            ],
            alarms=[
                ingest_pb2.BacktestAlarm(
                    device_id=a.device_id,
                    raised_at=stamp(a.raised_at_ms),
                    count=a.count,
                    labelled_ok=a.labelled_ok,
                )
                for a in report.alarms
            ],
            seconds=report.seconds,
            curves_per_s=report.curves_per_s,
        )
