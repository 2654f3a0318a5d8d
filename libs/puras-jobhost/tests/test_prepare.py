"""The runner's host cache: warm fork servers are kept per deployment (and, in bubblewrap, per
workspace), a busy one is never stopped to make room, and a wheelhouse yields only wheels."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import sys
import tarfile
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from puras_jobhost.prepare import Deployments, Prepared, _untar_wheels
from puras_sandbox import PythonCall, bwrap_available
from puras_testing import eventually

SLEEPER = (
    "import time\n\ndef run(inputs):\n    time.sleep(inputs.get('seconds', 0))\n    return 'done'\n"
)


@pytest.fixture
def cache() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="puras-runner-test-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="session")
async def deployments(cache: Path) -> AsyncIterator[Deployments]:
    async with httpx.AsyncClient() as http:
        d = Deployments(
            cache_dir=cache,
            deployments_url="http://unused.invalid",
            token="t",
            http=http,
            uid=None,
            gid=None,
            max_warm=1,
            python=sys.executable,
        )
        try:
            yield d
        finally:
            await d.close()


def prepared(cache: Path, python: str = sys.executable) -> Prepared:
    deployment_id = uuid.uuid4()
    root = cache / "deployments" / str(deployment_id) / "project"
    (root / "skills" / "sleep").mkdir(parents=True)
    (root / "skills" / "sleep" / "main.py").write_text(SLEEPER)
    return Prepared(deployment_id, root, {"sleep": {"name": "sleep"}}, python)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_busy_fork_server_is_not_stopped_to_make_room(
    deployments: Deployments, cache: Path
) -> None:
    first, second, third = prepared(cache), prepared(cache), prepared(cache)
    busy = await deployments.fork_server(first)
    workdir = cache / "work"
    child = await busy.spawn(
        PythonCall(str(first.root / "skills" / "sleep"), "main", "run", b'{"seconds": 1}'),
        workdir=str(workdir),
        env={},
    )
    await deployments.fork_server(second)  # over max_warm=1, but the first is running a job
    outcome = await asyncio.wait_for(child.wait(), 30)
    assert outcome.result == {"ok": True, "value": "done"}
    assert busy.alive
    await deployments.fork_server(third)  # now the idle ones go, least recently used first
    assert not busy.alive or busy not in deployments._servers.values()
    assert len(deployments._servers) == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_sandboxed_fork_servers_are_per_workspace_and_network(cache: Path) -> None:
    uid = 65534 if os.geteuid() == 0 else None
    if not bwrap_available(uid, uid):
        pytest.skip("bubblewrap is not available here")
    from puras_sandbox import python_for

    async with httpx.AsyncClient() as http:
        d = Deployments(
            cache_dir=cache,
            deployments_url="http://unused.invalid",
            token="t",
            http=http,
            uid=uid,
            gid=uid,
            max_warm=8,
            python=python_for(uid, uid),
            sandboxed=True,
        )
        try:
            p = prepared(cache, python_for(uid, uid))
            for path in (
                p.root.parent.parent,
                p.root.parent,
                p.root,
                p.root / "skills",
                p.root / "skills" / "sleep",
            ):
                path.chmod(0o755)
            (p.root / "skills" / "sleep" / "main.py").chmod(0o644)
            a, b = uuid.uuid4(), uuid.uuid4()
            server_a = await d.fork_server(p, workspace_id=a)
            assert await d.fork_server(p, workspace_id=a) is server_a
            assert await d.fork_server(p, workspace_id=b) is not server_a
            assert await d.fork_server(p, workspace_id=a, network=False) is not server_a
            assert oct(d.work_dir(a).stat().st_mode & 0o777) == "0o711"
            with pytest.raises(ValueError, match="per workspace"):
                await d.fork_server(p)
        finally:
            await d.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_fork_servers_unused_for_a_while_are_stopped(
    deployments: Deployments, cache: Path
) -> None:
    warm = await deployments.fork_server(prepared(cache))
    assert deployments.stop_idle() == 0  # used just now
    deployments.idle_seconds = 0.0
    assert deployments.stop_idle() == 1
    await eventually(lambda: not warm.alive, what="the idle fork server to stop")
    assert deployments._servers == {}


def test_a_wheelhouse_yields_only_its_wheels(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (
            ("good-1.0-py3-none-any.whl", b"wheel"),
            ("notes.txt", b"x"),
            ("sub/other-1.0-py3-none-any.whl", b"y"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("evil-1.0-py3-none-any.whl")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        tar.addfile(link)
    archive = tmp_path / "wheelhouse.tar"
    archive.write_bytes(buffer.getvalue())
    out = tmp_path / "out"
    out.mkdir()
    _untar_wheels(archive, out)
    assert sorted(p.name for p in out.iterdir()) == ["good-1.0-py3-none-any.whl"]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("python_calls", [True, False])
async def test_a_job_server_imports_the_sdk_only_for_python_calls(
    deployments: Deployments, cache: Path, python_calls: bool
) -> None:
    """A job whose sandbox runs only commands gets a zygote without the in-skill SDK, which is
    ready sooner; one with tools of its own (Python called in the sandbox) has it imported once,
    so no call pays for the import."""
    p = prepared(cache)
    probe = p.root / "skills" / "probe"
    probe.mkdir()
    (probe / "main.py").write_text(
        "import sys\n\ndef run(inputs):\n    return 'puras' in sys.modules\n"
    )
    workdir = cache / "job"
    workdir.mkdir()
    server = await deployments.job_server(
        p,
        workspace_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        workdir=workdir,
        python_calls=python_calls,
    )
    try:
        child = await server.server.spawn(
            PythonCall(str(probe), "main", "run", b"{}"), workdir=str(workdir), env={}
        )
        outcome = await asyncio.wait_for(child.wait(), 30)
        assert outcome.result == {"ok": True, "value": python_calls}
    finally:
        await server.close()
