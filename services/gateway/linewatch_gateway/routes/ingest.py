"""Ingest: rules CRUD, worker control and the archive queries.

A rule's fields are checked by ingest, the service that owns rules: the request models
here give their shape only (types, unknown fields refused, what a proto ``uint32`` can
hold), and ingest answers a rule it cannot take with INVALID_ARGUMENT and the reason,
which is the REST 400's message. So REST and gRPC accept and refuse the same rules.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from linewatch.v1 import ingest_pb2
from linewatch_gateway.auth import WriteSubject
from linewatch_gateway.clients import Backends
from linewatch_gateway.convert import enum_value, message_to_dict, model_for
from linewatch_gateway.errors import ApiError
from linewatch_gateway.redact import MASK, is_redacted_url, keep_secrets, redact_rule
from linewatch_gateway.routes.common import (
    ERRORS,
    NAME_PATTERN,
    AlarmParams,
    PageParams,
    Read,
    TimeParams,
    TimeQuery,
    VerdictParams,
    Write,
    backends,
    local_page,
    page_body,
    page_model,
    page_request,
    time_range,
)

router = APIRouter(responses=ERRORS)

B = Annotated[Backends, Depends(backends)]
RuleName = Annotated[str, Path(pattern=NAME_PATTERN, description="The rule name.")]

RuleOut = model_for(ingest_pb2.Rule.DESCRIPTOR)

_U32 = 2**32 - 1
"""The largest value of a proto ``uint32`` (a shape limit, not a rule)."""
StatusOut = model_for(ingest_pb2.GetIngestStatusResponse.DESCRIPTOR)


class AlarmCommandBody(BaseModel):
    """A device command an alarm sends (to the alarming device, or to `devices`)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    params: dict[str, Any] = Field(default_factory=dict)
    devices: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        default_factory=list, max_length=1000
    )
    timeout_s: int = Field(0, ge=0, le=86_400)
    expires_s: int = Field(0, ge=0, le=86_400 * 30)

    def to_proto(self) -> ingest_pb2.AlarmCommand:
        return ingest_pb2.AlarmCommand(
            name=self.name,
            params_json=json.dumps(self.params, separators=(",", ":")),
            devices=self.devices,
            timeout_s=self.timeout_s,
            expires_s=self.expires_s,
        )


WebhookFormat = Literal["generic", "feishu", "dingtalk", "wecom", "slack"]


class AlarmBody(BaseModel):
    """Raise an alarm after `threshold` not-ok verdicts within `window_s` per device,
    when a device is silent for `no_data_s`, or on `deadletter_threshold` dead letters
    within `deadletter_window_s`; escalate after `escalate_after_s` unacknowledged."""

    model_config = ConfigDict(extra="forbid")
    threshold: int = Field(0, ge=0, le=_U32, description="0: no alarm.")
    window_s: int = Field(60, ge=0, le=_U32, description="0: 60.")
    webhook_url: str = Field(
        "",
        max_length=2048,
        description="Reads show only scheme and host (`https://host/***`); writing that "
        "back keeps the stored URL.",
    )
    webhook_format: WebhookFormat = "generic"
    webhook_secret: str = Field(
        "",
        max_length=512,
        description="Write-only: reads show `***` when set; writing `***` keeps it.",
    )
    on_raise: AlarmCommandBody | None = Field(None, description="A command sent per raise.")
    on_clear: AlarmCommandBody | None = Field(None, description="A command sent per clear.")
    command_cooldown_s: int = Field(0, ge=0, le=86_400)
    severity: Literal["", "info", "warning", "critical"] = Field("", description="'': warning.")
    no_data_s: int = Field(0, ge=0, le=_U32, description="Silent device alarm after; 0: off.")
    deadletter_threshold: int = Field(0, ge=0, le=_U32, description="0: no dead-letter alarm.")
    deadletter_window_s: int = Field(60, ge=0, le=_U32, description="0: 60.")
    escalate_after_s: int = Field(
        0, ge=0, le=_U32, description="Escalate once if still unacknowledged; 0: never."
    )
    escalate_webhook_url: str = Field(
        "", max_length=2048, description="Empty: `webhook_url`. Redacted on reads."
    )
    escalate_webhook_format: Literal["", "generic", "feishu", "dingtalk", "wecom", "slack"] = ""
    escalate_webhook_secret: str = Field("", max_length=512, description="Write-only.")

    def to_proto(self) -> ingest_pb2.AlarmRule:
        out = ingest_pb2.AlarmRule(**self.model_dump(exclude={"on_raise", "on_clear"}))
        if self.on_raise is not None:
            out.on_raise.CopyFrom(self.on_raise.to_proto())
        if self.on_clear is not None:
            out.on_clear.CopyFrom(self.on_clear.to_proto())
        return out


