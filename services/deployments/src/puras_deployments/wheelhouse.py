"""Building a requirements.txt into a wheelhouse, as tenant code: in the sandbox.

``pip wheel`` resolves the file and builds every package into wheels (running whatever
``setup.py`` the packages bring), then ``uv`` installs exactly those wheels, offline, into a
scratch venv to prove they install. Both run inside bubblewrap when it is available, always as
the unprivileged uid, with an environment that holds nothing of the platform's, the network
(pip needs it) and only their build directory writable. The wheels are then packed into one tar
that every runner installs from with ``--no-index``, so no host needs the index again.

The build directory is the tenant's: the packing side reads only regular ``*.whl`` files in it,
opened without following links.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pip
from puras_jobhost.egress import PROXY_ENV, EgressPolicy, EgressPort
from puras_sandbox import Exec, ForkServer, Isolation, Limits, SandboxError

WHEEL_NAME: Final = re.compile(r"^[A-Za-z0-9_.+!-]+\.whl$")
MAX_ERROR_CHARS: Final = 4000


class BuildFailed(Exception):
    """pip (or the install of its wheels) failed; the message is pip's own output."""


@dataclass(frozen=True)
class BuildSandbox:
    """How builds run on this host."""

    python: str
    """The interpreter the wheels are built for: the one jobs run on."""
    uid: int | None
    gid: int | None
    bwrap: bool
    tools_dir: Path
    """Holds only ``pip`` and ``uv`` (:func:`install_tools`), readable by the build uid."""
    timeout_seconds: int = 900
    memory_bytes: int = 4 * 1024 * 1024 * 1024
    max_wheelhouse_bytes: int = 1024 * 1024 * 1024
    extra_env: dict[str, str] = field(default_factory=dict)
    """Passed to pip as is: proxies and an index mirror the operator configured."""
    egress: EgressPolicy | None = None
    """In bubblewrap: the build's network namespace has no way out but an egress proxy
    applying this policy (:mod:`puras_jobhost.egress`), as a networked job's; ``None``: the
    host's network."""
    egress_dir: Path | None = None
    """Where the egress hand-over sockets are made (traversable by the build uid)."""


class BuildLog:
    """The output of a build, keeping the last ``limit`` characters (pip's errors come last)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: list[str] = []
        self._size = 0
        self.dropped = 0
        self.changed = False

    def write(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        self.changed = True
        if self._size > 2 * self.limit:
            self.text()

    def text(self) -> str:
        whole = "".join(self._parts)
        if len(whole) > self.limit:
            self.dropped += len(whole) - self.limit
            whole = whole[-self.limit :]
        self._parts, self._size = [whole], len(whole)
        return f"[{self.dropped} earlier characters not kept]\n{whole}" if self.dropped else whole


@dataclass(frozen=True)
class Built:
    wheels: int
    size: int


def install_tools(root: Path) -> Path:
    """A directory holding only copies of pip and uv, readable by every uid (once per version):
    the platform's own copies may sit where the build uid cannot reach them."""
    uv = _find_uv()
    tools = root / f"pip-{pip.__version__}-uv-{os.stat(uv).st_size}"
    if not (tools / "pip" / "__main__.py").exists():
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".tools-"))
        shutil.copytree(
            Path(pip.__file__).parent, staging / "pip", ignore=shutil.ignore_patterns("__pycache__")
        )
        for dirpath, _dirs, files in os.walk(staging):
            os.chmod(dirpath, 0o755)
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o644)
        try:
            os.link(uv, staging / "uv")  # 40 MB: share it when on the same filesystem
        except OSError:
            shutil.copy2(uv, staging / "uv")
        os.chmod(staging / "uv", 0o755)
        try:
            os.rename(staging, tools)
        except OSError:  # another replica got there first
            shutil.rmtree(staging, ignore_errors=True)
    return tools


def _find_uv() -> str:
    candidate = Path(sys.executable).parent / "uv"
    found = str(candidate) if candidate.exists() else shutil.which("uv")
    if not found:
        raise RuntimeError("uv is not installed next to the deployments service; builds need it")
    return str(Path(found).resolve())


