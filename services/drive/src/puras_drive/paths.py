"""Drive paths: what a caller may name, normalised, and where it lands.

A workspace's files live under the key prefix ``<workspace_id>/``. Callers name files by a
workspace-relative path, which is checked here before anything touches storage: no ``..``, no
absolute paths, no backslashes, no control characters, no percent-encoded sequences (a later
layer could decode them), nothing that Unicode compatibility folding would turn into one of
those, and nothing longer than the filesystems and S3 accept. ``.`` segments and repeated
slashes are dropped; the result is NFC so that one name has one key.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from puras_common.api import ApiError, ErrorCode, ErrorDetail

MAX_PATH_BYTES: Final = 1024
"""S3's key limit, less room for the workspace prefix, rounded down."""
MAX_SEGMENT_BYTES: Final = 255
"""One file or folder name, as most filesystems allow."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u2060\ufeff\u202e\u202d\u202a\u202b\u202c\u2066\u2067\u2068\u2069"
)
"""Zero-width and bidirectional controls: they make one name look like another."""


class InvalidPath(ApiError):
    """A path a caller may not use; the message says why and names the parameter."""

    def __init__(self, path: object, reason: str, *, param: str = "path") -> None:
        shown = (
            repr(path) if not isinstance(path, str) or len(path) <= 200 else repr(path[:200] + "…")
        )
        super().__init__(
            ErrorCode.INVALID_REQUEST,
            f"{param} {shown} is not a valid drive path: {reason}",
            details=[ErrorDetail(pointer=f"?{param}", message=reason)],
        )


@dataclass(frozen=True)
class DrivePath:
    """A checked workspace-relative path; ``folder`` when it named a directory (trailing ``/``)."""

    workspace_id: UUID
    path: str
    folder: bool = False

    @property
    def key(self) -> str:
        """The storage key: ``<workspace_id>/<path>`` (``<workspace_id>/`` for the root)."""
        return f"{self.workspace_id}/{self.path}" if self.path else f"{self.workspace_id}/"

    @property
    def prefix(self) -> str:
        """The key prefix of everything under this path taken as a folder."""
        return f"{self.workspace_id}/{self.path}/" if self.path else f"{self.workspace_id}/"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def normalise(raw: object, *, param: str = "path", allow_root: bool = False) -> tuple[str, bool]:
    """``(path, folder)`` for a caller's path, or :class:`InvalidPath`.

    ``folder`` is true when ``raw`` ended in ``/`` (or is the root, which only ``allow_root``
    accepts: listing, zipping and uploading into the root are fine; signing it is not).
    """
    if not isinstance(raw, str):
        raise InvalidPath(raw, "expected a string", param=param)
    if _CONTROL.search(raw):
        raise InvalidPath(raw, "control characters (NUL, newline, …) are not allowed", param=param)
    if "\\" in raw:
        raise InvalidPath(
            raw, "backslashes are not allowed; separate folders with '/'", param=param
        )
    if _PERCENT.search(raw):
        raise InvalidPath(
            raw, "percent-encoded sequences are not allowed in a decoded path", param=param
        )
    if any(ch in _INVISIBLE for ch in raw):
        raise InvalidPath(
            raw, "zero-width and bidirectional control characters are not allowed", param=param
        )
    if raw.startswith("/"):
        raise InvalidPath(
            raw, "absolute paths are not allowed; paths are relative to the workspace", param=param
        )
    if raw.startswith("~"):
        raise InvalidPath(raw, "'~' is not allowed at the start of a path", param=param)
    if _DRIVE_LETTER.match(raw):
        raise InvalidPath(raw, "drive letters are not allowed", param=param)
    try:
        text = unicodedata.normalize("NFC", raw)
        encoded = text.encode("utf-8")
    except UnicodeError:
        raise InvalidPath(raw, "not valid UTF-8 (lone surrogates)", param=param) from None
    _refuse_compatibility_tricks(raw, text, param)
    folder = text == "" or text.endswith("/")
    segments = [s for s in text.split("/") if s not in ("", ".")]
    for segment in segments:
        if segment == "..":
            raise InvalidPath(raw, "'..' segments are not allowed", param=param)
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidPath(raw, f"a name is longer than {MAX_SEGMENT_BYTES} bytes", param=param)
        if segment.strip(" .") == "":
            raise InvalidPath(
                raw, "names made only of dots and spaces are not allowed", param=param
            )
    path = "/".join(segments)
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidPath(
            raw, f"it is {len(encoded)} bytes; the limit is {MAX_PATH_BYTES} bytes", param=param
        )
    if not path:
        if not allow_root:
            raise InvalidPath(raw, "it names the drive's root, not a file", param=param)
        folder = True
    return path, folder


def _refuse_compatibility_tricks(raw: str, text: str, param: str) -> None:
    """Refuse names that Unicode compatibility folding (NFKC, as some filesystems, proxies and
    clients apply) would turn into a separator or a dot segment: ``．．／`` is ``../``."""
    folded = unicodedata.normalize("NFKC", text)
    if folded.count("/") != text.count("/") or "\\" in folded or _CONTROL.search(folded):
        raise InvalidPath(
            raw, "it contains a character that folds into a path separator", param=param
        )
    original = text.split("/")
    for before, after in zip(original, folded.split("/"), strict=False):
        if after in (".", "..") and before != after:
            raise InvalidPath(raw, "it contains characters that fold into '.' or '..'", param=param)
    if _PERCENT.search(folded):
        raise InvalidPath(
            raw, "it contains characters that fold into a percent-encoded sequence", param=param
        )


def resolve(
    workspace_id: UUID, raw: object, *, param: str = "path", allow_root: bool = False
) -> DrivePath:
    """A caller's path inside ``workspace_id``'s drive, checked and normalised.

    A leading ``<workspace_id>/`` equal to the caller's own workspace is accepted and dropped
    (signed ``full_path`` values round-trip); any other leading segment is an ordinary folder
    name inside the caller's workspace, never a way into another one.
    """
    if isinstance(raw, str):
        own = f"{workspace_id}/"
        if raw.startswith(own):
            raw = raw[len(own) :]
        elif raw == str(workspace_id):
            raw = ""
    path, folder = normalise(raw, param=param, allow_root=allow_root)
    checked = DrivePath(workspace_id, path, folder)
    if not checked.key.startswith(f"{workspace_id}/") or "/../" in f"/{checked.key}/":
        raise InvalidPath(raw, "it leaves the workspace", param=param)
    return checked
