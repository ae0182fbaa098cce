"""What the route modules share: dependencies, paging, filters, page models."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request
from google.protobuf.descriptor import Descriptor  # type: ignore[import-untyped,unused-ignore]
from google.protobuf.message import Message  # type: ignore[import-untyped,unused-ignore]
from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped,unused-ignore]
from pydantic import BaseModel, Field, create_model

from linewatch.v1 import common_pb2
from linewatch_gateway.auth import require_read, require_write
from linewatch_gateway.clients import Backends
from linewatch_gateway.convert import message_to_dict, model_for
from linewatch_gateway.errors import ERROR_RESPONSES, ApiError

__all__ = [
    "ERRORS",
    "NAME_PATTERN",
    "AlarmParams",
    "PageParams",
    "Read",
    "TimeParams",
    "TimeQuery",
    "VerdictParams",
    "Write",
    "backends",
    "local_page",
    "page_body",
    "page_model",
    "page_request",
    "time_range",
]

#: Names and ids in paths: letters, digits and ``._:-``.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"

ERRORS = ERROR_RESPONSES

Read = [Depends(require_read)]
Write = [Depends(require_write)]


def backends(request: Request) -> Backends:
    """The app's backend stubs."""
    result: Backends = request.app.state.backends
    return result


class PageQuery(BaseModel):
    """Paging parameters."""

    page_size: int = Field(100, ge=1, le=1000, description="At most this many items.")
    page_token: str = Field(
        "", max_length=512, description="The `next_page_token` of the previous page."
    )


class TimeQuery(PageQuery):
    """Archive filters and paging."""

    device: str | None = Field(None, max_length=256, description="Only this device_id.")
    point: str | None = Field(None, max_length=256, description="Only this point.")
    start: datetime | None = Field(None, description="From this time (RFC 3339), inclusive.")
    end: datetime | None = Field(None, description="Until this time (RFC 3339), exclusive.")


class VerdictQuery(TimeQuery):
    """Verdict filters and paging."""

    label: str | None = Field(None, max_length=128, description="Only this label.")


class AlarmQuery(TimeQuery):
    """Alarm filters and paging."""

    state: Literal["active", "cleared"] | None = Field(None, description="Only this state.")


PageParams = Annotated[PageQuery, Query()]
TimeParams = Annotated[TimeQuery, Query()]
VerdictParams = Annotated[VerdictQuery, Query()]
AlarmParams = Annotated[AlarmQuery, Query()]


def page_request(page: PageQuery) -> common_pb2.PageRequest:
    """The proto page request."""
    return common_pb2.PageRequest(page_size=page.page_size, page_token=page.page_token)


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    try:
        ts.FromDatetime(value)
    except (ValueError, OverflowError) as exc:
        raise ApiError(400, "invalid_argument", f"time out of range: {value}") from exc
    return ts


def time_range(q: TimeQuery) -> common_pb2.TimeRange:
    """The proto time range."""
    if q.start is not None and q.end is not None and q.end < q.start:
        raise ApiError(400, "invalid_argument", "end: must not be before start")
    out = common_pb2.TimeRange()
    if q.start is not None:
        out.start.CopyFrom(_ts(q.start))
    if q.end is not None:
        out.end.CopyFrom(_ts(q.end))
    return out


@cache
def page_model(descriptor: Descriptor) -> type[BaseModel]:
    """``{"items": [...], "next_page_token": "..."}`` of this message type."""
    item = model_for(descriptor)
    return create_model(  # type: ignore[call-overload, no-any-return, unused-ignore]
        f"{descriptor.name}Page",
        items=(list[item], ...),  # type: ignore[valid-type]
        next_page_token=(str, ""),
    )


def page_body(items: list[Message], next_page_token: str) -> dict[str, Any]:
    """A page of converted messages."""
    return {"items": [message_to_dict(m) for m in items], "next_page_token": next_page_token}


def local_page(items: list[Message], page: PageQuery) -> dict[str, Any]:
    """Page a list the backend returns whole (the token is an offset)."""
    try:
        offset = int(page.page_token) if page.page_token else 0
    except ValueError as exc:
        raise ApiError(400, "invalid_argument", "page_token: not a token of this list") from exc
    if offset < 0:
        raise ApiError(400, "invalid_argument", "page_token: not a token of this list")
    chunk = items[offset : offset + page.page_size]
    more = offset + page.page_size < len(items)
    return page_body(chunk, str(offset + page.page_size) if more else "")