async def build(
    sandbox: BuildSandbox, requirements: str, *, work_root: Path, output: Path, log: BuildLog
) -> Built:
    """Build ``requirements`` into the wheelhouse tar ``output``; :class:`BuildFailed` with pip's
    message when it cannot be installed."""
    work = Path(tempfile.mkdtemp(dir=work_root, prefix="build-"))
    try:
        for sub in ("wheelhouse", "tmp"):
            (work / sub).mkdir()
        (work / "requirements.txt").write_text(requirements)
        if sandbox.uid is not None:
            for path in (work, work / "wheelhouse", work / "tmp", work / "requirements.txt"):
                os.chown(path, sandbox.uid, sandbox.gid if sandbox.gid is not None else sandbox.uid)
        os.chmod(work, 0o700)
        async with _server(sandbox, work) as server:
            run = _Steps(sandbox, server, work, log)
            await asyncio.wait_for(run.all(), sandbox.timeout_seconds)
        return _pack(work / "wheelhouse", output, limit=sandbox.max_wheelhouse_bytes)
    except TimeoutError:
        raise BuildFailed(
            f"the build took longer than {sandbox.timeout_seconds} s and was stopped"
        ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.asynccontextmanager
async def _server(sandbox: BuildSandbox, work: Path) -> AsyncIterator[ForkServer]:
    isolation = None
    port: EgressPort | None = None
    if sandbox.bwrap:
        isolation = Isolation(
            ro_binds=(str(sandbox.tools_dir),), rw_binds=(str(work),), network=True
        )
        if _confined(sandbox):
            assert sandbox.egress is not None and sandbox.egress_dir is not None
            port = EgressPort(sandbox.egress_dir, sandbox.egress, name=f"build-{work.name}")
            isolation = dataclasses.replace(
                isolation, network=False, egress_socket=port.socket_path
            )
    server = ForkServer(
        python=sandbox.python,
        sys_path=[],
        uid=sandbox.uid,
        gid=sandbox.gid,
        isolation=isolation,
        name=f"build-{work.name}",
        prefork=False,
    )
    try:
        await server.start()
        if port is not None:
            await port.ready()
    except (SandboxError, OSError, TimeoutError) as exc:
        await server.close()
        if port is not None:
            await port.close()
        raise BuildFailed(f"the build sandbox could not start: {exc}") from None
    try:
        yield server
    finally:
        await server.close()
        if port is not None:
            await port.close()


def _confined(sandbox: BuildSandbox) -> bool:
    """Whether the build's network is the egress proxy: in bubblewrap, with a policy, and
    unless the operator routes builds through a proxy of their own (which the egress proxy
    does not chain to)."""
    own_proxy = any(k.upper() in ("HTTP_PROXY", "HTTPS_PROXY") for k in sandbox.extra_env)
    return sandbox.bwrap and sandbox.egress is not None and not own_proxy


class _Steps:
    def __init__(
        self, sandbox: BuildSandbox, server: ForkServer, work: Path, log: BuildLog
    ) -> None:
        self.sandbox = sandbox
        self.server = server
        self.work = work
        self.log = log
        self.env = {
            "PATH": f"{Path(sandbox.python).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(work),
            "TMPDIR": str(work / "tmp"),
            "LANG": "C.UTF-8",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "PIP_PROGRESS_BAR": "off",
            "PIP_CACHE_DIR": str(work / ".cache" / "pip"),
            "UV_CACHE_DIR": str(work / ".cache" / "uv"),
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            **sandbox.extra_env,
            **(PROXY_ENV if _confined(sandbox) else {}),
        }

    async def all(self) -> None:
        pip_dir = self.sandbox.tools_dir / "pip"
        await self.step(
            "pip wheel",
            [
                self.sandbox.python,
                "-I",
                str(pip_dir),
                "wheel",
                "--wheel-dir",
                "wheelhouse",
                "-r",
                "requirements.txt",
            ],
        )
        wheels = sorted(name for name, _size in _wheels(self.work / "wheelhouse"))
        if not wheels:
            self.log.write("requirements.txt names no packages: nothing to install.\n")
            return
        uv = str(self.sandbox.tools_dir / "uv")
        await self.step("uv venv", [uv, "venv", "--quiet", "--python", self.sandbox.python, "venv"])
        await self.step(
            "install check",
            [
                uv,
                "pip",
                "install",
                "--no-index",
                "--find-links",
                "wheelhouse",
                "--python",
                "venv/bin/python",
                *(f"wheelhouse/{w}" for w in wheels),
            ],
        )

    async def step(self, title: str, argv: list[str]) -> None:
        self.log.write(f"$ {title}\n")
        limits = Limits(
            address_space_bytes=self.sandbox.memory_bytes,
            file_size_bytes=self.sandbox.max_wheelhouse_bytes,
            open_files=4096,
            processes=1024,
        )
        captured = BuildLog(limit=64 * 1024)
        child = await self.server.spawn(
            Exec(argv), workdir=str(self.work), env=self.env, limits=limits
        )
        try:
            await asyncio.gather(
                self._follow(child.stdout, captured), self._follow(child.stderr, captured)
            )
            outcome = await child.wait()
        except BaseException:
            await child.kill()
            raise
        if outcome.exit_code != 0:
            how = (
                f"exit code {outcome.exit_code}"
                if outcome.exit_code is not None
                else f"signal {outcome.signal}"
            )
            raise BuildFailed(f"{title} failed ({how}):\n{_pip_error(captured.text())}")

    async def _follow(self, reader: asyncio.StreamReader, captured: BuildLog) -> None:
        while chunk := await reader.read(64 * 1024):
            text = chunk.decode("utf-8", errors="replace")
            captured.write(text)
            self.log.write(text)


def _pip_error(output: str) -> str:
    """The part of pip's output that says what went wrong: from its first ERROR line, or the tail."""
    lines = output.rstrip().splitlines()
    first = next(
        (i for i, line in enumerate(lines) if line.lstrip().lower().startswith("error")), None
    )
    chosen = lines[first:] if first is not None else lines[-15:]
    text = "\n".join(chosen)
    return text[-MAX_ERROR_CHARS:]


def _wheels(directory: Path) -> list[tuple[str, int]]:
    """Regular ``*.whl`` files directly in ``directory`` (links and everything else ignored)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return []
    try:
        found = []
        with os.scandir(fd) as entries:
            for entry in entries:
                if WHEEL_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                    found.append((entry.name, entry.stat(follow_symlinks=False).st_size))
        return found
    finally:
        os.close(fd)


def _pack(directory: Path, output: Path, *, limit: int) -> Built:
    """Tar the wheels (read without following links) into ``output``, atomically."""
    wheels = _wheels(directory)
    size = sum(s for _, s in wheels)
    if size > limit:
        raise BuildFailed(f"the built wheels total {size} bytes; the limit is {limit}")
    fd, tmp = tempfile.mkstemp(dir=output.parent, suffix=".tar")
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name, _ in sorted(wheels):
                wheel_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
                with os.fdopen(wheel_fd, "rb") as wheel:
                    st = os.fstat(wheel.fileno())
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    info = tarfile.TarInfo(name)
                    info.size = st.st_size
                    info.mode = 0o644
                    tar.addfile(info, wheel)
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(dir_fd)
    return Built(wheels=len(wheels), size=size)
