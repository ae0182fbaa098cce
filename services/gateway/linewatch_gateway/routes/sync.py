"""Image sync: jobs, and the cached images themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from email.utils import format_datetime
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from linewatch.runtime.content import sniff_image
from linewatch.v1 import sync_pb2
from linewatch_gateway.clients import Backends
from linewatch_gateway.convert import enum_value, message_to_dict, model_for
from linewatch_gateway.errors import ApiError, from_grpc
from linewatch_gateway.routes.common import (
    ERRORS,
    NAME_PATTERN,
    PageQuery,
    Read,
    Write,
    backends,
    page_body,
    page_model,
    page_request,
)

router = APIRouter(responses=ERRORS)

B = Annotated[Backends, Depends(backends)]
JobId = Annotated[str, Path(pattern=NAME_PATTERN, description="The job id.")]
JobOut = model_for(sync_pb2.SyncJob.DESCRIPTOR)
IMAGE_CACHE_CONTROL = "public, max-age=3600"
_STREAM_TIMEOUT_S = 300.0


class JobsQuery(PageQuery):
    """Job filters and paging."""

    state: Literal["queued", "downloading", "done", "failed", "dead"] | None = None
    work_id: str | None = Field(None, max_length=256)


class EnqueueBody(BaseModel):
    """Image URLs to mirror (a `!style` preview suffix is stripped)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"urls": ["http://10.0.0.5:8080/img/a.jpg!thumb"], "work_id": "w-1"}]
        },
    )
    urls: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        min_length=1, max_length=1000
    )
    work_id: str = Field("", max_length=256)


class EnqueueOut(BaseModel):
    """The jobs made (or found) and the URLs refused."""

    jobs: list[JobOut]  # type: ignore[valid-type]
    rejected: list[str]


class CacheStatsOut(BaseModel):
    """Cache size and jobs by state."""

    files: int
    bytes: int
    jobs_by_state: dict[str, int]


@router.get(
    "/v1/sync/jobs",
    dependencies=Read,
    response_model=page_model(sync_pb2.SyncJob.DESCRIPTOR),
    tags=["sync"],
)
async def list_jobs(b: B, q: Annotated[JobsQuery, Query()]) -> Any:
    """Sync jobs, filtered by state and work id."""
    state = enum_value(sync_pb2.JobState.DESCRIPTOR, q.state) if q.state else 0
    req = sync_pb2.ListJobsRequest(state=state, work_id=q.work_id or "", page=page_request(q))  # type: ignore[arg-type]
    resp = await b.call("sync", b.sync.ListJobs, req)
    return page_body(list(resp.jobs), resp.next_page_token)


@router.post(
    "/v1/sync/jobs", dependencies=Write, status_code=202, response_model=EnqueueOut, tags=["sync"]
)
async def enqueue(b: B, body: EnqueueBody) -> Any:
    """Queue image URLs for download."""
    req = sync_pb2.EnqueueUrlsRequest(urls=body.urls, work_id=body.work_id)
    resp = await b.call("sync", b.sync.EnqueueUrls, req)
    return {"jobs": [message_to_dict(j) for j in resp.jobs], "rejected": list(resp.rejected)}


@router.get("/v1/sync/jobs/{job_id}", dependencies=Read, response_model=JobOut, tags=["sync"])
async def get_job(b: B, job_id: JobId) -> Any:
    """One job."""
    resp = await b.call("sync", b.sync.GetJob, sync_pb2.GetJobRequest(id=job_id))
    return message_to_dict(resp.job)


@router.post(
    "/v1/sync/jobs/{job_id}/retry", dependencies=Write, response_model=JobOut, tags=["sync"]
)
async def retry_job(b: B, job_id: JobId) -> Any:
    """Put a failed or dead job back in the queue."""
    resp = await b.call("sync", b.sync.RetryJob, sync_pb2.RetryJobRequest(id=job_id))
    return message_to_dict(resp.job)


@router.get("/v1/sync/stats", dependencies=Read, response_model=CacheStatsOut, tags=["sync"])
async def cache_stats(b: B) -> Any:
    """Cache size and jobs by state."""
    resp = await b.call("sync", b.sync.GetCacheStats, sync_pb2.GetCacheStatsRequest())
    return {"files": resp.files, "bytes": resp.bytes, "jobs_by_state": dict(resp.jobs_by_state)}


def check_cache_path(path: str) -> str:
    """A relative cache path with no empty, ``.`` or ``..`` segment, or a 400."""
    parts = path.split("/")
    if (
        not path
        or len(path) > 1024
        or "\\" in path
        or "\x00" in path
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ApiError(400, "invalid_argument", "path: not a cache path")
    return path


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


#: On every cached file: no type sniffing by browsers, and no script, style or frame.
IMAGE_SAFETY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


@router.get(
    "/v1/images/{path:path}",
    dependencies=Read,
    tags=["sync"],
    response_class=StreamingResponse,
    responses={
        200: {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}},
        304: {"description": "Not modified (If-None-Match matched the ETag)."},
    },
)
async def get_image(request: Request, b: B, path: str) -> Response:
    """A cached image by cache path (``<host>[_<port>]/<path>``), with ETag and caching.

    Served as the raster type its first bytes show (never the type a remote server
    claimed), with ``nosniff`` and a sandbox CSP, so nothing cached can run as a page of
    this origin; a file that is no raster image goes out as an octet-stream attachment.
    """
    req = sync_pb2.ReadImageRequest(cache_path=check_cache_path(path))
    call = b.sync.ReadImage(req, timeout=_STREAM_TIMEOUT_S)
    try:
        first = await call.read()
    except grpc.aio.AioRpcError as exc:
        raise from_grpc(exc, "sync") from exc
    if first is grpc.aio.EOF:
        raise ApiError(404, "not_found", f"image {path!r} is not in the cache")
    etag = f'"{first.etag}"' if first.etag and not first.etag.startswith('"') else first.etag
    headers = {"Cache-Control": IMAGE_CACHE_CONTROL, **IMAGE_SAFETY_HEADERS}
    if etag:
        headers["ETag"] = etag
    if first.HasField("modified_at"):
        modified = first.modified_at.ToDatetime(tzinfo=UTC)
        headers["Last-Modified"] = format_datetime(modified, usegmt=True)
    if etag and _etag_matches(request.headers.get("if-none-match"), etag):
        call.cancel()
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(first.size)
    media_type = sniff_image(first.chunk)
    if media_type is None:
        headers["Content-Disposition"] = "attachment"

    async def body() -> AsyncIterator[bytes]:
        try:
            if first.chunk:
                yield first.chunk
            while (msg := await call.read()) is not grpc.aio.EOF:
                yield msg.chunk
        finally:
            call.cancel()

    return StreamingResponse(
        body(), media_type=media_type or "application/octet-stream", headers=headers
    )
