"""A TCP link on loopback that a test can cut: every connection through it is reset and new
ones are refused until it is restored, as when a database goes away for a while.

The link listens on a free loopback port and forwards each connection to the target. A client
pointed at the link sees what it would see of a server that went down: its open connections
are reset, and connecting fails with "connection refused" until :meth:`CuttableLink.restore`
listens on the same port again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
from puras_common.db import create_pool

from puras_testing.stubs import listening_socket


class CuttableLink:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        sock = listening_socket(port=self.port or None)
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._connected, sock=sock)

    async def cut(self) -> None:
        """Stop listening (connecting is refused) and reset every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def url(self, url: str) -> str:
        """``url`` (a database's, say) with its host and port replaced by the link's."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return parts._replace(netloc=netloc).geturl()

    async def restore(self) -> None:
        """Listen again, on the same port."""
        await self.open()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            self._pipes.discard(task)
            return
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            for w in (writer, up_writer):
                # SO_LINGER 0: the peer sees a reset, as from a server that went away.
                sock = w.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                w.close()
            self._pipes.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def cuttable_link(target_url: str) -> AsyncIterator[CuttableLink]:
    """A link to the host and port of ``target_url`` for the life of the block."""
    parts = urlsplit(target_url)
    assert parts.hostname is not None and parts.port is not None
    link = CuttableLink(parts.hostname, parts.port)
    await link.open()
    try:
        yield link
    finally:
        await link.cut()


@contextlib.asynccontextmanager
async def pool_through(link: CuttableLink, dsn: str, *, schema: str) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on ``dsn``'s database, in ``schema``, whose connections go through ``link``."""
    pool = await create_pool(
        link.url(dsn), schema=schema, application_name="test-cut", min_size=1, max_size=2
    )
    try:
        yield pool
    finally:
        await pool.close()
