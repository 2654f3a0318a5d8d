"""A zip archive produced as a stream: each file is read in chunks and written into the archive
as it is read, sizes and checksums go in data descriptors after each entry, so memory stays
flat however large the archive grows (zip64 entries where a file needs them).

Already-compressed media (images, video, audio, archives) are stored; text is deflated, in a
worker thread so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from puras_drive.storage import StoredObject

_DEFLATE_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/yaml",
        "image/svg+xml",
        "application/x-yaml",
        "application/x-ndjson",
    }
)
_EPOCH_1980 = (1980, 1, 1, 0, 0, 0)


def _compressible(content_type: str) -> bool:
    return content_type.startswith("text/") or content_type in _DEFLATE_TYPES


if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class _Sink(io.RawIOBase):
    """Collects what zipfile writes; it can tell but not seek, so zipfile streams."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._offset = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._offset += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._offset

    def seekable(self) -> bool:
        return False

    def seek(self, *args: object) -> int:
        raise io.UnsupportedOperation("streaming zip")

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _date_time(when: datetime) -> tuple[int, int, int, int, int, int]:
    stamp = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    return max(stamp, _EPOCH_1980)


async def stream_zip(
    entries: AsyncIterator[tuple[str, StoredObject, str]],
    read: Callable[[str], AsyncIterator[bytes]],
) -> AsyncIterator[bytes]:
    """The archive's bytes. ``entries`` yields ``(name in archive, object, content type)``;
    ``read(key)`` streams an object's bytes."""
    sink = _Sink()
    archive = zipfile.ZipFile(sink, mode="w", allowZip64=True)
    try:
        async for name, obj, content_type in entries:
            info = zipfile.ZipInfo(name, date_time=_date_time(obj.updated_at))
            info.file_size = obj.bytes
            info.external_attr = 0o644 << 16
            deflate = _compressible(content_type)
            info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            with archive.open(info, "w", force_zip64=obj.bytes > 0x7FFFFFFF) as member:
                async for chunk in read(obj.key):
                    if deflate:
                        await asyncio.to_thread(member.write, chunk)
                    else:
                        member.write(chunk)
                    if data := sink.take():
                        yield data
            if data := sink.take():
                yield data
        archive.close()
        if data := sink.take():
            yield data
    finally:
        if archive.fp is not None:
            archive.fp = None  # an abandoned stream: nothing more to write anywhere
