"""Media generation over the whole platform: skills call ``puras.media`` (through the gateway's
``/v1/media/*`` with their job token), agents use the built-in ``media`` tool; fal and
ElevenLabs are local wire-format stubs. What a user sees: the file in the drive with its
origin, the job's ``usage`` events and cost charged by billing for real, failed calls costing
nothing, and a clear 4xx for callers that are not jobs."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from puras_common.tokens import mint_job_token
from puras_testing import eventually
from puras_testing.media.elevenlabs import ElevenLabsStub, Transcript
from puras_testing.media.fal import Failed, FalStub, Images, Video
from puras_testing.media.files import mp4
from puras_testing.models import Call, ModelStub, Reply
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

_spec = importlib.util.spec_from_file_location(
    "media_project", Path(__file__).with_name("media_project.py")
)
media_project = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules.setdefault("media_project", media_project)
_spec.loader.exec_module(media_project)  # type: ignore[union-attr]

MARKER = f"media-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tenant(platform: Platform) -> Tenant:
    tenant = await platform.tenant(f"media-{uuid.uuid4().hex[:6]}")
    pushed = await tenant.push({**media_project.PROJECT, **media_project.artist_prompt(MARKER)})
    assert pushed.status_code == 201, pushed.text
    return tenant


async def settled_cost(tenant: Tenant, job_id: str, expected: int) -> dict:
    """The job once the read model has its end and billing's ledger shows ``expected`` as its cost
    (a waiting client is answered from the terminal event, a little ahead of both)."""

    async def read() -> dict | None:
        job = (await tenant.http.get(f"/v1/jobs/{job_id}")).json()
        return job if job["cost_micros"] == expected and job["status"] == "succeeded" else None

    return await eventually(read, timeout=20)


async def test_a_skill_makes_a_video_that_lands_in_the_drive_billed_and_with_its_origin(
    tenant: Tenant, fal_provider: FalStub
) -> None:
    marker = uuid.uuid4().hex
    fal_provider.script(Video(6), match=marker)
    inputs = {
        "prompt": f"a lighthouse {marker}",
        "image_url": "https://example.com/l.png",
        "duration": "6s",
        "generate_audio": False,
    }
    job = await tenant.run(
        "render",
        {
            "model": "google/veo-3-i2v",
            "inputs": inputs,
            "options": {"output_path": "renders/lighthouse.mp4"},
        },
    )
    assert job["status"] == "succeeded", job
    made = job["result"]["result"]
    assert (
        made["drive_path"] == "renders/lighthouse.mp4"
        and made["billed_micros"] == 1_440_000
        and made["billed_usd"] == "1.44"
    )
    assert fal_provider.of(marker)[0].inputs == inputs  # passed through unchanged
    # Billing charged exactly that, once; the job shows it as its cost and as a usage event.
    job = await settled_cost(tenant, job["id"], 1_440_000)
    usage = (await tenant.http.get(f"/v1/jobs/{job['id']}/usage")).json()
    assert [(r["model"], r["billed_micros"], r["unit"]) for r in usage["data"]] == [
        ("puras/compute", 0, "cpu_second"),  # the job's own compute (free by default), newest
        ("google/veo-3-i2v", 1_440_000, "second"),
    ]
    events = (await tenant.http.get(f"/v1/jobs/{job['id']}/events")).json()["events"]
    assert [e["payload"]["billed_micros"] for e in events if e["type"] == "usage"] == [1_440_000]
    (end,) = (e for e in events if e["type"] == "succeeded")
    assert end["payload"]["compute"]["billed_micros"] == 0  # the job's own, on its end
    # The file: its origin, the job's outputs, and a signed link that serves it.
    origin = (
        await tenant.http.get("/v1/drive/origin", params={"path": "renders/lighthouse.mp4"})
    ).json()
    assert (origin["job_id"], origin["skill_name"], origin["tool"]) == (
        job["id"],
        "render",
        "media",
    )
    (output,) = job["outputs"]
    async with httpx.AsyncClient() as http:
        assert (await http.get(output["signed_url"])).content == mp4(6)
        assert (await http.get(made["output_url"])).content == mp4(6)


async def test_a_failed_upstream_call_costs_nothing(tenant: Tenant, fal_provider: FalStub) -> None:
    marker = uuid.uuid4().hex
    fal_provider.script(
        Failed("CUDA error: device-side assert triggered", status=500), match=marker
    )
    before = (await tenant.http.get("/v1/balance")).json()["balance_micros"]
    job = await tenant.run(
        "render",
        {"model": "bytedance/seedance-2-t2v", "inputs": {"prompt": marker, "duration": "5"}},
    )
    assert job["result"] == {
        "error": "upstream_failed",
        "message": "bytedance/seedance-2-t2v: CUDA error: device-side assert triggered",
        "status": 502,
        "value_error": False,
    }
    # A billable call made after it settles; the failed one never shows up.
    fal_provider.script(Images(), match=marker)
    after = await tenant.run("render", {"model": "google/imagen-4", "inputs": {"prompt": marker}})
    await settled_cost(tenant, after["id"], 60_000)
    shown = (await tenant.http.get(f"/v1/jobs/{job['id']}/usage")).json()["data"]
    assert [r["kind"] for r in shown] == ["compute"]  # the job's own compute, and no call
    assert (await tenant.http.get(f"/v1/jobs/{job['id']}")).json()["cost_micros"] == 0
    assert (await tenant.http.get("/v1/balance")).json()["balance_micros"] == before - 60_000


async def test_unknown_slugs_and_bad_arguments_are_refused_before_any_upstream_call(
    tenant: Tenant, fal_provider: FalStub
) -> None:
    marker = uuid.uuid4().hex
    job = await tenant.run("render", {"model": "openai/gpt-image-9", "inputs": {"prompt": marker}})
    assert (
        job["result"]["error"] == "unknown_model"
        and job["result"]["status"] == 400
        and job["result"]["value_error"]
    )
    assert "did you mean openai/gpt-image-2" in job["result"]["message"]
    job = await tenant.run(
        "render",
        {
            "helper": "generate_video",
            "args": {
                "prompt": "talk",
                "model": "google/veo",
                "image": "https://x/p.png",
                "lipsync_audio": "https://x/a.mp3",
            },
        },
    )
    assert job["result"]["message"] == "google/veo cannot do lip-sync; only kuaishou/kling does"
    assert fal_provider.of(marker) == []


async def test_portable_helpers_pick_the_model_and_warn_what_they_changed(
    tenant: Tenant, fal_provider: FalStub, eleven_provider: ElevenLabsStub
) -> None:
    marker = uuid.uuid4().hex
    fal_provider.script(Video(6), Images(), match=marker)
    video = await tenant.run(
        "render",
        {
            "helper": "generate_video",
            "args": {
                "prompt": f"@Image1 waves at @Image2 {marker}",
                "model": "google/veo",
                "refs": ["https://x/a.png", "https://x/b.png"],
                "duration": 5,
            },
        },
    )
    assert video["status"] == "succeeded", video
    assert video["result"]["warnings"] == [
        "duration 5 s snapped to 6 s: google/veo-3-r2v makes 4, 6, 8 s clips"
    ]
    sent = fal_provider.of(marker)[0]
    assert sent.endpoint == "fal-ai/veo3.1/reference-to-video"
    assert (
        sent.inputs["prompt"]
        == f"the first reference image waves at the second reference image {marker}"
        and sent.inputs["duration"] == "6s"
    )
    assert (
        video["result"]["result"]["billed_micros"] == 6 * 240_000
    )  # audio off: the helper's default
    image = await tenant.run(
        "render",
        {"helper": "generate_image", "args": {"prompt": marker, "n": 2, "aspect_ratio": "16:9"}},
    )
    assert (
        image["result"]["result"]["model"] == "google/nano-banana"
        and len(image["result"]["result"]["files"]) == 2
    )
    speech = await tenant.run(
        "render",
        {
            "helper": "generate_audio",
            "args": {"text": f"[whispers] hello {marker}", "voice": "Aria", "style": 0.5},
        },
    )
    assert speech["result"]["warnings"][0].startswith("style is ignored on elevenlabs/tts-v3")
    assert speech["result"]["result"]["drive_path"].endswith(".mp3")
    eleven_provider.script(Transcript("hello there", seconds=9), match=marker)
    heard = await tenant.run(
        "render",
        {
            "helper": "transcribe",
            "args": {"audio": f"https://example.com/{marker}.mp3", "keyterms": ["Puras"]},
        },
    )
    assert (
        heard["result"]["result"]["text"] == "hello there"
        and heard["result"]["result"]["billed_micros"] == 1_200
    )


async def test_the_agents_media_tool_end_to_end(
    tenant: Tenant, model_provider: ModelStub, fal_provider: FalStub
) -> None:
    fal_provider.script(Images(ext="webp"), match=MARKER)
    model_provider.script(
        Reply(
            tool_calls=[
                Call(
                    "media",
                    {
                        "model": "bytedance/seedream-v4",
                        "inputs": {"prompt": f"a red bicycle {MARKER}"},
                        "output_path": "art/",
                    },
                )
            ]
        ),
        Reply(tool_calls=[Call("set_output", {"drive_path": "art/bicycle.webp"})]),
        match=MARKER,
    )
    job = await tenant.run("artist", {"prompt": "draw"}, timeout=60)
    assert job["status"] == "succeeded", job
    events = (await tenant.http.get(f"/v1/jobs/{job['id']}/events")).json()["events"]
    (result,) = [
        e for e in events if e["type"] == "tool_result" and e["payload"]["name"] == "media"
    ]
    path = result["payload"]["detail"]["drive_path"]
    assert path.startswith("art/") and path.endswith(".webp")
    origin = (await tenant.http.get("/v1/drive/origin", params={"path": path})).json()
    assert (origin["job_id"], origin["skill_name"], origin["tool"]) == (
        job["id"],
        "artist",
        "media",
    )
    media_usage = [
        e["payload"] for e in events if e["type"] == "usage" and e["payload"]["kind"] == "media"
    ]
    assert [(u["model"], u["billed_micros"]) for u in media_usage] == [
        ("bytedance/seedream-v4", 36_000)
    ]
    # Billing charges the media call and the two model steps: the job's cost is their sum.
    steps = sum(
        e["payload"]["billed_micros"]
        for e in events
        if e["type"] == "usage" and e["payload"]["kind"] == "llm"
    )
    await settled_cost(tenant, job["id"], 36_000 + steps)


async def test_only_a_running_job_may_call_the_media_endpoints(
    platform: Platform, tenant: Tenant
) -> None:
    body = {"model": "google/imagen-4", "inputs": {"prompt": "x"}}
    with_key = await tenant.http.post("/v1/media/generate", json=body)
    assert (
        with_key.status_code == 403
        and "only for code running inside a job" in with_key.json()["error"]["message"]
    )
    async with httpx.AsyncClient(base_url=platform.url) as anonymous:
        missing = await anonymous.post("/v1/media/generate", json=body)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_key"
        done = await tenant.run("render", {"model": "openai/gpt-image-9", "inputs": {}})
        await eventually(lambda: _in_read_model(tenant, done["id"]), timeout=10)
        token = mint_job_token(
            platform.config.credentials.job_token_key,
            workspace_id=uuid.UUID(tenant.id),
            job_id=uuid.UUID(done["id"]),
            skillpack_id=uuid.uuid4(),
            attempt=1,
            ttl_seconds=60,
        )
        late = await anonymous.post(
            "/v1/media/generate", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert (
            late.status_code == 409
            and "its token cannot start new work" in late.json()["error"]["message"]
        )
        forged = await anonymous.post(
            "/v1/media/generate", json=body, headers={"Authorization": "Bearer pjt_e30.AAAA"}
        )
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_key"


async def _in_read_model(tenant: Tenant, job_id: str) -> bool:
    """Whether the jobs read model (which the token check reads) has the job's end."""
    return (await tenant.http.get(f"/v1/jobs/{job_id}")).json()["status"] == "succeeded"


async def test_a_media_call_the_balance_cannot_cover_is_refused_before_the_upstream(
    platform: Platform, fal_provider: FalStub
) -> None:
    # 0.05 USD of credit; a 5 s Seedance clip is quoted 1,820,000 micros: its hold is refused.
    poor = await platform.tenant(f"poor-{uuid.uuid4().hex[:6]}", credit_usd="0.05")
    project = {**media_project.PROJECT, **media_project.artist_prompt(MARKER)}
    assert (await poor.push(project)).status_code == 201
    marker = uuid.uuid4().hex
    job = await poor.run(
        "render",
        {"model": "bytedance/seedance-2-t2v", "inputs": {"prompt": marker, "duration": "5"}},
    )
    assert job["status"] == "succeeded", job
    refused = job["result"]
    assert (refused["error"], refused["status"]) == ("insufficient_credits", 402), refused
    assert "may cost up to 1820000 micros" in refused["message"]
    assert "balance is 50000 micros" in refused["message"]
    assert fal_provider.of(marker) == []  # nothing was sent upstream
    assert job["cost_micros"] == 0
