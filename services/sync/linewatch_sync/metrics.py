"""Prometheus metrics of the sync service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "BYTES",
    "DOWNLOADS",
    "FAILURES",
    "JOBS",
    "NOT_MODIFIED",
    "REJECTED",
    "RESUMES",
    "RETRIES",
]

JOBS = Gauge("linewatch_sync_jobs", "Sync jobs by state (queue depth)", ["state"])
DOWNLOADS = Counter("linewatch_sync_downloads_total", "Downloads completed")
BYTES = Counter("linewatch_sync_downloaded_bytes_total", "Bytes downloaded")
RETRIES = Counter("linewatch_sync_retries_total", "Download attempts that will be retried")
FAILURES = Counter(
    "linewatch_sync_failures_total", "Failed download attempts, by reason", ["reason"]
)
RESUMES = Counter("linewatch_sync_resumes_total", "Downloads resumed with HTTP Range")
NOT_MODIFIED = Counter(
    "linewatch_sync_not_modified_total", "Conditional re-fetches answered 304 (file kept)"
)
REJECTED = Counter(
    "linewatch_sync_rejected_total", "Messages or URLs refused at the edge, by reason", ["what"]
)
