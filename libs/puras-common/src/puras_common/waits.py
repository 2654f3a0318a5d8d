"""Waiting with a timeout on the hot paths, without a task per wait.

``asyncio.wait_for`` (Python 3.11) wraps what it awaits in a new task, which costs a task's
creation and an extra turn of the event loop before the waiter runs: on a consumer that takes
a batch per message, or a relay woken per commit, that is paid on every hop of every job.
``asyncio.timeout`` arms one timer on the current task instead.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def woken(event: asyncio.Event, seconds: float) -> bool:
    """Whether ``event`` was set within ``seconds`` (at once if it is set already)."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def next_item(queue: asyncio.Queue[T], seconds: float) -> T | None:
    """The queue's next item, waiting up to ``seconds`` for one; None if none came."""
    if not queue.empty():
        return queue.get_nowait()
    try:
        async with asyncio.timeout(seconds):
            return await queue.get()
    except TimeoutError:
        return None
