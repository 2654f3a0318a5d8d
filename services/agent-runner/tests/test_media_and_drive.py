"""The built-in ``media`` tool against the fal and ElevenLabs stubs, and what agents write to
the drive: every file recorded with its origin (the job, the skill, the tool that wrote it),
links that work at once, and subagents run from a markdown file or an inline prompt."""

from __future__ import annotations

import json
import uuid

import pytest
from agent_harness import Harness
from puras_common.events import SubagentSpec
from puras_pricing import pricebook
from puras_testing.media.fal import Images, Rejected, Video
from puras_testing.media.files import mp4
from puras_testing.models import Call, Reply
from test_tools import call_tools, project

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_media_tool_generates_bills_and_saves_with_its_origin(
    harness: Harness, marker: str
) -> None:
    assert harness.fal is not None
    harness.fal.script(Video(5), match=marker)
    calls = [
        Call(
            "media",
            {
                "model": "bytedance/seedance-2-fast-t2v",
                "inputs": {"prompt": f"a harbour at dawn {marker}", "duration": "5"},
                "output_path": f"{marker}/dawn.mp4",
            },
        ),
        Call(
            "bash",
            {
                "command": f"ls -l drive/{marker}/ | wc -l; head -c 8 drive/{marker}/dawn.mp4 | od -c | head -1"
            },
        ),
    ]
    results, outcome = await call_tools(harness, marker, calls)
    made = json.loads(results[0]["text"])
    assert made["model"] == "bytedance/seedance-2-fast-t2v" and made["kind"] == "video"
    assert (
        made["drive_path"] == f"{marker}/dawn.mp4"
        and made["billed_micros"] == 1_450_000
        and made["billed_usd"] == "1.45"
    )
    assert made["output_url"] and "/v1/drive/files/" in made["output_url"]
    # The inputs reached fal unchanged; the file is in the drive, as the shell sees it too.
    (request,) = harness.fal.of(marker)
    assert request.inputs == {"prompt": f"a harbour at dawn {marker}", "duration": "5"}
    assert (harness.folder() / marker / "dawn.mp4").read_bytes() == mp4(5)
    assert "f   t   y   p" in results[1]["text"]
    origin = await harness.origin(f"{marker}/dawn.mp4")
    assert (origin["job_id"], origin["skill_name"], origin["tool"]) == (
        str(outcome.terminal.job_id),
        "agent",
        "media",
    )
    # One usage event for the call, priced as billing prices it, and its copy on the job.
    media = [u for u in outcome.usage if u.payload.kind == "media"]
    assert len(media) == 1 and pricebook().quote_usage(media[0].payload).billed_micros == 1_450_000
    assert [
        e.payload.billed_micros
        for e in outcome.events
        if e.type == "job.usage" and e.payload.kind == "media"
    ] == [1_450_000]
    assert outcome.of("tool.completed")[0].detail == {
        "model": "bytedance/seedance-2-fast-t2v",
        "drive_path": f"{marker}/dawn.mp4",
        "billed_micros": 1_450_000,
    }


async def test_a_refused_media_call_is_a_tool_error_and_bills_nothing(
    harness: Harness, marker: str
) -> None:
    assert harness.fal is not None
    harness.fal.script(
        Rejected([{"loc": ["body", "image_url"], "msg": "field required", "type": "missing"}]),
        match=marker,
    )
    calls = [
        Call("media", {"model": "google/veo-3-i2v", "inputs": {"prompt": marker}}),
        Call("media", {"model": "acme/teleport", "inputs": {"prompt": marker}}),
    ]
    results, outcome = await call_tools(harness, marker, calls)
    assert (
        results[0]["text"]
        == "media failed: upstream_rejected: google/veo-3-i2v: field required at image_url"
    )
    assert results[1]["text"].startswith(
        "media failed: unknown_model: unknown model 'acme/teleport'"
    )
    assert len(harness.fal.of(marker)) == 1  # the unknown slug never went upstream
    assert [u for u in outcome.usage if u.payload.kind == "media"] == []
    assert [e for e in outcome.events if e.type == "job.usage" and e.payload.kind == "media"] == []


