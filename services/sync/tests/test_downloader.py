"""One download against a real HTTP server: every way a server can misbehave."""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from linewatch_sync.cachefs import CacheFs
from linewatch_sync.downloader import Downloader
from linewatch_sync.store import JobRow
from linewatch_sync.urls import canonicalise

from linewatch.runtime.fetch import SafeFetcher
from linewatch_dev.sync_testing import ImageServer, Route, image_bytes

BODY = image_bytes(1, 200_000)


@pytest.fixture
async def client() -> AsyncIterator[SafeFetcher]:
    # the test servers listen on loopback, which a deployment has to allow explicitly
    async with SafeFetcher(
        allowed_networks=["127.0.0.0/8"], connect_timeout_s=2.0, read_timeout_s=2.0
    ) as fetcher:
        yield fetcher


def make_downloader(
    tmp_path: Path, client: SafeFetcher, **kw: object
) -> tuple[Downloader, CacheFs]:
    cache = CacheFs(tmp_path / "cache")
    options: dict[str, object] = {
        "max_bytes": 1_000_000,
        "allowed_content_types": ("image/*",),
        "allowed_hosts": (),
        "per_host_concurrency": 4,
        "total_timeout_s": 5.0,
    }
    options.update(kw)
    return Downloader(cache=cache, fetcher=client, **options), cache  # type: ignore[arg-type]


def job_for(url: str, **kw: object) -> JobRow:
    canon = canonicalise(url)
    now = time.time()
    fields: dict[str, object] = {
        "id": "j1",
        "url": canon.url,
        "cache_path": canon.cache_path,
        "state": "downloading",
        "created_at": now,
        "updated_at": now,
    }
    fields.update(kw)
    return JobRow.model_validate(fields)


def leftovers(cache: CacheFs) -> list[Path]:
    return [p for p in cache.root.rglob("*") if p.is_file()]


async def test_plain_download(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer
) -> None:
    image_server.routes["/img/a.jpg"] = Route(body=BODY)
    dl, cache = make_downloader(tmp_path, client)
    job = job_for(f"{image_server.base_url}/img/a.jpg!thumb")
    out = await dl.download(job)
    assert out.ok, out.error
    assert out.size == len(BODY)
    assert out.sha256 == hashlib.sha256(BODY).hexdigest()
    assert out.content_type == "image/jpeg"
    assert (cache.root / job.cache_path).read_bytes() == BODY
    assert leftovers(cache) == [cache.root / job.cache_path]


async def test_5xx_is_retryable_then_succeeds(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer
) -> None:
    image_server.routes["/f.jpg"] = Route(body=BODY, fail_first=2)
    dl, _ = make_downloader(tmp_path, client)
    job = job_for(f"{image_server.base_url}/f.jpg")
    for _ in range(2):
        out = await dl.download(job)
        assert not out.ok
        assert out.retryable
        assert "503" in out.error
    assert (await dl.download(job)).ok


async def test_range_resume_is_byte_identical(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer
) -> None:
    image_server.routes["/r.jpg"] = Route(body=BODY, cut_after=70_000, cut_times=2)
    dl, cache = make_downloader(tmp_path, client)
    job = job_for(f"{image_server.base_url}/r.jpg")
    first = await dl.download(job)
    assert not first.ok
    assert first.retryable
    assert not (cache.root / job.cache_path).exists()
    assert cache.part_path(job.cache_path).stat().st_size == 70_000
    second = await dl.download(job)  # resumes at 70,000, is cut again at 140,000
    assert not second.ok
    assert cache.part_path(job.cache_path).stat().st_size == 140_000
    third = await dl.download(job)
    assert third.ok, third.error
    assert (cache.root / job.cache_path).read_bytes() == BODY
    assert third.sha256 == hashlib.sha256(BODY).hexdigest()
    ranges = [h.get("range") for p, h in image_server.seen.headers if p == "/r.jpg"]
    assert ranges == [None, "bytes=70000-", "bytes=140000-"]
    assert not cache.part_path(job.cache_path).exists()


async def test_changed_resource_restarts_instead_of_mixing(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer
) -> None:
    image_server.routes["/c.jpg"] = Route(body=BODY, cut_after=50_000)
    dl, cache = make_downloader(tmp_path, client)
    job = job_for(f"{image_server.base_url}/c.jpg")
    assert not (await dl.download(job)).ok
    new_body = image_bytes(2, 120_000)
    image_server.routes["/c.jpg"] = Route(body=new_body)  # new ETag: If-Range fails → 200
    out = await dl.download(job)
    assert out.ok, out.error
    assert (cache.root / job.cache_path).read_bytes() == new_body


async def test_lying_content_length_never_lands(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer
) -> None:
    image_server.routes["/l.jpg"] = Route(body=BODY, lie_extra=1000, ranges=False)
    dl, cache = make_downloader(tmp_path, client)
    job = job_for(f"{image_server.base_url}/l.jpg")
    out = await dl.download(job)
    assert not out.ok
    assert out.retryable
    assert not (cache.root / job.cache_path).exists()


async def test_html_instead_of_image_is_permanent(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer
) -> None:
    image_server.routes["/h.jpg"] = Route(body=b"<html>login</html>", content_type="text/html")
    dl, cache = make_downloader(tmp_path, client)
    out = await dl.download(job_for(f"{image_server.base_url}/h.jpg"))
    assert not out.ok
    assert not out.retryable
    assert "content_type" in out.error
    assert leftovers(cache) == []


