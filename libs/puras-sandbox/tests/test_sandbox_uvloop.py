"""The platform's services run on uvloop, whose pipe transports differ from asyncio's: a child's
output and its end must be seen there too."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

uvloop = pytest.importorskip("uvloop")

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, uvloop
    from puras_sandbox import ForkServer, PythonCall

    async def main(skill_dir, workdir):
        async with ForkServer(python=sys.executable, sys_path=[], name="uvloop") as fs:
            child = await fs.spawn(PythonCall(skill_dir, "main", "run", b'{"n": 2}'), workdir=workdir, env={})
            out = await asyncio.wait_for(child.stdout.read(), 10)
            outcome = await asyncio.wait_for(child.wait(), 10)
            print(out.decode().strip(), outcome.exit_code, outcome.result["value"])

    uvloop.run(main(sys.argv[1], sys.argv[2]))
    """
)


def test_spawn_and_wait_complete_under_uvloop(shared_dir: Path) -> None:
    skill = shared_dir / "skill"
    skill.mkdir()
    (skill / "main.py").write_text(
        "def run(inputs):\n    print('working')\n    return inputs['n'] * 21\n"
    )
    work = shared_dir / "work"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(skill), str(work)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["working", "0", "42"]


CLOSES = textwrap.dedent(
    """
    import asyncio, sys, uvloop
    from puras_sandbox import ForkServer, PythonCall

    async def main(skill_dir, workdir):
        async with ForkServer(python=sys.executable, sys_path=[], name="closes") as fs:
            for _ in range(5):
                child = await fs.spawn(
                    PythonCall(skill_dir, "main", "run", b'{"n": 1}'), workdir=workdir, env={}
                )
                await asyncio.wait_for(child.wait(), 10)

    uvloop.run(main(sys.argv[1], sys.argv[2]))
    """
)


def test_every_pipe_end_is_closed_once(shared_dir: Path) -> None:
    """A second close of a pipe's number closes whatever another thread opened under it
    meanwhile: a drive walk or a workdir removal then fails with EBADF. Under strace, no
    ``close`` of the platform's process may fail."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (make test installs it when run as root)")
    skill = shared_dir / "skill"
    skill.mkdir()
    (skill / "main.py").write_text("def run(inputs):\n    print('out')\n    return inputs\n")
    work = shared_dir / "work"
    work.mkdir()
    trace = shared_dir / "trace"
    result = subprocess.run(
        [
            strace,
            "-Z",
            "-qq",
            "-e",
            "trace=close",
            "-e",
            "signal=none",
            "-o",
            str(trace),
            sys.executable,
            "-c",
            CLOSES,
            str(skill),
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    failed = [line for line in trace.read_text().splitlines() if "EBADF" in line]
    assert failed == []
