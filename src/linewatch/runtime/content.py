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


def sniff_image(head: bytes) -> str | None:
    """The raster image type ``head`` (the file's first bytes) starts, or ``None``."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    # BMP: "BM", then the file size, two reserved words, then the pixel-data offset
    if len(head) >= 14 and head.startswith(b"BM") and head[6:10] == b"\0\0\0\0":
        return "image/bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    return None
