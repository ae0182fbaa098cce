"""One download: HTTP GET with resume, checks, and an atomic move into the cache.

For one job it:

- resumes a partial file with ``Range: bytes=<n>-`` + ``If-Range`` when the earlier
  attempt recorded a validator (ETag or Last-Modified); a 200 answer starts over;
- re-fetches conditionally (``If-None-Match`` / ``If-Modified-Since``) when a done URL was
  sent again, keeping the file on ``304``;
- follows at most 5 redirects itself, only to http(s) (never https → http) and only to
  allowed hosts;
- requires an allowed content type (``image/*``), a body no larger than the size cap and
  exactly as long as ``Content-Length`` says, and the expected sha256 when one was given;
- writes to ``.partial/<digest>.part``, then fsyncs and renames it onto the cache path.

Errors are classified: 5xx, 408, 429, timeouts and broken connections are retryable;
other 4xx, wrong content types, oversized bodies and refused redirects are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.telemetry import context_from_traceparent
from linewatch_sync import metrics
from linewatch_sync.cachefs import CacheFs
from linewatch_sync.store import JobRow, Outcome
from linewatch_sync.urls import host_allowed

__all__ = ["DownloadError", "Downloader", "HostLimiter"]

tracer = trace.get_tracer(__name__)

MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
_RETRYABLE_STATUS = {408, 425, 429}
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadError(Exception):
    """A download failed; ``reason`` is a short label (metrics), ``detail`` the story."""

    def __init__(self, reason: str, detail: str, *, retryable: bool) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable


class HostLimiter:
    """At most ``limit`` downloads at once per host; idle hosts are forgotten."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._sems: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        """Hold one of ``host``'s slots."""
        sem, users = self._sems.get(host, (asyncio.Semaphore(self.limit), 0))
        self._sems[host] = (sem, users + 1)
        try:
            async with sem:
                yield
        finally:
            sem, users = self._sems[host]
            if users <= 1:
                del self._sems[host]
            else:
                self._sems[host] = (sem, users - 1)


def _content_type_allowed(content_type: str, allowed: tuple[str, ...]) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    for pattern in allowed:
        pat = pattern.lower()
        if pat.endswith("/*") and mime.startswith(pat[:-1]):
            return True
        if mime == pat:
            return True
    return False


def _classify(exc: Exception, total_timeout_s: float) -> DownloadError:
    """Translate any failure of a download into a :class:`DownloadError` (one place)."""
    if isinstance(exc, DownloadError):
        return exc
    if isinstance(exc, TimeoutError):
        return DownloadError("timeout", f"over {total_timeout_s}s", retryable=True)
    if isinstance(exc, httpx.TimeoutException):
        return DownloadError("timeout", type(exc).__name__, retryable=True)
    if isinstance(exc, httpx.HTTPError):
        return DownloadError("connection", f"{type(exc).__name__}: {exc}", retryable=True)
    if isinstance(exc, InvalidArgument):
        return DownloadError("bad_path", exc.message, retryable=False)
    return DownloadError("io", str(exc), retryable=True)


def _sha256_of(path: Path) -> hashlib._Hash:
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            hasher.update(block)
    return hasher


