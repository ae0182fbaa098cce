"""The running service refuses internal addresses and active content (SPEC Security)."""

from __future__ import annotations

import struct
import zlib

from linewatch.v1 import sync_pb2
from linewatch_dev.sync_testing import ImageServer, Route, StartSync

DONE = sync_pb2.JOB_STATE_DONE
DEAD = sync_pb2.JOB_STATE_DEAD

SPELLINGS = [
    "http://127.0.0.1:{port}/secret.png",
    "http://localhost:{port}/secret.png",
    "http://2130706433:{port}/secret.png",
    "http://0x7f000001:{port}/secret.png",
    "http://127.1:{port}/secret.png",
    "http://0.0.0.0:{port}/secret.png",
]


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))


async def test_internal_urls_are_dead_at_once_and_never_connected(
    start_sync: StartSync, image_server: ImageServer
) -> None:
    image_server.routes["/secret.png"] = Route(body=png(), content_type="image/png")
    svc = await start_sync(allowed_networks=())  # the deployment default
    urls = [s.format(port=image_server.port) for s in SPELLINGS]
    resp = await svc.stub.EnqueueUrls(sync_pb2.EnqueueUrlsRequest(urls=urls))
    assert len(resp.jobs) == len(urls), resp.rejected
    for job in resp.jobs:
        dead = await svc.wait_state(job.id, {DEAD, DONE})
        assert dead.state == DEAD
        assert dead.attempts == 1  # a refusal is not retried
        # the same words whatever is (or is not) listening there
        assert dead.last_error == "refused: the host resolves to an address that is not allowed"
    assert image_server.connections == 0


async def test_svg_and_html_labelled_png_are_refused_with_a_reason(
    start_sync: StartSync, image_server: ImageServer
) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    image_server.routes["/a.svg"] = Route(body=svg, content_type="image/svg+xml")
    image_server.routes["/b.png"] = Route(body=b"<html><script>x()</script></html>" * 3,
                                          content_type="image/png")  # fmt: skip
    image_server.routes["/c.png"] = Route(body=png(), content_type="image/png")
    svc = await start_sync()
    base = image_server.base_url
    resp = await svc.stub.EnqueueUrls(
        sync_pb2.EnqueueUrlsRequest(urls=[f"{base}/a.svg", f"{base}/b.png", f"{base}/c.png"])
    )
    svg_job, html_job, png_job = resp.jobs
    for job in (svg_job, html_job):
        dead = await svc.wait_state(job.id, {DEAD, DONE})
        assert dead.state == DEAD
        assert dead.attempts == 1
        assert "not a raster image" in dead.last_error
    done = await svc.wait_state(png_job.id, {DONE, DEAD})
    assert done.state == DONE
    (head, *_) = [
        part
        async for part in svc.stub.ReadImage(sync_pb2.ReadImageRequest(cache_path=done.cache_path))
    ]
    assert head.content_type == "image/png"


async def test_redirect_to_an_internal_address_is_never_followed(
    start_sync: StartSync, image_server: ImageServer
) -> None:
    image_server.routes["/secret.png"] = Route(body=png(), content_type="image/png")
    async with ImageServer(host="127.0.0.2") as public:  # stands in for a public server
        public.routes["/a.png"] = Route(redirect=f"{image_server.base_url}/secret.png")
        svc = await start_sync(allowed_networks=("127.0.0.2/32",))
        resp = await svc.stub.EnqueueUrls(
            sync_pb2.EnqueueUrlsRequest(urls=[f"{public.base_url}/a.png"])
        )
        dead = await svc.wait_state(resp.jobs[0].id, {DEAD, DONE})
    assert dead.state == DEAD
    assert "not allowed" in dead.last_error
    assert public.connections == 1
    assert image_server.connections == 0
