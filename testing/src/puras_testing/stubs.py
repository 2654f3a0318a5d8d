"""Serving a small ASGI app (a provider's wire-format stub) on loopback inside the test's own
event loop.

The socket is bound and listening before the server task starts, so a client may connect at
once (the connection waits in the backlog): no polling for readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from puras_cli.engines import free_port


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the test process owns its signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listening_socket(*, port: int | None = None) -> socket.socket:
    """A non-blocking socket listening on loopback: on ``port``, or on a free one."""
    for _ in range(1 if port else 20):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind(("127.0.0.1", port or free_port()))
        except OSError:
            sock.close()
            if port:
                raise
            continue
        sock.listen(1024)
        sock.setblocking(False)
        return sock
    raise OSError("no free loopback port for a stub server")


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serve ``app``; yields its base URL (``http://127.0.0.1:<port>``)."""
    sock = listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", loop="none", timeout_keep_alive=30
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()
