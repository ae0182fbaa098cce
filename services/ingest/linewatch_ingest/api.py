"""``linewatch.v1.IngestService``: rules, worker control, archive queries, live streams."""

# ruff: noqa: N802  (gRPC method names)

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.fanout import FanOut
from linewatch.runtime.grpc_auth import current_caller
from linewatch.runtime.redact import MASK, redact_url
from linewatch.v1 import ingest_pb2, ingest_pb2_grpc
from linewatch_ingest.alarms import REPORTED_KINDS
from linewatch_ingest.api_quality import QualityMethods
from linewatch_ingest.control import IngestController
from linewatch_ingest.convert import (
    alarm_record,
    dead_letter_record,
    telemetry_record,
    timestamp_ms,
    verdict_record,
)
from linewatch_ingest.inference_client import InferenceClient
from linewatch_ingest.labels import LabelBook
from linewatch_ingest.rules import rule_from_proto, rule_to_proto
from linewatch_ingest.shadow import ShadowScorer
from linewatch_ingest.store import IngestStore, Query
from linewatch_ingest.verdict_counts import VerdictCounter

__all__ = ["IngestServicer"]

Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

_ALARM_STATES = {
    ingest_pb2.ALARM_STATE_ACTIVE: "active",
    ingest_pb2.ALARM_STATE_CLEARED: "cleared",
}


def _query(f: ingest_pb2.ArchiveFilter, *, label: str = "", state: str = "") -> Query:
    start = end = None
    if f.HasField("time_range"):
        if f.time_range.HasField("start"):
            start = timestamp_ms(f.time_range.start)
        if f.time_range.HasField("end"):
            end = timestamp_ms(f.time_range.end)
    if f.page.page_size < 0:
        raise InvalidArgument("page.page_size: must not be negative")
    return Query(
        device_id=f.device_id,
        point=f.point,
        start_ms=start,
        end_ms=end,
        page_size=f.page.page_size,
        page_token=f.page.page_token,
        label=label,
        state=state,
    )


#: A caller that may write rules may read their secrets; any other reads them redacted.
_SEES_SECRETS = f"/{ingest_pb2.DESCRIPTOR.services_by_name['IngestService'].full_name}/UpdateRule"


def _shown(rule: Any) -> ingest_pb2.Rule:
    """The rule as the current caller may see it: webhook secrets are write-only."""
    proto = rule_to_proto(rule)
    caller = current_caller()
    if caller is not None and not caller.allows(_SEES_SECRETS) and proto.HasField("alarm"):
        if proto.alarm.webhook_secret:
            proto.alarm.webhook_secret = MASK
        if proto.alarm.escalate_webhook_secret:
            proto.alarm.escalate_webhook_secret = MASK
        proto.alarm.webhook_url = redact_url(proto.alarm.webhook_url)
        proto.alarm.escalate_webhook_url = redact_url(proto.alarm.escalate_webhook_url)
    return proto


