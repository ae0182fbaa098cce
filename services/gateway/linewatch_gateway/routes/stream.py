"""Server-Sent Events routes: ``/v1/stream/{verdicts,telemetry,alarms,ota,commands}`` and
the stream token (``POST /v1/stream/token``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from linewatch_gateway.auth import require_stream
from linewatch_gateway.errors import ERROR_RESPONSES, ApiError
from linewatch_gateway.routes.common import Read
from linewatch_gateway.sse import StreamFilter, StreamHub
from linewatch_gateway.stream_access import StreamSlots, StreamTokens

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
    503: ERROR_RESPONSES[503],
}


class StreamTokenOut(BaseModel):
    """A token that opens live streams (`?token=`) until it expires; nothing else."""

    token: str
    expires_at: int
    expires_in_s: int


@router.post(
    "/v1/stream/token",
    dependencies=Read,
    response_model=StreamTokenOut,
    responses={401: ERROR_RESPONSES[401]},
)
async def stream_token(request: Request) -> StreamTokenOut:
    """A short-lived token for `/v1/stream/{kind}?token=` (EventSource cannot send headers,
    and a bearer token does not belong in a URL). Needs read access."""
    tokens: StreamTokens = request.app.state.stream_tokens
    token, expiry = tokens.issue()
    return StreamTokenOut(token=token, expires_at=expiry, expires_in_s=int(tokens.ttl_s))


@router.get(
    "/v1/stream/{kind}",
    dependencies=[Depends(require_stream)],
    response_class=StreamingResponse,
    responses=_SSE_DOC,
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
    token: Annotated[
        str | None,
        Query(max_length=128, description="A stream token (POST /v1/stream/token)."),
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
    slots: StreamSlots = request.app.state.stream_slots
    address = request.client.host if request.client is not None else "unknown"
    refused = slots.acquire(address)
    if refused is not None:
        raise ApiError(503, "too_many_streams", refused, {"Retry-After": "10"})
    try:
        sub = hub.subscribe(StreamFilter(device=device, line=line, label=label), resume)
    except BaseException:
        slots.release(address)
        raise
    heartbeat: float = request.app.state.config.sse_heartbeat_s

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in hub.stream(sub, heartbeat_s=heartbeat):
                yield chunk
        finally:
            slots.release(address)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
