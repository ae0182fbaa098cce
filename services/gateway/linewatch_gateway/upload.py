"""Streaming firmware upload: a multipart form piped into ``OtaService.UploadFirmware``.

The body is parsed as it arrives (python-multipart's push parser); the ``file`` part's
bytes go to the gRPC client stream through a small bounded queue, so a large image is
never held in memory. The documented field order is ``version`` (and ``product``) before
``file``; when a client sends the file first, its bytes are spooled to a temporary file
on disk until the metadata is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Any

import grpc
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from linewatch.v1 import ota_pb2
from linewatch_gateway.errors import ApiError, from_grpc

__all__ = ["stream_firmware_upload"]

_MAX_FIELD = 4096
_FIELDS = ("version", "product", "hardware", "signature", "security_counter")
_SPOOL_CHUNK = 256 * 1024
_GRACE_S = 1.0


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_argument", message)


class _FormEvents:
    """Push parser of one multipart body, collecting events between feeds."""

    def __init__(self, boundary: bytes) -> None:
        self.events: list[tuple[str, str, bytes]] = []
        self.ended = False
        self.error: ApiError | None = None
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._name = ""
        self._is_file = False
        self._buffer = bytearray()
        callbacks: Any = {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def _part_begin(self) -> None:
        self._headers = {}
        self._buffer = bytearray()
        self._name = ""
        self._is_file = False

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").lower()
        self._headers[name] = self._value.decode("latin-1")
        self._field = bytearray()
        self._value = bytearray()

    def _headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get("content-disposition"))
        if disposition != b"form-data" or b"name" not in params:
            self.error = self.error or _invalid("a form part has no name")
            return
        self._name = params[b"name"].decode("utf-8", "replace")
        self._is_file = self._name == "file"
        if self._is_file:
            filename = params.get(b"filename", b"").decode("utf-8", "replace")
            self.events.append(("file_begin", filename[:255], b""))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.events.append(("data", "", bytes(data[start:end])))
            return
        self._buffer.extend(data[start:end])
        if len(self._buffer) > _MAX_FIELD:
            self.error = self.error or _invalid(f"{self._name}: longer than {_MAX_FIELD} bytes")
            self._buffer = bytearray()

    def _part_end(self) -> None:
        if self._is_file:
            self.events.append(("file_end", "", b""))
        elif self._name:
            self.events.append(("field", self._name, bytes(self._buffer)))

    def _end(self) -> None:
        self.ended = True

    def feed(self, data: bytes) -> list[tuple[str, str, bytes]]:
        """Parse more of the body; the events it completed."""
        try:
            self._parser.write(data)
        except Exception as exc:  # python-multipart raises its own and ValueError
            raise _invalid(f"malformed multipart body ({exc.__class__.__name__})") from exc
        if self.error is not None:
            raise self.error
        events, self.events = self.events, []
        return events


#: What a firmware version and product name may look like (checked here, at the edge).
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
PRODUCT_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$"
#: Comma-separated hardware revisions.
HARDWARE_PATTERN = (
    r"^([A-Za-z0-9][A-Za-z0-9._+~-]{0,63}(\s*,\s*[A-Za-z0-9][A-Za-z0-9._+~-]{0,63})*)?$"
)
#: base64 of a 64-byte ed25519 signature.
SIGNATURE_PATTERN = r"^([A-Za-z0-9+/]{86}==)?$"


def _metadata(fields: dict[str, str], filename: str) -> ota_pb2.UploadFirmwareRequest.Metadata:
    version = fields.get("version", "").strip()
    product = fields.get("product", "").strip()
    if not version:
        raise _invalid("version: a non-empty form field is required before the end of the body")
    if not re.match(VERSION_PATTERN, version):
        raise _invalid("version: letters, digits and ._+- only (at most 64), e.g. 1.3.0")
    if not re.match(PRODUCT_PATTERN, product):
        raise _invalid("product: letters, digits and ._- only (at most 64)")
    hardware = fields.get("hardware", "").strip()
    if len(hardware) > 4096 or not re.match(HARDWARE_PATTERN, hardware):
        raise _invalid("hardware: comma-separated revisions of letters, digits and ._+~-")
    signature = fields.get("signature", "").strip()
    if not re.match(SIGNATURE_PATTERN, signature):
        raise _invalid("signature: base64 of a 64-byte ed25519 signature")
    counter = fields.get("security_counter", "").strip() or "0"
    if not counter.isdigit() or len(counter) > 18:
        raise _invalid("security_counter: a whole number (at most 18 digits)")
    safe_name = "".join(c for c in filename if c.isascii() and (c.isalnum() or c in "._-"))
    return ota_pb2.UploadFirmwareRequest.Metadata(
        product=product,
        version=version,
        filename=safe_name[:128],
        hardware=[h.strip() for h in hardware.split(",") if h.strip()],
        signature=signature,
        security_counter=int(counter),
    )


class _Upload:
    """One upload: the body pump and the gRPC request stream it feeds."""

    def __init__(self, request: Request, boundary: bytes, max_bytes: int) -> None:
        self.request = request
        self.form = _FormEvents(boundary)
        self.max_bytes = max_bytes
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)
        self.meta: asyncio.Future[ota_pb2.UploadFirmwareRequest.Metadata] = (
            asyncio.get_running_loop().create_future()
        )
        self.fields: dict[str, str] = {}
        self.filename = ""
        self.file_seen = False
        self.streaming = False
        self.spool: IO[bytes] | None = None
        #: The gRPC call, once made: writing stops as soon as it has ended.
        self.call: Any = None

    def abort(self) -> None:
        """Let the request stream end when the upload failed on our side."""
        if not self.meta.done():
            self.meta.cancel()
        with contextlib.suppress(asyncio.QueueFull):
            self.chunks.put_nowait(None)

    async def requests(self) -> AsyncIterator[ota_pb2.UploadFirmwareRequest]:
        """The client stream: metadata first, then the file's chunks."""
        yield ota_pb2.UploadFirmwareRequest(metadata=await self.meta)
        while (chunk := await self.chunks.get()) is not None:
            # A server that rejected the upload early has ended the call; writing on can
            # turn its status into INTERNAL (grpc/grpc#36066), so stop at once.
            if self.call is not None and self.call.done():
                return
            yield ota_pb2.UploadFirmwareRequest(chunk=chunk)

    async def _file_data(self, data: bytes) -> None:
        if self.streaming:
            for i in range(0, len(data), _SPOOL_CHUNK):
                await self.chunks.put(data[i : i + _SPOOL_CHUNK])
        elif self.spool is not None:
            await asyncio.to_thread(self.spool.write, data)

    def _file_begin(self, filename: str) -> None:
        if self.file_seen:
            raise _invalid("file: only one file per upload")
        self.file_seen, self.filename = True, filename
        if self.fields.get("version", "").strip():
            self.meta.set_result(_metadata(self.fields, filename))
            self.streaming = True
        else:  # the file came before its metadata: keep it on disk until the end
            self.spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by pump()

    async def _handle(self, kind: str, name: str, data: bytes) -> None:
        if kind == "field" and name in _FIELDS:
            try:
                self.fields[name] = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _invalid(f"{name}: not UTF-8") from exc
        elif kind == "file_begin":
            self._file_begin(name)
        elif kind == "data":
            await self._file_data(data)

    async def pump(self) -> None:
        """Read the body, parse it, and feed the request stream."""
        total = 0
        try:
            async for body in self.request.stream():
                total += len(body)
                if total > self.max_bytes:
                    raise ApiError(
                        413, "payload_too_large", f"the upload exceeds {self.max_bytes} bytes"
                    )
                for kind, name, data in self.form.feed(body):
                    await self._handle(kind, name, data)
            if not self.form.ended:
                raise _invalid("the multipart body ended early")
            if not self.file_seen:
                raise _invalid("file: a file part is required")
            if not self.streaming:
                self.meta.set_result(_metadata(self.fields, self.filename))
                assert self.spool is not None
                await asyncio.to_thread(self.spool.seek, 0)
                while data := await asyncio.to_thread(self.spool.read, _SPOOL_CHUNK):
                    await self.chunks.put(data)
            await self.chunks.put(None)
        finally:
            if self.spool is not None:
                self.spool.close()


