"""The quality loop: operator labels, datasets and exports, shadow evaluation, backtests.

Datasets and exports are streamed: ingest sends the file a page of rows at a time
(``ReadExport``) and the response body forwards each chunk as it comes, so neither
service holds more than a page whatever the size of the export.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from linewatch.v1 import common_pb2, ingest_pb2
from linewatch_gateway.clients import Backends
from linewatch_gateway.convert import message_to_dict, model_for
from linewatch_gateway.errors import ApiError, from_grpc
from linewatch_gateway.routes.common import (
    ERRORS,
    NAME_PATTERN,
    Read,
    Write,
    backends,
    page_model,
)
from linewatch_gateway.routes.ingest import AlarmBody

router = APIRouter(responses=ERRORS)

B = Annotated[Backends, Depends(backends)]
VerdictId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The verdict's `id`.")]
Name = Annotated[str, Path(pattern=NAME_PATTERN)]
Filter = Annotated[str, Query(max_length=200, pattern=r"^[^/+#\x00]*$")]
Fmt = Annotated[Literal["csv", "parquet"], Query(description="`csv` or `parquet`.")]
From = Annotated[
    datetime | None, Query(alias="from", description="From this time (RFC 3339), inclusive.")
]
To = Annotated[datetime | None, Query(alias="to", description="Until this time, exclusive.")]
PageSize = Annotated[int, Query(ge=1, le=1000)]
PageToken = Annotated[str, Query(max_length=512)]

LabelOut = model_for(ingest_pb2.VerdictLabel.DESCRIPTOR)
EvaluationOut = model_for(ingest_pb2.GetModelEvaluationResponse.DESCRIPTOR)
BacktestOut = model_for(ingest_pb2.RunBacktestResponse.DESCRIPTOR)

_MEDIA = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
_FORMATS = {"csv": ingest_pb2.EXPORT_FORMAT_CSV, "parquet": ingest_pb2.EXPORT_FORMAT_PARQUET}
_KINDS = {
    "curves": ingest_pb2.EXPORT_KIND_CURVES,
    "telemetry": ingest_pb2.EXPORT_KIND_TELEMETRY,
    "verdicts": ingest_pb2.EXPORT_KIND_VERDICTS,
    "alarms": ingest_pb2.EXPORT_KIND_ALARMS,
}


class LabelBody(BaseModel):
    """What the part really was: a label of the verdict's model, or `ok`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"label": "ok", "note": "false alarm: sensor noise"}]},
    )
    label: str = Field(min_length=1, max_length=128)
    note: str = Field("", max_length=2000)