Side = Literal["any", "left", "right", "top", "bottom"]
_SIDES = {"any": 5, "left": 1, "right": 2, "top": 3, "bottom": 4}


class WindowBody(BaseModel):
    """A monitoring window: a box over (time, value) the curve must pass or must avoid."""

    model_config = ConfigDict(extra="forbid")
    name: str
    x_axis: Literal["fraction", "index"] = "fraction"
    x_min: float
    x_max: float
    y_min: float
    y_max: float
    mode: Literal["pass", "avoid"] = "pass"
    enter: Side = "left"
    exit: Side = "right"

    def to_proto(self) -> ingest_pb2.MonitorWindow:
        """The proto window."""
        return ingest_pb2.MonitorWindow(
            name=self.name,
            x_axis=ingest_pb2.WINDOW_AXIS_INDEX
            if self.x_axis == "index"
            else ingest_pb2.WINDOW_AXIS_FRACTION,
            x_min=self.x_min,
            x_max=self.x_max,
            y_min=self.y_min,
            y_max=self.y_max,
            mode=ingest_pb2.WINDOW_MODE_AVOID
            if self.mode == "avoid"
            else ingest_pb2.WINDOW_MODE_PASS,
            enter=_SIDES[self.enter],  # type: ignore[arg-type]
            exit=_SIDES[self.exit],  # type: ignore[arg-type]
        )


class ModelParamsBody(BaseModel):
    """Parameters of the built-in `envelope` model."""

    model_config = ConfigDict(extra="forbid")
    teach_in: int = Field(50, ge=0, le=_U32)
    width: float = 4.0
    length: int = Field(256, ge=0, le=_U32)
    max_shift: float = 0.03
    windows: list[WindowBody] = Field(default_factory=list)

    def to_proto(self) -> ingest_pb2.ModelParams:
        """The proto parameters."""
        return ingest_pb2.ModelParams(
            teach_in=self.teach_in,
            width=self.width,
            length=self.length,
            max_shift=self.max_shift,
            windows=[w.to_proto() for w in self.windows],
        )


class RuleBody(BaseModel):
    """An ingest rule: topic filter → model → output topic, with actions."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "demo",
                    "broker": "default",
                    "source_topic": "plant/+/+/telemetry",
                    "model": "curve-quality",
                    "output_topic": "plant/{1}/{2}/verdict",
                    "qos": 1,
                    "archive": True,
                    "alarm": {"threshold": 3, "window_s": 60},
                    "enabled": True,
                }
            ]
        },
    )
    name: str = Field(description="1-100 characters of `A-Z a-z 0-9 _ . -`.")
    broker: str = "default"
    source_topic: str = Field("", description="Required: an MQTT topic filter.")
    model: str = Field("", description="Required: a model name (or `envelope`).")
    model_version: str = Field(
        "", description="Pin a model version; empty: the model's promoted version."
    )
    output_topic: str = Field("", description="Required: a topic template.")
    qos: int = Field(1, ge=0, le=_U32)
    archive: bool = True
    alarm: AlarmBody | None = None
    enabled: bool = True
    model_params: ModelParamsBody | None = None
    target: str = Field("", description="A configured inference target (empty: the default).")

    def to_proto(self) -> ingest_pb2.Rule:
        """The proto rule."""
        rule = ingest_pb2.Rule(
            name=self.name,
            broker=self.broker,
            source_topic=self.source_topic,
            model=self.model,
            model_version=self.model_version,
            output_topic=self.output_topic,
            qos=self.qos,
            archive=self.archive,
            enabled=self.enabled,
            target=self.target,
        )
        if self.alarm is not None:
            rule.alarm.CopyFrom(self.alarm.to_proto())
        if self.model_params is not None:
            rule.model_params.CopyFrom(self.model_params.to_proto())
        return rule


class WorkersBody(BaseModel):
    """Worker concurrency."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"workers": 4}]})
    workers: int = Field(ge=1, le=1024)


class WorkersOut(BaseModel):
    """The concurrency now in effect."""

    workers: int


@router.get(
    "/v1/rules",
    dependencies=Read,
    response_model=page_model(ingest_pb2.Rule.DESCRIPTOR),
    tags=["rules"],
)
async def list_rules(b: B, page: PageParams) -> Any:
    """Every ingest rule."""
    resp = await b.call("ingest", b.ingest.ListRules, ingest_pb2.ListRulesRequest())
    return local_page([redact_rule(rule) for rule in resp.rules], page)