class Downloader:
    """Downloads jobs into the cache with one shared ``httpx.AsyncClient``."""

    def __init__(
        self,
        *,
        cache: CacheFs,
        client: httpx.AsyncClient | Sequence[httpx.AsyncClient],
        max_bytes: int,
        allowed_content_types: tuple[str, ...],
        allowed_hosts: tuple[str, ...],
        per_host_concurrency: int,
        total_timeout_s: float,
    ) -> None:
        self.cache = cache
        #: Several small connection pools rather than one big one: httpcore scans its
        #: whole pool on every request, so a worker slot sticks to one small client.
        self.clients = [client] if isinstance(client, httpx.AsyncClient) else list(client)
        self.max_bytes = max_bytes
        self.allowed_content_types = allowed_content_types
        self.allowed_hosts = allowed_hosts
        self.hosts = HostLimiter(per_host_concurrency)
        self.total_timeout_s = total_timeout_s

    async def download(self, job: JobRow, *, slot: int = 0) -> Outcome:
        """Download one job; never raises for a download failure, returns the outcome.

        Args:
            job: the claimed job.
            slot: the caller's worker slot, which picks the HTTP client.
        """
        host = urlsplit(job.url).hostname or ""
        client = self.clients[slot % len(self.clients)]
        # the trace of the message (or API call) that queued the URL continues here
        with tracer.start_as_current_span(
            "sync download",
            context=context_from_traceparent(job.traceparent),
            kind=SpanKind.CLIENT,
            attributes={"url.full": job.url, "linewatch.job_id": job.id,
                        "linewatch.attempt": job.attempts + 1},
        ) as span:  # fmt: skip
            try:
                async with self.hosts.hold(host), asyncio.timeout(self.total_timeout_s):
                    outcome = await self._fetch(job, client)
            except (DownloadError, TimeoutError, httpx.HTTPError, InvalidArgument, OSError) as exc:
                error = _classify(exc, self.total_timeout_s)
                metrics.FAILURES.labels(error.reason).inc()
                if error.retryable:
                    metrics.RETRIES.inc()
                span.set_status(StatusCode.ERROR, str(error))
                return Outcome(job.id, ok=False, error=str(error), retryable=error.retryable)
            metrics.DOWNLOADS.inc()
            return outcome

    async def _send(
        self, client: httpx.AsyncClient, url: str, headers: dict[str, str]
    ) -> httpx.Response:
        for _ in range(MAX_REDIRECTS + 1):
            request = client.build_request("GET", url, headers=headers)
            response = await client.send(request, stream=True, follow_redirects=False)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or location is None:
                return response
            await response.aclose()
            target = urljoin(url, location)
            parts = urlsplit(target)
            scheme = parts.scheme.lower()
            if scheme not in {"http", "https"} or (
                urlsplit(url).scheme == "https" and scheme == "http"
            ):
                raise DownloadError(
                    "redirect_refused", f"redirect to {scheme or '?'}:// refused", retryable=False
                )
            if not host_allowed((parts.hostname or "").lower(), self.allowed_hosts):
                raise DownloadError(
                    "redirect_refused",
                    f"redirect to host {parts.hostname!r} outside the allow-list",
                    retryable=False,
                )
            url = target
        raise DownloadError("redirect_refused", "too many redirects", retryable=False)

    def _resume_point(self, job: JobRow, part: Path) -> tuple[int, str]:
        meta = part.with_suffix(".meta")
        try:
            info = json.loads(meta.read_text("utf-8"))
            size = part.stat().st_size
        except (OSError, ValueError):
            self.cache.remove_part(part)
            return 0, ""
        validator = info.get("validator", "") if isinstance(info, dict) else ""
        if info.get("url") != job.url or not validator or size <= 0:
            self.cache.remove_part(part)
            return 0, ""
        return size, str(validator)

    async def _fetch(self, job: JobRow, client: httpx.AsyncClient) -> Outcome:
        target = self.cache.resolve(job.cache_path)
        part = self.cache.part_path(job.cache_path)
        offset, validator = self._resume_point(job, part)
        headers = {"accept-encoding": "identity", "accept": "image/*"}
        conditional = False
        if offset:
            headers["range"] = f"bytes={offset}-"
            headers["if-range"] = validator
        elif job.refetch and target.is_file() and (job.etag or job.last_modified):
            conditional = True
            if job.etag:
                headers["if-none-match"] = job.etag
            if job.last_modified:
                headers["if-modified-since"] = job.last_modified
        response = await self._send(client, job.url, headers)
        try:
            return await self._receive(job, response, part, offset, conditional)
        finally:
            await response.aclose()

    def _check_status(self, job: JobRow, response: httpx.Response, part: Path, offset: int) -> int:
        """Raise for an unusable answer; return the offset the body continues from."""
        status = response.status_code
        if status >= 500 or status in _RETRYABLE_STATUS:
            reason = "http_5xx" if status >= 500 else "http_busy"
            raise DownloadError(reason, f"HTTP {status}", retryable=True)
        if status == 416:
            self.cache.remove_part(part)
            raise DownloadError("range", "HTTP 416; starting over", retryable=True)
        if status >= 400:
            raise DownloadError("http_4xx", f"HTTP {status}", retryable=False)
        if status == 206 and offset:
            match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
            if match is None or int(match.group(1)) != offset:
                self.cache.remove_part(part)
                raise DownloadError(
                    "range", "Content-Range does not continue the file", retryable=True
                )
            metrics.RESUMES.inc()
        elif status == 200:
            offset = 0
        else:
            raise DownloadError("http_other", f"unexpected HTTP {status}", retryable=False)
        content_type = response.headers.get("content-type", "")
        if not _content_type_allowed(content_type, self.allowed_content_types):
            self.cache.remove_part(part)
            raise DownloadError(
                "content_type",
                f"content type {content_type or '(none)'!r} is not allowed",
                retryable=False,
            )
        return offset

    def _expected_size(self, response: httpx.Response, part: Path, offset: int) -> int | None:
        raw_length = response.headers.get("content-length")
        if raw_length is None:
            return None
        if not raw_length.isdigit():
            raise DownloadError("length", "bad Content-Length", retryable=True)
        expected = offset + int(raw_length)
        if expected > self.max_bytes:
            self.cache.remove_part(part)
            raise DownloadError(
                "too_large",
                f"{expected} bytes exceeds the cap of {self.max_bytes}",
                retryable=False,
            )
        return expected

    async def _receive(
        self, job: JobRow, response: httpx.Response, part: Path, offset: int, conditional: bool
    ) -> Outcome:
        if response.status_code == 304 and conditional:
            metrics.NOT_MODIFIED.inc()
            return Outcome(
                job.id,
                ok=True,
                size=job.size,
                sha256=job.sha256,
                content_type=job.content_type,
                etag=job.etag,
                last_modified=job.last_modified,
            )
        offset = self._check_status(job, response, part, offset)
        expected = self._expected_size(response, part, offset)
        etag = response.headers.get("etag", "")
        last_modified = response.headers.get("last-modified", "")
        validator = etag if etag and not etag.startswith("W/") else last_modified
        meta = part.with_suffix(".meta")
        meta.write_text(json.dumps({"url": job.url, "validator": validator}), "utf-8")
        size, digest = await self._write_body(response, part, offset)
        if expected is not None and size != expected:
            raise DownloadError(
                "length", f"got {size} bytes, Content-Length promised {expected}", retryable=True
            )
        if job.expected_sha256 and digest != job.expected_sha256:
            self.cache.remove_part(part)
            raise DownloadError(
                "checksum", f"sha256 {digest} is not the expected one", retryable=True
            )
        await self.cache.commit(part, job.cache_path)
        meta.unlink(missing_ok=True)
        return Outcome(
            job.id,
            ok=True,
            size=size,
            sha256=digest,
            content_type=response.headers.get("content-type", "").split(";", 1)[0].strip(),
            etag=etag,
            last_modified=last_modified,
        )

    async def _write_body(
        self, response: httpx.Response, part: Path, offset: int
    ) -> tuple[int, str]:
        """Append (or write) the body to the part file; returns total size and sha256."""
        hasher = await asyncio.to_thread(_sha256_of, part) if offset else hashlib.sha256()
        size = offset
        with part.open("ab" if offset else "wb") as fh:
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self.max_bytes:
                    fh.close()
                    self.cache.remove_part(part)
                    raise DownloadError(
                        "too_large", f"body exceeds the cap of {self.max_bytes}", retryable=False
                    )
                fh.write(chunk)
                hasher.update(chunk)
                metrics.BYTES.inc(len(chunk))
        return size, hasher.hexdigest()