class BacktestBody(BaseModel):
    """Replay a rule's archived period through a model version and/or an alarm rule."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "rule": "demo",
                    "from": "2026-12-01T00:00:00Z",
                    "to": "2026-12-02T00:00:00Z",
                    "model_version": "2",
                }
            ]
        },
    )
    rule: str = Field(pattern=NAME_PATTERN)
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    model_version: str = Field(
        "", max_length=64, description="Score with this version (empty: alarm replay only)."
    )
    alarm: AlarmBody | None = Field(None, description="An alarm rule (unset: the rule's own).")
    max_changes: int = Field(100, ge=1, le=10_000)


def _time_range(start: datetime | None, end: datetime | None) -> common_pb2.TimeRange:
    if start is not None and end is not None and end < start:
        raise ApiError(400, "invalid_argument", "to: must not be before from")
    out = common_pb2.TimeRange()
    try:
        if start is not None:
            out.start.FromDatetime(start)
        if end is not None:
            out.end.FromDatetime(end)
    except (ValueError, OverflowError) as exc:
        raise ApiError(400, "invalid_argument", f"time out of range: {exc}") from exc
    return out


def _who(request: Request) -> str:
    """Which write token labelled (a digest prefix, never the token)."""
    auth = request.headers.get("authorization", "")
    token = auth.partition(" ")[2].strip()
    return f"token:{hashlib.sha256(token.encode()).hexdigest()[:8]}" if token else ""


@router.put(
    "/v1/verdicts/{verdict_id}/label", dependencies=Write, response_model=LabelOut, tags=["labels"]
)
async def label_verdict(b: B, verdict_id: VerdictId, body: LabelBody, request: Request) -> Any:
    """Record what an operator says the part really was (replaces an earlier label)."""
    req = ingest_pb2.SetVerdictLabelRequest(
        verdict_id=verdict_id, label=body.label, note=body.note, labelled_by=_who(request)
    )
    resp = await b.call("ingest", b.ingest.SetVerdictLabel, req)
    return message_to_dict(resp.label)


@router.get(
    "/v1/labels",
    dependencies=Read,
    response_model=page_model(ingest_pb2.VerdictLabel.DESCRIPTOR),
    tags=["labels"],
)
async def list_labels(
    b: B,
    *,
    rule: Filter = "",
    device_id: Filter = "",
    label: Filter = "",
    disagree: bool = False,
    page_size: PageSize = 100,
    page_token: PageToken = "",
) -> Any:
    """Operator labels with their verdicts, newest first; `disagree=true`: only those
    where the operator's label differs from the model's."""
    req = ingest_pb2.ListLabelsRequest(
        rule=rule,
        device_id=device_id,
        label=label,
        disagree=disagree,
        page=common_pb2.PageRequest(page_size=page_size, page_token=page_token),
    )
    resp = await b.call("ingest", b.ingest.ListLabels, req)
    return {
        "items": [message_to_dict(m) for m in resp.labels],
        "next_page_token": resp.next_page_token,
    }


async def _stream(b: Backends, req: ingest_pb2.ReadExportRequest, name: str, fmt: str) -> Any:
    call = b.ingest.ReadExport(req)
    chunks = call.__aiter__()
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        first = None
    except grpc.aio.AioRpcError as exc:
        raise from_grpc(exc, "ingest") from exc

    async def body() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield first.data
            async for chunk in chunks:
                yield chunk.data
        finally:
            call.cancel()

    ext = "csv" if fmt == "csv" else "parquet"
    return StreamingResponse(
        body(),
        media_type=_MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{ext}"'},
    )


_FILE = {"200": {"content": {m: {} for m in _MEDIA.values()}, "description": "The file."}}


@router.get(
    "/v1/datasets/curves",
    dependencies=Read,
    tags=["datasets"],
    response_class=StreamingResponse,
    responses=_FILE,  # type: ignore[arg-type]
)
async def dataset_curves(
    b: B,
    *,
    format: Fmt = "csv",
    labelled: bool = False,
    rule: Filter = "",
    device_id: Filter = "",
    start: From = None,
    end: To = None,
) -> Any:
    """Archived curves with their verdicts and operator labels, streamed (columns
    `verdict_id, ts_ms, device_id, point, rule, model, model_version, label, ok,
    operator_label, note, samples`; see docs/rest.md)."""
    req = ingest_pb2.ReadExportRequest(
        kind=ingest_pb2.EXPORT_KIND_CURVES,
        format=_FORMATS[format],
        rule=rule,
        device_id=device_id,
        time_range=_time_range(start, end),
        labelled=labelled,
    )
    return await _stream(b, req, "curves", format)


@router.get(
    "/v1/exports/{kind}",
    dependencies=Read,
    tags=["datasets"],
    response_class=StreamingResponse,
    responses=_FILE,  # type: ignore[arg-type]
)
async def export(
    b: B,
    *,
    kind: Literal["telemetry", "verdicts", "alarms"],
    format: Fmt = "csv",
    rule: Filter = "",
    device_id: Filter = "",
    start: From = None,
    end: To = None,
    labelled: bool = False,
    label: Annotated[
        str, Query(max_length=128, description="Verdicts: this model label; alarms: a state.")
    ] = "",
) -> Any:
    """A filtered export of the archive, streamed as CSV or Parquet."""
    req = ingest_pb2.ReadExportRequest(
        kind=_KINDS[kind],
        format=_FORMATS[format],
        rule=rule,
        device_id=device_id,
        time_range=_time_range(start, end),
        labelled=labelled,
        label=label,
    )
    return await _stream(b, req, kind, format)


@router.get(
    "/v1/models/{name}/versions/{version}/evaluation",
    dependencies=Read,
    response_model=EvaluationOut,
    tags=["models"],
)
async def model_evaluation(
    b: B, name: Name, version: Name, page_size: PageSize = 100, page_token: PageToken = ""
) -> Any:
    """Shadow evaluation of a candidate version: agreement with the promoted version,
    accuracy of both on operator-labelled curves, the curves where they disagree (paged)."""
    req = ingest_pb2.GetModelEvaluationRequest(
        model=name,
        version=version,
        page=common_pb2.PageRequest(page_size=page_size, page_token=page_token),
    )
    resp = await b.call("ingest", b.ingest.GetModelEvaluation, req)
    return message_to_dict(resp)


@router.post("/v1/backtests", dependencies=Write, response_model=BacktestOut, tags=["models"])
async def run_backtest(b: B, body: BacktestBody) -> Any:
    """Replay an archived period and report what it would have decided (runs to the end
    before answering; give a period that fits the gateway's backend timeout)."""
    req = ingest_pb2.RunBacktestRequest(
        rule=body.rule,
        time_range=_time_range(body.from_, body.to),
        model_version=body.model_version,
        max_changes=body.max_changes,
    )
    if body.alarm is not None:
        req.alarm.CopyFrom(body.alarm.to_proto())
    try:
        resp = await b.ingest.RunBacktest(req, timeout=max(b.timeout_s, 300.0))
    except grpc.aio.AioRpcError as exc:
        raise from_grpc(exc, "ingest") from exc
    return message_to_dict(resp)
