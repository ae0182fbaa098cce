"""OTA: the firmware catalog, streamed upload and ranged download."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from linewatch.v1 import ota_pb2
from linewatch_gateway.clients import Backends
from linewatch_gateway.convert import message_to_dict, model_for
from linewatch_gateway.errors import ApiError
from linewatch_gateway.routes.common import (
    ERRORS,
    NAME_PATTERN,
    PageParams,
    Read,
    Write,
    backends,
    page_body,
    page_model,
    page_request,
)
from linewatch_gateway.upload import (
    HARDWARE_PATTERN,
    PRODUCT_PATTERN,
    SIGNATURE_PATTERN,
    VERSION_PATTERN,
    stream_firmware_upload,
)

log = logging.getLogger(__name__)

router = APIRouter(responses=ERRORS, tags=["firmware"])

B = Annotated[Backends, Depends(backends)]
FirmwareId = Annotated[str, Path(pattern=NAME_PATTERN, description="The firmware id.")]
FirmwareOut = model_for(ota_pb2.Firmware.DESCRIPTOR)
_STREAM_TIMEOUT_S = 3600.0

_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["version", "file"],
                "properties": {
                    "version": {
                        "type": "string",
                        "pattern": VERSION_PATTERN,
                        "example": "1.3.0",
                    },
                    "product": {
                        "type": "string",
                        "pattern": PRODUCT_PATTERN,
                        "example": "press-controller",
                    },
                    "hardware": {
                        "type": "string",
                        "pattern": HARDWARE_PATTERN,
                        "description": "Comma-separated hardware revisions (empty: any).",
                        "example": "rev-b,rev-c",
                    },
                    "security_counter": {
                        "type": "string",
                        "pattern": "^[0-9]{0,18}$",
                        "description": "Anti-rollback counter in the manifest (default 0).",
                    },
                    "signature": {
                        "type": "string",
                        "pattern": SIGNATURE_PATTERN,
                        "description": "For an image signed offline: base64 ed25519 over the "
                        "canonical JSON of the manifest (product, hardware, version, sha256, "
                        "security_counter) by a key the OTA service trusts.",
                    },
                    "file": {"type": "string", "format": "binary"},
                },
            },
            "encoding": {"file": {"contentType": "application/octet-stream"}},
        }
    },
}


@router.post(
    "/v1/firmware",
    dependencies=Write,
    status_code=201,
    response_model=FirmwareOut,
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses={415: ERRORS[400] | {"description": "Not multipart/form-data."}},
)
async def upload_firmware(request: Request, b: B) -> Any:
    """Upload a firmware image (multipart: `version`, optional `product`, `hardware`,
    `security_counter` and `signature` (signed offline), then `file`)."""
    config = request.app.state.config
    resp = await stream_firmware_upload(
        request, b.ota, max_bytes=config.max_upload_bytes, timeout_s=_STREAM_TIMEOUT_S
    )
    return message_to_dict(resp.firmware)


@router.get(
    "/v1/firmware", dependencies=Read, response_model=page_model(ota_pb2.Firmware.DESCRIPTOR)
)
async def list_firmware(b: B, page: PageParams) -> Any:
    """The firmware catalog."""
    req = ota_pb2.ListFirmwareRequest(page=page_request(page))
    resp = await b.call("ota", b.ota.ListFirmware, req)
    return page_body(list(resp.firmware), resp.next_page_token)


class PublicKey(BaseModel):
    """One public key devices trust."""

    id: str
    ed25519: str = Field(description="base64 of the raw 32-byte ed25519 public key")


class PublicKeys(BaseModel):
    """The keys manifest signatures may be made with."""

    keys: list[PublicKey]


@router.get("/v1/firmware/keys", response_model=PublicKeys)
async def firmware_keys(b: B) -> Any:
    """The public keys devices verify `manifest_signature` with (no token: they are public)."""
    resp = await b.call("ota", b.ota.ListSigningKeys, ota_pb2.ListSigningKeysRequest())
    return {"keys": [{"id": k.id, "ed25519": k.ed25519} for k in resp.keys]}


@router.get("/v1/firmware/{firmware_id}", dependencies=Read, response_model=FirmwareOut)
async def get_firmware(b: B, firmware_id: FirmwareId) -> Any:
    """One firmware image's metadata."""
    resp = await b.call("ota", b.ota.GetFirmware, ota_pb2.GetFirmwareRequest(id=firmware_id))
    return message_to_dict(resp.firmware)


