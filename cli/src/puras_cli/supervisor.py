"""Runs the services as child processes: readable prefixed logs, restarts with backoff when one
dies (crash-only), and a clean stop of all on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import orjson

COLORS = ("36", "32", "35", "34", "33", "96", "92", "95")
LEVEL_MARK = {"warning": "WARN ", "error": "ERROR", "critical": "CRIT ", "info": "     ", "debug": "debug"}


def render(service: str, width: int, line: bytes, color: str | None) -> str:
    """One log line as ``HH:MM:SS service | event key=value …``, whatever the child wrote."""
    text = line.decode("utf-8", errors="replace").rstrip("\n")
    name = service.ljust(width)
    if color:
        name = f"\x1b[{color}m{name}\x1b[0m"
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError:
        return f"{time.strftime('%H:%M:%S')} {name} | {text}"
    if not isinstance(record, dict):
        return f"{time.strftime('%H:%M:%S')} {name} | {text}"
    stamp = str(record.pop("timestamp", ""))[11:19] or time.strftime("%H:%M:%S")
    level = LEVEL_MARK.get(str(record.pop("level", "info")), "     ")
    event = record.pop("event", "")
    for key in ("service", "logger", "component"):
        record.pop(key, None)
    exc = record.pop("exception", None)
    rest = " ".join(f"{k}={v}" for k, v in record.items())
    out = f"{stamp} {name} {level} {event} {rest}".rstrip()
    if exc:
        out += "\n" + str(exc)
    return out


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    task: asyncio.Task[None] | None = None
    started: float = field(default=0.0)
    paused: bool = False


class Supervisor:
    def __init__(self, *, out: TextIO = sys.stdout, color: bool | None = None, on_line: Callable[[str, bytes], None] | None = None) -> None:
        self.out = out
        self.color = out.isatty() if color is None else color
        self.children: dict[str, Child] = {}
        self.stopping = False
        self.on_line = on_line
        self.width = 15

    def add(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.children[name] = Child(name, argv, env)
        self.width = max(self.width, len(name))

    async def start_all(self) -> None:
        for name in self.children:
            self.start(name)

    def start(self, name: str) -> None:
        """Start (and keep running) one added service."""
        child = self.children[name]
        child.task = asyncio.create_task(self._keep(child))

    async def _keep(self, child: Child) -> None:
        index = list(self.children).index(child.name)
        color = COLORS[index % len(COLORS)] if self.color else None
        while not self.stopping:
            child.started = time.monotonic()
            env = {**os.environ, **child.env}
            child.process = await asyncio.create_subprocess_exec(
                *child.argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            assert child.process.stdout is not None
            async for line in child.process.stdout:
                if self.on_line:
                    self.on_line(child.name, line)
                print(render(child.name, self.width, line, color), file=self.out, flush=True)
            code = await child.process.wait()
            if self.stopping or child.paused:
                return
            ran = time.monotonic() - child.started
            child.restarts = 0 if ran > 60 else child.restarts + 1
            delay = min(30.0, 0.5 * 2 ** min(child.restarts, 6))
            print(
                render(child.name, self.width, f"exited with code {code}; restarting in {delay:.1f}s".encode(), color),
                file=self.out, flush=True,
            )
            await asyncio.sleep(delay)

    def pid(self, name: str) -> int | None:
        child = self.children.get(name)
        return child.process.pid if child and child.process and child.process.returncode is None else None

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal one service (it is restarted unless the supervisor is stopping)."""
        child = self.children[name]
        if child.process and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, sig)

    async def pause(self, name: str, *, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        """Stop one service and keep it stopped until :meth:`resume`."""
        child = self.children[name]
        child.paused = True
        if child.process and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, sig)
            try:
                await asyncio.wait_for(child.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                await child.process.wait()
        if child.task:
            with contextlib.suppress(asyncio.CancelledError):
                await child.task

    async def resume(self, name: str) -> None:
        """Start a paused service again."""
        child = self.children[name]
        child.paused = False
        child.restarts = 0
        child.task = asyncio.create_task(self._keep(child))

    async def stop(self, *, grace: float = 10.0, order: list[str] | None = None) -> None:
        """SIGTERM every child (in ``order``), wait up to ``grace``, then SIGKILL what is left."""
        self.stopping = True
        # The given order first, then every other child (replicas added later, say).
        names = [n for n in (order or []) if n in self.children]
        names += [n for n in self.children if n not in names]
        for name in names:
            child = self.children[name]
            if child.process and child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name in names:
            child = self.children[name]
            if child.process is None:
                continue
            try:
                await asyncio.wait_for(child.process.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                await child.process.wait()
        for child in self.children.values():
            if child.task:
                child.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await child.task
