"""``load_bytes`` / ``load_path``: every input shape, bare strings told apart, paths that would
leave the drive refused, URLs fetched under the guard."""

from __future__ import annotations

import base64
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from puras import InputError, load_bytes, load_path
from puras_testing.ssrf import LoopbackSite, loopback_site

PNG = b"\x89PNG\r\n\x1a\nfake image bytes"
WS = str(uuid.uuid4())


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A job's working directory with a ``drive`` folder holding one upload."""
    (tmp_path / "drive" / "uploads").mkdir(parents=True)
    (tmp_path / "drive" / "uploads" / "a.png").write_bytes(PNG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("PURAS_WORKSPACE_ID", WS)
    for name in ("PURAS_DRIVE_DIR", "PURAS_DRIVE_FETCHED", "PURAS_JOB_TOKEN", "PURAS_SSRF_ALLOW"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def site() -> Iterator[LoopbackSite]:
    with loopback_site(body=PNG) as running:
        yield running


def test_inline_data_in_every_spelling(job: Path) -> None:
    b64 = base64.b64encode(PNG).decode()
    for value in (
        {"data": b64},
        {"data": f"data:image/png;base64,{b64}"},
        {"base64": b64, "media_type": "image/png"},
        f"data:image/png;base64,{b64}",
        b64,
        base64.urlsafe_b64encode(PNG).decode().rstrip("="),
        PNG,
    ):
        assert load_bytes(value) == PNG, value
    assert load_bytes("data:text/plain,hello%20world") == b"hello world"


def test_load_path_writes_inline_data_to_a_temp_file_with_a_fitting_suffix(job: Path) -> None:
    path = load_path({"data": "data:image/png;base64," + base64.b64encode(PNG).decode()})
    assert path.suffix == ".png" and path.read_bytes() == PNG and path.parent == job
    assert load_path({"data": base64.b64encode(PNG).decode()}, suffix=".jpg").suffix == ".jpg"


def test_drive_paths_are_the_live_files_under_drive(job: Path) -> None:
    for value in (
        {"drive_path": "uploads/a.png"},
        "uploads/a.png",
        f"{WS}/uploads/a.png",
        "drive/uploads/a.png",
    ):
        path = load_path(value)
        assert path == job / "drive" / "uploads" / "a.png", value
        assert load_bytes(value) == PNG


def test_paths_that_would_leave_the_drive_are_refused(job: Path) -> None:
    (job / "secret.txt").write_text("outside")
    for value in (
        "../secret.txt",
        {"drive_path": "/etc/passwd"},
        {"drive_path": "a/../../secret.txt"},
        {"drive_path": "a\\b"},
    ):
        with pytest.raises(InputError):
            load_bytes(value)


def test_a_missing_drive_file_says_where_it_looked(job: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"drive/uploads/none\.png"):
        load_bytes({"drive_path": "uploads/none.png"})


def test_bad_values_say_what_is_wrong(job: Path) -> None:
    for value, message in (
        ({}, "drive_path, url or data"),
        (42, "not int"),
        ({"data": "@@@"}, "base64"),
        ({"url": ""}, "non-empty"),
    ):
        with pytest.raises(InputError, match=message):
            load_bytes(value)


def test_urls_are_fetched_under_the_guard(
    job: Path, site: LoopbackSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InputError, match="loopback"):
        load_bytes({"url": f"{site.base}/ok"})
    monkeypatch.setenv("PURAS_SSRF_ALLOW", "127.0.0.2/32")
    assert load_bytes({"url": f"{site.base}/ok"}) == PNG
    assert load_bytes(f"{site.base}/ok") == PNG
    fetched = load_path({"url": f"{site.base}/ok"})
    assert fetched.read_bytes() == PNG and fetched.suffix == ".png"  # from the response's type
    with pytest.raises(InputError, match="loopback"):
        load_bytes({"url": site.redirect("http://127.0.0.1:1/")})


def test_the_platforms_own_api_is_trusted(
    job: Path, site: LoopbackSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PURAS_API_BASE", site.base)
    assert load_bytes({"url": f"{site.base}/ok"}) == PNG