@router.post(
    "/v1/rules", dependencies=Write, status_code=201, response_model=RuleOut, tags=["rules"]
)
async def create_rule(b: B, body: RuleBody) -> Any:
    """Create a rule (it starts consuming when enabled)."""
    rule = body.to_proto()
    try:
        keep_secrets(rule, None)
    except ValueError as exc:
        raise ApiError(400, "invalid_argument", str(exc)) from exc
    req = ingest_pb2.CreateRuleRequest(rule=rule)
    resp = await b.call("ingest", b.ingest.CreateRule, req)
    return message_to_dict(redact_rule(resp.rule))


@router.get("/v1/rules/{name}", dependencies=Read, response_model=RuleOut, tags=["rules"])
async def get_rule(b: B, name: RuleName) -> Any:
    """One rule."""
    resp = await b.call("ingest", b.ingest.GetRule, ingest_pb2.GetRuleRequest(name=name))
    return message_to_dict(redact_rule(resp.rule))


@router.put("/v1/rules/{name}", dependencies=Write, response_model=RuleOut, tags=["rules"])
async def update_rule(b: B, name: RuleName, body: RuleBody) -> Any:
    """Replace a rule; the body's name must be the path's."""
    if body.name != name:
        raise ApiError(400, "invalid_argument", "name: the body's name differs from the path's")
    rule = body.to_proto()
    if rule.HasField("alarm") and (
        MASK in (rule.alarm.webhook_secret, rule.alarm.escalate_webhook_secret)
        or is_redacted_url(rule.alarm.webhook_url)
        or is_redacted_url(rule.alarm.escalate_webhook_url)
    ):
        stored = await b.call("ingest", b.ingest.GetRule, ingest_pb2.GetRuleRequest(name=name))
        try:
            keep_secrets(rule, stored.rule)
        except ValueError as exc:
            raise ApiError(400, "invalid_argument", str(exc)) from exc
    req = ingest_pb2.UpdateRuleRequest(rule=rule)
    resp = await b.call("ingest", b.ingest.UpdateRule, req)
    return message_to_dict(redact_rule(resp.rule))


@router.delete("/v1/rules/{name}", dependencies=Write, status_code=204, tags=["rules"])
async def delete_rule(b: B, name: RuleName) -> Response:
    """Delete a rule (it stops consuming)."""
    await b.call("ingest", b.ingest.DeleteRule, ingest_pb2.DeleteRuleRequest(name=name))
    return Response(status_code=204)


@router.post("/v1/rules/{name}/pause", dependencies=Write, status_code=204, tags=["rules"])
async def pause_rule(b: B, name: RuleName) -> Response:
    """Pause one rule's consumption."""
    await b.call("ingest", b.ingest.PauseRule, ingest_pb2.PauseRuleRequest(name=name))
    return Response(status_code=204)


@router.post("/v1/rules/{name}/resume", dependencies=Write, status_code=204, tags=["rules"])
async def resume_rule(b: B, name: RuleName) -> Response:
    """Resume a paused rule."""
    await b.call("ingest", b.ingest.ResumeRule, ingest_pb2.ResumeRuleRequest(name=name))
    return Response(status_code=204)


