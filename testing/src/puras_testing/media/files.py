"""Small but real media files the stubs serve: a PNG, a WebP, an MP4 of a given length, MP3."""

from __future__ import annotations

import base64
import struct
import zlib
from fractions import Fraction

from puras_media.measure import mp4_bytes


def png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + bytes(rgb) * width
    raw = row * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


WEBP = base64.b64decode("UklGRiQAAABXRUJQVlA4IBgAAAAwAQCdASoBAAEAAwA0JaQAA3AA/vuUAAA=")
MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes([0xFF, 0xFB, 0x90, 0x00]) + bytes(413)


def mp4(seconds: Fraction | int | str) -> bytes:
    return mp4_bytes(Fraction(str(seconds)))


def file_for(ext: str, *, seconds: Fraction | int | str = 5) -> tuple[bytes, str]:
    """Bytes and content type of a file with this extension."""
    ext = ext.lstrip(".").lower()
    if ext in ("mp4", "mov"):
        return mp4(seconds), "video/mp4" if ext == "mp4" else "video/quicktime"
    if ext == "webp":
        return WEBP, "image/webp"
    if ext in ("jpg", "jpeg"):
        return png(), "image/jpeg"  # the stub does not re-encode; the type is what matters
    if ext == "mp3":
        return MP3, "audio/mpeg"
    return png(), "image/png"
