"""A file's origin names exactly the job that wrote it (local backend): jobs of one workspace
writing at once, each while the others write, and jobs run back to back; and a job's files are
recorded, their ``drive.object.written`` events on the stream, before its terminal event."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import uuid
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from puras_common.envelope import parse_event
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

_spec = importlib.util.spec_from_file_location(
    "drive_project", Path(__file__).with_name("drive_project.py")
)
drive_project = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["drive_project"] = drive_project
_spec.loader.exec_module(drive_project)  # type: ignore[union-attr]

AT_ONCE = 6
BACK_TO_BACK = 4


@pytest.fixture(scope="module")
async def tenant(platform: Platform) -> Tenant:
    tenant = await platform.tenant(f"origin-{uuid.uuid4().hex[:6]}")
    pushed = await tenant.push(drive_project.PROJECT)
    assert pushed.status_code == 201, pushed.text
    return tenant


async def origin_of(tenant: Tenant, path: str) -> str | None:
    found = await tenant.http.get("/v1/drive/origin", params={"path": path})
    assert found.status_code == 200, found.text
    job_id: str | None = found.json()["job_id"]
    return job_id


async def test_jobs_writing_at_once_each_get_exactly_their_own_files(tenant: Tenant) -> None:
    folder = f"at-once-{uuid.uuid4().hex[:6]}"
    # Each writes one file, waits while the others write theirs, then writes another: every
    # job's run overlaps the others' writes.
    jobs = await asyncio.gather(
        *(
            tenant.run("writer", {"folder": folder, "name": f"w{i}", "pause": 3}, timeout=60)
            for i in range(AT_ONCE)
        )
    )
    assert [j["status"] for j in jobs] == ["succeeded"] * AT_ONCE, [j["error"] for j in jobs]
    for i, job in enumerate(jobs):
        for part in ("first", "second"):
            assert await origin_of(tenant, f"{folder}/w{i}-{part}.txt") == job["id"], (i, part)
    listing = (await tenant.http.get("/v1/drive/list", params={"prefix": f"{folder}/"})).json()
    assert len(listing["files"]) == 2 * AT_ONCE


async def test_jobs_run_back_to_back_each_get_their_own_file_and_its_event_comes_first(
    tenant: Tenant, js: JetStreamContext
) -> None:
    folder = f"in-turn-{uuid.uuid4().hex[:6]}"
    jobs = []
    for i in range(BACK_TO_BACK):
        job = await tenant.run("writer", {"folder": folder, "name": f"w{i}"})
        assert job["status"] == "succeeded", job["error"]
        jobs.append(job)
    for i, job in enumerate(jobs):
        for part in ("first", "second"):
            assert await origin_of(tenant, f"{folder}/w{i}-{part}.txt") == job["id"], (i, part)
    # Each job's drive events are on the stream, and were stored before its terminal event.
    written = await js.pull_subscribe(
        f"drive.{tenant.id}.object_written", stream="PLATFORM", durable=None
    )
    try:
        msgs = await written.fetch(500, timeout=5)
    finally:
        await written.unsubscribe()
    stored: dict[tuple[str, str], object] = {}
    for msg in msgs:
        event = parse_event(msg.data)
        payload = event.payload
        if payload.path.startswith(f"{folder}/") and payload.origin is not None:
            stored[(payload.path, str(payload.origin.job_id))] = msg.metadata.timestamp
    for i, job in enumerate(jobs):
        terminal = await js.get_last_msg("JOBS", f"job.{job['id']}.succeeded")
        assert terminal.data is not None
        for part in ("first", "second"):
            at = stored.get((f"{folder}/w{i}-{part}.txt", job["id"]))
            assert at is not None, (i, part)
            assert at <= terminal.time, (i, part)  # type: ignore[operator]


async def test_a_fifo_where_the_runner_reads_does_not_stop_it(tenant: Tenant) -> None:
    await drive_project.fifo_then_another_job(tenant, lambda path: origin_of(tenant, path))


async def test_what_a_job_removes_from_its_drive_is_deleted_and_nothing_else(
    tenant: Tenant,
) -> None:
    folder = f"rm-{uuid.uuid4().hex[:6]}"
    for path in ("a.txt", "sub/b.txt", "sub/c.txt", "again/old.txt", "kept.txt"):
        up = await tenant.http.post(
            "/v1/drive/upload",
            files={"file": ("f.txt", b"uploaded", "text/plain")},
            data={"path": f"{folder}/{path}"},
        )
        assert up.status_code == 201, up.text
    job = await tenant.run(
        "scribble",
        {
            "remove": [f"{folder}/a.txt", f"{folder}/sub", f"{folder}/again"],
            "then": {f"{folder}/again/new.txt": "made again"},
        },
    )
    assert job["status"] == "succeeded", job["error"]
    listing = (await tenant.http.get("/v1/drive/list", params={"prefix": f"{folder}/"})).json()
    assert sorted(f["path"] for f in listing["files"]) == [f"{folder}/kept.txt"]
    assert listing["folders"] == ["again"]
    inside = (await tenant.http.get("/v1/drive/list", params={"prefix": f"{folder}/again/"})).json()
    assert [f["path"] for f in inside["files"]] == [f"{folder}/again/new.txt"]
    assert await origin_of(tenant, f"{folder}/again/new.txt") == job["id"]