class IngestServicer(QualityMethods, ingest_pb2_grpc.IngestServiceServicer):
    """The gRPC face of the controller and the archive."""

    def __init__(
        self,
        *,
        controller: IngestController,
        store: IngestStore,
        verdicts: FanOut[ingest_pb2.VerdictRecord],
        telemetry: FanOut[ingest_pb2.TelemetryRecord],
        alarms: FanOut[ingest_pb2.AlarmRecord],
        labels: LabelBook,
        shadow: ShadowScorer | None = None,
        inference: InferenceClient | None = None,
        max_page_size: int = 1000,
    ) -> None:
        self._ctl = controller
        self._store = store
        self._verdicts = verdicts
        self._telemetry = telemetry
        self._alarms = alarms
        self._max_page = max_page_size
        self._labels = labels
        self._shadow = shadow
        self._inference = inference
        self._counter = VerdictCounter(store.db)

    # --- rules -----------------------------------------------------------------------

    async def ListRules(
        self, request: ingest_pb2.ListRulesRequest, context: Ctx
    ) -> ingest_pb2.ListRulesResponse:
        return ingest_pb2.ListRulesResponse(rules=[_shown(r) for r in self._ctl.list_rules()])

    async def GetRule(
        self, request: ingest_pb2.GetRuleRequest, context: Ctx
    ) -> ingest_pb2.GetRuleResponse:
        return ingest_pb2.GetRuleResponse(rule=_shown(self._ctl.get_rule(request.name)))

    async def CreateRule(
        self, request: ingest_pb2.CreateRuleRequest, context: Ctx
    ) -> ingest_pb2.CreateRuleResponse:
        rule = await self._ctl.create_rule(rule_from_proto(request.rule))
        return ingest_pb2.CreateRuleResponse(rule=rule_to_proto(rule))

    async def UpdateRule(
        self, request: ingest_pb2.UpdateRuleRequest, context: Ctx
    ) -> ingest_pb2.UpdateRuleResponse:
        rule = await self._ctl.update_rule(rule_from_proto(request.rule))
        return ingest_pb2.UpdateRuleResponse(rule=rule_to_proto(rule))

    async def DeleteRule(
        self, request: ingest_pb2.DeleteRuleRequest, context: Ctx
    ) -> ingest_pb2.DeleteRuleResponse:
        await self._ctl.delete_rule(request.name)
        return ingest_pb2.DeleteRuleResponse()

    # --- worker control --------------------------------------------------------------

    async def GetIngestStatus(
        self, request: ingest_pb2.GetIngestStatusRequest, context: Ctx
    ) -> ingest_pb2.GetIngestStatusResponse:
        return await self._ctl.cluster_status()

    async def StartIngest(
        self, request: ingest_pb2.StartIngestRequest, context: Ctx
    ) -> ingest_pb2.StartIngestResponse:
        await self._ctl.start()
        return ingest_pb2.StartIngestResponse(status=self._ctl.status())

    async def StopIngest(
        self, request: ingest_pb2.StopIngestRequest, context: Ctx
    ) -> ingest_pb2.StopIngestResponse:
        await self._ctl.stop()
        return ingest_pb2.StopIngestResponse(status=self._ctl.status())

    async def PauseRule(
        self, request: ingest_pb2.PauseRuleRequest, context: Ctx
    ) -> ingest_pb2.PauseRuleResponse:
        self._ctl.pause(request.name)
        await self._ctl.tell_replicas("pause", request.name)
        return ingest_pb2.PauseRuleResponse()

    async def ResumeRule(
        self, request: ingest_pb2.ResumeRuleRequest, context: Ctx
    ) -> ingest_pb2.ResumeRuleResponse:
        self._ctl.resume(request.name)
        await self._ctl.tell_replicas("resume", request.name)
        return ingest_pb2.ResumeRuleResponse()

    async def SetWorkers(
        self, request: ingest_pb2.SetWorkersRequest, context: Ctx
    ) -> ingest_pb2.SetWorkersResponse:
        return ingest_pb2.SetWorkersResponse(workers=self._ctl.set_workers(request.workers))

    # --- archive ---------------------------------------------------------------------

    async def QueryTelemetry(
        self, request: ingest_pb2.QueryTelemetryRequest, context: Ctx
    ) -> ingest_pb2.QueryTelemetryResponse:
        page = await self._store.query_telemetry(_query(request.filter), max_page=self._max_page)
        return ingest_pb2.QueryTelemetryResponse(
            records=[telemetry_record(r) for r in page.rows], next_page_token=page.next_page_token
        )

    async def QueryVerdicts(
        self, request: ingest_pb2.QueryVerdictsRequest, context: Ctx
    ) -> ingest_pb2.QueryVerdictsResponse:
        query = _query(request.filter, label=request.label)
        page = await self._store.query_verdicts(query, max_page=self._max_page)
        marks = await self._labels.of(int(r.id) for r in page.rows)
        records = []
        for r in page.rows:
            mark = marks.get(int(r.id))
            records.append(verdict_record(r, mark.label, mark.note) if mark else verdict_record(r))
        return ingest_pb2.QueryVerdictsResponse(
            records=records, next_page_token=page.next_page_token
        )

    async def QueryVerdictCounts(
        self, request: ingest_pb2.QueryVerdictCountsRequest, context: Ctx
    ) -> ingest_pb2.QueryVerdictCountsResponse:
        return await self._counter.query(request)

    async def QueryDeadLetters(
        self, request: ingest_pb2.QueryDeadLettersRequest, context: Ctx
    ) -> ingest_pb2.QueryDeadLettersResponse:
        page = await self._store.query_dead_letters(_query(request.filter), max_page=self._max_page)
        return ingest_pb2.QueryDeadLettersResponse(
            records=[dead_letter_record(r) for r in page.rows],
            next_page_token=page.next_page_token,
        )

    async def QueryAlarms(
        self, request: ingest_pb2.QueryAlarmsRequest, context: Ctx
    ) -> ingest_pb2.QueryAlarmsResponse:
        query = _query(request.filter, state=_ALARM_STATES.get(request.state, ""))
        page = await self._store.query_alarms(query, max_page=self._max_page)
        return ingest_pb2.QueryAlarmsResponse(
            records=[alarm_record(r) for r in page.rows], next_page_token=page.next_page_token
        )

    async def AckAlarm(
        self, request: ingest_pb2.AckAlarmRequest, context: Ctx
    ) -> ingest_pb2.AckAlarmResponse:
        if not request.id:
            raise InvalidArgument("id is required")
        if len(request.note) > 1000:
            raise InvalidArgument("note: at most 1000 characters")
        if len(request.by) > 200:
            raise InvalidArgument("by: at most 200 characters")
        caller = current_caller()
        by = request.by.strip() or f"grpc:{caller.name if caller is not None else 'unknown'}"
        row = await self._ctl.deps.alarms.acknowledge(int(request.id), by=by, note=request.note)
        return ingest_pb2.AckAlarmResponse(alarm=alarm_record(row))

    async def RaiseAlarm(
        self, request: ingest_pb2.RaiseAlarmRequest, context: Ctx
    ) -> ingest_pb2.RaiseAlarmResponse:
        kind = _reported_kind(request.kind)
        if not 1 <= len(request.rule) <= 200:
            raise InvalidArgument("rule: 1 to 200 characters are required")
        if len(request.device_id) > 200:
            raise InvalidArgument("device_id: at most 200 characters")
        if request.severity not in ("info", "warning", "critical"):
            raise InvalidArgument("severity: one of info, warning, critical")
        if not 1 <= len(request.message) <= 1000:
            raise InvalidArgument("message: 1 to 1000 characters are required")
        row, raised = await self._ctl.deps.alarms.raise_reported(
            kind=kind,
            rule=request.rule,
            device_id=request.device_id,
            severity=request.severity,
            message=request.message,
            count=int(request.count),
        )
        return ingest_pb2.RaiseAlarmResponse(alarm=alarm_record(row), raised=raised)

    async def ClearAlarms(
        self, request: ingest_pb2.ClearAlarmsRequest, context: Ctx
    ) -> ingest_pb2.ClearAlarmsResponse:
        kind = _reported_kind(request.kind)
        if not 1 <= len(request.rule) <= 200:
            raise InvalidArgument("rule: 1 to 200 characters are required")
        cleared = await self._ctl.deps.alarms.clear_reported(
            kind=kind, rule=request.rule, device_id=request.device_id
        )
        return ingest_pb2.ClearAlarmsResponse(cleared=cleared)

    # --- built-in envelope -------------------------------------------------------------

    async def GetEnvelope(
        self, request: ingest_pb2.GetEnvelopeRequest, context: Ctx
    ) -> ingest_pb2.GetEnvelopeResponse:
        if not request.device_id or not request.point:
            raise InvalidArgument("device_id and point: both needed")
        return await self._ctl.envelope(request.rule, request.device_id, request.point)

    async def ResetEnvelope(
        self, request: ingest_pb2.ResetEnvelopeRequest, context: Ctx
    ) -> ingest_pb2.ResetEnvelopeResponse:
        if request.point and not request.device_id:
            raise InvalidArgument("point: needs device_id")
        reset = await self._ctl.reset_envelope(request.rule, request.device_id, request.point)
        return ingest_pb2.ResetEnvelopeResponse(reset=reset)

    # --- live streams ----------------------------------------------------------------

    async def StreamVerdicts(
        self, request: ingest_pb2.StreamVerdictsRequest, context: Ctx
    ) -> AsyncIterator[ingest_pb2.StreamVerdictsResponse]:
        async with self._verdicts.subscribe() as queue:
            while True:
                yield ingest_pb2.StreamVerdictsResponse(verdict=await queue.get())

    async def StreamTelemetry(
        self, request: ingest_pb2.StreamTelemetryRequest, context: Ctx
    ) -> AsyncIterator[ingest_pb2.StreamTelemetryResponse]:
        async with self._telemetry.subscribe() as queue:
            while True:
                yield ingest_pb2.StreamTelemetryResponse(telemetry=await queue.get())

    async def StreamAlarms(
        self, request: ingest_pb2.StreamAlarmsRequest, context: Ctx
    ) -> AsyncIterator[ingest_pb2.StreamAlarmsResponse]:
        async with self._alarms.subscribe() as queue:
            while True:
                yield ingest_pb2.StreamAlarmsResponse(alarm=await queue.get())


def _reported_kind(kind: str) -> str:
    if kind not in REPORTED_KINDS:
        raise InvalidArgument(f"kind: one of {', '.join(sorted(REPORTED_KINDS))}")
    return kind