@router.delete("/v1/firmware/{firmware_id}", dependencies=Write, status_code=204)
async def delete_firmware(b: B, firmware_id: FirmwareId) -> Response:
    """Delete an image (refused while a rollout uses it)."""
    await b.call("ota", b.ota.DeleteFirmware, ota_pb2.DeleteFirmwareRequest(id=firmware_id))
    return Response(status_code=204)


_RANGE = re.compile(r"^bytes=\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range asked for, as inclusive (first, last), or None for the whole.

    Malformed or multi-range headers are ignored (the whole file is sent), as RFC 9110
    allows; a syntactically valid range that selects nothing raises a 416.
    """
    match = _RANGE.match(header or "")
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first_s, last_s = match.groups()
    if first_s == "":  # a suffix: the last N bytes
        first, last = max(size - int(last_s), 0), size - 1
        satisfiable = int(last_s) > 0 and size > 0
    else:
        first = int(first_s)
        last = min(int(last_s), size - 1) if last_s else size - 1
        if last_s and int(last_s) < first:
            return None
        satisfiable = first < size
    if not satisfiable:
        raise ApiError(
            416,
            "range_not_satisfiable",
            f"the range {header!r} selects nothing of {size} bytes",
            {"Content-Range": f"bytes */{size}"},
        )
    return first, last


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    return header.strip() == "*" or etag in [
        t.strip().removeprefix("W/") for t in header.split(",")
    ]


@router.get(
    "/v1/firmware/{firmware_id}/download",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        },
        206: {
            "description": "The requested byte range.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
        304: {"description": "Not modified (If-None-Match matched the ETag)."},
        416: ERRORS[400] | {"description": "The range selects nothing."},
    },
)
async def download_firmware(request: Request, b: B, firmware_id: FirmwareId) -> Response:
    """The image bytes; honours Range (206/416), If-Range and If-None-Match (ETag: sha256).

    Devices download without a token (the metadata message carries this URL and the
    sha256/signature they verify).
    """
    resp = await b.call("ota", b.ota.GetFirmware, ota_pb2.GetFirmwareRequest(id=firmware_id))
    fw = resp.firmware
    size = int(fw.size)
    etag = f'"{fw.sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=0, must-revalidate",
        "Content-Disposition": f'attachment; filename="{_safe_filename(fw.filename, fw.id)}"',
    }
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if_range = request.headers.get("if-range")
    wanted = None if if_range and if_range.strip() != etag else request.headers.get("range")
    selected = parse_range(wanted, size)
    status = 200
    first, last = 0, size - 1
    if selected is not None:
        first, last = selected
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    length = max(last - first + 1, 0)
    headers["Content-Length"] = str(length)
    req = ota_pb2.ReadFirmwareRequest(id=fw.id, offset=first, length=length)

    async def body() -> AsyncIterator[bytes]:
        if length == 0:
            return
        call = b.ota.ReadFirmware(req, timeout=_STREAM_TIMEOUT_S)
        try:
            async for msg in call:
                yield msg.chunk
        except grpc.aio.AioRpcError as exc:
            # The status line is sent: all we can do is cut the response short.
            log.warning("firmware download cut short", extra={"fields": {"code": exc.code().name}})
            raise
        finally:
            call.cancel()

    return StreamingResponse(
        body(), status_code=status, media_type="application/octet-stream", headers=headers
    )


def _safe_filename(name: str, fallback: str) -> str:
    cleaned = "".join(c for c in name if c.isalnum() or c in "._-")
    return cleaned or f"{fallback}.bin"
