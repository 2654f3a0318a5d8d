"""Running tenant code for an agent job: ``bash`` commands and declared ``tools:``.

Both go through the job's own sandbox (a ``puras_sandbox`` fork server the job host starts as
the job begins, if the job has a tool that runs in it, or else on its first command, and stops
when the job ends): each call is its own process, as the workspace's unprivileged uid, in the
job's workdir, with the job's environment (its skillpack's secrets included) and rlimits,
killed with its whole process group at its timeout. In bubblewrap the sandbox sees only the
job's workdir, its workspace's drive folder and the read-only deployment, and only the job's
own processes; its ``/tmp`` and whatever a step started in the background last until the job
ends, so one step's state is there for the next. Nothing runs by remote call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from puras_common.logging import get_logger
from puras_jobhost.prepare import JobServer
from puras_sandbox import (
    Child,
    Exec,
    ForkServer,
    ForkServerDied,
    Limits,
    Outcome,
    PythonCall,
    SandboxError,
)

log = get_logger("puras_agent_runner.sandbox")

OUTPUT_TAIL_BYTES = 8 * 1024
"""bash returns the last 8 KiB of combined stdout and stderr."""


class Tail:
    """Keeps the last ``limit`` bytes of a stream, and counts them all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        self.buffer += data
        if len(self.buffer) > self.limit:
            del self.buffer[: len(self.buffer) - self.limit]

    def text(self) -> str:
        data = bytes(self.buffer)
        if self.total > self.limit:  # the cut may have split a character: drop its remains
            while data and (data[0] & 0xC0) == 0x80:
                data = data[1:]
        return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class ShellResult:
    exit_code: int | None
    signal: int | None
    output: str
    output_bytes: int
    timed_out: bool


@dataclass(frozen=True)
class CallResult:
    outcome: Outcome
    stderr: str
    timed_out: bool


class JobSandbox:
    """The agent job's sandbox, held for the job's lifetime."""

    def __init__(
        self,
        *,
        start: Callable[[], Awaitable[JobServer]],
        workdir: str,
        env: dict[str, str],
        limits: Limits,
    ) -> None:
        self._start = start
        self._server: JobServer | None = None
        self._starting = asyncio.Lock()
        self._prestarting: asyncio.Task[ForkServer] | None = None
        self.workdir = workdir
        self.env = env
        self.limits = limits
        self.cpu_ms = 0
        """The CPU time of every call's process so far (see :attr:`Outcome.cpu_ms`)."""

    def prestart(self) -> None:
        """Start the sandbox now, in the background, so that the job's first command finds it
        running: its start (bubblewrap and a fresh interpreter, tens of milliseconds) then
        overlaps the first model call instead of following it. A failed start is not
        reported here; the first command starts it again and says why it could not."""
        if self._prestarting is None and self._server is None:
            self._prestarting = asyncio.create_task(self._running_server())
            self._prestarting.add_done_callback(_retrieve)

    async def _running_server(self) -> ForkServer:
        async with self._starting:
            if self._server is None or not self._server.server.alive:
                if self._server is not None:
                    await self._server.close()
                self._server = await self._start()
            return self._server.server

    async def _spawn(self, call: PythonCall | Exec) -> Child:
        server = await self._running_server()
        return await server.spawn(call, workdir=self.workdir, env=self.env, limits=self.limits)

    async def close(self) -> None:
        """Stop the sandbox and everything still running in it."""
        if self._prestarting is not None:
            # Waited for, not cancelled: a start is bounded by its own timeout, and the server
            # it leaves is stopped below like any other.
            await asyncio.gather(self._prestarting, return_exceptions=True)
        async with self._starting:
            server, self._server = self._server, None
        if server is not None:
            await server.close()

    async def shell(self, command: str, *, timeout: float) -> ShellResult:
        """``bash -c command`` with stderr merged into stdout, keeping the output's tail."""
        # Merging inside bash keeps the true order of the two streams.
        child = await self._spawn(Exec(["/bin/bash", "-c", "exec 2>&1\n" + command]))
        tail = Tail(OUTPUT_TAIL_BYTES)
        readers = asyncio.gather(_drain(child.stdout, tail), _drain(child.stderr, tail))
        outcome, timed_out = await _wait(child, timeout)
        self.cpu_ms += outcome.cpu_ms
        await readers
        return ShellResult(outcome.exit_code, outcome.signal, tail.text(), tail.total, timed_out)

    async def call(
        self, *, import_dir: str, module: str, function: str, payload: Any, timeout: float
    ) -> CallResult:
        """``module.function(payload)`` in a fresh process; stdout is discarded, stderr's tail kept."""
        call = PythonCall(
            import_dir=import_dir, module=module, function=function, payload=orjson.dumps(payload)
        )
        child = await self._spawn(call)
        err = Tail(OUTPUT_TAIL_BYTES)
        readers = asyncio.gather(_drain(child.stdout, Tail(0)), _drain(child.stderr, err))
        outcome, timed_out = await _wait(child, timeout)
        self.cpu_ms += outcome.cpu_ms
        await readers
        return CallResult(outcome, err.text(), timed_out)


def _retrieve(task: asyncio.Task[ForkServer]) -> None:
    """A prestart's failure is the first command's to report; here it is only retrieved."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.info("the sandbox did not start ahead of the first command", error=repr(exc))


async def _drain(reader: asyncio.StreamReader, tail: Tail) -> None:
    while chunk := await reader.read(64 * 1024):
        tail.feed(chunk)


async def _wait(child: Child, timeout: float) -> tuple[Outcome, bool]:
    try:
        return await asyncio.wait_for(child.wait(), timeout), False
    except TimeoutError:
        await child.kill()
        return await child.wait(), True
    except asyncio.CancelledError:
        await child.kill()
        raise


__all__ = [
    "OUTPUT_TAIL_BYTES",
    "CallResult",
    "ForkServerDied",
    "JobSandbox",
    "SandboxError",
    "ShellResult",
    "Tail",
]
