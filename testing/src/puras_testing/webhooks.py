"""A webhook receiver for tests: records every request it gets (headers, raw body) and answers
with scripted statuses, so a test can make an endpoint fail, recover, or fail for good."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from puras_testing.stubs import serve_app


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.time)
    """Wall-clock seconds, to compare with the platform's timestamps."""


@dataclass
class Receiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    """Per path, the statuses to answer with, in order; then 200 (or ``always[path]``)."""
    always: dict[str, int] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, path: str, count: int, *, timeout: float = 30.0) -> list[Received]:
        """The first ``count`` requests to ``path``, once they arrived."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.at(path)) >= count), timeout
            )
        return self.at(path)[:count]

    async def _handle(self, request: Request) -> PlainTextResponse:
        path = request.url.path
        self.requests.append(Received(path, dict(request.headers), await request.body()))
        async with self._changed:
            self._changed.notify_all()
        status = self.script[path].pop(0) if self.script[path] else self.always.get(path, 200)
        return PlainTextResponse(f"receiver says {status}", status_code=status)


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver._handle, methods=["POST"])])
    async with serve_app(app) as url:
        receiver.url = url
        yield receiver
