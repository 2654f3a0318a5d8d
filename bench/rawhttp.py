"""A lean HTTP/1.1 keep-alive client for the load generator.

httpx spends about 13 ms of CPU per request on this machine, as much as the whole platform
spends on an echo job. On two cores, a load generator that costly takes the CPU the platform
is being measured on, while Celery's client (`delay()` over Redis) costs a fraction of a
millisecond. This client writes a prepared request and reads one response with a
`content-length` body (what the gateway's JSON answers carry), and nothing more.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class HttpError(RuntimeError):
    pass


class Connection:
    """One keep-alive connection; requests on it go one at a time."""

    def __init__(self, url: str, *, token: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._head = f"Host: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\n{self._head}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        status_line = await self.reader.readline()
        if not status_line:
            raise HttpError("connection closed by the server")
        status = int(status_line.split(b" ", 2)[1])
        length = None
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise HttpError(f"{path}: answer without content-length (status {status})")
        return status, await self.reader.readexactly(length)
