"""Bearer-token auth: constant-time comparison, 401 versus 403.

- no ``Authorization: Bearer`` header, or a token that is not configured → 401 with
  ``WWW-Authenticate: Bearer``;
- a configured read-only token on a write → 403.

Reads need a token only when ``read_auth`` is on. Live streams then also open with a
short-lived stream token in ``?token=`` (:mod:`linewatch_gateway.stream_access`), never
with a bearer token in the URL.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from linewatch_gateway.errors import ApiError
from linewatch_gateway.stream_access import StreamTokens

__all__ = [
    "Authorizer",
    "WriteSubject",
    "require_read",
    "require_stream",
    "require_write",
    "token_subject",
]

_bearer = HTTPBearer(auto_error=False, description="A token from the gateway configuration.")
_REALM = 'Bearer realm="linewatch"'


def _known(token: str, candidates: list[str]) -> bool:
    """Whether ``token`` is one of ``candidates``, comparing every one in constant time."""
    given = token.encode("utf-8")
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(given, candidate.encode("utf-8"))
    return found


class Authorizer:
    """Decides whether a request's token may read or write."""

    def __init__(self, *, tokens: list[str], read_tokens: list[str], read_auth: bool) -> None:
        self.tokens = list(tokens)
        self.read_tokens = list(read_tokens)
        self.read_auth = read_auth

    def check(self, credentials: HTTPAuthorizationCredentials | None, *, write: bool) -> None:
        """Raise the right :class:`ApiError` unless the credentials allow the access."""
        if not write and not self.read_auth:
            return
        if credentials is None or not credentials.credentials:
            raise ApiError(
                401, "unauthenticated", "a bearer token is required", {"WWW-Authenticate": _REALM}
            )
        token = credentials.credentials
        if _known(token, self.tokens):
            return
        if _known(token, self.read_tokens):
            if not write:
                return
            raise ApiError(403, "permission_denied", "this token may only read")
        raise ApiError(
            401,
            "unauthenticated",
            "the bearer token is not valid",
            {"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
        )


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def require_write(request: Request, credentials: Credentials) -> None:
    """Dependency of every write route."""
    authorizer: Authorizer = request.app.state.authorizer
    authorizer.check(credentials, write=True)


def token_subject(token: str) -> str:
    """Who a token is, for records such as an alarm's acknowledgement: ``token:`` and the
    first 12 hex digits of its sha256 (names the token, never reveals it)."""
    return "token:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


async def write_subject(request: Request, credentials: Credentials) -> str:
    """Dependency of writes that record who made them: checks the write token and
    returns its subject (``anonymous`` when the gateway has no tokens configured)."""
    authorizer: Authorizer = request.app.state.authorizer
    authorizer.check(credentials, write=True)
    if credentials is None or not credentials.credentials:
        return "anonymous"
    return token_subject(credentials.credentials)


WriteSubject = Annotated[str, Depends(write_subject)]


async def require_read(request: Request, credentials: Credentials) -> None:
    """Dependency of every read route (a no-op unless ``read_auth`` is on)."""
    authorizer: Authorizer = request.app.state.authorizer
    authorizer.check(credentials, write=False)


async def require_stream(request: Request, credentials: Credentials) -> None:
    """Dependency of the live streams: read auth, or a valid stream token in ``?token=``
    (browsers' EventSource cannot send headers)."""
    authorizer: Authorizer = request.app.state.authorizer
    token = request.query_params.get("token")
    if credentials is None and token and authorizer.read_auth:
        tokens: StreamTokens = request.app.state.stream_tokens
        if tokens.valid(token):
            return
        raise ApiError(
            401,
            "unauthenticated",
            "the stream token is not valid or has expired (POST /v1/stream/token)",
            {"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
        )
    authorizer.check(credentials, write=False)
