"""Cached images through the gateway: raster only, served so nothing can run (SPEC Security)."""

from __future__ import annotations

import asyncio
import struct
import zlib
from typing import Any

import httpx


def png() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\0\0\0")) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


async def _settled(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            job: dict[str, Any] = (await client.get(f"/v1/sync/jobs/{job_id}")).json()
            if job["state"] in {"done", "dead"}:
                return job
            await asyncio.sleep(0.1)


async def test_png_is_mirrored_and_served_inert_svg_and_html_are_refused(
    client: httpx.AsyncClient, write_headers: dict[str, str]
) -> None:
    from linewatch_dev.sync_testing import ImageServer, Route

    image = png()
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    async with ImageServer() as images:
        images.routes["/img/a.png"] = Route(body=image, content_type="image/png")
        images.routes["/img/x.svg"] = Route(body=svg, content_type="image/svg+xml")
        images.routes["/img/h.png"] = Route(body=b"<!doctype html><script>x()</script>",
                                            content_type="image/png")  # fmt: skip
        urls = [f"{images.base_url}/img/{n}" for n in ("a.png", "x.svg", "h.png")]
        made = await client.post("/v1/sync/jobs", json={"urls": urls}, headers=write_headers)
        assert made.status_code == 202, made.text
        by_url = {j["url"]: j for j in made.json()["jobs"]}
        good = await _settled(client, by_url[urls[0]]["id"])
        refused = [await _settled(client, by_url[u]["id"]) for u in urls[1:]]
    assert good["state"] == "done", good
    for job in refused:
        assert job["state"] == "dead"
        assert "not a raster image" in job["last_error"]
        missing = await client.get(f"/v1/images/{job['cache_path']}")
        assert missing.status_code == 404
    served = await client.get(f"/v1/images/{good['cache_path']}")
    assert served.status_code == 200
    assert served.content == image
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["content-security-policy"] == "default-src 'none'; sandbox"
