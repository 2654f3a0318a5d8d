"""Files inside jobs (local backend): a skill reads an uploaded image by drive_path, url and
data and writes a thumbnail back whose origin names the job; links a job makes are never
followed; a job that fails still has what it wrote recorded; a job's folder and drive mount
are gone after it ends."""

from __future__ import annotations

import base64
import importlib.util
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from puras_testing import eventually
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

_spec = importlib.util.spec_from_file_location(
    "drive_project", Path(__file__).with_name("drive_project.py")
)
drive_project = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["drive_project"] = drive_project
_spec.loader.exec_module(drive_project)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
async def tenant(platform: Platform) -> Tenant:
    tenant = await platform.tenant(f"drivejobs-{uuid.uuid4().hex[:6]}")
    pushed = await tenant.push(drive_project.PROJECT)
    assert pushed.status_code == 201, pushed.text
    return tenant


async def run_thumbnail(tenant: Tenant) -> tuple[dict, bytes]:
    image = drive_project.png(40, 24)
    up = await tenant.http.post(
        "/v1/drive/upload", files={"file": ("photo.png", image, "image/png")}
    )
    assert up.status_code == 201, up.text
    uploaded = up.json()
    job = await tenant.run(
        "thumbnail",
        {
            "by_path": {"drive_path": uploaded["drive_path"]},
            "by_url": {"url": uploaded["signed_url"]},
            "by_data": {"data": "data:image/png;base64," + base64.b64encode(image).decode()},
        },
        timeout=60,
    )
    return job, image


async def test_a_skill_reads_an_upload_three_ways_and_writes_a_thumbnail_whose_origin_is_the_job(
    tenant: Tenant,
) -> None:
    job, image = await run_thumbnail(tenant)
    assert job["status"] == "succeeded", (job["error"], job["error_detail"])
    result = job["result"]
    assert set(result["sizes"].values()) == {len(image)}
    assert (result["width"], result["height"]) == (10, 6)
    thumb_path = result["thumb"]["drive_path"]
    assert [o["drive_path"] for o in job["outputs"]] == [thumb_path]
    async with httpx.AsyncClient() as http:
        assert (await http.get(job["outputs"][0]["signed_url"])).content.startswith(b"\x89PNG")
    origin = (await tenant.http.get("/v1/drive/origin", params={"path": thumb_path})).json()
    assert (
        origin["job_id"] == job["id"]
        and origin["skill_name"] == "thumbnail"
        and origin["tool"] is None
    )
    assert origin["created_at"] is not None
    signed = (await tenant.http.get("/v1/drive/sign", params={"path": thumb_path})).json()
    async with httpx.AsyncClient() as http:
        thumb = (await http.get(signed["signed_url"])).content
    # Pixel (x, y) of the thumbnail is pixel (4x, 4y) of the original.
    assert drive_project.pixel(thumb, 3, 2) == drive_project.pixel(image, 12, 8)
    assert result["link"].endswith(f"/v1/drive/files/{tenant.id}/{thumb_path}")
    listing = (await tenant.http.get("/v1/drive/list", params={"prefix": "thumbs/"})).json()
    assert [f["path"] for f in listing["files"]] == [thumb_path]
    assert listing["files"][0]["content_type"] == "image/png"


async def test_links_a_job_makes_are_not_followed_and_other_workspaces_stay_out_of_reach(
    platform: Platform, tenant: Tenant
) -> None:
    other = await platform.tenant(f"drivejobs-o-{uuid.uuid4().hex[:6]}")
    await other.http.post(
        "/v1/drive/upload",
        files={"file": ("s.txt", b"theirs", "text/plain")},
        data={"path": "secret.txt"},
    )
    other_root = platform.config.home / "drive" / other.id
    job = await tenant.run(
        "scribble",
        {
            "files": {"notes/mine.txt": "mine"},
            "links": {"escape.txt": str(other_root / "secret.txt"), "escape_dir": str(other_root)},
        },
    )
    assert job["status"] == "succeeded", (job["error"], job["error_detail"])
    for path in ("escape.txt", "escape_dir/secret.txt"):
        assert (await tenant.http.get("/v1/drive/sign", params={"path": path})).status_code == 404
        assert (await tenant.http.get("/v1/drive/origin", params={"path": path})).json()[
            "job_id"
        ] is None
    root = (await tenant.http.get("/v1/drive/list")).json()
    assert "escape_dir" not in root["folders"] and "escape.txt" not in [
        f["name"] for f in root["files"]
    ]
    zipped = await tenant.http.get("/v1/drive/zip")
    assert b"theirs" not in zipped.content
    origin = (await tenant.http.get("/v1/drive/origin", params={"path": "notes/mine.txt"})).json()
    assert origin["job_id"] == job["id"] and origin["skill_name"] == "scribble"


async def test_a_failed_job_still_has_its_files_recorded(tenant: Tenant) -> None:
    job = await tenant.run("scribble", {"files": {"partial/out.txt": "half done"}, "fail": True})
    assert job["status"] == "failed" and "failed after writing" in job["error"]
    origin = (await tenant.http.get("/v1/drive/origin", params={"path": "partial/out.txt"})).json()
    assert origin["job_id"] == job["id"]


async def test_a_jobs_folder_and_drive_mount_are_gone_after_it_ends(
    tenant: Tenant, platform: Platform
) -> None:
    """The drive is saved before the job's end is reported; its overlay is unmounted and its
    folder removed after, off the answer's path, whether the job succeeded or failed."""
    work = platform.config.home / "runner" / "work" / tenant.id
    for fail in (False, True):
        job = await tenant.run("scribble", {"files": {"gone/x.txt": "x"}, "fail": fail})
        assert job["status"] == ("failed" if fail else "succeeded"), job

        def left(job_id: str = job["id"]) -> list[str]:
            folders = [p.name for p in work.glob(f"{job_id}.*")]
            mounts = [
                m for m in Path("/proc/self/mountinfo").read_text().splitlines() if job_id in m
            ]
            return folders + mounts

        await eventually(lambda left=left: not left(), timeout=10, what="the job's folder to go")


async def test_a_job_sees_files_uploaded_before_it_and_origin_is_not_claimed_for_them(
    tenant: Tenant,
) -> None:
    await tenant.http.post(
        "/v1/drive/upload",
        files={"file": ("r.txt", b"uploaded", "text/plain")},
        data={"path": "in/read.txt"},
    )
    job = await tenant.run("scribble", {"read": ["in/read.txt", "in/none.txt"]})
    assert job["result"]["seen"] == {"in/read.txt": "uploaded", "in/none.txt": "FileNotFoundError"}
    origin = (await tenant.http.get("/v1/drive/origin", params={"path": "in/read.txt"})).json()
    assert origin["job_id"] is None


async def test_a_job_cannot_have_the_sdk_fetch_from_the_platforms_private_addresses(
    platform: Platform, tenant: Tenant
) -> None:
    internal = f"http://127.0.0.1:{platform.config.ports['drive']}/internal/payloads/x"
    for url in (
        internal,
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:1/",
    ):
        job = await tenant.run("scribble", {"load": [url]})
        assert job["status"] == "failed", job
        assert "InputError" in job["error"] and "refusing to fetch" in job["error"], job["error"]
