"""Safe extraction of project bundles (zip), checked while extracting, not only up front.

Refused: absolute paths, ``..`` components, backslashes, NUL bytes, names too long for a
filesystem, the same path twice (or as both a file and a directory), symbolic links and other
special files, encrypted members and unknown compression methods, more than ``max_entries``
members, more than ``max_total_bytes`` uncompressed in all, and any member that inflates more
than ``max_ratio`` times its compressed size. Sizes are counted on the bytes actually written,
so a lying header changes nothing.
"""

from __future__ import annotations

import lzma
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

CHUNK = 256 * 1024
MAX_NAME_BYTES = 1024
MAX_COMPONENT_BYTES = 255
COMPRESSIONS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)


class ArchiveError(ValueError):
    """The archive is unsafe or unreadable; ``member`` names the entry at fault, if any."""

    def __init__(self, message: str, *, member: str | None = None) -> None:
        super().__init__(f"{member}: {message}" if member else message)
        self.member = member
        self.reason = message


@dataclass(frozen=True)
class Limits:
    max_entries: int = 10_000
    max_total_bytes: int = 512 * 1024 * 1024
    max_ratio: int = 200
    """Largest uncompressed / compressed size for a member bigger than ``ratio_floor_bytes``."""
    ratio_floor_bytes: int = 1024 * 1024


def member_path(name: str) -> PurePosixPath:
    """A member name as a safe relative path, or :class:`ArchiveError`."""
    if "\\" in name:
        raise ArchiveError("backslash in member name", member=name)
    if "\x00" in name:
        raise ArchiveError("NUL byte in member name", member=name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError("absolute path", member=name)
    path = PurePosixPath(name)
    if any(part == ".." for part in path.parts):
        raise ArchiveError("'..' in path", member=name)
    if len(name.encode()) > MAX_NAME_BYTES or any(
        len(p.encode()) > MAX_COMPONENT_BYTES for p in path.parts
    ):
        raise ArchiveError(
            f"name too long (the limits are {MAX_NAME_BYTES} bytes, {MAX_COMPONENT_BYTES} per path component)",
            member=name[:200],
        )
    return path


def _check_members(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse what extraction could not write faithfully: the same path twice, a path that is
    both a file and a directory, encrypted members, unknown compression."""
    files: set[PurePosixPath] = set()
    dirs: set[PurePosixPath] = set()
    for info in infos:
        path = member_path(info.filename)
        if info.flag_bits & 0x1:
            raise ArchiveError("encrypted members are not supported", member=info.filename)
        if info.compress_type not in COMPRESSIONS:
            raise ArchiveError(
                f"unsupported compression method {info.compress_type}", member=info.filename
            )
        if info.is_dir():
            dirs.add(path)
            continue
        if path in files:
            raise ArchiveError("appears twice in the archive", member=info.filename)
        files.add(path)
        dirs.update(path.parents)
    for path in files & dirs:
        raise ArchiveError("is both a file and a directory", member=str(path))


def _is_special(info: zipfile.ZipInfo) -> bool:
    """A symlink, device or fifo (zips record the Unix file type in the upper attribute bits;
    many writers leave it empty for plain files)."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    return kind not in (0, stat.S_IFREG, stat.S_IFDIR)


_CORRUPT = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError)


def _read(src: IO[bytes], info: zipfile.ZipInfo) -> bytes:
    try:
        return src.read(CHUNK)
    except _CORRUPT as exc:
        raise ArchiveError(f"corrupt member ({exc})", member=info.filename) from None


def _open_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> IO[bytes]:
    try:
        return archive.open(info)
    except (*_CORRUPT, NotImplementedError, RuntimeError) as exc:
        raise ArchiveError(f"corrupt member ({exc})", member=info.filename) from None


def common_root(names: list[str]) -> str | None:
    """The single top-level directory every member sits in (``my-project/``), if there is one."""
    tops = {n.split("/", 1)[0] for n in names if n}
    if len(tops) != 1:
        return None
    top = next(iter(tops))
    return top if all(n.startswith(top + "/") or n == top for n in names) else None


def extract(
    zip_path: Path, dest: Path, *, limits: Limits = Limits(), strip_root: bool = True
) -> list[str]:
    """Extract ``zip_path`` into ``dest`` (which must be empty or absent); returns the files
    written, relative to ``dest``. With ``strip_root``, a single top-level folder is removed
    when the project is inside it (``zip -r p.zip my-project/``)."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"not a zip archive ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            raise ArchiveError(
                f"archive has {len(infos)} entries; the limit is {limits.max_entries}"
            )
        _check_members(infos)
        names = [i.filename for i in infos]
        root = common_root(names) if strip_root else None
        if root is not None and any(n.startswith("skills/") for n in names):
            root = None
        dest.mkdir(parents=True, exist_ok=True)
        base = dest.resolve()
        total = 0
        written: list[str] = []
        for info in infos:
            path = member_path(info.filename)
            if _is_special(info):
                raise ArchiveError("links and special files are not allowed", member=info.filename)
            if root is not None:
                path = PurePosixPath(*path.parts[1:]) if len(path.parts) > 1 else PurePosixPath()
            if not path.parts:
                continue
            target = (base / path).resolve()
            if base not in target.parents and target != base:
                raise ArchiveError("path escapes the bundle", member=info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                out = open(target, "xb")
            except OSError as exc:
                raise ArchiveError(
                    f"cannot be extracted ({exc.strerror})", member=info.filename
                ) from None
            size = 0
            with out, _open_member(archive, info) as src:
                while chunk := _read(src, info):
                    size += len(chunk)
                    total += len(chunk)
                    if total > limits.max_total_bytes:
                        raise ArchiveError(
                            f"archive inflates past {limits.max_total_bytes} bytes; the limit is {limits.max_total_bytes}"
                        )
                    if size > limits.ratio_floor_bytes and size > limits.max_ratio * max(
                        info.compress_size, 1
                    ):
                        raise ArchiveError(
                            f"member inflates more than {limits.max_ratio}x its compressed size "
                            f"({info.compress_size} bytes)",
                            member=info.filename,
                        )
                    out.write(chunk)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, 0o755 if mode & 0o111 else 0o644)
            written.append(str(path))
        return written
