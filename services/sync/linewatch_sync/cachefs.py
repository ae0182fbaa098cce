"""The image cache on disk: safe path resolution, atomic writes, streaming reads.

Nothing is ever written outside the cache root: a cache path is checked segment by
segment (:func:`validate_cache_path`), every existing component below the root must be a
real directory (symlinks are refused), and the resolved path must stay inside the root.
Downloads go to ``<root>/.partial/<digest>.part`` and reach their cache path only by an
atomic rename after ``fsync``, so a reader never sees a half-written image.

The total size may be limited (``max_bytes``): :class:`~linewatch_sync.cachequota.CacheQuota`
evicts the least recently served files, never one being served or written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mimetypes
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from linewatch.runtime.errors import InvalidArgument, NotFound
from linewatch_sync.cachequota import CacheQuota

__all__ = ["CacheFs", "CachedFile", "validate_cache_path"]

PARTIAL_DIR = ".partial"
MAX_PATH_LENGTH = 1024
MAX_SEGMENT_BYTES = 255


def validate_cache_path(cache_path: str) -> tuple[str, ...]:
    """Check a relative cache path and return its segments.

    Raises:
        InvalidArgument: absolute, empty, ``.``/``..`` segments, backslashes, NUL or other
            control characters, percent-encoding left after decoding, or too long.
    """
    if not cache_path or len(cache_path) > MAX_PATH_LENGTH:
        raise InvalidArgument("cache path is empty or too long")
    if cache_path.startswith("/") or cache_path.endswith("/"):
        raise InvalidArgument("cache path must be relative and name a file")
    if "\\" in cache_path or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in cache_path):
        raise InvalidArgument("cache path contains backslashes or control characters")
    segments = tuple(cache_path.split("/"))
    for seg in segments:
        if seg in {"", ".", ".."}:
            raise InvalidArgument("cache path has an empty, '.' or '..' segment")
        if len(seg.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            raise InvalidArgument("cache path segment longer than 255 bytes")
        low = seg.lower()
        if "%2e" in low or "%2f" in low or "%5c" in low or "%00" in low or "%25" in low:
            raise InvalidArgument("cache path is still percent-encoded (double encoding)")
    if segments[0].startswith("."):
        raise InvalidArgument("cache path must start with a host name")
    return segments


@dataclass(frozen=True, slots=True)
class CachedFile:
    """One file in the cache, as a reader sees it."""

    path: Path
    size: int
    mtime: float
    etag: str
    content_type: str


class CacheFs:
    """The cache root and every file operation under it."""

    def __init__(self, root: Path, *, max_bytes: int = 0) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.partial_dir = self.root / PARTIAL_DIR
        self.partial_dir.mkdir(exist_ok=True)
        self.quota = CacheQuota(self.root, max_bytes=max_bytes, skip=PARTIAL_DIR)
        self.quota.scan()

    def lease(self, cache_path: str) -> contextlib.AbstractContextManager[None]:
        """Keep ``cache_path`` from eviction while the block runs (a download, a read)."""
        return self.quota.lease(cache_path)

    def resolve(self, cache_path: str) -> Path:
        """The absolute file path of a cache path, checked to stay inside the root.

        Raises:
            InvalidArgument: the path is hostile or crosses a symlink.
        """
        segments = validate_cache_path(cache_path)
        current = self.root
        for seg in segments:
            current = current / seg
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                break
            if stat.S_ISLNK(mode):
                raise InvalidArgument("cache path crosses a symbolic link")
        target = self.root.joinpath(*segments)
        real = Path(os.path.realpath(target))
        if not real.is_relative_to(self.root) or real == self.root:
            raise InvalidArgument("cache path leaves the cache root")
        return target

    def part_path(self, cache_path: str) -> Path:
        """Where the partial download of ``cache_path`` lives (never a cache path)."""
        digest = hashlib.sha256(cache_path.encode("utf-8")).hexdigest()[:40]
        return self.partial_dir / f"{digest}.part"

    def _commit_sync(self, part: Path, cache_path: str) -> Path:
        target = self.resolve(cache_path)
        fd = os.open(part, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._make_dirs(target.parent)
        self.resolve(cache_path)  # a symlink raced in while the directories were made
        os.replace(part, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return target

    def _make_dirs(self, directory: Path) -> None:
        rel = directory.relative_to(self.root)
        current = self.root
        for seg in rel.parts:
            current = current / seg
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(current).st_mode):
                    raise InvalidArgument("cache path crosses a file or link") from None

    async def commit(self, part: Path, cache_path: str) -> Path:
        """fsync ``part`` and rename it atomically onto ``cache_path``, then evict older
        files if the cache is over its limit (never this one while it is leased)."""
        with self.lease(cache_path):
            target = await asyncio.to_thread(self._commit_sync, part, cache_path)
            self.quota.added(cache_path, target.stat().st_size)
        return target

    def _stat_sync(self, cache_path: str, content_type: str) -> CachedFile:
        target = self.resolve(cache_path)
        try:
            st = os.stat(target, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{cache_path!r} is not in the cache") from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"{cache_path!r} is not in the cache")
        guessed = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return CachedFile(
            path=target,
            size=st.st_size,
            mtime=st.st_mtime,
            etag=f'"{st.st_size:x}-{st.st_mtime_ns:x}"',
            content_type=content_type or guessed,
        )

    async def stat(self, cache_path: str, *, content_type: str = "") -> CachedFile:
        """Size, time, etag and content type of a cached file.

        Raises:
            InvalidArgument: a hostile path.
            NotFound: nothing (or not a regular file) at that path.
        """
        return await asyncio.to_thread(self._stat_sync, cache_path, content_type)

    async def read_chunks(self, cached: CachedFile, chunk_size: int) -> AsyncIterator[bytes]:
        """Stream a cached file in chunks, never following a symlink at the last step;
        the file is leased (not evicted) until the stream ends and counts as served."""
        cache_path = cached.path.relative_to(self.root).as_posix()
        with self.lease(cache_path):
            self.quota.served(cache_path)
            fd = await asyncio.to_thread(lambda: os.open(cached.path, os.O_RDONLY | os.O_NOFOLLOW))
            try:
                while True:
                    chunk = await asyncio.to_thread(os.read, fd, chunk_size)
                    if not chunk:
                        return
                    yield chunk
            finally:
                os.close(fd)

    def remove_part(self, part: Path) -> None:
        """Forget a partial download."""
        part.unlink(missing_ok=True)
        part.with_suffix(".meta").unlink(missing_ok=True)
