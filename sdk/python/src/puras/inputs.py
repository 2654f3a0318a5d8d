"""``load_bytes`` / ``load_path``: one call for every shape a file input can take.

* ``{"drive_path": "uploads/a.jpg"}`` — a file in the workspace's drive, read through ``./drive``;
* ``{"url": "https://…"}`` — fetched under the SSRF guard (50 MB, 60 s);
* ``{"data": "<base64>"}`` or ``{"data": "data:image/png;base64,…"}`` (and the attachment shape
  ``{"base64": …, "media_type": …}``);
* a bare string of any of those: a URL, a data URL, base64, or a drive path.

A bare string that is both valid base64 and a plausible path is taken as a drive path when such
a file exists, as base64 otherwise. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from puras import drive, netguard
from puras.errors import PurasError

_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")


class InputError(PurasError, ValueError):
    """A value that is not a file input, or one that cannot be read; the message says which."""


def load_bytes(value: Any) -> bytes:
    """Resolve an input value to raw bytes.

    Accepts dicts (``{drive_path|url|data: ...}``) or bare strings (URL, data URL, base64, or
    drive path).
    """
    kind, payload = _classify(value)
    if kind == "drive":
        return _drive_file(payload).read_bytes()
    if kind == "url":
        with tempfile.TemporaryFile() as sink:
            _fetch(payload, sink)
            sink.seek(0)
            return sink.read()
    return _decode(payload)


def load_path(value: Any, *, suffix: str | None = None) -> Path:
    """Resolve an input value to a local filesystem path.

    For drive_path inputs we return the live symlink path (``./drive/...``) so the caller can
    read it lazily. For URL / base64 / data URL inputs we download or decode to a temp file and
    return that; it stays for the job's life and goes with the workdir at teardown.
    """
    kind, payload = _classify(value)
    if kind == "drive":
        return _drive_file(payload)
    if kind == "url":
        ext = suffix if suffix is not None else _extension(urlsplit(payload).path)
        fd, name = tempfile.mkstemp(suffix=ext or "", prefix="input-")
        with os.fdopen(fd, "wb") as sink:
            content_type = _fetch(payload, sink)
        if suffix is None and not ext and content_type:
            return _renamed(Path(name), _extension_for(content_type))
        return Path(name)
    data = _decode(payload)
    ext = suffix if suffix is not None else _extension_for(_data_url_type(payload) or "")
    fd, name = tempfile.mkstemp(suffix=ext or "", prefix="input-")
    with os.fdopen(fd, "wb") as sink:
        sink.write(data)
    return Path(name)


# -- shapes ------------------------------------------------------------------------------------


def _classify(value: Any) -> tuple[str, str]:
    """``("drive" | "url" | "data", text)``."""
    if isinstance(value, dict):
        for key, kind in (
            ("drive_path", "drive"),
            ("url", "url"),
            ("data", "data"),
            ("base64", "data"),
        ):
            if key in value:
                text = value[key]
                if not isinstance(text, str) or not text:
                    raise InputError(
                        f"file input {key!r} must be a non-empty string, not {type(text).__name__}"
                    )
                if kind == "data" and key == "base64" and isinstance(value.get("media_type"), str):
                    return "data", f"data:{value['media_type']};base64,{text}"
                return kind, text
        raise InputError(
            f"a file input needs one of drive_path, url or data; got keys {sorted(value)}"
        )
    if isinstance(value, bytes | bytearray):
        return "data", base64.b64encode(bytes(value)).decode()
    if not isinstance(value, str) or not value:
        raise InputError(
            f"a file input is a dict or a non-empty string, not {type(value).__name__}"
        )
    lowered = value[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return "url", value
    if lowered.startswith("data:"):
        return "data", value
    if _looks_like_base64(value) and not _drive_exists(value):
        return "data", value
    return "drive", value


def _looks_like_base64(text: str) -> bool:
    stripped = "".join(text.split())
    if len(stripped) < 4 or not _BASE64.match(stripped):
        return False
    if "/" in stripped and "=" not in stripped and len(stripped) < 64:
        return False  # "uploads/abcd" is a path far more often than 9 bytes of base64
    try:
        _b64decode(stripped)
    except (binascii.Error, ValueError):
        return False
    return True


def _b64decode(text: str) -> bytes:
    text = "".join(text.split())
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _decode(payload: str) -> bytes:
    try:
        if payload[:5].lower() == "data:":
            header, sep, body = payload.partition(",")
            if not sep:
                raise InputError("a data URL needs a ',' between its header and its data")
            if header.lower().endswith(";base64"):
                return _b64decode(body)
            return unquote_to_bytes(body)
        return _b64decode(payload)
    except (binascii.Error, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"file input data is not valid base64: {exc}") from None


def _data_url_type(payload: str) -> str | None:
    if payload[:5].lower() != "data:":
        return None
    return payload[5:].split(",", 1)[0].split(";", 1)[0] or None


def _extension(path: str) -> str:
    ext = os.path.splitext(path)[1]
    return ext if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", ext) else ""


def _extension_for(content_type: str) -> str:
    ext = mimetypes.guess_extension(content_type.split(";")[0].strip(), strict=False) or ""
    return {".jpe": ".jpg", ".jpeg": ".jpg"}.get(ext, ext)


def _renamed(path: Path, ext: str) -> Path:
    if not ext:
        return path
    target = path.with_suffix(ext)
    os.replace(path, target)
    return target


# -- the drive and URLs ------------------------------------------------------------------------


def _drive_exists(text: str) -> bool:
    try:
        return drive.local_path(text).is_file()
    except InputError:
        return False
    except ValueError:
        return False


def _drive_file(path: str) -> Path:
    try:
        local = drive.local_path(path)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if local.is_file():
        return local
    drive.fetch_missing(path, local)
    return local


def _fetch(url: str, sink: Any) -> str | None:
    policy = netguard.Policy.from_env(trusted_origins=[os.environ.get("PURAS_API_BASE", "")])
    try:
        return netguard.fetch(url, sink, policy=policy)
    except netguard.FetchError as exc:
        raise InputError(str(exc)) from exc
