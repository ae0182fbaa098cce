"""Write-only secrets: how a secret-bearing value reads to someone who may not see it.

A URL keeps only its scheme and host (``https://host/***``) when it has a path, query,
fragment or user info (chat webhooks carry their token there); a secret reads as ``***``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["MASK", "is_redacted_url", "redact_url"]

MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with everything that may hold a token replaced by ``***``."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    base = f"{parts.scheme}://{host}{port}"
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username or parts.password:
        return f"{base}/{MASK}"
    return base


def is_redacted_url(url: str) -> bool:
    """Whether ``url`` is a placeholder :func:`redact_url` made."""
    return url == MASK or url.endswith(f"/{MASK}")
