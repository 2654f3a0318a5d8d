"""Turning a job's stdout/stderr into ``log`` events while it runs.

Whatever is available is read at once and cut into complete lines, so a burst of prints becomes
one event rather than hundreds; events are published in order, and :meth:`LogPump.drain` returns
only when all of them are acknowledged, so the terminal event that follows comes after them.

A job's log is bounded (``PURAS_FUNCTION_RUNNER_MAX_LOG_BYTES``, UTF-8 bytes per attempt): past
it, one marker event (``truncated: true``) says so, and the rest of the output is read and
dropped, so a job printing in a loop cannot flood the JOBS stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from uuid import UUID

from nats.js import JetStreamContext
from puras_common.bus import publish
from puras_common.envelope import Event
from puras_common.events import JobLogged
from puras_common.events.jobs import LoggedPayload

MAX_EVENT_TEXT = 32 * 1024
"""Longest text in one log event; longer lines are cut into pieces."""
DEFAULT_MAX_LOG_BYTES = 10 * 1024 * 1024


class LogPump:
    def __init__(
        self,
        js: JetStreamContext,
        *,
        job_id: UUID,
        workspace_id: UUID,
        attempt: int,
        caused_by: Event,
        mask: Callable[[str], str] = str,
        max_bytes: int = DEFAULT_MAX_LOG_BYTES,
    ) -> None:
        self.js = js
        self.max_bytes = max_bytes
        self.logged_bytes = 0
        self.truncated = False
        self.mask = mask
        """Applied to every text before it leaves: hides the job's secret values."""
        self.job_id = job_id
        self.workspace_id = workspace_id
        self.attempt = attempt
        self.caused_by = caused_by
        self._queue: asyncio.Queue[JobLogged | None] = asyncio.Queue()
        self._sender = asyncio.create_task(self._send())
        self.lines = 0

    async def follow(self, reader: asyncio.StreamReader, stream: str) -> None:
        """Read ``reader`` to EOF, emitting complete lines as they arrive."""
        pending = b""
        while chunk := await reader.read(64 * 1024):
            pending += chunk
            complete, sep, pending = pending.rpartition(b"\n")
            if sep:
                self._emit(stream, complete)
            while len(pending) > MAX_EVENT_TEXT:
                self._emit(stream, pending[:MAX_EVENT_TEXT])
                pending = pending[MAX_EVENT_TEXT:]
        if pending:
            self._emit(stream, pending)

    def _emit(self, stream: str, data: bytes) -> None:
        if self.truncated:
            return
        # NUL cannot be stored in a JSON column downstream: show it as U+FFFD, as bad UTF-8 is.
        text = self.mask(data.decode("utf-8", errors="replace").replace("\x00", "\ufffd"))
        size = len(text.encode())
        if self.logged_bytes + size > self.max_bytes:
            room = self.max_bytes - self.logged_bytes
            text = text.encode()[:room].decode(errors="ignore")
            size = len(text.encode())
            self.truncated = True
        self.logged_bytes += size
        self.lines += text.count("\n") + 1 if text else 0
        for start in range(0, len(text), MAX_EVENT_TEXT):
            self._put(
                LoggedPayload(
                    attempt=self.attempt, stream=stream, text=text[start : start + MAX_EVENT_TEXT]
                )
            )
        if self.truncated:
            self._put(
                LoggedPayload(
                    attempt=self.attempt,
                    stream="stderr",
                    text=f"[log truncated: this job's output passed {self.max_bytes} bytes "
                    "(PURAS_FUNCTION_RUNNER_MAX_LOG_BYTES); the rest is not kept]",
                    truncated=True,
                )
            )

    def _put(self, payload: LoggedPayload) -> None:
        self._queue.put_nowait(
            JobLogged.new(
                payload,
                producer="function-runner",
                workspace_id=self.workspace_id,
                job_id=self.job_id,
                caused_by=self.caused_by,
            )
        )

    async def _send(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch: list[Event] = [first]
            done = False
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    done = True
                    break
                batch.append(item)
            await publish(self.js, batch)
            if done:
                return

    async def drain(self) -> None:
        """Publish everything emitted so far and stop."""
        self._queue.put_nowait(None)
        await self._sender
