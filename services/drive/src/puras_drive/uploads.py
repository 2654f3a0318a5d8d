"""Receiving ``multipart/form-data`` uploads as a stream: the ``file`` part goes to a spool file
on disk as it arrives (never into memory), counted against the byte limit as it goes.

The ``path`` field may come before or after the file (browsers send fields in the order the
app appended them), so the destination is decided only once the body has been read.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from puras_common.api import ApiError, ErrorCode, ErrorDetail
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from puras_drive.storage import TooLarge

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELD_BYTES = 4096
MAX_PARTS = 16
DRAIN_SLACK_BYTES = 1024 * 1024
"""After the file passes its limit, read at most this much more before answering 413: enough
to finish a body that was only slightly too large, so the client sees a clean response."""

_EXTENSION = re.compile(r"^\.[A-Za-z0-9]{1,15}$")


def _bad(message: str, pointer: str = "/file") -> ApiError:
    return ApiError(
        ErrorCode.INVALID_REQUEST, message, details=[ErrorDetail(pointer=pointer, message=message)]
    )


@dataclass
class Upload:
    """What arrived: the spooled file and the form's text fields."""

    spool: Path
    size: int = 0
    filename: str | None = None
    content_type: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    has_file: bool = False

    @property
    def extension(self) -> str:
        """The uploaded file name's extension, if it is a plain one (``.jpg``), else ``""``."""
        if not self.filename:
            return ""
        ext = os.path.splitext(self.filename.replace("\\", "/").rsplit("/", 1)[-1])[1]
        return ext.lower() if _EXTENSION.match(ext) else ""


class _Receiver:
    """Callbacks for python-multipart's push parser."""

    def __init__(self, upload: Upload, limit: int) -> None:
        self.upload = upload
        self.limit = limit
        self.too_large = False
        self.parts = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()
        self._out: BinaryIO | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda data, start, end: self._append(
                "_header_name", data[start:end]
            ),
            "on_header_value": lambda data, start, end: self._append(
                "_header_value", data[start:end]
            ),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def _append(self, attr: str, data: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + data)

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise _bad(f"the form has more than {MAX_PARTS} parts", "")
        self._headers, self._name, self._is_file, self._value = {}, None, False, bytearray()

    def header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        self._name = name
        if name != "file":
            return
        if self.upload.has_file:
            raise _bad("send exactly one 'file' part")
        self._is_file = True
        self.upload.has_file = True
        filename = params.get(b"filename")
        self.upload.filename = filename.decode("utf-8", "replace") if filename is not None else None
        part_type = self._headers.get(b"content-type")
        self.upload.content_type = (
            part_type.decode("latin-1").split(";")[0].strip().lower() if part_type else None
        )
        self._out = open(self.upload.spool, "xb")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.upload.size += end - start
            if self.upload.size > self.limit:
                self.too_large = True
                self.close()
                return
            if self._out is not None:
                self._out.write(data[start:end])
        elif self._name is not None:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise _bad(
                    f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes",
                    f"/{self._name}",
                )

    def part_end(self) -> None:
        if self._is_file:
            self.close()
        elif self._name:
            try:
                self.upload.fields[self._name] = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad(
                    f"form field {self._name!r} is not UTF-8 text", f"/{self._name}"
                ) from None

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


async def receive(
    body: AsyncIterator[bytes], content_type: str | None, *, spool: Path, limit: int
) -> Upload:
    """Read a multipart body into ``spool`` (the file) and text fields; 413 past ``limit``."""
    mime, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise _bad("send the upload as multipart/form-data with a 'file' part", "")
    upload = Upload(spool=spool)
    receiver = _Receiver(upload, limit)
    parser = MultipartParser(boundary, receiver.callbacks())
    try:
        try:
            async for chunk in body:
                parser.write(chunk)
                if receiver.too_large and upload.size > limit + DRAIN_SLACK_BYTES:
                    break
            if receiver.too_large:
                raise TooLarge(limit)
            parser.finalize()
        except FormParserError as exc:
            raise _bad(f"malformed multipart body: {exc}", "") from None
        if not upload.has_file:
            raise _bad("multipart field 'file' is missing: attach the file as 'file'")
        return upload
    except BaseException:
        receiver.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spool)
        raise
    finally:
        receiver.close()
