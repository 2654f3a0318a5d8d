"""Preparing deployments on this host, once each: fetch the bundle from the deployments
service, extract it safely, build its venv (one per distinct requirements.txt), and keep one
warm fork server per deployment to fork its jobs from."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import orjson
import puras
from puras_common.archive import ArchiveError, extract
from puras_common.logging import get_logger
from puras_sandbox import ForkServer

log = get_logger("puras_function_runner.prepare")


class PrepareError(RuntimeError):
    """The deployment could not be made ready to run on this host."""


@dataclass
class Prepared:
    deployment_id: UUID
    root: Path
    skills: dict[str, dict[str, Any]]
    python: str
    site_packages: list[str] = field(default_factory=list)


def _uv() -> str:
    candidate = Path(sys.executable).parent / "uv"
    found = str(candidate) if candidate.exists() else shutil.which("uv")
    if not found:
        raise PrepareError("uv is not installed next to the runner; cannot build requirements.txt venvs")
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
    ) -> None:
        self.cache_dir = cache_dir.resolve()
        self.deployments_url = deployments_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = http
        self.uid = uid
        self.gid = gid
        self.max_warm = max_warm
        self.python = python
        """The interpreter jobs run on (and venvs are built from)."""
        self._prepared: dict[UUID, Prepared] = {}
        self._locks: dict[Any, asyncio.Lock] = {}
        self._servers: OrderedDict[UUID, ForkServer] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        for sub in ("deployments", "venvs", "work", "runtime", "downloads"):
            (self.cache_dir / sub).mkdir(parents=True, exist_ok=True)
        # Jobs run as an unprivileged uid: they may traverse to what they need, list nothing.
        for path in (self.cache_dir, *(self.cache_dir / s for s in ("deployments", "venvs", "work", "runtime"))):
            os.chmod(path, 0o711)
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
        async with self._lock(deployment_id), host_lock(self.cache_dir / "deployments" / f".{deployment_id}.lock"):
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
        python, site = self.python, []
        requirements = root / "project" / "requirements.txt"
        if requirements.is_file():
            python, site = await self._venv(requirements)
        skills = {s["name"]: s for s in manifest["skills"]}
        return Prepared(deployment_id, root / "project", skills, python, site)

    async def _describe(self, deployment_id: UUID) -> dict[str, Any]:
        url = f"{self.deployments_url}/internal/deployments/{deployment_id}"
        response = await self.http.get(url, headers=self.headers)
        if response.status_code != 200:
            raise PrepareError(f"deployment {deployment_id}: deployments service answered {response.status_code}")
        return response.json()

    async def _fetch_and_extract(self, deployment_id: UUID, root: Path) -> None:
        url = f"{self.deployments_url}/internal/deployments/{deployment_id}/bundle"
        fd, zip_name = tempfile.mkstemp(dir=self.cache_dir / "downloads", suffix=".zip")
        try:
            with os.fdopen(fd, "wb") as out:
                async with self.http.stream("GET", url, headers=self.headers) as response:
                    if response.status_code != 200:
                        raise PrepareError(f"bundle of {deployment_id}: deployments service answered {response.status_code}")
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
            self.python, "-I", "-m", "compileall", "-q", str(project),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()

    async def _venv(self, requirements: Path) -> tuple[str, list[str]]:
        """The venv for this requirements.txt, built once per distinct file and shared."""
        digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:32]
        venv = self.cache_dir / "venvs" / digest
        python = venv / "bin" / "python"
        async with self._lock(("venv", digest)), host_lock(self.cache_dir / "venvs" / f".{digest}.lock"):
            if not (venv / ".ready").exists():
                shutil.rmtree(venv, ignore_errors=True)
                uv = _uv()
                for cmd in (
                    [uv, "venv", "--quiet", "--python", self.python, str(venv)],
                    [uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(requirements)],
                ):
                    proc = await asyncio.create_subprocess_exec(
                        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
                    )
                    out, _ = await proc.communicate()
                    if proc.returncode != 0:
                        shutil.rmtree(venv, ignore_errors=True)
                        raise PrepareError(f"installing requirements.txt failed:\n{out.decode(errors='replace')[-4000:]}")
                _make_readable(venv)
                (venv / ".ready").touch()
        site = sorted(str(p) for p in (venv / "lib").glob("python*/site-packages"))
        return str(python), site

    async def fork_server(self, prepared: Prepared) -> ForkServer:
        """The deployment's warm fork server, started on first use."""
        server = self._servers.get(prepared.deployment_id)
        if server is not None and server.alive:
            self._servers.move_to_end(prepared.deployment_id)
            return server
        async with self._lock(("server", prepared.deployment_id)):
            server = self._servers.get(prepared.deployment_id)
            if server is not None and server.alive:
                return server
            server = ForkServer(
                python=prepared.python,
                sys_path=[str(self.runtime_dir), *prepared.site_packages],
                preload=("json",),
                uid=self.uid,
                gid=self.gid,
                name=f"deployment-{prepared.deployment_id}",
            )
            await server.start()
            self._servers[prepared.deployment_id] = server
            while len(self._servers) > self.max_warm:
                _, oldest = self._servers.popitem(last=False)
                closing = asyncio.create_task(oldest.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            return server

    async def close(self) -> None:
        for server in self._servers.values():
            await server.close()
        self._servers.clear()


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
