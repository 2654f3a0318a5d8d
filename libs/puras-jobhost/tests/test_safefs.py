"""File work on a tenant's tree by descriptor: a job that swaps folders and files for links
to the platform's files while the runner reads and writes, thousands of times, never gets a
platform byte read or a byte written outside its tree; special files are refused at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from puras_jobhost import safefs
from puras_jobhost.workdrive import walk_files

SECRET = b"platform-secret-0123456789"
TRIES = 3000

# Runs as its own process, as a job would: swaps the folder `sub` for a link to the platform's
# folder and back, and the file `g.txt` for a link to the platform's secret and back, as fast
# as it can, until the runner side says stop.
SWAPPER = textwrap.dedent(
    """
    import os, shutil, sys
    drive, outside, stop = sys.argv[1:4]
    os.chdir(drive)
    secret = os.path.join(outside, "secret.txt")

    def clear(name):
        if os.path.islink(name) or os.path.isfile(name):
            os.unlink(name)
        else:
            shutil.rmtree(name, ignore_errors=True)

    n = 0
    while not os.path.exists(stop):
        try:
            if os.path.lexists("g.tmp"):
                os.unlink("g.tmp")
            if os.path.lexists("sub.real"):  # the runner made a folder while it was away
                clear("sub")
                os.rename("sub.real", "sub")
            os.rename("sub", "sub.real")
            os.symlink(outside, "sub")
            os.symlink(secret, "g.tmp")
            os.rename("g.tmp", "g.txt")
            os.unlink("sub")
            os.rename("sub.real", "sub")
            with open("g.new", "wb") as f:
                f.write(b"tenant")
            os.rename("g.new", "g.txt")
            n += 1
        except OSError:
            continue
    print(n)
    """
)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    drive, outside = tmp_path / "drive", tmp_path / "platform"
    (drive / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "f.txt").write_bytes(SECRET)
    (drive / "sub" / "f.txt").write_bytes(b"tenant")
    (drive / "g.txt").write_bytes(b"tenant")
    yield drive, outside


def _swapping(drive: Path, outside: Path) -> tuple[subprocess.Popen[str], Path]:
    stop = drive.parent / "stop"
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(drive), str(outside), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    return swapper, stop


def test_a_concurrent_link_swap_never_leads_a_read_or_a_write_out_of_the_tree(
    tree: tuple[Path, Path],
) -> None:
    drive, outside = tree
    root = safefs.open_root(drive)
    swapper, stop = _swapping(drive, outside)
    outcomes: dict[str, int] = {}
    try:
        for i in range(TRIES):
            for rel in ("sub/f.txt", "g.txt"):
                try:
                    data = safefs.read_bytes(root, rel, max_bytes=1024)
                    outcome = "read"
                    assert SECRET not in data, f"try {i}: {rel} read the platform's file"
                except (safefs.UnsafePath, FileNotFoundError) as exc:
                    outcome = type(exc).__name__
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            try:
                with safefs.AtomicWrite(root, "sub/out.txt") as out:
                    out.file.write(b"written by the runner")
            except (safefs.UnsafePath, FileNotFoundError):
                pass
            for rel, _ in safefs.walk_files(root):
                try:
                    fd = safefs.open_regular(root, rel)
                except (safefs.UnsafePath, FileNotFoundError):
                    continue
                with os.fdopen(fd, "rb") as f:
                    assert SECRET not in f.read(), f"try {i}: the walk read {rel} outside"
    finally:
        stop.touch()
        swaps = int(swapper.communicate(timeout=60)[0])
        os.close(root)
    assert sorted(p.name for p in outside.iterdir()) == ["f.txt", "secret.txt"]
    assert (outside / "f.txt").read_bytes() == SECRET
    # The race was real: the swapper kept swapping throughout, and the runner was refused
    # by a link at some point and succeeded at others.
    assert swaps > 100
    assert outcomes.get("read", 0) > 0 and outcomes.get("UnsafePath", 0) > 0, outcomes


def test_a_link_at_the_target_of_a_write_is_replaced_not_written_through(
    tree: tuple[Path, Path],
) -> None:
    drive, outside = tree
    (drive / "sub" / "f.txt").unlink()
    (drive / "sub" / "f.txt").symlink_to(outside / "f.txt")
    root = safefs.open_root(drive)
    try:
        with safefs.AtomicWrite(root, "sub/f.txt") as out:
            out.file.write(b"new")
    finally:
        os.close(root)
    assert (outside / "f.txt").read_bytes() == SECRET
    assert not (drive / "sub" / "f.txt").is_symlink()
    assert (drive / "sub" / "f.txt").read_bytes() == b"new"


@pytest.mark.parametrize("where", ["g.txt", "sub/f.txt"])
def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(
    tree: tuple[Path, Path], where: str
) -> None:
    drive, _ = tree
    (drive / where).unlink()
    os.mkfifo(drive / where)
    root = safefs.open_root(drive)
    result: list[BaseException | bytes] = []

    def read() -> None:
        try:
            result.append(safefs.read_bytes(root, where, max_bytes=10))
        except BaseException as exc:
            result.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)
    try:
        assert not reader.is_alive(), "reading a FIFO blocked"
        (error,) = result
        assert isinstance(error, safefs.UnsafePath) and "not a regular file" in str(error)
        assert where not in [rel for rel, _ in safefs.walk_files(root)]
    finally:
        os.close(root)


def test_a_tree_whose_root_is_a_link_is_not_walked(tree: tuple[Path, Path]) -> None:
    drive, outside = tree
    link = drive.parent / "link"
    link.symlink_to(outside)
    assert list(walk_files(link)) == []
    with pytest.raises(OSError):
        safefs.open_root(link)


@pytest.mark.parametrize("rel", ["", "..", "a/../b", "/etc/passwd", "a//b", "./a"])
def test_paths_that_are_not_plain_and_relative_are_refused(
    tree: tuple[Path, Path], rel: str
) -> None:
    drive, _ = tree
    root = safefs.open_root(drive)
    try:
        with pytest.raises(safefs.UnsafePath):
            safefs.read_bytes(root, rel, max_bytes=10)
    finally:
        os.close(root)


def test_a_look_for_any_entry_leaves_the_folder_whole_for_the_walk_after_it(
    tmp_path: Path,
) -> None:
    """A job's upper folder is checked for any entry before it is walked: the check reads
    through the same descriptor, and the walk after it still finds every file."""
    folder = tmp_path / "upper"
    folder.mkdir()
    fd = safefs.open_root(folder)
    try:
        assert safefs.is_empty(fd)
        for name in ("a.txt", "b.txt", "c.txt"):
            (folder / name).write_text(name)
        assert not safefs.is_empty(fd)
        assert not safefs.is_empty(fd)
        assert sorted(rel for rel, _ in safefs.walk_files(fd)) == ["a.txt", "b.txt", "c.txt"]
    finally:
        os.close(fd)
