"""What a downloaded file really is: raster images recognised by their magic bytes.

Sync mirrors only raster images it can verify (PNG, JPEG, GIF, WebP, BMP, TIFF); the
``Content-Type`` a server sends is not trusted. SVG, HTML and everything else are refused:
served from the gateway's origin they would be active content (stored XSS). The cache
records the sniffed type, and the gateway sniffs again before it serves a cached file.
"""

from __future__ import annotations

__all__ = ["RASTER_TYPES", "SNIFF_BYTES", "sniff_image"]

#: Bytes of the head needed to tell the formats apart.
SNIFF_BYTES = 16

#: The types sync accepts, as sniffed.
RASTER_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff")


#: (type, prefixes, (offset, bytes) that must follow as well, or None)
_SIGNATURES: tuple[tuple[str, tuple[bytes, ...], tuple[int, bytes] | None], ...] = (
    ("image/png", (b"\x89PNG\r\n\x1a\n",), None),
    ("image/jpeg", (b"\xff\xd8\xff",), None),
    ("image/gif", (b"GIF87a", b"GIF89a"), None),
    ("image/webp", (b"RIFF",), (8, b"WEBP")),
    # BMP: "BM", the file size, then two reserved words that are zero
    ("image/bmp", (b"BM",), (6, b"\0\0\0\0")),
    ("image/tiff", (b"II*\x00", b"MM\x00*"), None),
)


def sniff_image(head: bytes) -> str | None:
    """The raster image type ``head`` (the file's first bytes) starts, or ``None``."""
    for mime, prefixes, more in _SIGNATURES:
        if not head.startswith(prefixes):
            continue
        if more is None or head[more[0] : more[0] + len(more[1])] == more[1]:
            return mime
    return None
