"""The platform's services run on uvloop, whose pipe transports differ from asyncio's: a child's
output and its end must be seen there too."""

from __future__ import annotations

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
    (skill / "main.py").write_text("def run(inputs):\n    print('working')\n    return inputs['n'] * 21\n")
    work = shared_dir / "work"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(skill), str(work)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["working", "0", "42"]
