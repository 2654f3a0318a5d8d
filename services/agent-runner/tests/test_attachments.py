"""``inputs.attachments``: what reaches the first user message, and what fails the job up front."""

from __future__ import annotations

import base64

import pytest
from agent_harness import Harness
from puras_testing.models import Reply

pytestmark = pytest.mark.asyncio(loop_scope="session")

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\n"


async def first_message(
    harness: Harness, marker: str, model: str, attachments: list[dict]
) -> tuple[object, list]:
    deployment = harness.push(
        {
            "skills/look/skill.yaml": f"entrypoint: SKILL.md\nmodel: {model}\n",
            "skills/look/SKILL.md": f"Describe the attachments. {marker}",
        }
    )
    script = harness.models.script(Reply(text="seen"), match=marker)
    outcome = await harness.run(
        deployment, "look", {"prompt": "What is this?", "attachments": attachments}
    )
    requests = harness.models.requests_for(script)
    return outcome, requests[0].messages[0]["content"] if requests else []


async def test_images_and_pdfs_reach_claude_as_blocks(harness: Harness, marker: str) -> None:
    (harness.folder() / f"{marker}.png").write_bytes(PNG)
    text_url = harness.web.page(f"/{marker}/notes.txt", "plain notes", "text/plain")
    attachments = [
        {"base64": base64.b64encode(PNG).decode(), "media_type": "image/png"},
        {"url": "https://cdn.example.com/spec.pdf"},
        {"drive_path": f"drive/{marker}.png"},
        {"url": text_url},
        {"base64": base64.b64encode(PDF).decode()},
    ]
    outcome, content = await first_message(harness, marker, "claude/sonnet-4-7", attachments)
    assert outcome.status == "succeeded", outcome.terminal
    assert content[0] == {"type": "text", "text": "What is this?"}
    assert content[1] == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(PNG).decode(),
        },
    }
    assert content[2] == {
        "type": "document",
        "source": {"type": "url", "url": "https://cdn.example.com/spec.pdf"},
    }
    assert content[3]["type"] == "image" and content[3]["source"]["type"] == "base64"
    assert content[4] == {"type": "text", "text": "plain notes"}
    assert (
        content[5]["type"] == "document" and content[5]["source"]["media_type"] == "application/pdf"
    )


async def test_images_reach_gpt_as_image_urls(harness: Harness, marker: str) -> None:
    attachments = [
        {"base64": base64.b64encode(PNG).decode(), "media_type": "image/png"},
        {"url": "https://cdn.example.com/a.jpg"},
    ]
    outcome, content = await first_message(harness, marker, "gpt/4o", attachments)
    assert outcome.status == "succeeded"
    assert content[1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
    }
    assert content[2] == {
        "type": "image_url",
        "image_url": {"url": "https://cdn.example.com/a.jpg"},
    }


FIVE_MB = 5 * 1024 * 1024


@pytest.mark.parametrize(
    ("model", "attachments", "error"),
    [
        (
            "gpt/4o",
            [{"base64": base64.b64encode(PDF).decode(), "media_type": "application/pdf"}],
            "inputs.attachments[0] (application/pdf) is a PDF and gpt/4o cannot read PDFs (only the Claude family can)",
        ),
        (
            "gemini/2.5-pro",
            [{"url": "https://cdn.example.com/spec.pdf"}],
            "inputs.attachments[0] (application/pdf) is a PDF and gemini/2.5-pro cannot read PDFs",
        ),
        (
            "claude/haiku-4-5",
            [
                {
                    "base64": base64.b64encode(b"PK\x03\x04zip").decode(),
                    "media_type": "application/zip",
                }
            ],
            "inputs.attachments[0] (application/zip) is application/zip, which models cannot read",
        ),
        (
            "claude/haiku-4-5",
            [
                {
                    "base64": base64.b64encode(b"a" * (FIVE_MB + 1)).decode(),
                    "media_type": "text/plain",
                }
            ],
            "inputs.attachments[0] is 5242881 bytes; the limit is 5242880 bytes (5 MB) per file",
        ),
        (
            "claude/haiku-4-5",
            [{"base64": "not base64!!", "media_type": "image/png"}],
            "inputs.attachments[0].base64 is not valid base64",
        ),
        (
            "claude/haiku-4-5",
            [{"url": "https://a.example/x.png", "base64": "AA=="}],
            "inputs.attachments[0] must have exactly one of drive_path, url, base64 (has url, base64)",
        ),
        (
            "claude/haiku-4-5",
            [{"drive_path": "../../etc/passwd"}],
            "inputs.attachments[0]: '../../etc/passwd' leaves the drive",
        ),
        (
            "claude/haiku-4-5",
            [{"drive_path": "nope/missing.png"}],
            "inputs.attachments[0]: drive/nope/missing.png does not exist",
        ),
        (
            "claude/haiku-4-5",
            [{"url": "ftp://example.com/a.png"}],
            "inputs.attachments[0].url must be an http(s) URL",
        ),
    ],
)
async def test_bad_attachments_fail_the_job_before_any_model_call(
    harness: Harness, marker: str, model: str, attachments: list, error: str
) -> None:
    outcome, content = await first_message(harness, marker, model, attachments)
    assert outcome.status == "failed" and outcome.terminal.payload.reason == "invalid_inputs"
    assert error in outcome.error
    assert content == []  # the model was never called
    assert "agent.started" not in [e.type for e in outcome.events]


async def test_a_file_of_exactly_5_mb_is_accepted(harness: Harness, marker: str) -> None:
    outcome, content = await first_message(
        harness,
        marker,
        "claude/haiku-4-5",
        [{"base64": base64.b64encode(b"a" * FIVE_MB).decode(), "media_type": "text/plain"}],
    )
    assert outcome.status == "succeeded"
    assert content[1]["text"].endswith(
        "[truncated: inputs.attachments[0] has 5242880 characters; showing the first 100000]"
    )
