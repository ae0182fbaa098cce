"""The image cache's total size limit: least-recently-served eviction, leases for files
in use.

:class:`CacheQuota` keeps an index of the cached files (cache path → size) in
least-recently-served order, rebuilt at start from the files on disk (ordered by their
last access or modification time). Serving a file moves it to the end; committing a
download adds it there. When the bytes of all files exceed ``max_bytes``, files are
removed from the front until the total fits again, skipping every file that holds a lease:
a file being served (:meth:`CacheFs.read_chunks` leases it while it streams) or being
written (the worker leases a job's cache path for its whole download) is never evicted,
so the cache may stay above its limit while every older file is in use. Partial
downloads (``.partial``) are not counted.

Everything runs on the event loop thread (the index is a plain dict; an unlink is quick),
so choosing a victim and removing it cannot race with a lease being taken.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import Counter as MetricCounter
from prometheus_client import Gauge

__all__ = ["CACHE_BYTES", "CACHE_EVICTIONS", "CacheQuota"]

log = logging.getLogger(__name__)

CACHE_BYTES = Gauge("linewatch_sync_cache_bytes", "Bytes of the cached files")
CACHE_FILES = Gauge("linewatch_sync_cache_files", "Cached files")
CACHE_LIMIT = Gauge("linewatch_sync_cache_limit_bytes", "The cache's size limit (0: none)")
CACHE_EVICTIONS = MetricCounter(
    "linewatch_sync_cache_evictions_total", "Cached files removed to keep the size limit"
)
CACHE_EVICTED_BYTES = MetricCounter(
    "linewatch_sync_cache_evicted_bytes_total", "Bytes removed to keep the size limit"
)


class CacheQuota:
    """The index of cached files, their leases, and eviction down to ``max_bytes``
    (0: no limit; files are still indexed so the bytes in use are known)."""

    def __init__(self, root: Path, *, max_bytes: int = 0, skip: str = ".partial") -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._skip = skip
        # insertion order is the serving order: first = least recently served
        self._files: dict[str, int] = {}
        self._leases: Counter[str] = Counter()
        self.used_bytes = 0
        self.evictions = 0
        CACHE_LIMIT.set(max_bytes)

    # --- index -----------------------------------------------------------------------

    def scan(self) -> None:
        """Index the files on disk, least recently used first (call once at start)."""
        found: list[tuple[float, str, int]] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d != self._skip]
            for name in filenames:
                full = Path(dirpath) / name
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    continue
                rel = full.relative_to(self.root).as_posix()
                found.append((max(st.st_atime, st.st_mtime), rel, st.st_size))
        found.sort()
        self._files = {rel: size for _, rel, size in found}
        self.used_bytes = sum(self._files.values())
        self._publish()

    def added(self, cache_path: str, size: int) -> None:
        """A file was committed at ``cache_path`` (new or replaced): most recent now."""
        old = self._files.pop(cache_path, None)
        if old is not None:
            self.used_bytes -= old
        self._files[cache_path] = size
        self.used_bytes += size
        self.evict()

    def served(self, cache_path: str) -> None:
        """A file is being served: most recently served now."""
        size = self._files.pop(cache_path, None)
        if size is not None:
            self._files[cache_path] = size

    def order(self) -> list[str]:
        """Cache paths, least recently served first."""
        return list(self._files)

    # --- leases ----------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self, cache_path: str) -> Iterator[None]:
        """Keep ``cache_path`` from eviction while the block runs (nestable)."""
        self._leases[cache_path] += 1
        try:
            yield
        finally:
            self._leases[cache_path] -= 1
            if self._leases[cache_path] <= 0:
                del self._leases[cache_path]

    def leased(self, cache_path: str) -> bool:
        """Whether a reader or writer holds ``cache_path``."""
        return self._leases[cache_path] > 0

    # --- eviction --------------------------------------------------------------------

    def evict(self) -> list[str]:
        """Remove least recently served files without a lease until the total fits;
        returns the cache paths removed."""
        if not self.max_bytes or self.used_bytes <= self.max_bytes:
            self._publish()
            return []
        removed: list[str] = []
        for cache_path in list(self._files):
            if self.used_bytes <= self.max_bytes:
                break
            if cache_path in self._leases:
                continue
            size = self._files.pop(cache_path)
            self.used_bytes -= size
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.root / cache_path)
            removed.append(cache_path)
            CACHE_EVICTED_BYTES.inc(size)
        self.evictions += len(removed)
        CACHE_EVICTIONS.inc(len(removed))
        if removed:
            log.info(
                "cache evicted files",
                extra={"fields": {"files": len(removed), "used_bytes": self.used_bytes}},
            )
        self._publish()
        return removed

    def _publish(self) -> None:
        CACHE_BYTES.set(self.used_bytes)
        CACHE_FILES.set(len(self._files))
