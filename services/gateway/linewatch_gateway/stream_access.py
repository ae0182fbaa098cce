"""Who may open a live stream: short-lived stream tokens and connection caps.

Browsers' EventSource cannot send an ``Authorization`` header, and a long-lived token in a
URL ends up in histories and proxy logs. So when reads need a token, a client first
``POST /v1/stream/token`` with its bearer token and gets a stream token valid for
``stream_token_ttl_s``; it opens ``/v1/stream/{kind}?token=<stream token>``. A stream token
is ``<expiry unix seconds>.<HMAC-SHA256>`` under the gateway's key (``stream_token_secret``,
shared by replicas; random per process when unset); it opens streams only, nothing else.

:class:`StreamSlots` caps the SSE connections per client address and in total; a client
over either cap gets 503 with a JSON error and ``Retry-After``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["StreamSlots", "StreamTokens"]

_CONTEXT = b"linewatch-stream-token-v1:"


@dataclass
class StreamTokens:
    """Issues and checks stream tokens."""

    ttl_s: float
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def _sign(self, expiry: int) -> str:
        mac = hmac.new(self.key, _CONTEXT + str(expiry).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def issue(self, now: float | None = None) -> tuple[str, int]:
        """A new token and its expiry (unix seconds)."""
        expiry = int((time.time() if now is None else now) + self.ttl_s)
        return f"{expiry}.{self._sign(expiry)}", expiry

    def valid(self, token: str, now: float | None = None) -> bool:
        """Whether ``token`` is one of ours and not expired."""
        head, dot, mac = token.partition(".")
        if not dot or not head.isdigit() or len(head) > 12 or len(mac) > 64:
            return False
        expiry = int(head)
        current = time.time() if now is None else now
        if expiry < current or expiry > current + self.ttl_s + 60:
            return False
        return hmac.compare_digest(mac.encode(), self._sign(expiry).encode())


class StreamSlots:
    """Counts open SSE connections per client address and in total."""

    def __init__(self, *, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self._open: Counter[str] = Counter()
        self._count = 0

    @property
    def count(self) -> int:
        """Open connections now."""
        return self._count

    def acquire(self, address: str) -> str | None:
        """Take a slot; ``None`` when taken, else why not."""
        if self._count >= self.total:
            return f"the gateway serves at most {self.total} live streams; try again later"
        if self._open[address] >= self.per_address:
            return (
                f"at most {self.per_address} live streams per client address; "
                "close one (one EventSource per stream is enough)"
            )
        self._open[address] += 1
        self._count += 1
        return None

    def release(self, address: str) -> None:
        """Give a slot back."""
        if self._open[address] <= 1:
            self._open.pop(address, None)
        else:
            self._open[address] -= 1
        self._count = max(0, self._count - 1)
