"""Preparing deployments on this host, once each: fetch the bundle from the deployments
service, extract it safely, install its venv (one per distinct requirements.txt, from the
wheelhouse the deployments service built at push), and keep warm fork servers to fork jobs
from: one per deployment, or, in bubblewrap, one per (deployment, workspace, network), so a
sandbox only ever holds one workspace's files."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import orjson
import puras
from puras_common.archive import ArchiveError, extract
from puras_common.logging import get_logger
from puras_sandbox import ForkServer, Isolation, Limits

from puras_jobhost.egress import PROXY_ENV, EgressPolicy, EgressPort

log = get_logger("puras_jobhost.prepare")

SDK_PRELOAD = ("json", "puras")
"""What a zygote imports before it is ready. The in-skill SDK takes tens of milliseconds to
import (urllib, email, ssl): imported once in the zygote, every job forked from it that uses the
SDK (and each replay of a job that asked for input) starts without that cost. The SDK reads its
environment only when used."""


class PrepareError(RuntimeError):
    """The deployment could not be made ready to run on this host."""


@dataclass
class Prepared:
    deployment_id: UUID
    root: Path
    skills: dict[str, dict[str, Any]]
    python: str
    site_packages: list[str] = field(default_factory=list)
    venv: Path | None = None


WorkspaceBinds = Callable[[UUID], Sequence[str]]
"""Extra host paths a workspace's sandboxes get read-write (beside its work directory)."""


def _no_binds(_workspace_id: UUID) -> Sequence[str]:
    return ()


def _uv() -> str:
    candidate = Path(sys.executable).parent / "uv"
    found = str(candidate) if candidate.exists() else shutil.which("uv")
    if not found:
        raise PrepareError(
            "uv is not installed next to the runner; cannot build requirements.txt venvs"
        )
    return found


