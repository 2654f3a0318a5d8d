"""A job's drive overlay: reads the workspace's folder live, keeps its writes in its own upper
folder, and what a runner that died left mounted is unmounted and removed by the next one."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import httpx
import pytest
from puras_common.drive import DriveClient
from puras_jobhost import overlay
from puras_jobhost.workdrive import WorkDrives

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def _mount(scratch: Path, lower: Path, target: Path) -> Path:
    upper, work = scratch / "upper", scratch / "work"
    upper.mkdir(parents=True)
    work.mkdir()
    target.mkdir()
    overlay.mount_overlay(lower=lower, upper=upper, work=work, target=target)
    return upper


def test_reads_are_live_and_writes_land_in_the_upper_folder_only(tmp_path: Path) -> None:
    lower, target = tmp_path / "workspace", tmp_path / "drive"
    lower.mkdir()
    (lower / "old.txt").write_text("uploaded")
    upper = _mount(tmp_path / "scratch", lower, target)
    try:
        (lower / "later.txt").write_text("saved by another job")
        assert (target / "old.txt").read_text() == "uploaded"
        assert (target / "later.txt").read_text() == "saved by another job"
        (target / "mine.txt").write_text("mine")
        (target / "old.txt").write_text("changed")
        assert sorted(p.name for p in upper.iterdir()) == ["mine.txt", "old.txt"]
        assert (lower / "old.txt").read_text() == "uploaded"
        assert not (lower / "mine.txt").exists()
    finally:
        overlay.unmount(target)


def test_a_dead_runners_overlays_are_unmounted_and_removed_a_live_ones_kept(
    tmp_path: Path,
) -> None:
    lower, root = tmp_path / "workspace", tmp_path / ".overlays"
    lower.mkdir()
    root.mkdir()
    (root / "dead.lock").touch()  # no one holds it: its runner is gone
    _mount(root / "dead" / "job", lower, tmp_path / "dead-drive")
    live_lock = os.open(root / "live.lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(live_lock, fcntl.LOCK_EX)
    _mount(root / "live" / "job", lower, tmp_path / "live-drive")
    try:
        scratch = overlay.Scratch(root)
        assert overlay.sweep_gone(root) == ["dead"]
        assert overlay.mounts_with_upper_under(root / "dead") == []
        assert not (root / "dead").exists() and not (root / "dead.lock").exists()
        assert overlay.mounts_with_upper_under(root / "live") == [tmp_path / "live-drive"]
        # The new runner's own folder is kept: its lock is held.
        assert overlay.sweep_gone(root) == []
        assert scratch.path.is_dir()
    finally:
        overlay.unmount(tmp_path / "live-drive")
        os.close(live_lock)


def test_the_last_runner_out_unmounts_the_shared_work_folder(tmp_path: Path) -> None:
    work = tmp_path / "work"
    first, second = overlay.SharedRoot(work), overlay.SharedRoot(work)
    assert overlay.is_shared_mount(work)
    first.close()
    assert overlay.is_shared_mount(work)  # the second runner still uses it
    second.close()
    assert not overlay.is_shared_mount(work)


def test_a_scratch_in_memory_holds_the_jobs_writes_up_to_its_size_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """The upper folders live in a tmpfs of the configured size: a job's writes to ``./drive``
    pass through it, one that writes past it gets ENOSPC, and closing the runner's scratch
    detaches the tmpfs and removes its folder."""
    lower, root = tmp_path / "workspace", tmp_path / ".overlays"
    lower.mkdir()
    scratch = overlay.Scratch(root, memory_bytes=1024 * 1024)
    assert scratch.in_memory and os.path.ismount(scratch.path)
    target = tmp_path / "drive"
    upper = _mount(scratch.path / "job", lower, target)
    try:
        (target / "small.bin").write_bytes(b"x" * 100_000)
        assert (upper / "small.bin").stat().st_size == 100_000
        with pytest.raises(OSError) as full, open(target / "big.bin", "wb") as big:
            big.write(b"x" * 2 * 1024 * 1024)
            big.flush()
        assert full.value.errno == errno.ENOSPC
        assert not (lower / "small.bin").exists()
    finally:
        overlay.unmount(target)
    scratch.close()
    assert not os.path.ismount(scratch.path) and not scratch.path.exists()


def test_a_dead_runners_scratch_in_memory_is_detached_by_the_next(tmp_path: Path) -> None:
    lower, root = tmp_path / "workspace", tmp_path / ".overlays"
    lower.mkdir()
    dead = overlay.Scratch(root, memory_bytes=1024 * 1024)
    _mount(dead.path / "job", lower, tmp_path / "dead-drive")
    os.close(dead._lock)  # the runner died: its lock is free, its mounts stay
    assert overlay.sweep_gone(root) == [dead.path.name]
    assert overlay.mounts_with_upper_under(dead.path) == []
    assert not os.path.ismount(dead.path) and not dead.path.exists()


def test_a_runner_starting_detaches_a_killed_runners_scratch_before_any_job(
    tmp_path: Path,
) -> None:
    """A runner killed with jobs' writes in its scratch (a memory file system) leaves it
    mounted; the next runner on the host lets it go as it starts, not when it first runs a job
    (which may be never), so the memory and the mount do not outlive it."""
    lower, work = tmp_path / "workspace", tmp_path / "work"
    lower.mkdir()
    work.mkdir()
    shared = overlay.SharedRoot(work)
    dead = overlay.Scratch(work / ".overlays", memory_bytes=1024 * 1024)
    (work / "job").mkdir()  # a job's workdir, its drive an overlay
    _mount(dead.path / "job", lower, work / "job" / "drive")
    os.close(dead._lock)  # killed: its locks are free, its mounts stay
    os.close(shared._users)
    never_called = DriveClient("http://drive.invalid", token="-", client=httpx.AsyncClient())
    WorkDrives(never_called, owner=(0, 0), work_root=work)
    assert overlay.mounts_with_upper_under(dead.path) == []
    assert not os.path.ismount(dead.path) and not dead.path.exists()
    assert not overlay.is_shared_mount(work)


def test_a_runner_starting_keeps_the_work_folders_bind_another_runner_uses(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    alive = overlay.SharedRoot(work)
    try:
        never_called = DriveClient("http://drive.invalid", token="-", client=httpx.AsyncClient())
        WorkDrives(never_called, owner=(0, 0), work_root=work)
        assert overlay.is_shared_mount(work)
    finally:
        alive.close()
    assert not overlay.is_shared_mount(work)
