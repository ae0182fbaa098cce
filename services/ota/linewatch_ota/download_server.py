"""A small HTTP/1.1 server for ranged firmware downloads, reading over ReadFirmware.

``GET /v1/firmware/{id}/download`` with an optional ``Range: bytes=a-b`` header, served
the way the gateway serves it: the bytes come from the OTA service's ``ReadFirmware``
gRPC stream. The gateway does this in production; this server lets the OTA service run
alone (``http_port``), and it backs tests, the benchmark and demos.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import grpc

from linewatch.runtime.config import GrpcClientConfig
from linewatch.runtime.grpc_auth import open_channel
from linewatch.v1 import ota_pb2, ota_pb2_grpc

__all__ = ["DownloadServer", "parse_range"]

log = logging.getLogger(__name__)

_PATH = re.compile(r"^/v1/firmware/([A-Za-z0-9_-]{1,64})/download$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
MAX_HEADER_BYTES = 16 * 1024


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` of a single ``bytes=`` range; ``None`` if unsatisfiable.

    Raises:
        ValueError: the header is not a single byte range.
    """
    m = _RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        raise ValueError(f"unsupported Range {header!r}")
    if not m.group(1):  # suffix: the last n bytes
        n = int(m.group(2))
        return (max(0, size - n), size) if n > 0 and size > 0 else None
    start = int(m.group(1))
    end = int(m.group(2)) + 1 if m.group(2) else size
    if start >= size or end <= start:
        return None
    return start, min(end, size)


class DownloadServer:
    """Serves firmware downloads from an OTA gRPC endpoint."""

    def __init__(
        self,
        *,
        grpc_target: str,
        host: str = "127.0.0.1",
        port: int = 0,
        client: GrpcClientConfig | None = None,
    ) -> None:
        self.grpc_target = grpc_target
        self.client = client
        self.host = host
        self.port = port
        self._channel: grpc.aio.Channel | None = None
        self._stub: ota_pb2_grpc.OtaServiceStub | None = None
        self._server: asyncio.Server | None = None
        self._sizes: dict[str, int] = {}

    @property
    def base_url(self) -> str:
        """``http://host:port`` (the OTA service's ``public_base_url``)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> int:
        """Listen; returns the bound port."""
        self._channel = open_channel(self.grpc_target, self.client)
        self._stub = ota_pb2_grpc.OtaServiceStub(self._channel)
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening and close the channel."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
        if self._channel is not None:
            await self._channel.close()

    async def _size(self, firmware_id: str) -> int | None:
        if firmware_id in self._sizes:
            return self._sizes[firmware_id]
        assert self._stub is not None
        try:
            reply = await self._stub.GetFirmware(ota_pb2.GetFirmwareRequest(id=firmware_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        self._sizes[firmware_id] = int(reply.firmware.size)
        return self._sizes[firmware_id]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except grpc.aio.AioRpcError as exc:
            log.warning("firmware read failed: %s", exc.details())
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEADER_BYTES:
            await _reply(writer, 431, b"header too large", close=True)
            return False
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep = headers.get("connection", "").lower() != "close"
        if len(parts) != 3 or parts[0] not in {"GET", "HEAD"}:
            await _reply(writer, 405, b"only GET", close=True)
            return False
        m = _PATH.match(parts[1].split("?", 1)[0])
        size = await self._size(m.group(1)) if m else None
        if m is None or size is None:
            await _reply(writer, 404, b"no such firmware", close=not keep)
            return keep
        start, end, status = 0, size, 200
        extra = ""
        if "range" in headers:
            try:
                rng = parse_range(headers["range"], size)
            except ValueError:
                rng = (0, size)
            else:
                if rng is None:
                    await _reply(
                        writer, 416, b"", close=not keep, extra=f"Content-Range: bytes */{size}\r\n"
                    )
                    return keep
                status = 206
                extra = f"Content-Range: bytes {rng[0]}-{rng[1] - 1}/{size}\r\n"
            start, end = rng
        writer.write(
            (
                f"HTTP/1.1 {status} {'Partial Content' if status == 206 else 'OK'}\r\n"
                f"Content-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n"
                f"Content-Length: {end - start}\r\n{extra}"
                f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
            ).encode("latin-1")
        )
        if parts[0] == "GET" and end > start:
            assert self._stub is not None
            stream = self._stub.ReadFirmware(
                ota_pb2.ReadFirmwareRequest(id=m.group(1), offset=start, length=end - start)
            )
            async for piece in stream:
                writer.write(piece.chunk)
                await writer.drain()
        await writer.drain()
        return keep


async def _reply(
    writer: asyncio.StreamWriter, status: int, body: bytes, *, close: bool, extra: str = ""
) -> None:
    writer.write(
        (
            f"HTTP/1.1 {status} Error\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n{extra}"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        ).encode("latin-1")
        + body
    )
    await writer.drain()
