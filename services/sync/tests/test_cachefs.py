"""The cache directory: symlinks refused, atomic commit, streaming reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from linewatch_sync.cachefs import CacheFs

from linewatch.runtime.errors import InvalidArgument, NotFound


def test_symlinked_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    cache = CacheFs(tmp_path / "cache")
    os.symlink(outside, cache.root / "h")
    with pytest.raises(InvalidArgument, match="symbolic link"):
        cache.resolve("h/a.jpg")


def test_symlinked_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x")
    cache = CacheFs(tmp_path / "cache")
    (cache.root / "h").mkdir()
    os.symlink(secret, cache.root / "h" / "a.jpg")
    with pytest.raises(InvalidArgument):
        cache.resolve("h/a.jpg")


async def test_commit_is_atomic_and_read_streams(tmp_path: Path) -> None:
    cache = CacheFs(tmp_path / "cache")
    part = cache.part_path("h/dir/a.jpg")
    part.write_bytes(b"\xff\xd8" + b"x" * 1000)
    assert not (cache.root / "h").exists()
    await cache.commit(part, "h/dir/a.jpg")
    assert not part.exists()
    cached = await cache.stat("h/dir/a.jpg")
    assert cached.size == 1002
    assert cached.content_type == "image/jpeg"
    chunks = [c async for c in cache.read_chunks(cached, 100)]
    assert b"".join(chunks) == b"\xff\xd8" + b"x" * 1000
    assert len(chunks) == 11


async def test_commit_refuses_symlink_that_appeared(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    cache = CacheFs(tmp_path / "cache")
    os.symlink(outside, cache.root / "h")
    part = cache.part_path("h/a.jpg")
    part.write_bytes(b"x")
    with pytest.raises(InvalidArgument):
        await cache.commit(part, "h/a.jpg")
    assert list(outside.iterdir()) == []


async def test_missing_file_and_directory_are_not_found(tmp_path: Path) -> None:
    cache = CacheFs(tmp_path / "cache")
    with pytest.raises(NotFound):
        await cache.stat("h/none.jpg")
    (cache.root / "h").mkdir()
    with pytest.raises(NotFound):
        await cache.stat("h")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.lists(
        st.sampled_from(
            ["a", "b.jpg", "..", ".", "", "%2e%2e", "\\", "\x00", "/", "~", ".partial"]
        ),
        max_size=8,
    ).map("/".join)
)
def test_any_cache_path_is_refused_or_inside(tmp_path: Path, path: str) -> None:
    """Property: a cache path from the gateway is refused or resolves inside the root."""
    cache = CacheFs(tmp_path / "cache")
    try:
        target = cache.resolve(path)
    except InvalidArgument:
        return
    real = target.resolve()
    assert real.is_relative_to(cache.root)
    assert real != cache.root
    assert not real.is_relative_to(cache.partial_dir)