class Deployments:
    """This host's prepared deployments and their warm fork servers."""

    def __init__(
        self,
        *,
        cache_dir: Path,
        deployments_url: str,
        token: str,
        http: httpx.AsyncClient,
        uid: int | None,
        gid: int | None,
        max_warm: int,
        python: str,
        sandboxed: bool = False,
        workspace_binds: WorkspaceBinds = _no_binds,
        idle_seconds: float = 600.0,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.cache_dir = cache_dir.resolve()
        self.deployments_url = deployments_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = http
        self.uid = uid
        self.gid = gid
        self.max_warm = max_warm
        self.idle_seconds = idle_seconds
        """A fork server unused this long is stopped: warm parents hold memory and count
        against the job uid's process limit."""
        self._used: dict[tuple[Any, ...], float] = {}
        self.python = python
        """The interpreter jobs run on (and venvs are built from)."""
        self.sandboxed = sandboxed
        """Jobs run in bubblewrap: a warm parent per (deployment, workspace, network)."""
        self.workspace_binds = workspace_binds
        """Hook: more read-write paths for a workspace's sandboxes (its drive, say)."""
        self.egress = egress
        """Sandboxes with network get their own namespace whose only way out is a proxy
        applying this policy (:mod:`puras_jobhost.egress`); ``None``: the host's network."""
        self._egress_ports: dict[tuple[Any, ...], EgressPort] = {}
        self._prepared: dict[UUID, Prepared] = {}
        self._locks: dict[Any, asyncio.Lock] = {}
        self._servers: OrderedDict[tuple[Any, ...], ForkServer] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        for sub in ("deployments", "venvs", "work", "runtime", "downloads", "egress"):
            (self.cache_dir / sub).mkdir(parents=True, exist_ok=True)
        # Jobs run as an unprivileged uid: they may traverse to what they need, list nothing...
        for path in (
            self.cache_dir,
            *(self.cache_dir / s for s in ("deployments", "venvs", "work", "egress")),
        ):
            os.chmod(path, 0o711)
        # ...except the directory on their sys.path, which Python's importer must list.
        os.chmod(self.cache_dir / "runtime", 0o755)
        os.chmod(self.cache_dir / "downloads", 0o700)
        # Python's importer lists a sys.path directory before it finds anything in it.
        os.chmod(self.cache_dir / "runtime", 0o755)
        self.runtime_dir = self._link_sdk()

    def _link_sdk(self) -> Path:
        """A directory holding only the ``puras`` package, for jobs' sys.path (not the platform's
        whole site-packages)."""
        runtime = self.cache_dir / "runtime"
        link = runtime / "puras"
        target = Path(puras.__file__).resolve().parent
        if not link.exists() or link.resolve() != target:
            tmp = runtime / f".puras-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            os.replace(tmp, link)
        return runtime

    def _lock(self, key: Any) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def prepare(self, deployment_id: UUID) -> Prepared:
        if (ready := self._prepared.get(deployment_id)) is not None:
            return ready
        async with (
            self._lock(deployment_id),
            host_lock(self.cache_dir / "deployments" / f".{deployment_id}.lock"),
        ):
            if (ready := self._prepared.get(deployment_id)) is not None:
                return ready
            prepared = await self._prepare(deployment_id)
            self._prepared[deployment_id] = prepared
            return prepared

    async def _prepare(self, deployment_id: UUID) -> Prepared:
        root = self.cache_dir / "deployments" / str(deployment_id)
        manifest_path = root / ".puras-manifest.json"
        if manifest_path.exists():
            manifest = orjson.loads(manifest_path.read_bytes())
        else:
            manifest = await self._describe(deployment_id)
            await self._fetch_and_extract(deployment_id, root)
            manifest_path.write_bytes(orjson.dumps(manifest))
        python, venv = self.python, None
        site: list[str] = []
        requirements = root / "project" / "requirements.txt"
        if requirements.is_file():
            sha = (
                manifest.get("requirements_sha256")
                or hashlib.sha256(requirements.read_bytes()).hexdigest()
            )
            python, site, venv = await self._venv(sha)
        skills = {s["name"]: s for s in manifest["skills"]}
        return Prepared(deployment_id, root / "project", skills, python, site, venv)

    async def _describe(self, deployment_id: UUID) -> dict[str, Any]:
        url = f"{self.deployments_url}/internal/deployments/{deployment_id}"
        response = await self.http.get(url, headers=self.headers)
        if response.status_code != 200:
            raise PrepareError(
                f"deployment {deployment_id}: deployments service answered {response.status_code}"
            )
        manifest: dict[str, Any] = response.json()
        return manifest

    async def _fetch_and_extract(self, deployment_id: UUID, root: Path) -> None:
        url = f"{self.deployments_url}/internal/deployments/{deployment_id}/bundle"
        fd, zip_name = tempfile.mkstemp(dir=self.cache_dir / "downloads", suffix=".zip")
        try:
            with os.fdopen(fd, "wb") as out:
                async with self.http.stream("GET", url, headers=self.headers) as response:
                    if response.status_code != 200:
                        raise PrepareError(
                            f"bundle of {deployment_id}: deployments service answered {response.status_code}"
                        )
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
            staging = Path(tempfile.mkdtemp(dir=self.cache_dir / "deployments", prefix=".staging-"))
            try:
                await asyncio.to_thread(extract, Path(zip_name), staging / "project")
            except ArchiveError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise PrepareError(f"bundle of {deployment_id} is unsafe: {exc}") from None
            await self._compile(staging / "project")
            _make_readable(staging)
            shutil.rmtree(root, ignore_errors=True)
            os.replace(staging, root)
        finally:
            os.unlink(zip_name)

    async def _compile(self, project: Path) -> None:
        """Byte-compile the bundle once, as the jobs (which cannot write there) would on every run."""
        proc = await asyncio.create_subprocess_exec(
            self.python,
            "-I",
            "-m",
            "compileall",
            "-q",
            str(project),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()

    async def _venv(self, sha: str) -> tuple[str, list[str], Path]:
        """The venv of a requirements.txt, installed once per host from the wheelhouse the
        deployments service built at push (offline: ``--no-index``), shared by every deployment
        with the same file."""
        venv = self.cache_dir / "venvs" / sha[:32]
        python = venv / "bin" / "python"
        async with (
            self._lock(("venv", sha)),
            host_lock(self.cache_dir / "venvs" / f".{sha[:32]}.lock"),
        ):
            if not (venv / ".ready").exists():
                shutil.rmtree(venv, ignore_errors=True)
                wheels = await self._fetch_wheelhouse(sha)
                try:
                    await self._install(venv, wheels)
                finally:
                    shutil.rmtree(wheels, ignore_errors=True)
                _make_readable(venv)
                (venv / ".ready").touch()
        site = sorted(str(p) for p in (venv / "lib").glob("python*/site-packages"))
        return str(python), site, venv

    async def _fetch_wheelhouse(self, sha: str) -> Path:
        url = f"{self.deployments_url}/internal/builds/{sha}/wheelhouse"
        fd, tar_name = tempfile.mkstemp(dir=self.cache_dir / "downloads", suffix=".tar")
        try:
            with os.fdopen(fd, "wb") as out:
                async with self.http.stream("GET", url, headers=self.headers) as response:
                    if response.status_code != 200:
                        raise PrepareError(
                            f"wheelhouse of requirements.txt {sha[:12]}: deployments service answered {response.status_code}"
                        )
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
            target = Path(tempfile.mkdtemp(dir=self.cache_dir / "downloads", prefix="wheels-"))
            await asyncio.to_thread(_untar_wheels, Path(tar_name), target)
            return target
        finally:
            os.unlink(tar_name)

    async def _install(self, venv: Path, wheels: Path) -> None:
        uv = _uv()
        found = sorted(str(w) for w in wheels.glob("*.whl"))
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.cache_dir),
            "UV_CACHE_DIR": str(self.cache_dir / "downloads" / "uv-cache"),
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
        }
        commands = [[uv, "venv", "--quiet", "--python", self.python, str(venv)]]
        if found:
            # Wheels only: installing runs none of the packages' code.
            commands.append(
                [
                    uv,
                    "pip",
                    "install",
                    "--quiet",
                    "--no-index",
                    "--find-links",
                    str(wheels),
                    "--python",
                    str(venv / "bin" / "python"),
                    *found,
                ]
            )
        for cmd in commands:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
            )
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise PrepareError(
                    f"installing requirements.txt failed:\n{out.decode(errors='replace')[-4000:]}"
                )

    async def fork_server(
        self,
        prepared: Prepared,
        *,
        workspace_id: UUID | None = None,
        network: bool = True,
        rw_binds: Sequence[str] = (),
        owner: tuple[int, int] | None = None,
    ) -> ForkServer:
        """The warm fork server for jobs of this deployment (and, sandboxed, of this workspace
        with this network policy), started on first use. ``rw_binds`` are more paths of the
        workspace its sandbox gets read-write (the workspace's drive folder), beside those of
        the ``workspace_binds`` hook. ``owner`` is the uid and gid its jobs run as (the
        workspace's own), instead of the configured ones."""
        if self.sandboxed and workspace_id is None:
            raise ValueError("a sandboxed fork server is per workspace: pass workspace_id")
        key: tuple[Any, ...] = (
            (prepared.deployment_id, workspace_id, network, owner)
            if self.sandboxed
            else (prepared.deployment_id, owner)
        )
        server = self._servers.get(key)
        if server is not None and server.alive:
            self._servers.move_to_end(key)
            self._used[key] = time.monotonic()
            return server
        async with self._lock(("server", *key)):
            server = self._servers.get(key)
            if server is not None and server.alive:
                return server
            name = f"deployment-{prepared.deployment_id}" + (
                f"-{workspace_id}" if self.sandboxed else ""
            )
            isolation = (
                self._isolation(prepared, workspace_id, network, rw_binds)
                if workspace_id is not None and self.sandboxed
                else None
            )
            port = self._egress_ports.pop(key, None)
            if port is not None:
                await port.close()
            server, port = await self._start(
                prepared, isolation, name=name, owner=str(workspace_id), run_as=owner
            )
            if port is not None:
                self._egress_ports[key] = port
            self._servers[key] = server
            self._used[key] = time.monotonic()
            self._evict(keep=key)
            return server

    async def job_server(
        self,
        prepared: Prepared,
        *,
        workspace_id: UUID,
        job_id: UUID,
        workdir: Path,
        network: bool = True,
        rw_binds: Sequence[str] = (),
        owner: tuple[int, int] | None = None,
        limits: Limits | None = None,
        python_calls: bool = True,
    ) -> JobServer:
        """A fork server of one job's own, started now; the caller closes it when the job
        ends. An agent job holds one for its lifetime: its bash commands and tools are forked
        from it, so what one step leaves (files in ``/tmp``) is there for the next. Its zygote
        holds the job's ``limits`` itself, so in bubblewrap a command is spawned without a fork
        of it (see :class:`ForkServer`). Without ``python_calls`` (a job whose only tool in the
        sandbox is ``bash``) the zygote does not import the in-skill SDK: nothing forked from it
        would use it, and the sandbox is ready in about half the time. In
        bubblewrap its sandbox sees, writable, only the job's ``workdir`` and ``rw_binds`` (the
        workspace's drive folder), and only its own processes; the deployment, its venv and the
        SDK read-only; nothing else of the host; its network is the egress proxy's, as for
        function jobs."""
        isolation = None
        if self.sandboxed:
            isolation = Isolation(
                ro_binds=self._read_only(prepared),
                rw_binds=(str(workdir), *rw_binds),
                network=network,
            )
        server, port = await self._start(
            prepared,
            isolation,
            name=f"job-{job_id}",
            prefork=False,
            owner=str(workspace_id),
            run_as=owner,
            limits=limits,
            preload=SDK_PRELOAD if python_calls else (),
        )
        return JobServer(server, port)

    async def _start(
        self,
        prepared: Prepared,
        isolation: Isolation | None,
        *,
        name: str,
        prefork: bool = True,
        owner: str | None = None,
        run_as: tuple[int, int] | None = None,
        limits: Limits | None = None,
        preload: tuple[str, ...] = SDK_PRELOAD,
    ) -> tuple[ForkServer, EgressPort | None]:
        """Start a fork server, as ``run_as`` (uid, gid) when given; a sandbox with network gets
        its own egress port (its only way out) when an egress policy is set. The egress ports of
        one ``owner`` (a workspace) share one connection limit."""
        port = None
        if isolation is not None and isolation.network and self.egress is not None:
            port = EgressPort(self.cache_dir / "egress", self.egress, name=name, owner=owner)
            isolation = dataclasses.replace(
                isolation, network=False, egress_socket=port.socket_path
            )
        server = ForkServer(
            python=prepared.python,
            sys_path=[str(self.runtime_dir), *prepared.site_packages],
            preload=preload,
            uid=run_as[0] if run_as is not None else self.uid,
            gid=run_as[1] if run_as is not None else self.gid,
            isolation=isolation,
            prefork=prefork,
            name=name,
            limits=limits,
        )
        try:
            await server.start()
            if port is not None:
                await port.ready()
        except BaseException:
            await _close_both(server, port)
            raise
        return server, port

    def _evict(self, *, keep: tuple[Any, ...]) -> None:
        """Stop the least recently used idle fork servers beyond ``max_warm``; one with jobs
        running is kept (closing it would kill them), so the limit may be passed for a while."""
        idle = [k for k, s in self._servers.items() if s.live_children == 0 and k != keep]
        for key in idle[: max(0, len(self._servers) - self.max_warm)]:
            self._stop(key)

    def _stop(self, key: tuple[Any, ...]) -> None:
        self._used.pop(key, None)
        closing = asyncio.create_task(
            _close_both(self._servers.pop(key), self._egress_ports.pop(key, None))
        )
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def stop_idle(self) -> int:
        """Stop the fork servers without jobs that were not used for ``idle_seconds``."""
        cutoff = time.monotonic() - self.idle_seconds
        stale = [
            k
            for k, s in self._servers.items()
            if s.live_children == 0 and self._used.get(k, 0.0) < cutoff
        ]
        for key in stale:
            self._stop(key)
        return len(stale)

    async def stop_idle_forever(self, *, every: float = 30.0) -> None:
        """Run :meth:`stop_idle` periodically, for the life of the service."""
        while True:
            await asyncio.sleep(every)
            self.stop_idle()

    def work_dir(self, workspace_id: UUID) -> Path:
        """Where the workspace's job workdirs are made: the only place its sandboxes may write."""
        path = self.cache_dir / "work" / str(workspace_id)
        if not path.is_dir():
            path.mkdir(mode=0o711, exist_ok=True)
            os.chmod(path, 0o711)
        return path

    def _isolation(
        self, prepared: Prepared, workspace_id: UUID, network: bool, extra_rw: Sequence[str]
    ) -> Isolation:
        """Read-only: the system, the deployment, its venv and the SDK; read-write: the
        workspace's work directory (and what the ``workspace_binds`` hook adds); nothing else."""
        ro = self._read_only(prepared)
        rw = [str(self.work_dir(workspace_id)), *self.workspace_binds(workspace_id), *extra_rw]
        return Isolation(ro_binds=ro, rw_binds=tuple(rw), network=network)

    def _read_only(self, prepared: Prepared) -> tuple[str, ...]:
        """What every sandbox of a deployment sees read-only: the deployment, the SDK, the venv."""
        ro = [str(prepared.root), str(self.runtime_dir), str(Path(puras.__file__).resolve().parent)]
        if prepared.venv is not None:
            ro.append(str(prepared.venv))
        return tuple(ro)

    def job_env(self, *, network: bool) -> dict[str, str]:
        """What a job's environment needs for its network: the egress proxy, in a sandbox."""
        return dict(PROXY_ENV) if network and self.sandboxed and self.egress is not None else {}

    async def close(self) -> None:
        for server in self._servers.values():
            await server.close()
        self._servers.clear()
        for port in self._egress_ports.values():
            await port.close()
        self._egress_ports.clear()


@dataclass
class JobServer:
    """A job's own fork server (:meth:`Deployments.job_server`) and its egress port, if any."""

    server: ForkServer
    port: EgressPort | None = None

    async def close(self) -> None:
        """Stop the server, everything running in it, and its way out."""
        await _close_both(self.server, self.port)


async def _close_both(server: ForkServer, port: EgressPort | None) -> None:
    await server.close()
    if port is not None:
        await port.close()


@contextlib.asynccontextmanager
async def host_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive lock shared by every runner process on this host (they share the cache)."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _make_readable(root: Path) -> None:
    """Directories traversable and files readable by the unprivileged job uid."""
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)


def _untar_wheels(tar_path: Path, target: Path) -> None:
    """Extract only regular ``*.whl`` members, flat, with the standard library's data filter."""
    with tarfile.open(tar_path) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.isfile() and "/" not in m.name and m.name.endswith(".whl")
        ]
        tar.extractall(target, members=members, filter="data")
