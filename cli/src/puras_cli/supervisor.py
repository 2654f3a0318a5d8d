"""Runs the services and the embedded engines as child processes: readable prefixed logs,
restarts with backoff when one dies (crash-only), and a stop that leaves nothing behind.

Every child is the leader of its own process group, so a signal reaches whatever it forked. A
stop sends each group its stop signal, waits up to a grace period, then SIGKILLs what is left.
Should the supervisor itself be killed, its children get SIGKILL from the kernel
(``PR_SET_PDEATHSIG``), and the process groups it recorded in its pidfile are swept at the next
start, so a killed ``puras up`` leaves no orphans behind for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import orjson
from puras_common.access import SECRET_VARIABLES

COLORS = ("36", "32", "35", "34", "33", "96", "92", "95")
LEVEL_MARK = {
    "warning": "WARN ",
    "error": "ERROR",
    "critical": "CRIT ",
    "info": "     ",
    "debug": "debug",
}


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


PR_SET_PDEATHSIG = 1


def _child_setup(user: int | None, group: int | None) -> Callable[[], None]:
    """What the child does between fork and exec: drop to ``user`` if given, then ask for
    SIGKILL when the supervisor dies, however it dies. (The order matters: a change of uid
    clears the parent-death signal.)"""

    def setup() -> None:
        if user is not None:
            os.setgroups([])
            os.setgid(group if group is not None else user)
            os.setuid(user)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return setup


Ready = Callable[[], Awaitable[None]]


@dataclass
class Child:
    """One supervised process: a service, or an engine (NATS, PostgreSQL)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    stop_signal: int = signal.SIGTERM
    user: int | None = None
    """Run as this uid (its primary gid too); PostgreSQL refuses root."""
    group: int | None = None
    ready: Ready | None = None
    """Awaited after each start; until it returns, the child counts as starting."""
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    exits: int = 0
    """How many times it ended other than by a stop."""
    task: asyncio.Task[None] | None = None
    started: float = field(default=0.0)
    paused: bool = False
    up: asyncio.Event = field(default_factory=asyncio.Event)


def backoff_delay(restarts: int) -> float:
    """0.5 s, 1 s, 2 s … capped at 30 s."""
    return min(30.0, 0.5 * float(2 ** min(restarts, 6)))


