"""Server-Sent Events routes: ``/v1/stream/{verdicts,telemetry,alarms,ota,commands}``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from linewatch_gateway.errors import ERROR_RESPONSES, ApiError
from linewatch_gateway.routes.common import Read
from linewatch_gateway.sse import StreamFilter, StreamHub

router = APIRouter(tags=["streams"])

StreamKind = Literal["verdicts", "telemetry", "alarms", "ota", "commands"]

_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A text/event-stream: `id`, `event` and JSON `data` per event; "
        "comment lines as heartbeats.",
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "example": 'id: 1763800000123457\nevent: verdict\ndata: {"device_id":"press-07",'
                '"label":"ok","ok":true}\n\n',
            }
        },
    },
    400: ERROR_RESPONSES[400],
    401: ERROR_RESPONSES[401],
    422: ERROR_RESPONSES[422],
}


@router.get(
    "/v1/stream/{kind}", dependencies=Read, response_class=StreamingResponse, responses=_SSE_DOC
)
async def stream(
    request: Request,
    kind: StreamKind,
    *,
    device: Annotated[str | None, Query(max_length=256, description="Only this device.")] = None,
    line: Annotated[
        str | None, Query(max_length=256, description="Only this line (attrs.line).")
    ] = None,
    label: Annotated[str | None, Query(max_length=128, description="Only this label.")] = None,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", max_length=32, description="Resume after this id."),
    ] = None,
    since: Annotated[
        int | None, Query(ge=0, description="Resume after this event id (as Last-Event-ID).")
    ] = None,
) -> StreamingResponse:
    """Live events; reconnecting with `Last-Event-ID` replays what was missed (bounded)."""
    hubs: dict[str, StreamHub] = request.app.state.hubs
    hub = hubs[kind]
    resume: int | None = since
    if last_event_id:
        try:
            resume = int(last_event_id)
        except ValueError as exc:
            raise ApiError(400, "invalid_argument", "Last-Event-ID: not an event id") from exc
    sub = hub.subscribe(StreamFilter(device=device, line=line, label=label), resume)
    heartbeat: float = request.app.state.config.sse_heartbeat_s
    return StreamingResponse(
        hub.stream(sub, heartbeat_s=heartbeat),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
