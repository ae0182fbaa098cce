"""Image URLs at the edge: payload parsing, canonical form, and the cache path.

Both payload formats of image sync (docs/topics.md) are accepted:

- the plain format, a comma-separated list: ``http://h/a.jpg!thumb,http://h/b.jpg``;
- JSON: ``{"urls": ["http://h/a.jpg", ...], "work_id": "w-1"}``; an item may also be
  ``{"url": "...", "sha256": "<hex>"}`` to have the download checked against a checksum.

A URL's preview suffix ``!<style>`` is stripped, its host lower-cased, its path
percent-decoded once and checked segment by segment (no ``..``, ``.``, backslash, NUL,
control characters, or anything still percent-encoded after one decoding), then
re-encoded. The cache path is ``<host>[_<port>]/<decoded path>``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.jsonguard import json_depth_error
from linewatch_sync.cachefs import validate_cache_path

__all__ = [
    "CanonicalUrl",
    "ParsedPayload",
    "UrlRequest",
    "canonicalise",
    "host_allowed",
    "parse_payload",
]

MAX_URL_LENGTH = 2048
_HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9_-]*[a-z0-9])?)*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_WORK_ID_RE = re.compile(r"^[\w.:/-]{0,128}$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class UrlRequest:
    """One URL as received, with its optional expected checksum."""

    url: str
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class ParsedPayload:
    """What one message asked for."""

    items: tuple[UrlRequest, ...]
    work_id: str = ""


@dataclass(frozen=True, slots=True)
class CanonicalUrl:
    """A URL ready to download: where from, and where it goes in the cache."""

    url: str
    cache_path: str
    host: str


def _check_work_id(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not _WORK_ID_RE.match(value):
        raise InvalidArgument("work_id must be a string of at most 128 word characters")
    return value


def _json_item(item: object) -> UrlRequest:
    if isinstance(item, str):
        return UrlRequest(item)
    if isinstance(item, dict) and isinstance(item.get("url"), str):
        sha = item.get("sha256", "")
        if not isinstance(sha, str) or (sha and not _SHA256_RE.match(sha.lower())):
            raise InvalidArgument("sha256 must be 64 hex digits")
        return UrlRequest(item["url"], sha.lower())
    raise InvalidArgument('each of urls must be a string or {"url": ..., "sha256": ...}')


def parse_payload(payload: bytes, *, max_urls: int = 10000) -> ParsedPayload:
    """Parse one sync message (either format).

    Raises:
        InvalidArgument: the payload is not UTF-8, not a valid JSON object of the right
            shape, holds no URL, or too many.
    """
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise InvalidArgument("payload is not UTF-8") from exc
    if not text:
        raise InvalidArgument("payload is empty")
    if text.startswith("{"):
        if (too_deep := json_depth_error(payload)) is not None:
            raise InvalidArgument(f"payload refused: {too_deep}")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"payload is not valid JSON ({exc.msg})") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("urls"), list):
            raise InvalidArgument('JSON payload must be {"urls": [...], "work_id": "..."}')
        items = tuple(_json_item(item) for item in doc["urls"])
        work_id = _check_work_id(doc.get("work_id"))
    else:
        items = tuple(UrlRequest(part.strip()) for part in text.split(",") if part.strip())
        work_id = ""
    if not items:
        raise InvalidArgument("payload holds no URL")
    if len(items) > max_urls:
        raise InvalidArgument(f"payload holds {len(items)} URLs; at most {max_urls}")
    return ParsedPayload(items=items, work_id=work_id)


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``host`` is on the allow-list (empty list: every host)."""
    if not allowed:
        return True
    for entry in allowed:
        pattern = entry.lower()
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def _strip_preview_suffix(path: str) -> str:
    head, _, last = path.rpartition("/")
    if "!" in last:
        last = last[: last.index("!")]
    return f"{head}/{last}"


def canonicalise(url: str, *, allowed_hosts: tuple[str, ...] = ()) -> CanonicalUrl:
    """Validate a URL and give its canonical download URL and cache path.

    Raises:
        InvalidArgument: with the reason (scheme, host, path traversal, ...).
    """
    url = url.strip()
    if not url:
        raise InvalidArgument("empty URL")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidArgument(f"URL longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url) or "\\" in url:
        raise InvalidArgument("URL contains control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"malformed URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidArgument(f"scheme {scheme or '(none)'!r} not allowed; only http and https")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument("credentials in URLs are not accepted")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host or not _HOST_RE.match(host):
        raise InvalidArgument(f"host {parts.hostname or '(none)'!r} is not a valid host name")
    if not host_allowed(host, allowed_hosts):
        raise InvalidArgument(f"host {host!r} is not on the allow-list")
    raw_path = _strip_preview_suffix(parts.path or "/")
    try:
        decoded = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
    except UnicodeDecodeError as exc:
        raise InvalidArgument("URL path is not UTF-8 once decoded") from exc
    segments = [seg for seg in decoded.split("/") if seg]
    if not segments or decoded.endswith("/"):
        raise InvalidArgument("URL path names no file")
    host_part = host if port is None else f"{host}_{port}"
    cache_path = "/".join([host_part, *segments])
    validate_cache_path(cache_path)
    netloc = host if port is None else f"{host}:{port}"
    path = quote("/" + "/".join(segments), safe="/!$&'()*+,;=:@~-._")
    canonical = f"{scheme}://{netloc}{path}"
    if parts.query:
        canonical += f"?{parts.query}"
    return CanonicalUrl(url=canonical, cache_path=cache_path, host=host)