class Supervisor:
    def __init__(
        self,
        *,
        out: TextIO = sys.stdout,
        color: bool | None = None,
        on_line: Callable[[str, bytes], None] | None = None,
        pidfile: Path | None = None,
    ) -> None:
        self.out = out
        self.color = out.isatty() if color is None else color
        self.children: dict[str, Child] = {}
        self.stopping = False
        self.on_line = on_line
        self.pidfile = pidfile
        self.width = 15

    def add(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        stop_signal: int = signal.SIGTERM,
        user: int | None = None,
        group: int | None = None,
        ready: Ready | None = None,
    ) -> None:
        self.children[name] = Child(
            name, argv, env, stop_signal=stop_signal, user=user, group=group, ready=ready
        )
        self.width = max(self.width, len(name))

    async def start_all(self) -> None:
        for name in self.children:
            if self.children[name].task is None:
                self.start(name)

    def start(self, name: str) -> None:
        """Start (and keep running) one added child."""
        child = self.children[name]
        child.task = asyncio.create_task(self._keep(child))

    async def start_and_wait(self, name: str, *, timeout: float = 60.0) -> None:
        """Start one child and wait until it is ready (its ``ready`` check passed)."""
        self.start(name)
        await asyncio.wait_for(self.children[name].up.wait(), timeout)

    def _say(self, child: Child, text: str) -> None:
        index = list(self.children).index(child.name)
        color = COLORS[index % len(COLORS)] if self.color else None
        print(render(child.name, self.width, text.encode(), color), file=self.out, flush=True)

    async def _spawn(self, child: Child) -> asyncio.subprocess.Process:
        # A child gets only the secrets named in its own environment, never the operator's whole
        # set (puras_common.access.SERVICE_SECRETS says which service gets which).
        inherited = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
        env = {**inherited, **child.env}
        process = await asyncio.create_subprocess_exec(
            *child.argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_setup(child.user, child.group),
        )
        return process

    async def _keep(self, child: Child) -> None:
        index = list(self.children).index(child.name)
        color = COLORS[index % len(COLORS)] if self.color else None
        while not self.stopping:
            child.started = time.monotonic()
            child.process = await self._spawn(child)
            self._record()
            watching = asyncio.create_task(self._watch_ready(child))
            assert child.process.stdout is not None
            async for line in child.process.stdout:
                if self.on_line:
                    self.on_line(child.name, line)
                print(render(child.name, self.width, line, color), file=self.out, flush=True)
            code = await child.process.wait()
            watching.cancel()
            child.up.clear()
            if self.stopping or child.paused:
                return
            child.exits += 1
            ran = time.monotonic() - child.started
            child.restarts = 0 if ran > 60 else child.restarts + 1
            delay = backoff_delay(child.restarts)
            self._say(child, f"exited with code {code}; restarting in {delay:.1f}s")
            await asyncio.sleep(delay)

    async def _watch_ready(self, child: Child) -> None:
        if child.ready is not None:
            try:
                await child.ready()
            except Exception as exc:  # a failed check is the child's problem; it is reported
                self._say(child, f"did not become ready: {exc}")
                return
        child.up.set()

    def pid(self, name: str) -> int | None:
        child = self.children.get(name)
        return (
            child.process.pid
            if child and child.process and child.process.returncode is None
            else None
        )

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal one child's process group (it is restarted unless the supervisor is stopping)."""
        child = self.children[name]
        if child.process and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, sig)

    async def _end(self, child: Child, *, sig: int, grace: float) -> None:
        """Signal ``child``'s group, wait up to ``grace``, then SIGKILL the group."""
        process = child.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(process.wait(), max(0.1, grace))
            except TimeoutError:
                self._say(child, f"still running {grace:.0f}s after signal {sig}; killing it")
        # Whatever else the child left in its group (helpers it forked) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()

    async def pause(self, name: str, *, sig: int | None = None, grace: float = 10.0) -> None:
        """Stop one child and keep it stopped until :meth:`resume`."""
        child = self.children[name]
        child.paused = True
        await self._end(child, sig=child.stop_signal if sig is None else sig, grace=grace)
        if child.task:
            with contextlib.suppress(asyncio.CancelledError):
                await child.task

    async def resume(self, name: str) -> None:
        """Start a paused child again."""
        child = self.children[name]
        child.paused = False
        child.restarts = 0
        child.task = asyncio.create_task(self._keep(child))

    async def stop(
        self,
        *,
        grace: float = 10.0,
        order: list[str] | None = None,
        only: list[str] | None = None,
    ) -> None:
        """Stop children: each gets its stop signal (in ``order``), and up to ``grace`` seconds
        to exit before SIGKILL. ``only`` stops just those (engines after the services, say);
        without it the supervisor stops for good."""
        names = [n for n in (order or []) if n in self.children]
        names += [n for n in self.children if n not in names]
        if only is not None:
            names = [n for n in names if n in only]
        else:
            self.stopping = True
        for name in names:
            self.children[name].paused = True
        deadline = time.monotonic() + grace
        await asyncio.gather(
            *(
                self._end(
                    self.children[n],
                    sig=self.children[n].stop_signal,
                    grace=deadline - time.monotonic(),
                )
                for n in names
            )
        )
        for name in names:
            task = self.children[name].task
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._record()

    # -- the pidfile: what a killed supervisor left behind

    def _record(self) -> None:
        if self.pidfile is None:
            return
        groups = {
            name: {"pgid": c.process.pid, "start": _start_time(c.process.pid)}
            for name, c in self.children.items()
            if c.process is not None and c.process.returncode is None
        }
        tmp = self.pidfile.with_suffix(".tmp")
        me = {"pid": os.getpid(), "start": _start_time(os.getpid())}
        tmp.write_bytes(orjson.dumps({"supervisor": me, "groups": groups}))
        os.replace(tmp, self.pidfile)


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
            members.append(int(entry.name))
    return members


def sweep(pidfile: Path) -> list[str]:
    """SIGKILL the process groups a previous supervisor recorded and left running (it was
    killed); returns the names of the children it found. A group whose leader's pid now belongs
    to another process (a different start time) is not ours, and is left alone."""
    try:
        recorded = orjson.loads(pidfile.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    owner = recorded.get("supervisor", {})
    if owner.get("pid") != os.getpid() and _start_time(owner.get("pid", 0)) == owner.get("start"):
        return []  # that supervisor still runs: not ours to clean
    found = []
    for name, group in recorded.get("groups", {}).items():
        pgid = int(group["pgid"])
        leader_start = _start_time(pgid)
        if leader_start is not None and leader_start != group.get("start"):
            continue
        if _group_members(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            found.append(name)
    pidfile.unlink(missing_ok=True)
    return found
