"""Drive paths: a corpus of hostile paths, none of which may name anything outside the caller's
workspace, and the normal forms ordinary paths take."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from puras_drive import paths
from puras_drive.storage.local import LocalBackend
from puras_testing.drive import HOSTILE_PATHS as HOSTILE
from puras_testing.drive import SAFE_FOLDS

WS = uuid.UUID("0190c0de-0000-7000-8000-000000000001")
OTHER = uuid.UUID("0190c0de-0000-7000-8000-000000000002")


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_paths_are_refused_or_stay_inside_the_workspace(raw: str) -> None:
    assert len(HOSTILE) >= 30
    try:
        checked = paths.resolve(WS, raw)
    except paths.InvalidPath as exc:
        assert exc.status == 400
        assert "?path" in str(exc.details)
        return
    assert raw in SAFE_FOLDS, f"{raw!r} was accepted as {checked.path!r}"
    assert checked.key.startswith(f"{WS}/") and ".." not in checked.key.split("/")


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_paths_never_reach_a_file_outside_the_workspace_on_disk(
    raw: str, tmp_path: Path
) -> None:
    root = tmp_path / "drive"
    (root / str(WS)).mkdir(parents=True)
    (root / str(OTHER)).mkdir()
    (root / str(OTHER) / "secret.txt").write_text("theirs")
    (tmp_path / "secret.txt").write_text("host")
    try:
        checked = paths.resolve(WS, raw)
    except paths.InvalidPath:
        return
    target = (root / checked.key).resolve()
    assert target.is_relative_to((root / str(WS)).resolve())


@pytest.mark.parametrize(
    ("raw", "expected", "folder"),
    [
        ("uploads/a.jpg", "uploads/a.jpg", False),
        ("./uploads//a.jpg", "uploads/a.jpg", False),
        ("uploads/", "uploads", True),
        ("renders/2024/", "renders/2024", True),
        ("e\u0301t\u00e9.txt", "\u00e9t\u00e9.txt", False),  # NFD in, NFC out
        ("100% real.txt", "100% real.txt", False),
        ("a b/c-d_e.f.txt", "a b/c-d_e.f.txt", False),
        ("日本語/ファイル.png", "日本語/ファイル.png", False),
        (f"{WS}/own/prefix.txt", "own/prefix.txt", False),
        (f"{OTHER}/x.txt", f"{OTHER}/x.txt", False),  # another id is only a folder name here
    ],
)
def test_ordinary_paths_normalise(raw: str, expected: str, folder: bool) -> None:
    checked = paths.resolve(WS, raw)
    assert (checked.path, checked.folder) == (expected, folder)
    assert checked.key == f"{WS}/{expected}"


def test_the_root_is_a_folder_only_where_allowed() -> None:
    assert paths.resolve(WS, "", allow_root=True).prefix == f"{WS}/"
    assert paths.resolve(WS, str(WS), allow_root=True).path == ""
    with pytest.raises(paths.InvalidPath):
        paths.resolve(WS, "")


def test_limits_are_stated_in_the_message() -> None:
    with pytest.raises(paths.InvalidPath) as caught:
        paths.resolve(WS, "a/" * 600 + "b")
    assert "1024 bytes" in caught.value.message
    with pytest.raises(paths.InvalidPath) as caught:
        paths.resolve(WS, "x" * 256)
    assert "255 bytes" in caught.value.message


async def test_the_local_backend_never_follows_a_link_a_job_made(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "drive")
    await backend.start()
    ws = backend.workspace_dir(f"{WS}/")
    other = backend.workspace_dir(f"{OTHER}/")
    (other / "secret.txt").write_text("theirs")
    (tmp_path / "host.txt").write_text("host")
    os.symlink(other / "secret.txt", ws / "link.txt")
    os.symlink(other, ws / "linkdir")
    os.symlink(tmp_path, ws / "up")
    assert await backend.stat(f"{WS}/link.txt") is None
    assert await backend.stat(f"{WS}/linkdir/secret.txt") is None
    assert await backend.stat(f"{WS}/up/host.txt") is None
    listing = await backend.children(f"{WS}/")
    assert listing.files == [] and listing.folders == []
    assert [o.key async for o in backend.walk(f"{WS}/")] == []

    async def data():
        yield b"overwrite?"

    with pytest.raises(paths.ApiError):
        await backend.write(f"{WS}/linkdir/secret.txt", data(), content_type="text/plain")
    await backend.delete([f"{WS}/link.txt", f"{WS}/linkdir/secret.txt"])
    assert (other / "secret.txt").read_text() == "theirs"
    # Writing over a link replaces the link itself, never the file it points at.
    await backend.write(f"{WS}/link.txt", data(), content_type="text/plain")
    assert (ws / "link.txt").read_text() == "overwrite?" and not (ws / "link.txt").is_symlink()
    assert (other / "secret.txt").read_text() == "theirs"


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership changes need root")
async def test_workspace_files_belong_to_the_jobs_uid(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "drive", owner=(65534, 65534))
    await backend.start()

    async def data():
        yield b"x"

    await backend.write(f"{WS}/a/b.txt", data(), content_type="text/plain")
    for path in (
        tmp_path / "drive" / str(WS),
        tmp_path / "drive" / str(WS) / "a",
        tmp_path / "drive" / str(WS) / "a" / "b.txt",
    ):
        assert (path.stat().st_uid, path.stat().st_mode & 0o077) == (65534, 0), path
    assert (tmp_path / "drive").stat().st_mode & 0o777 == 0o711