async def test_404_is_permanent(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer
) -> None:
    dl, _ = make_downloader(tmp_path, client)
    out = await dl.download(job_for(f"{image_server.base_url}/missing.jpg"))
    assert not out.ok
    assert not out.retryable
    assert "404" in out.error


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x.jpg"])
async def test_redirect_to_other_scheme_refused(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer, target: str
) -> None:
    image_server.routes["/go.jpg"] = Route(redirect=target)
    dl, cache = make_downloader(tmp_path, client)
    out = await dl.download(job_for(f"{image_server.base_url}/go.jpg"))
    assert not out.ok
    assert not out.retryable
    assert "redirect" in out.error
    assert leftovers(cache) == []


async def test_redirect_outside_allow_list_refused_inside_followed(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer
) -> None:
    image_server.routes["/real.jpg"] = Route(body=BODY)
    image_server.routes["/away.jpg"] = Route(redirect="http://evil.test/x.jpg")
    image_server.routes["/near.jpg"] = Route(redirect="/real.jpg")
    dl, cache = make_downloader(tmp_path, client, allowed_hosts=("127.0.0.1",))
    out = await dl.download(job_for(f"{image_server.base_url}/away.jpg"))
    assert not out.ok
    assert "allow-list" in out.error
    job = job_for(f"{image_server.base_url}/near.jpg")
    ok = await dl.download(job)
    assert ok.ok, ok.error
    assert (cache.root / job.cache_path).read_bytes() == BODY


async def test_slow_server_times_out(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer
) -> None:
    image_server.routes["/s.jpg"] = Route(body=BODY, delay_s=1.0)
    dl, cache = make_downloader(tmp_path, client, total_timeout_s=0.3)
    out = await dl.download(job_for(f"{image_server.base_url}/s.jpg"))
    assert not out.ok
    assert out.retryable
    assert "timeout" in out.error
    assert leftovers(cache) == []


async def test_size_cap(tmp_path: Path, client: SafeFetcher, image_server: ImageServer) -> None:
    image_server.routes["/big.jpg"] = Route(body=BODY)
    dl, cache = make_downloader(tmp_path, client, max_bytes=1000)
    out = await dl.download(job_for(f"{image_server.base_url}/big.jpg"))
    assert not out.ok
    assert not out.retryable
    assert "too_large" in out.error
    assert leftovers(cache) == []


async def test_checksum_checked(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer
) -> None:
    image_server.routes["/k.jpg"] = Route(body=BODY)
    dl, cache = make_downloader(tmp_path, client)
    bad = await dl.download(job_for(f"{image_server.base_url}/k.jpg", expected_sha256="0" * 64))
    assert not bad.ok
    assert "checksum" in bad.error
    assert leftovers(cache) == []
    good_sha = hashlib.sha256(BODY).hexdigest()
    good = await dl.download(job_for(f"{image_server.base_url}/k.jpg", expected_sha256=good_sha))
    assert good.ok


async def test_conditional_refetch_keeps_file_on_304(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer
) -> None:
    route = Route(body=BODY, last_modified="Wed, 21 Oct 2026 07:28:00 GMT")
    image_server.routes["/e.jpg"] = route
    dl, cache = make_downloader(tmp_path, client)
    job = job_for(f"{image_server.base_url}/e.jpg")
    first = await dl.download(job)
    assert first.ok
    mtime = (cache.root / job.cache_path).stat().st_mtime_ns
    again = job.model_copy(
        update={
            "refetch": True,
            "etag": first.etag,
            "last_modified": first.last_modified,
            "size": first.size,
            "sha256": first.sha256,
        }
    )
    out = await dl.download(again)
    assert out.ok
    assert out.sha256 == first.sha256
    assert (cache.root / job.cache_path).stat().st_mtime_ns == mtime
    last = image_server.seen.headers[-1][1]
    assert last["if-none-match"] == route.etag
    assert last["if-modified-since"] == route.last_modified


def tiny_png() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'


async def test_png_is_mirrored_with_its_sniffed_type(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer
) -> None:
    png = tiny_png()
    # the server's label is wrong; the cache records what the bytes are
    image_server.routes["/p.png"] = Route(body=png, content_type="image/x-whatever")
    dl, cache = make_downloader(tmp_path, client)
    job = job_for(f"{image_server.base_url}/p.png")
    out = await dl.download(job)
    assert out.ok, out.error
    assert out.content_type == "image/png"
    assert (cache.root / job.cache_path).read_bytes() == png


@pytest.mark.parametrize(
    ("body", "label"),
    [
        (SVG, "image/svg+xml"),
        (SVG, "image/png"),
        (b"<!doctype html><html><script>alert(1)</script></html>", "image/png"),
        (b"<html>" + b" " * 100_000, "image/jpeg"),
        (b"GIF8", "image/gif"),  # too short to be what it claims
    ],
)
async def test_active_and_unknown_content_is_refused_for_good(
    tmp_path: Path, client: SafeFetcher, image_server: ImageServer, body: bytes, label: str
) -> None:
    image_server.routes["/x.png"] = Route(body=body, content_type=label)
    dl, cache = make_downloader(tmp_path, client)
    out = await dl.download(job_for(f"{image_server.base_url}/x.png"))
    assert not out.ok
    assert not out.retryable
    assert "not a raster image" in out.error
    assert leftovers(cache) == []


async def test_loopback_is_refused_without_allowed_networks(
    tmp_path: Path, image_server: ImageServer
) -> None:
    image_server.routes["/secret.png"] = Route(body=tiny_png())
    async with SafeFetcher() as fetcher:
        dl, cache = make_downloader(tmp_path, fetcher)
        out = await dl.download(job_for(f"{image_server.base_url}/secret.png"))
    assert not out.ok
    assert not out.retryable
    assert out.error == "refused: the host resolves to an address that is not allowed"
    assert image_server.seen.hits["/secret.png"] == 0
    assert leftovers(cache) == []
