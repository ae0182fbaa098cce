"""The one place HTTP errors are made: gRPC status → HTTP status and a JSON body.

Every error the gateway returns has the body ``{"error": {"code": ..., "message": ...}}``:

- a backend's gRPC status maps through :data:`linewatch.runtime.errors.GRPC_TO_HTTP`
  (an unexpected one, e.g. INTERNAL, is a 502 ``backend_error``);
- a :class:`~linewatch.runtime.errors.LinewatchError` raised here maps by its gRPC code;
- request validation is 422 ``invalid_argument`` naming the offending field;
- :class:`ApiError` carries its own status (401, 413, 416 ...).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from linewatch.runtime.errors import GRPC_TO_HTTP, LinewatchError

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "ErrorBody",
    "ErrorDetail",
    "error_response",
    "from_grpc",
    "install_error_handlers",
]

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid_argument",
    429: "resource_exhausted",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


def _example(code: str, message: str) -> dict[str, Any]:
    return {
        "model": ErrorBody,
        "content": {"application/json": {"example": {"error": {"code": code, "message": message}}}},
    }


#: The error responses every route documents in the OpenAPI document.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _example("invalid_argument", "rule.name: must not be empty"),
    401: _example("unauthenticated", "a bearer token is required"),
    403: _example("permission_denied", "this token may only read"),
    404: _example("not_found", "rule 'demo' not found"),
    409: _example("already_exists", "rule 'demo' exists already"),
    413: _example("payload_too_large", "the request body exceeds 1048576 bytes"),
    422: _example(
        "invalid_argument", "query.page_size: Input should be less than or equal to 1000"
    ),
    429: _example("resource_exhausted", "too many requests"),
    499: _example("cancelled", "the call was cancelled"),
    501: _example("unimplemented", "the backend does not implement this"),
    502: _example("backend_error", "ingest failed: internal error"),
    503: _example("unavailable", "ingest is unavailable"),
    504: _example("deadline_exceeded", "ingest did not answer in time"),
}


class ApiError(Exception):
    """An HTTP error with its status, code and message."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error response."""
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def from_grpc(exc: grpc.aio.AioRpcError, backend: str = "backend") -> ApiError:
    """The HTTP error for a failed backend call."""
    code = exc.code()
    details = exc.details() or code.name.lower()
    mapped = GRPC_TO_HTTP.get(code)
    if mapped is None:
        log.warning(
            "backend call failed", extra={"fields": {"code": code.name, "details": details}}
        )
        return ApiError(502, "backend_error", f"{backend} failed: {details}")
    status, text = mapped
    if code == grpc.StatusCode.UNAVAILABLE:
        details = f"{backend} is unavailable: {details}"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"{backend} did not answer in time"
    return ApiError(status, text, details)


def from_domain(exc: LinewatchError) -> ApiError:
    """The HTTP error for a domain error raised in the gateway itself."""
    status, text = GRPC_TO_HTTP.get(exc.grpc_code, (500, "internal"))
    return ApiError(status, text, exc.message)


def _describe_validation(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the one JSON shape."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def grpc_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, grpc.aio.AioRpcError)
        err = from_grpc(exc)
        return error_response(err.status, err.code, err.message)

    async def domain_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LinewatchError)
        err = from_domain(exc)
        return error_response(err.status, err.code, err.message)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "invalid_argument", _describe_validation(exc))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal", "internal error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(grpc.aio.AioRpcError, grpc_error)
    app.add_exception_handler(LinewatchError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
