"""The whole platform on the S3 backend (moto's server mode): the HTTP API, and jobs whose
``./drive`` is fetched on demand and written back with its origin."""

from __future__ import annotations

import base64
import importlib.util
import io
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from puras_testing import start_infra
from puras_testing.drive import start_moto
from puras_testing.media.fal import FalStub, Images
from puras_testing.models import Call, ModelStub, Reply
from puras_testing.platform import Platform, Tenant, start_platform
from puras_testing.web import WebStub

pytestmark = pytest.mark.asyncio(loop_scope="session")

_spec = importlib.util.spec_from_file_location(
    "drive_project", Path(__file__).with_name("drive_project.py")
)
drive_project = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules.setdefault("drive_project", drive_project)
_spec.loader.exec_module(drive_project)  # type: ignore[union-attr]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def s3_platform(
    model_provider: ModelStub, web_provider: WebStub, fal_provider: FalStub
) -> AsyncIterator[Platform]:
    """A platform of its own (own NATS and PostgreSQL) whose drive keeps bytes in S3."""
    with start_moto() as moto:
        async with start_infra(role_prefix="puras_s3") as infra:
            env = {**moto.env(), "PURAS_DRIVE_BACKEND": "s3", "PURAS_DRIVE_S3_BUCKET": "puras-e2e"}
            env |= {
                **model_provider.env(),
                **web_provider.env(),
                **fal_provider.env(),
                "PURAS_AGENT_RUNNER_SSRF_ALLOW": "127.0.0.0/8",
            }
            async with start_platform(infra, extra_env=env) as running:
                yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tenant(s3_platform: Platform) -> Tenant:
    tenant = await s3_platform.tenant(f"s3-{uuid.uuid4().hex[:6]}")
    pushed = await tenant.push(drive_project.PROJECT)
    assert pushed.status_code == 201, pushed.text
    return tenant


async def test_the_api_works_the_same_on_s3(s3_platform: Platform, tenant: Tenant) -> None:
    health = s3_platform.logs("drive")
    assert '"backend": "s3"' in health or "'backend': 's3'" in health or "s3" in health
    up = await tenant.http.post(
        "/v1/drive/upload",
        files={"file": ("a.txt", b"on s3", "text/plain")},
        data={"path": "docs/a.txt"},
    )
    assert up.status_code == 201, up.text
    async with httpx.AsyncClient() as http:
        assert (await http.get(up.json()["signed_url"])).content == b"on s3"
    listing = (await tenant.http.get("/v1/drive/list", params={"prefix": "docs/"})).json()
    assert [(f["path"], f["bytes"], f["content_type"]) for f in listing["files"]] == [
        ("docs/a.txt", 5, "text/plain")
    ]
    zipped = zipfile.ZipFile(
        io.BytesIO((await tenant.http.get("/v1/drive/zip", params={"prefix": "docs"})).content)
    )
    assert zipped.read("docs/a.txt") == b"on s3"
    assert (await tenant.http.delete("/v1/drive/object", params={"path": "docs/"})).json() == {
        "deleted": 1
    }
    assert (await tenant.http.get("/v1/drive/list", params={"prefix": "docs/"})).json()[
        "files"
    ] == []


async def test_a_skill_reads_an_upload_three_ways_and_its_thumbnail_lands_in_s3_with_its_origin(
    tenant: Tenant,
) -> None:
    image = drive_project.png(40, 24)
    uploaded = (
        await tenant.http.post("/v1/drive/upload", files={"file": ("p.png", image, "image/png")})
    ).json()
    job = await tenant.run(
        "thumbnail",
        {
            "by_path": {"drive_path": uploaded["drive_path"]},
            "by_url": {"url": uploaded["signed_url"]},
            "by_data": {"data": base64.b64encode(image).decode()},
        },
        timeout=60,
    )
    assert job["status"] == "succeeded", (job["error"], job["error_detail"])
    thumb = job["result"]["thumb"]["drive_path"]
    origin = (await tenant.http.get("/v1/drive/origin", params={"path": thumb})).json()
    assert origin["job_id"] == job["id"] and origin["skill_name"] == "thumbnail"
    # The input the job only read was not written back as the job's.
    assert (
        await tenant.http.get("/v1/drive/origin", params={"path": uploaded["drive_path"]})
    ).json()["job_id"] is None
    signed = (await tenant.http.get("/v1/drive/sign", params={"path": thumb})).json()["signed_url"]
    async with httpx.AsyncClient() as http:
        assert drive_project.pixel((await http.get(signed)).content, 1, 1) == drive_project.pixel(
            image, 4, 4
        )


