"""Measuring what a call produced, for per-second billing when the request left the length to
the model (``duration: auto``) and the response does not state it: the length of an MP4/MOV
file, read from its ``moov/mvhd`` box as the bytes stream past (nothing else is kept)."""

from __future__ import annotations

import struct
from fractions import Fraction

_MAX_MOOV_BYTES = 16 * 1024 * 1024
"""A movie header larger than this is not parsed (a real ``moov`` is a few hundred KB)."""


class Mp4Duration:
    """Feed it the file's chunks in order; :attr:`seconds` is the duration once ``mvhd`` passed."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0
        self._moov: bytearray | None = None
        self._moov_left = 0
        self._done = False
        self.seconds: Fraction | None = None

    def feed(self, chunk: bytes) -> None:
        if self._done:
            return
        data = memoryview(chunk)
        while data and not self._done:
            if self._skip:
                taken = min(self._skip, len(data))
                self._skip -= taken
                data = data[taken:]
            elif self._moov is not None:
                taken = min(self._moov_left, len(data))
                self._moov += data[:taken]
                self._moov_left -= taken
                data = data[taken:]
                if self._moov_left == 0:
                    self.seconds = _mvhd_seconds(bytes(self._moov))
                    self._done = True
            else:
                self._buffer += data
                data = memoryview(b"")
                self._read_headers()

    def _read_headers(self) -> None:
        while len(self._buffer) >= 8 and not self._done:
            size, box = struct.unpack(">I4s", self._buffer[:8])
            header = 8
            if size == 1:
                if len(self._buffer) < 16:
                    return
                size = struct.unpack(">Q", self._buffer[8:16])[0]
                header = 16
            if size < header:  # size 0 (to the end of the file) or malformed: stop looking
                self._done = True
                return
            rest = bytes(self._buffer[header:])
            self._buffer.clear()
            body = size - header
            if box == b"moov":
                if body > _MAX_MOOV_BYTES:
                    self._done = True
                    return
                self._moov = bytearray()
                self._moov_left = body
                self.feed(rest)
                return
            self._skip = body
            self.feed(rest)
            return


def _mvhd_seconds(moov: bytes) -> Fraction | None:
    offset = 0
    while offset + 8 <= len(moov):
        size, box = struct.unpack(">I4s", moov[offset : offset + 8])
        if size < 8:
            return None
        if box == b"mvhd":
            body = moov[offset + 8 : offset + size]
            if not body:
                return None
            if body[0] == 1:
                if len(body) < 32:
                    return None
                timescale, duration = struct.unpack(">IQ", body[20:32])
            else:
                if len(body) < 20:
                    return None
                timescale, duration = struct.unpack(">II", body[12:20])
            return Fraction(duration, timescale) if timescale else None
        offset += size
    return None


def mp4_bytes(seconds: Fraction | int, *, timescale: int = 1000, payload: int = 64) -> bytes:
    """A minimal MP4 (``ftyp``, ``moov/mvhd``, ``mdat``) lasting ``seconds``, for tests and stubs."""
    duration = int(Fraction(seconds) * timescale)
    ftyp = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")
    mvhd_body = bytes([0, 0, 0, 0]) + struct.pack(">IIII", 0, 0, timescale, duration) + bytes(80)
    mvhd = struct.pack(">I4s", 8 + len(mvhd_body), b"mvhd") + mvhd_body
    moov = struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    mdat = struct.pack(">I4s", 8 + payload, b"mdat") + bytes(payload)
    return ftyp + mdat + moov