async def stream_firmware_upload(
    request: Request, ota: Any, *, max_bytes: int, timeout_s: float
) -> Any:
    """Parse the form as it arrives and stream it to ``UploadFirmware``; the response."""
    mime, params = parse_options_header(request.headers.get("content-type"))
    if mime != b"multipart/form-data" or not params.get(b"boundary"):
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise ApiError(413, "payload_too_large", f"the upload exceeds {max_bytes} bytes")
    upload = _Upload(request, params[b"boundary"], max_bytes)

    upload.call = ota.UploadFirmware(upload.requests(), timeout=timeout_s)

    async def call() -> Any:
        return await upload.call

    call_task = asyncio.ensure_future(call())
    pump_task = asyncio.ensure_future(upload.pump())
    try:
        await asyncio.wait({call_task, pump_task}, return_when=asyncio.FIRST_EXCEPTION)
        if pump_task.done() and (error := pump_task.exception()) is not None:
            upload.abort()
            call_task.cancel()
            raise error
        try:
            return await call_task
        except grpc.aio.AioRpcError as exc:
            # A broken body ends the call too; report the body's problem, not the call's.
            await asyncio.wait({pump_task}, timeout=_GRACE_S)
            if pump_task.done() and (error := pump_task.exception()) is not None:
                raise error from exc
            raise from_grpc(exc, "ota") from exc
    finally:
        upload.abort()
        for task in (call_task, pump_task):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