async def test_files_not_named_in_inputs_are_fetched_on_demand(tenant: Tenant) -> None:
    await tenant.http.post(
        "/v1/drive/upload",
        files={"file": ("n.txt", b"lazy", "text/plain")},
        data={"path": "lazy/n.txt"},
    )
    job = await tenant.run(
        "scribble",
        {"read": ["lazy/n.txt"], "load": ["lazy/n.txt"], "files": {"lazy/out.txt": "new"}},
    )
    assert job["status"] == "succeeded", (job["error"], job["error_detail"])
    # A plain open() finds nothing until the SDK fetched it; load_bytes fetches it.
    assert job["result"]["seen"] == {"lazy/n.txt": "FileNotFoundError"}
    assert job["result"]["loaded"] == {"lazy/n.txt": "lazy"}
    assert (await tenant.http.get("/v1/drive/origin", params={"path": "lazy/n.txt"})).json()[
        "job_id"
    ] is None
    assert (await tenant.http.get("/v1/drive/origin", params={"path": "lazy/out.txt"})).json()[
        "job_id"
    ] == job["id"]


async def test_an_agent_works_on_s3_reading_on_demand_and_writing_back_with_each_tool(
    s3_platform: Platform, model_provider: ModelStub, web_provider: WebStub, fal_provider: FalStub
) -> None:
    marker = uuid.uuid4().hex
    agent = await s3_platform.tenant(f"s3-agent-{marker[:6]}")
    project = {
        "skills/artist/skill.yaml": "entrypoint: SKILL.md\nmodel: claude/haiku-4-5\n",
        "skills/artist/SKILL.md": f"Use the tools. {marker}\n",
    }
    assert (await agent.push(project)).status_code == 201
    image = drive_project.png(4, 4)
    await agent.http.post(
        "/v1/drive/upload",
        files={"file": ("p.png", image, "image/png")},
        data={"path": "in/photo.png"},
    )
    fal_provider.script(Images(), match=marker)
    csv = web_provider.page(f"/{marker}/data.csv", "a,b\n", "text/csv")
    script = model_provider.script(
        Reply(
            tool_calls=[
                Call(
                    "file_read", {"paths": ["in/photo.png"]}
                ),  # never named in the inputs: fetched on demand
                Call(
                    "media",
                    {
                        "model": "google/imagen-4",
                        "inputs": {"prompt": marker},
                        "output_path": "out/art.png",
                    },
                ),
                Call(
                    "bash",
                    {
                        "command": "mkdir -p drive/out && cat drive/out/art.png | wc -c > drive/out/size.txt"
                    },
                ),
                Call("download_url", {"url": csv, "path": "out/"}),
            ]
        ),
        Reply(text="done"),
        match=marker,
    )
    job = await agent.run("artist", {"prompt": "go"}, timeout=60)
    assert job["status"] == "succeeded", (job["error"], job["error_detail"])
    for path, tool in (
        ("out/art.png", "media"),
        ("out/size.txt", "bash"),
        ("out/data.csv", "download_url"),
    ):
        origin = (await agent.http.get("/v1/drive/origin", params={"path": path})).json()
        assert (origin["job_id"], origin["tool"]) == (job["id"], tool), path
    assert (await agent.http.get("/v1/drive/origin", params={"path": "in/photo.png"})).json()[
        "job_id"
    ] is None
    signed = (await agent.http.get("/v1/drive/sign", params={"path": "out/size.txt"})).json()[
        "signed_url"
    ]
    async with httpx.AsyncClient() as http:
        size = int((await http.get(signed)).text)
    assert size > 0  # bash saw the media tool's file in ./drive
    looked = model_provider.requests_for(script)[1].last_tool_results()[0]
    assert "in/photo.png (image/png" in looked["text"]


async def test_a_fifo_where_the_runner_reads_does_not_stop_it(tenant: Tenant) -> None:
    async def origin_of(path: str) -> str | None:
        job_id: str | None = (
            await tenant.http.get("/v1/drive/origin", params={"path": path})
        ).json()["job_id"]
        return job_id

    await drive_project.fifo_then_another_job(tenant, origin_of)
