"""SafeFetcher against real local servers: forbidden addresses are never connected to."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from pydantic import BaseModel, ValidationError

from linewatch.runtime.fetch import (
    AllowedNetworks,
    FetchFailed,
    FetchRefused,
    FetchTimeout,
    FetchTooLarge,
    SafeFetcher,
    address_allowed,
    parse_networks,
)


@dataclass
class CountingServer:
    """An HTTP server that counts every TCP connection it accepts (on IPv4 and IPv6)."""

    host: str = "127.0.0.1"
    body: bytes = b"secret"
    location: str = ""
    connections: int = 0
    port: int = 0
    servers: list[asyncio.Server] = field(default_factory=list)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            if self.location:
                head = f"HTTP/1.1 302 Found\r\nLocation: {self.location}\r\nContent-Length: 0\r\n"
                writer.write(head.encode() + b"\r\n")
            else:
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.body)}\r\n"
                writer.write(head.encode() + b"content-type: image/png\r\n\r\n" + self.body)
            await writer.drain()
        writer.close()

    async def start(self) -> None:
        server = await asyncio.start_server(self._serve, self.host, 0)
        self.servers.append(server)
        self.port = int(server.sockets[0].getsockname()[1])
        if self.host == "127.0.0.1" and socket.has_ipv6:
            with contextlib.suppress(OSError):  # the same port on ::1, when free
                self.servers.append(await asyncio.start_server(self._serve, "::1", self.port))

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def counting() -> AsyncIterator[CountingServer]:
    server = CountingServer()
    await server.start()
    yield server
    await server.stop()


FORBIDDEN_SPELLINGS = [
    "http://127.0.0.1:{port}/secret.png",
    "http://localhost:{port}/secret.png",
    "http://2130706433:{port}/secret.png",
    "http://0x7f000001:{port}/secret.png",
    "http://0x7f.1:{port}/secret.png",
    "http://017700000001:{port}/secret.png",
    "http://127.1:{port}/secret.png",
    "http://127.0.1:{port}/secret.png",
    "http://0.0.0.0:{port}/secret.png",
    "http://0:{port}/secret.png",
    "http://[::1]:{port}/secret.png",
    "http://[::ffff:127.0.0.1]:{port}/secret.png",
    "http://[::ffff:7f00:1]:{port}/secret.png",
    "http://[::]:{port}/secret.png",
    "http://LOCALHOST.:{port}/secret.png",
]


@pytest.mark.parametrize("spelling", FORBIDDEN_SPELLINGS)
async def test_forbidden_spellings_make_no_connection(
    counting: CountingServer, spelling: str
) -> None:
    url = spelling.format(port=counting.port)
    async with SafeFetcher(connect_timeout_s=2) as fetcher:
        with pytest.raises((FetchRefused, FetchFailed)) as info:
            async with fetcher.stream(url):
                pass
    assert counting.connections == 0
    assert "secret" not in str(info.value)


async def test_redirect_to_a_forbidden_address_makes_no_connection(
    counting: CountingServer,
) -> None:
    # The redirecting server is allowed (127.0.0.2 only); its target 127.0.0.1 is not.
    redirector = CountingServer(host="127.0.0.2", location=f"http://127.0.0.1:{counting.port}/x")
    await redirector.start()
    try:
        async with SafeFetcher(allowed_networks=["127.0.0.2/32"]) as fetcher:
            with pytest.raises(FetchRefused, match="not allowed"):
                async with fetcher.stream(f"http://127.0.0.2:{redirector.port}/a.png"):
                    pass
    finally:
        await redirector.stop()
    assert redirector.connections == 1
    assert counting.connections == 0


async def test_redirect_by_odd_spelling_makes_no_connection(counting: CountingServer) -> None:
    redirector = CountingServer(host="127.0.0.2", location=f"http://2130706433:{counting.port}/")
    await redirector.start()
    try:
        async with SafeFetcher(allowed_networks=["127.0.0.2"]) as fetcher:
            with pytest.raises(FetchRefused):
                async with fetcher.stream(f"http://127.0.0.2:{redirector.port}/a.png"):
                    pass
    finally:
        await redirector.stop()
    assert counting.connections == 0


async def test_redirect_loops_are_capped() -> None:
    loop = CountingServer(host="127.0.0.2")
    await loop.start()
    loop.location = f"http://127.0.0.2:{loop.port}/again"
    try:
        async with SafeFetcher(allowed_networks=["127.0.0.0/8"], max_redirects=3) as fetcher:
            with pytest.raises(FetchRefused, match="more than 3 redirects"):
                async with fetcher.stream(f"http://127.0.0.2:{loop.port}/"):
                    pass
    finally:
        await loop.stop()
    assert loop.connections >= 1


async def test_allowed_network_is_fetched(counting: CountingServer) -> None:
    async with SafeFetcher(allowed_networks=["127.0.0.0/8"]) as fetcher:
        async with fetcher.stream(f"http://127.0.0.1:{counting.port}/a.png") as response:
            assert response.status_code == 200
            assert await response.aread() == b"secret"
        out = io.BytesIO()
        size = await fetcher.download_to(
            f"http://localhost:{counting.port}/a.png", out, max_bytes=100, total_timeout_s=10
        )
        assert (size, out.getvalue()) == (6, b"secret")
        with pytest.raises(FetchTooLarge):
            await fetcher.download_to(
                f"http://127.0.0.1:{counting.port}/a.png",
                io.BytesIO(),
                max_bytes=3,
                total_timeout_s=10,
            )


async def test_errors_do_not_tell_whether_a_port_is_open() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    async with SafeFetcher(allowed_networks=["127.0.0.0/8"]) as fetcher:
        with pytest.raises(FetchFailed) as info:
            async with fetcher.stream(f"http://127.0.0.1:{closed}/"):
                pass
    assert str(info.value) == "could not connect to the host"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a", "file:///etc/passwd", "http://user:pw@example.com/", "x"]
)
async def test_other_urls_are_refused(url: str) -> None:
    async with SafeFetcher() as fetcher:
        with pytest.raises(FetchRefused):
            async with fetcher.stream(url):
                pass


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "255.255.255.255", "224.0.0.1", "239.255.255.250", "192.0.2.1", "::1", "::",
        "fe80::1", "fe80::1%1", "fc00::1", "ff02::1", "::ffff:10.0.0.1", "64:ff9b::a00:1",
        "2002:7f00:1::1", "not an address",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not address_allowed(address)


def test_public_and_allow_listed_addresses_pass() -> None:
    assert address_allowed("93.184.216.34")
    assert address_allowed("2606:2800:220:1:248:1893:25c8:1946")
    nets = parse_networks(["10.0.0.0/8", "::1"])
    assert address_allowed("10.9.8.7", nets)
    assert address_allowed("::ffff:10.9.8.7", nets)
    assert address_allowed("::1", nets)
    assert not address_allowed("127.0.0.1", nets)


class _Cfg(BaseModel):
    allowed_networks: AllowedNetworks = ()


def test_allowed_networks_config_field() -> None:
    cfg = _Cfg.model_validate({"allowed_networks": "127.0.0.0/8, 10.1.2.3 ,"})
    assert cfg.allowed_networks == ("127.0.0.0/8", "10.1.2.3/32")
    assert _Cfg.model_validate({"allowed_networks": ["::1"]}).allowed_networks == ("::1/128",)
    with pytest.raises(ValidationError, match="not a CIDR"):
        _Cfg.model_validate({"allowed_networks": "10.0.0.0/33"})


async def test_a_server_that_never_answers_hits_the_time_limit() -> None:
    writers: list[asyncio.StreamWriter] = []
    done = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await done.wait()  # never answers; the client gives up first
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with SafeFetcher(allowed_networks=["127.0.0.1"], read_timeout_s=30) as fetcher:
            with pytest.raises(FetchTimeout):
                await fetcher.download_to(
                    f"http://127.0.0.1:{port}/", io.BytesIO(), max_bytes=10, total_timeout_s=0.2
                )
    finally:
        done.set()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)  # let the handler close its side
    assert len(writers) == 1
