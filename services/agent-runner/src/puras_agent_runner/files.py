"""Files as the model sees them: which types it can read, and the content block each becomes.

Shared by ``inputs.attachments`` and the ``file_read`` tool, so both routes give the model the
same blocks: images (jpeg, png, gif, webp) as vision blocks, PDFs as document blocks (models
with PDF support only), text types inlined up to 100k characters.
"""

from __future__ import annotations

import mimetypes
from typing import Final, Literal

from puras_agent_runner.conversation import Content, Document, Image, Text

MAX_FILE_BYTES: Final = 5 * 1024 * 1024
"""5 MB per attached or read file."""
MAX_TEXT_CHARS: Final = 100_000
"""Text files are inlined up to this many characters, then truncated."""

IMAGE_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
PDF: Final = "application/pdf"
TEXT_APPLICATION_TYPES: Final = frozenset(
    {"application/json", "application/xml", "application/yaml", "application/x-yaml"}
)

Kind = Literal["image", "document", "text"]

_MAGIC: Final = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", PDF),
)


class UnsupportedFile(ValueError):
    """A file the model cannot be given; the message says which and why."""


def kind_of(media_type: str) -> Kind | None:
    """How the model sees a media type, or None when it cannot."""
    media_type = media_type.lower()
    if media_type in IMAGE_TYPES:
        return "image"
    if media_type == PDF:
        return "document"
    if media_type.startswith("text/") or media_type in TEXT_APPLICATION_TYPES:
        return "text"
    return None


def sniff(data: bytes, name: str = "", declared: str | None = None) -> str:
    """The media type: ``declared`` when given, else the bytes' signature, else the name's extension."""
    if declared:
        return declared.split(";")[0].strip().lower()
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    guessed, _ = mimetypes.guess_type(name)
    if guessed:
        return "application/yaml" if guessed in ("application/x-yaml", "text/yaml") else guessed
    if name.lower().endswith((".md", ".markdown")):
        return "text/markdown"
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"


def size_label(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f}MB"
    return f"{n / 1024:.1f}KB"


def check_readable(media_type: str, *, what: str, model: str, vision: bool, pdf: bool) -> Kind:
    """The kind of a file the model can read, or UnsupportedFile saying why not."""
    kind = kind_of(media_type)
    if kind is None:
        raise UnsupportedFile(
            f"{what} is {media_type}, which models cannot read; supported: image/jpeg, image/png, image/gif, "
            "image/webp, application/pdf, text/*, application/json, application/xml, application/yaml"
        )
    if kind == "image" and not vision:
        raise UnsupportedFile(
            f"{what} is an image and {model} cannot see images; choose a vision model"
        )
    if kind == "document" and not pdf:
        raise UnsupportedFile(
            f"{what} is a PDF and {model} cannot read PDFs (only the Claude family can); convert its pages to images"
        )
    return kind


def check_size(size: int, *, what: str) -> None:
    if size > MAX_FILE_BYTES:
        raise UnsupportedFile(
            f"{what} is {size} bytes; the limit is {MAX_FILE_BYTES} bytes (5 MB) per file"
        )


def block_for(data: bytes, media_type: str, kind: Kind, *, what: str) -> Content:
    """The content block of a file's bytes."""
    if kind == "image":
        return Image(media_type, data=data)
    if kind == "document":
        return Document(media_type, data=data)
    text = data.decode("utf-8", errors="replace")
    if len(text) > MAX_TEXT_CHARS:
        text = (
            text[:MAX_TEXT_CHARS]
            + f"\n[truncated: {what} has {len(text)} characters; showing the first {MAX_TEXT_CHARS}]"
        )
    return Text(text)
