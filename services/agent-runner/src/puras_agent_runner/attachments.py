"""``inputs.attachments``: files given with the prompt, resolved into the first user message.

Each entry is one of ``{"drive_path"}``, ``{"url"}`` or ``{"base64", "media_type"}``, with an
optional ``media_type`` overriding detection. Images and PDFs at a URL go to the model as that
URL; text at a URL is fetched (through the SSRF guard) and inlined. Drive files go inline, or as
signed URLs when the platform is reachable from outside (``PURAS_PUBLIC_URL``). Every entry is
checked before the first model call: an unsupported type, a file over 5 MB, or an image or PDF
the model cannot read fails the job up front, naming the entry.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from typing import Any
from urllib.parse import urlsplit

from puras_pricing.models import Model

from puras_agent_runner.conversation import Content, Document, Image
from puras_agent_runner.drive import AgentDrive, DriveFileMissing, DrivePathError, normalise
from puras_agent_runner.fetching import Fetcher, FetchError
from puras_agent_runner.files import (
    MAX_FILE_BYTES,
    UnsupportedFile,
    block_for,
    check_readable,
    check_size,
    sniff,
)

SHAPES = ("drive_path", "url", "base64")


class AttachmentError(ValueError):
    """An attachment the job cannot start with; the message names it and says why."""


async def resolve_attachments(
    raw: Any, *, model: Model, drive: AgentDrive, fetcher: Fetcher, signed_urls: bool
) -> list[Content]:
    """The content blocks of ``inputs.attachments``, or AttachmentError for the first bad entry."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise AttachmentError(
            "inputs.attachments must be a list of {drive_path} / {url} / {base64, media_type} objects"
        )
    blocks: list[Content] = []
    for i, entry in enumerate(raw):
        where = f"inputs.attachments[{i}]"
        try:
            blocks.append(
                await _one(
                    entry, where, model=model, drive=drive, fetcher=fetcher, signed_urls=signed_urls
                )
            )
        except (UnsupportedFile, DrivePathError, DriveFileMissing, FetchError) as exc:
            message = str(exc)
            raise AttachmentError(
                message if message.startswith(where) else f"{where}: {message}"
            ) from None
    return blocks


async def _one(
    entry: Any, where: str, *, model: Model, drive: AgentDrive, fetcher: Fetcher, signed_urls: bool
) -> Content:
    if not isinstance(entry, dict):
        raise AttachmentError(f"{where} must be an object with one of drive_path, url, base64")
    given = [k for k in SHAPES if k in entry]
    if len(given) != 1:
        raise AttachmentError(
            f"{where} must have exactly one of drive_path, url, base64 (has {', '.join(given) or 'none'})"
        )
    declared = entry.get("media_type")
    if declared is not None and not isinstance(declared, str):
        raise AttachmentError(f"{where}.media_type must be a string such as image/png")
    shape = given[0]
    value = entry[shape]
    if not isinstance(value, str) or not value:
        raise AttachmentError(f"{where}.{shape} must be a non-empty string")
    if shape == "base64":
        return _inline(_decode(value, where), declared, where, name="", model=model)
    if shape == "url":
        return await _url(value, declared, where, model=model, fetcher=fetcher)
    return await _drive(value, declared, where, model=model, drive=drive, signed_urls=signed_urls)


def _decode(value: str, where: str) -> bytes:
    if value.startswith("data:"):
        raise AttachmentError(
            f"{where}.base64 must be raw base64, without a data: prefix; put the type in media_type"
        )
    if len(value) > (MAX_FILE_BYTES * 4) // 3 + 8:
        raise AttachmentError(
            f"{where} is over {MAX_FILE_BYTES} bytes (5 MB) once decoded; the limit is 5 MB per file"
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AttachmentError(f"{where}.base64 is not valid base64") from None


def _inline(data: bytes, declared: str | None, where: str, *, name: str, model: Model) -> Content:
    check_size(len(data), what=where)
    media_type = sniff(data, name, declared)
    kind = check_readable(
        media_type,
        what=f"{where} ({media_type})",
        model=model.slug,
        vision=model.vision,
        pdf=model.pdf,
    )
    return block_for(data, media_type, kind, what=where)


async def _url(
    url: str, declared: str | None, where: str, *, model: Model, fetcher: Fetcher
) -> Content:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AttachmentError(f"{where}.url must be an http(s) URL, not {url[:100]!r}")
    media_type = (declared or mimetypes.guess_type(parts.path)[0] or "").lower()
    if media_type:
        kind = check_readable(
            media_type,
            what=f"{where} ({media_type})",
            model=model.slug,
            vision=model.vision,
            pdf=model.pdf,
        )
        if kind == "image":
            return Image(media_type, url=url)
        if kind == "document":
            return Document(media_type, url=url)
    # Text, or a type the URL does not tell: fetch it (guarded) and look.
    fetched = await fetcher.get(url, max_bytes=MAX_FILE_BYTES)
    return _inline(
        fetched.body,
        declared or _fetched_type(fetched.content_type),
        where,
        name=parts.path,
        model=model,
    )


def _fetched_type(content_type: str) -> str | None:
    return None if content_type in ("", "application/octet-stream") else content_type


async def _drive(
    path: str,
    declared: str | None,
    where: str,
    *,
    model: Model,
    drive: AgentDrive,
    signed_urls: bool,
) -> Content:
    rel = normalise(path)
    info = await drive.stat(rel)
    check_size(info.bytes, what=f"{where} (drive/{rel})")
    if signed_urls and (url := await drive.signed_url(rel)):
        media_type = (declared or mimetypes.guess_type(rel)[0] or "").lower()
        kind = (
            check_readable(
                media_type,
                what=f"{where} (drive/{rel})",
                model=model.slug,
                vision=model.vision,
                pdf=model.pdf,
            )
            if media_type
            else None
        )
        if kind == "image":
            return Image(media_type, url=url)
        if kind == "document":
            return Document(media_type, url=url)
    data = await drive.read(rel, max_bytes=info.bytes)
    return _inline(data, declared, f"{where} (drive/{rel})", name=rel, model=model)
