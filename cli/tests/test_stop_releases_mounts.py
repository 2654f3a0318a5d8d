"""Stopping the platform lets go of what a runner killed at the end of its grace left mounted
under the state folder, rather than leaving it to the next runner to start (there may be none:
a test's or a benchmark's throw-away state folder is removed right after)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from puras_cli.platform import runner_caches
from puras_cli.supervisor import Supervisor
from puras_cli.up import stop_all
from puras_jobhost import overlay

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def _mounts_under(folder: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        return [
            line.split()[4] for line in info if line.split()[4].startswith(f"{folder.resolve()}/")
        ]


async def test_a_killed_runners_mounts_are_released_when_the_platform_stops(
    tmp_path: Path,
) -> None:
    home = tmp_path / ".puras"
    work = runner_caches(home)[0] / "work"
    lower = tmp_path / "workspace"
    lower.mkdir()
    # What a function runner holds while a job runs: the work folder's shared bind, its scratch
    # (a memory file system) and the job's drive, an overlay whose writes land in the scratch.
    shared = overlay.SharedRoot(work)
    scratch = overlay.Scratch(work / ".overlays", memory_bytes=1024 * 1024)
    upper, scratch_work = scratch.path / "job" / "upper", scratch.path / "job" / "work"
    upper.mkdir(parents=True)
    scratch_work.mkdir()
    drive = work / "ws" / "job.1" / "drive"
    drive.mkdir(parents=True)
    overlay.mount_overlay(lower=lower, upper=upper, work=scratch_work, target=drive)
    # Killed: its locks are free, its mounts stay.
    os.close(scratch._lock)
    os.close(shared._users)
    assert len(_mounts_under(home)) == 3

    await stop_all(Supervisor(out=io.StringIO(), color=False), grace=1.0, home=home)

    assert _mounts_under(home) == []
    assert not scratch.path.exists()