EnvelopeOut = model_for(ingest_pb2.GetEnvelopeResponse.DESCRIPTOR)
IdParam = Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[^/+#\x00]+$")]
OptIdParam = Annotated[str, Query(max_length=200, pattern=r"^[^/+#\x00]*$")]


class ResetOut(BaseModel):
    """How many bands and teach-ins were forgotten."""

    reset: int


@router.get(
    "/v1/rules/{name}/envelope", dependencies=Read, response_model=EnvelopeOut, tags=["rules"]
)
async def get_envelope(b: B, name: RuleName, device_id: IdParam, point: IdParam) -> Any:
    """The learned band of an `envelope` rule for one device and point (centre, lower and
    upper edge per resampled sample), or its teach-in progress (`ready: false`)."""
    req = ingest_pb2.GetEnvelopeRequest(rule=name, device_id=device_id, point=point)
    resp = await b.call("ingest", b.ingest.GetEnvelope, req)
    return message_to_dict(resp)


@router.post(
    "/v1/rules/{name}/envelope/reset",
    dependencies=Write,
    response_model=ResetOut,
    tags=["rules"],
)
async def reset_envelope(
    b: B, name: RuleName, device_id: OptIdParam = "", point: OptIdParam = ""
) -> Any:
    """Teach an `envelope` rule again: every device, or one `device_id` (and `point`)."""
    if point and not device_id:
        raise ApiError(400, "invalid_argument", "point: needs device_id")
    req = ingest_pb2.ResetEnvelopeRequest(rule=name, device_id=device_id, point=point)
    resp = await b.call("ingest", b.ingest.ResetEnvelope, req)
    return {"reset": resp.reset}


@router.get("/v1/ingest/status", dependencies=Read, response_model=StatusOut, tags=["ingest"])
async def ingest_status(b: B) -> Any:
    """Worker state, per-rule rates and queue depths."""
    resp = await b.call("ingest", b.ingest.GetIngestStatus, ingest_pb2.GetIngestStatusRequest())
    return message_to_dict(resp)


@router.post("/v1/ingest/start", dependencies=Write, response_model=StatusOut, tags=["ingest"])
async def ingest_start(b: B) -> Any:
    """Start the workers."""
    resp = await b.call("ingest", b.ingest.StartIngest, ingest_pb2.StartIngestRequest())
    return message_to_dict(resp.status)


@router.post("/v1/ingest/stop", dependencies=Write, response_model=StatusOut, tags=["ingest"])
async def ingest_stop(b: B) -> Any:
    """Stop the workers (messages stay queued at the broker)."""
    resp = await b.call("ingest", b.ingest.StopIngest, ingest_pb2.StopIngestRequest())
    return message_to_dict(resp.status)


@router.put("/v1/ingest/workers", dependencies=Write, response_model=WorkersOut, tags=["ingest"])
async def ingest_workers(b: B, body: WorkersBody) -> Any:
    """Set the worker concurrency."""
    req = ingest_pb2.SetWorkersRequest(workers=body.workers)
    resp = await b.call("ingest", b.ingest.SetWorkers, req)
    return {"workers": resp.workers}


def _filter(q: TimeQuery) -> ingest_pb2.ArchiveFilter:
    return ingest_pb2.ArchiveFilter(
        device_id=q.device or "",
        point=q.point or "",
        time_range=time_range(q),
        page=page_request(q),
    )


@router.get(
    "/v1/telemetry",
    dependencies=Read,
    response_model=page_model(ingest_pb2.TelemetryRecord.DESCRIPTOR),
    tags=["archive"],
)
async def query_telemetry(b: B, q: TimeParams) -> Any:
    """Archived curves, newest first."""
    req = ingest_pb2.QueryTelemetryRequest(filter=_filter(q))
    resp = await b.call("ingest", b.ingest.QueryTelemetry, req)
    return page_body(list(resp.records), resp.next_page_token)


@router.get(
    "/v1/verdicts",
    dependencies=Read,
    response_model=page_model(ingest_pb2.VerdictRecord.DESCRIPTOR),
    tags=["archive"],
)
async def query_verdicts(b: B, q: VerdictParams) -> Any:
    """Archived verdicts, newest first."""
    req = ingest_pb2.QueryVerdictsRequest(filter=_filter(q), label=q.label or "")
    resp = await b.call("ingest", b.ingest.QueryVerdicts, req)
    return page_body(list(resp.records), resp.next_page_token)


@router.get(
    "/v1/deadletters",
    dependencies=Read,
    response_model=page_model(ingest_pb2.DeadLetterRecord.DESCRIPTOR),
    tags=["archive"],
)
async def query_deadletters(b: B, q: TimeParams) -> Any:
    """Messages that failed validation, with the reason."""
    req = ingest_pb2.QueryDeadLettersRequest(filter=_filter(q))
    resp = await b.call("ingest", b.ingest.QueryDeadLetters, req)
    return page_body(list(resp.records), resp.next_page_token)


@router.get(
    "/v1/alarms",
    dependencies=Read,
    response_model=page_model(ingest_pb2.AlarmRecord.DESCRIPTOR),
    tags=["archive"],
)
async def query_alarms(b: B, q: AlarmParams) -> Any:
    """Alarms, newest first."""
    number = enum_value(ingest_pb2.AlarmState.DESCRIPTOR, q.state) if q.state else 0
    req = ingest_pb2.QueryAlarmsRequest(filter=_filter(q), state=number)  # type: ignore[arg-type]
    resp = await b.call("ingest", b.ingest.QueryAlarms, req)
    return page_body(list(resp.records), resp.next_page_token)


class AckBody(BaseModel):
    """An operator's acknowledgement of an alarm."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field("", max_length=1000, description="What was done or found.")


@router.post(
    "/v1/alarms/{alarm_id}/ack",
    response_model=model_for(ingest_pb2.AlarmRecord.DESCRIPTOR),
    tags=["archive"],
)
async def ack_alarm(
    b: B,
    by: WriteSubject,
    alarm_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="The alarm id.")],
    body: AckBody | None = None,
) -> Any:
    """Acknowledge an alarm (write token): records who (the token's subject), when and the
    note, stops its escalation; 409 if it was acknowledged before."""
    req = ingest_pb2.AckAlarmRequest(id=alarm_id, note=body.note if body else "", by=by)
    resp = await b.call("ingest", b.ingest.AckAlarm, req)
    return message_to_dict(resp.alarm)
