"""Waiting on things in tests: by event or by condition, with a timeout, never a bare sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from puras_common.envelope import Event, parse_event

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None] | T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            # A coroutine was awaited above: what is left is the probe's own value.
            return cast(T, value)
        last = value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


class EventCollector:
    """Collects events published on a subject (core NATS), to wait for one that matches."""

    def __init__(self, nc: NATS, subject: str) -> None:
        self.nc = nc
        self.subject = subject
        self.events: list[Event] = []
        self.raw: list[Msg] = []
        self._changed = asyncio.Condition()
        self._sub: Any = None

    async def __aenter__(self) -> EventCollector:
        self._sub = await self.nc.subscribe(self.subject, cb=self._on)
        await self.nc.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._sub.unsubscribe()

    async def _on(self, msg: Msg) -> None:
        self.raw.append(msg)
        self.events.append(parse_event(msg.data))
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[Event], bool], *, timeout: float = 10.0) -> Event:
        """The first collected event matching ``predicate``, waiting up to ``timeout``."""

        async def find() -> Event:
            async with self._changed:
                while True:
                    for event in self.events:
                        if predicate(event):
                            return event
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            seen = [e.type for e in self.events]
            raise AssertionError(
                f"no matching event on {self.subject} within {timeout}s; saw {seen}"
            ) from None
