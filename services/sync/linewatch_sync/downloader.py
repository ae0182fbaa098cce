"""One download: HTTP GET with resume, checks, and an atomic move into the cache.

For one job it:

- resumes a partial file with ``Range: bytes=<n>-`` + ``If-Range`` when the earlier
  attempt recorded a validator (ETag or Last-Modified); a 200 answer starts over;
- re-fetches conditionally (``If-None-Match`` / ``If-Modified-Since``) when a done URL was
  sent again, keeping the file on ``304``;
- fetches through the runtime's :class:`~linewatch.runtime.fetch.SafeFetcher`: only
  public addresses (or ``allowed_networks``) on every connection and redirect, at most 5
  redirects, only to http(s) (never https → http), and here also only to allowed hosts;
- requires an allowed content type (``image/*``), a body no larger than the size cap and
  exactly as long as ``Content-Length`` says, and the expected sha256 when one was given;
- requires the body to be a raster image by its magic bytes (:mod:`linewatch.runtime.content`;
  SVG, HTML and the rest are refused whatever their label) and records the sniffed type;
- writes to ``.partial/<digest>.part``, then fsyncs and renames it onto the cache path.

Errors are classified: 5xx, 408, 429, timeouts and broken connections are retryable;
other 4xx, wrong content types, content that is not a raster image, oversized bodies and
refused addresses or redirects are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from linewatch.runtime.content import SNIFF_BYTES, sniff_image
from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.fetch import FetchError, FetchRefused, SafeFetcher
from linewatch.runtime.telemetry import context_from_traceparent
from linewatch_sync import metrics
from linewatch_sync.cachefs import CacheFs
from linewatch_sync.store import JobRow, Outcome
from linewatch_sync.urls import host_allowed

__all__ = ["DownloadError", "Downloader", "HostLimiter"]

tracer = trace.get_tracer(__name__)

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


def _classify(exc: Exception, total_timeout_s: float) -> DownloadError:  # noqa: PLR0911 (one per kind)
    """Translate any failure of a download into a :class:`DownloadError` (one place)."""
    if isinstance(exc, DownloadError):
        return exc
    if isinstance(exc, FetchError):
        return DownloadError(exc.reason, exc.message, retryable=exc.retryable)
    if isinstance(exc, TimeoutError):
        return DownloadError("timeout", f"over {total_timeout_s}s", retryable=True)
    if isinstance(exc, httpx.TimeoutException):
        return DownloadError("timeout", type(exc).__name__, retryable=True)
    if isinstance(exc, httpx.HTTPError):
        return _classify(SafeFetcher.translate(exc), total_timeout_s)
    if isinstance(exc, InvalidArgument):
        return DownloadError("bad_path", exc.message, retryable=False)
    return DownloadError("io", str(exc), retryable=True)


def _not_raster() -> DownloadError:
    return DownloadError(
        "content",
        "not a raster image (PNG, JPEG, GIF, WebP, BMP or TIFF) by its first bytes; refused",
        retryable=False,
    )


def _head_of(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(SNIFF_BYTES)


def _sha256_of(path: Path) -> hashlib._Hash:
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            hasher.update(block)
    return hasher


class Downloader:
    """Downloads jobs into the cache through shared :class:`SafeFetcher` pools."""

    def __init__(
        self,
        *,
        cache: CacheFs,
        fetcher: SafeFetcher | Sequence[SafeFetcher],
        max_bytes: int,
        allowed_content_types: tuple[str, ...],
        allowed_hosts: tuple[str, ...],
        per_host_concurrency: int,
        total_timeout_s: float,
    ) -> None:
        self.cache = cache
        #: Several small connection pools rather than one big one: httpcore scans its
        #: whole pool on every request, so a worker slot sticks to one small client.
        self.fetchers = [fetcher] if isinstance(fetcher, SafeFetcher) else list(fetcher)
        self.max_bytes = max_bytes
        self.allowed_content_types = allowed_content_types
        self.allowed_hosts = allowed_hosts
        self.hosts = HostLimiter(per_host_concurrency)
        self.total_timeout_s = total_timeout_s

    async def download(self, job: JobRow, *, slot: int = 0) -> Outcome:
        """Download one job; never raises for a download failure, returns the outcome.

        Args:
            job: the claimed job.
            slot: the caller's worker slot, which picks the connection pool.
        """
        host = urlsplit(job.url).hostname or ""
        fetcher = self.fetchers[slot % len(self.fetchers)]
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
                    outcome = await self._fetch(job, fetcher)
            except (
                DownloadError, FetchError, TimeoutError, httpx.HTTPError, InvalidArgument, OSError
            ) as exc:  # fmt: skip
                error = _classify(exc, self.total_timeout_s)
                metrics.FAILURES.labels(error.reason).inc()
                if error.retryable:
                    metrics.RETRIES.inc()
                span.set_status(StatusCode.ERROR, str(error))
                return Outcome(job.id, ok=False, error=str(error), retryable=error.retryable)
            metrics.DOWNLOADS.inc()
            return outcome

    def _check_redirect(self, target: httpx.URL) -> None:
        if not host_allowed(target.host.lower(), self.allowed_hosts):
            raise FetchRefused(f"redirect to host {target.host!r} outside the allow-list")

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

    async def _fetch(self, job: JobRow, fetcher: SafeFetcher) -> Outcome:
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
        async with fetcher.stream(
            job.url, headers=headers, check_redirect=self._check_redirect
        ) as response:
            return await self._receive(job, response, part, offset, conditional)

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
            raise DownloadError("checksum", "the sha256 is not the expected one", retryable=True)
        content_type = sniff_image(await asyncio.to_thread(_head_of, part))
        if content_type is None:  # also a resumed file: the head is on disk
            self.cache.remove_part(part)
            raise _not_raster()
        await self.cache.commit(part, job.cache_path)
        meta.unlink(missing_ok=True)
        return Outcome(
            job.id,
            ok=True,
            size=size,
            sha256=digest,
            content_type=content_type,
            etag=etag,
            last_modified=last_modified,
        )

    async def _write_body(
        self, response: httpx.Response, part: Path, offset: int
    ) -> tuple[int, str]:
        """Append (or write) the body to the part file; returns total size and sha256."""
        hasher = await asyncio.to_thread(_sha256_of, part) if offset else hashlib.sha256()
        size = offset
        head = b"" if offset == 0 else None  # sniffed as soon as enough arrived
        with part.open("ab" if offset else "wb") as fh:
            async for chunk in response.aiter_raw():
                if head is not None:
                    head += chunk[:SNIFF_BYTES]
                    if len(head) >= SNIFF_BYTES:
                        if sniff_image(head) is None:
                            fh.close()
                            self.cache.remove_part(part)
                            raise _not_raster()
                        head = None
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
