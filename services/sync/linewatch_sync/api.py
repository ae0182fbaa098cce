"""The gRPC API: ``linewatch.v1.SyncService``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from linewatch.runtime.errors import InvalidArgument
from linewatch.v1 import sync_pb2, sync_pb2_grpc
from linewatch_sync.cachefs import CacheFs
from linewatch_sync.intake import Intake
from linewatch_sync.store import STATES, JobRow, JobStore
from linewatch_sync.urls import UrlRequest

__all__ = ["SyncApi", "job_to_proto"]

DEFAULT_PAGE = 100
MAX_PAGE = 1000
READ_CHUNK = 256 * 1024

_STATE_TO_PROTO = {
    "queued": sync_pb2.JOB_STATE_QUEUED,
    "downloading": sync_pb2.JOB_STATE_DOWNLOADING,
    "done": sync_pb2.JOB_STATE_DONE,
    "failed": sync_pb2.JOB_STATE_FAILED,
    "dead": sync_pb2.JOB_STATE_DEAD,
}
_PROTO_TO_STATE = {value: key for key, value in _STATE_TO_PROTO.items()}


def _nanos(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def job_to_proto(job: JobRow) -> sync_pb2.SyncJob:
    """The API form of a job."""
    msg = sync_pb2.SyncJob(
        id=job.id,
        url=job.url,
        cache_path=job.cache_path,
        state=_STATE_TO_PROTO.get(job.state, sync_pb2.JOB_STATE_UNSPECIFIED),
        attempts=job.attempts,
        last_error=job.last_error,
        size=job.size,
        sha256=job.sha256,
        work_id=job.work_id,
    )
    msg.created_at.FromNanoseconds(_nanos(job.created_at))
    msg.updated_at.FromNanoseconds(_nanos(job.updated_at))
    if job.state in {"queued", "failed"}:
        msg.next_attempt_at.FromNanoseconds(_nanos(job.next_attempt_at))
    return msg


def _offset(token: str) -> int:
    if not token:
        return 0
    if not token.isdigit() or len(token) > 12:
        raise InvalidArgument("page_token is not a token from a previous response")
    return int(token)


class SyncApi(sync_pb2_grpc.SyncServiceServicer):
    """Enqueue, inspect and retry jobs; cache statistics and streaming reads."""

    def __init__(self, *, store: JobStore, intake: Intake, cache: CacheFs) -> None:
        self.store = store
        self.intake = intake
        self.cache = cache

    async def EnqueueUrls(  # noqa: N802
        self, request: sync_pb2.EnqueueUrlsRequest, context: Any
    ) -> sync_pb2.EnqueueUrlsResponse:
        if not request.urls:
            raise InvalidArgument("urls: at least one URL is required")
        if len(request.work_id) > 128:
            raise InvalidArgument("work_id: at most 128 characters")
        rows, refused = await self.intake.enqueue(
            [UrlRequest(url) for url in request.urls], work_id=request.work_id, topic="grpc"
        )
        return sync_pb2.EnqueueUrlsResponse(
            jobs=[job_to_proto(row) for row in rows], rejected=refused
        )

    async def ListJobs(  # noqa: N802
        self, request: sync_pb2.ListJobsRequest, context: Any
    ) -> sync_pb2.ListJobsResponse:
        state = ""
        if request.state:
            if request.state not in _PROTO_TO_STATE:
                raise InvalidArgument(f"state: unknown value {request.state}")
            state = _PROTO_TO_STATE[request.state]
        size = request.page.page_size
        if size < 0:
            raise InvalidArgument("page.page_size must not be negative")
        limit = min(size or DEFAULT_PAGE, MAX_PAGE)
        offset = _offset(request.page.page_token)
        rows, more = await self.store.list(
            state=state, work_id=request.work_id, offset=offset, limit=limit
        )
        return sync_pb2.ListJobsResponse(
            jobs=[job_to_proto(row) for row in rows],
            next_page_token=str(offset + len(rows)) if more else "",
        )

    async def GetJob(  # noqa: N802
        self, request: sync_pb2.GetJobRequest, context: Any
    ) -> sync_pb2.GetJobResponse:
        if not request.id:
            raise InvalidArgument("id is required")
        return sync_pb2.GetJobResponse(job=job_to_proto(await self.store.get(request.id)))

    async def RetryJob(  # noqa: N802
        self, request: sync_pb2.RetryJobRequest, context: Any
    ) -> sync_pb2.RetryJobResponse:
        if not request.id:
            raise InvalidArgument("id is required")
        job = await self.store.retry(request.id)
        self.intake.on_queued()
        return sync_pb2.RetryJobResponse(job=job_to_proto(job))

    async def GetCacheStats(  # noqa: N802
        self, request: sync_pb2.GetCacheStatsRequest, context: Any
    ) -> sync_pb2.GetCacheStatsResponse:
        counts = await self.store.counts()
        files, size = await self.store.done_totals()
        return sync_pb2.GetCacheStatsResponse(
            files=files,
            bytes=size,
            jobs_by_state={s: counts[s] for s in STATES},
            used_bytes=self.cache.quota.used_bytes,
            limit_bytes=self.cache.quota.max_bytes,
            evictions=self.cache.quota.evictions,
        )

    async def ReadImage(  # noqa: N802
        self, request: sync_pb2.ReadImageRequest, context: Any
    ) -> AsyncIterator[sync_pb2.ReadImageResponse]:
        job = await self.store.by_cache_path(request.cache_path)
        cached = await self.cache.stat(
            request.cache_path, content_type=job.content_type if job else ""
        )
        etag = f'"{job.sha256}"' if job and job.sha256 and job.size == cached.size else cached.etag
        first = True
        async for chunk in self.cache.read_chunks(cached, READ_CHUNK):
            if first:
                first = False
                head = sync_pb2.ReadImageResponse(
                    content_type=cached.content_type, size=cached.size, etag=etag, chunk=chunk
                )
                head.modified_at.FromNanoseconds(_nanos(cached.mtime))
                yield head
            else:
                yield sync_pb2.ReadImageResponse(chunk=chunk)
        if first:
            head = sync_pb2.ReadImageResponse(
                content_type=cached.content_type, size=cached.size, etag=etag
            )
            head.modified_at.FromNanoseconds(_nanos(cached.mtime))
            yield head
