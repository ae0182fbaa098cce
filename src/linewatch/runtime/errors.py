"""The one exception hierarchy of linewatch and its mapping to gRPC and HTTP.

Domain code raises these; the gRPC server interceptor turns them into status codes
and the gateway turns gRPC status codes into HTTP responses, each in one place::

    LinewatchError
    ├── ConfigError             (a bad configuration file or value; stops a service)
    ├── InvalidArgument         INVALID_ARGUMENT     400
    ├── NotFound                NOT_FOUND            404
    ├── AlreadyExists           ALREADY_EXISTS       409
    ├── FailedPrecondition      FAILED_PRECONDITION  409
    ├── Aborted                 ABORTED              409
    ├── ResourceExhausted       RESOURCE_EXHAUSTED   429
    ├── PermissionDenied        PERMISSION_DENIED    403
    ├── Unauthenticated         UNAUTHENTICATED      401
    └── Unavailable             UNAVAILABLE          503
"""

from __future__ import annotations

import grpc

__all__ = [
    "GRPC_TO_HTTP",
    "Aborted",
    "AlreadyExists",
    "ConfigError",
    "FailedPrecondition",
    "InvalidArgument",
    "LinewatchError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]


class LinewatchError(Exception):
    """Base of every error linewatch raises on purpose."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(LinewatchError):
    """A configuration file or value is invalid; the message names the key."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class InvalidArgument(LinewatchError):
    """The caller sent something malformed."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(LinewatchError):
    """The named thing does not exist."""

    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(LinewatchError):
    """A thing with that name or key exists already."""

    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(LinewatchError):
    """The request is valid but the system is not in a state to do it."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(LinewatchError):
    """A concurrent change won; the caller may retry."""

    grpc_code = grpc.StatusCode.ABORTED


class ResourceExhausted(LinewatchError):
    """A size, rate or capacity limit was hit."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class PermissionDenied(LinewatchError):
    """The caller is known but may not do this."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(LinewatchError):
    """The caller did not prove who it is."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(LinewatchError):
    """A backend (model, broker, database, peer service) cannot be reached now."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


#: gRPC status code → (HTTP status, error code string) used by the gateway.
GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_argument"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "out_of_range"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "unauthenticated"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_denied"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "already_exists"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "failed_precondition"),
    grpc.StatusCode.ABORTED: (409, "aborted"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "resource_exhausted"),
    grpc.StatusCode.CANCELLED: (499, "cancelled"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "unimplemented"),
    grpc.StatusCode.UNAVAILABLE: (503, "unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "deadline_exceeded"),
}