async def test_several_images_land_together(harness: Harness, marker: str) -> None:
    assert harness.fal is not None
    harness.fal.script(Images(ext="webp"), match=marker)
    results, _ = await call_tools(
        harness,
        marker,
        [
            Call(
                "media", {"model": "google/imagen-4", "inputs": {"prompt": marker, "num_images": 2}}
            )
        ],
    )
    made = json.loads(results[0]["text"])
    assert [f["drive_path"].rsplit(".", 1)[1] for f in made["files"]] == ["webp", "webp"]
    assert made["billed_micros"] == 120_000 and all(
        (harness.folder() / f["drive_path"]).exists() for f in made["files"]
    )


async def test_files_written_by_bash_and_download_url_carry_their_tool(
    harness: Harness, marker: str
) -> None:
    url = harness.web.page(f"/files/{marker}/data.csv", "a,b\n", "text/csv")
    calls = [
        Call("bash", {"command": f"mkdir -p drive/{marker} && echo hi > drive/{marker}/note.txt"}),
        Call("download_url", {"url": url, "path": f"{marker}/"}),
    ]
    results, outcome = await call_tools(harness, marker, calls)
    saved = json.loads(results[1]["text"])
    assert saved["output_url"] and "/v1/drive/files/" in saved["output_url"]
    job = str(outcome.terminal.job_id)
    assert (await harness.origin(f"{marker}/note.txt"))["tool"] == "bash"
    assert (await harness.origin(f"{marker}/data.csv"))["tool"] == "download_url"
    assert {
        (await harness.origin(p))["job_id"] for p in (f"{marker}/note.txt", f"{marker}/data.csv")
    } == {job}


async def test_a_markdown_subagent_runs_the_file_with_a_free_form_output(
    harness: Harness, marker: str
) -> None:
    files = {
        **project(marker),
        "skills/agent/references/critic.md": f"You are a harsh critic. {marker}-critic",
    }
    deployment = harness.push(files)
    script = harness.models.script(
        Reply(tool_calls=[Call("set_output", {"output": ["too long", 3]})]),
        match=f"{marker}-critic",
    )
    spec = SubagentSpec(
        kind="markdown", path="skills/agent/references/critic.md", model="gpt/5-mini"
    )
    outcome = await harness.run_command(
        harness.command(deployment, "agent", {"draft": "x"}, subagent=spec)
    )
    assert outcome.status == "succeeded" and outcome.result == ["too long", 3]
    request = harness.models.requests_for(script)[0]
    assert request.wire == "openai" and request.system.startswith("You are a harsh critic.")
    assert request.tool_names[-1] == "set_output" and request.tool_names[:2] == ["bash", "media"]


async def test_a_prompt_subagent_may_end_with_its_text_and_a_missing_file_fails_clearly(
    harness: Harness, marker: str
) -> None:
    deployment = harness.push(project(marker))
    harness.models.script(Reply(text="Three bullet points."), match=f"{marker}-inline")
    inline = SubagentSpec(kind="prompt", prompt=f"Summarise in three bullets. {marker}-inline")
    outcome = await harness.run_command(
        harness.command(deployment, "agent", {"text": "…"}, subagent=inline)
    )
    assert outcome.status == "succeeded" and outcome.result == {"text": "Three bullet points."}
    missing = SubagentSpec(kind="markdown", path=f"skills/agent/references/{uuid.uuid4().hex}.md")
    failed = await harness.run_command(harness.command(deployment, "agent", {}, subagent=missing))
    assert failed.status == "failed" and failed.terminal.payload.reason == "invalid_inputs"
    assert "is not in deployment" in failed.error and "references/" in failed.error
    escape = SubagentSpec(kind="markdown", path="../../../../etc/hostname.md")
    failed = await harness.run_command(harness.command(deployment, "agent", {}, subagent=escape))
    assert failed.status == "failed" and "is not in deployment" in failed.error
