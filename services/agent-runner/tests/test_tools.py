"""Each built-in tool and a skill's own tools, at the edges of their limits, through the loop."""

from __future__ import annotations

import base64
import json

import pytest
from agent_harness import Harness
from puras_testing.models import Call, Reply

pytestmark = pytest.mark.asyncio(loop_scope="session")


def project(
    marker: str,
    *,
    model: str = "claude/sonnet-4-7",
    extra_yaml: str = "",
    files: dict[str, str] | None = None,
) -> dict[str, str]:
    return {
        "skills/agent/skill.yaml": f"entrypoint: SKILL.md\nmodel: {model}\n{extra_yaml}",
        "skills/agent/SKILL.md": f"Use the tools. {marker}",
        **(files or {}),
    }


async def call_tools(
    harness: Harness,
    marker: str,
    calls: list[Call],
    *,
    files: dict[str, str] | None = None,
    model: str = "claude/sonnet-4-7",
    extra_yaml: str = "",
    secrets: dict[str, str] | None = None,
) -> tuple[list[dict], object]:
    """Run one step that makes ``calls``; returns the tool results the model got back and the outcome."""
    deployment = harness.push(project(marker, model=model, extra_yaml=extra_yaml, files=files))
    script = harness.models.script(Reply(tool_calls=calls), Reply(text="done"), match=marker)
    command = harness.command(deployment, "agent", {"prompt": "go"})
    if secrets:
        harness.runner.secrets.values[command.job_id] = secrets
    outcome = await harness.run_command(command)
    assert outcome.status == "succeeded", outcome.terminal
    return harness.models.requests_for(script)[1].last_tool_results(), outcome


# -- bash


async def test_bash_runs_in_the_workdir_with_drive_secrets_and_deployment_root(
    harness: Harness, marker: str
) -> None:
    command = 'ls -d drive && echo "root=$PURAS_DEPLOYMENT_ROOT" && echo "key=$API_KEY" && id -u && test -w drive && echo writable'
    results, outcome = await call_tools(
        harness,
        marker,
        [Call("bash", {"command": command})],
        secrets={"API_KEY": "sk-live-abcdef123456"},
    )
    text = results[0]["text"]
    assert text.startswith("exit code: 0\n")
    assert "drive\n" in text and "key=sk-live-abcdef123456" in text and "writable" in text
    root = text.split("root=")[1].split("\n")[0]
    assert root.endswith("/project") and "deployments" in root
    if harness.deployments.uid is not None:  # the workspace's own uid, not the shared one
        owner = await harness.runner.drives.owner_for(harness.workspace_id)
        assert owner is not None and owner[0] >= 2_000_000
        assert f"\n{owner[0]}\n" in text and "\n65534\n" not in text
    # The event shows the output with the secret masked.
    shown = outcome.of("tool.completed")[0].output
    assert "key=***" in shown and "sk-live-abcdef123456" not in shown


async def test_bash_returns_the_exit_code_and_merged_streams(harness: Harness, marker: str) -> None:
    results, _ = await call_tools(
        harness, marker, [Call("bash", {"command": "echo out; echo err >&2; exit 3"})]
    )
    assert results[0]["text"] == "exit code: 3\noutput:\nout\nerr\n"


@pytest.mark.parametrize(("size", "cut"), [(8192, False), (8193, True)])
async def test_bash_output_is_the_last_8_kib(
    harness: Harness, marker: str, size: int, cut: bool
) -> None:
    command = f"head -c {size - 1} /dev/zero | tr '\\0' 'a'; printf Z"
    results, _ = await call_tools(harness, marker, [Call("bash", {"command": command})])
    head, _, output = results[0]["text"].partition(":\n")
    assert output.endswith("Z") and len(output) == 8192
    assert ("(the last 8192 of 8193 bytes)" in head) is cut


@pytest.mark.parametrize(
    ("timeout", "accepted"), [(0, False), (1, True), (600, True), (601, False)]
)
async def test_bash_timeout_is_1_to_600_seconds(
    harness: Harness, marker: str, timeout: int, accepted: bool
) -> None:
    results, _ = await call_tools(
        harness, marker, [Call("bash", {"command": "echo fine", "timeout": timeout})]
    )
    if accepted:
        assert results[0]["text"].startswith("exit code: 0")
    else:
        assert "bash: invalid input" in results[0]["text"] and "at /timeout" in results[0]["text"]


async def test_bash_kills_a_command_at_its_timeout(harness: Harness, marker: str) -> None:
    results, outcome = await call_tools(
        harness,
        marker,
        [Call("bash", {"command": "echo started; sleep 30 & sleep 30", "timeout": 1})],
    )
    assert results[0]["text"].startswith(
        "timed out after 1 s; the command and its children were killed\noutput:\nstarted"
    )
    completed = outcome.of("tool.completed")[0]
    assert (
        completed.is_error
        and completed.detail["timed_out"] is True
        and completed.duration_ms < 10_000
    )


async def test_disable_bash_removes_the_tool(harness: Harness, marker: str) -> None:
    results, outcome = await call_tools(
        harness, marker, [Call("bash", {"command": "true"})], extra_yaml="disable_bash: true\n"
    )
    assert "bash" not in outcome.of("agent.started")[0].tools
    assert results[0]["text"].startswith("there is no tool named 'bash'")


# -- web_fetch


async def test_web_fetch_returns_title_text_and_final_url(harness: Harness, marker: str) -> None:
    page = "<html><head><title> The  Page </title><style>.x{color:red}</style></head><body><script>var secret=1;</script><h1>Hello</h1><p>World &amp; more</p></body></html>"
    target = harness.web.page(f"/{marker}/final.html", page)
    start = harness.web.redirect(f"/{marker}/start", target)
    results, outcome = await call_tools(harness, marker, [Call("web_fetch", {"url": start})])
    text = results[0]["text"]
    assert text == f"URL: {target}\nTitle: The Page\n\nHello\n\nWorld & more"
    assert outcome.of("tool.completed")[0].detail == {
        "url": target,
        "title": "The Page",
        "chars": 19,
        "truncated": False,
    }


@pytest.mark.parametrize(
    ("max_chars", "accepted"), [(499, False), (500, True), (200_000, True), (200_001, False)]
)
async def test_web_fetch_max_chars_is_500_to_200000(
    harness: Harness, marker: str, max_chars: int, accepted: bool
) -> None:
    url = harness.web.page(f"/{marker}.txt", "x" * 250_000, "text/plain")
    results, _ = await call_tools(
        harness, marker, [Call("web_fetch", {"url": url, "max_chars": max_chars})]
    )
    text = results[0]["text"]
    if not accepted:
        assert "web_fetch: invalid input" in text and "at /max_chars" in text
        return
    body = text.split("\n\n", 1)[1]
    assert body == "x" * max_chars + f"\n[truncated: showing {max_chars} of 250000 characters]"


async def test_web_fetch_defaults_to_20000_characters(harness: Harness, marker: str) -> None:
    url = harness.web.page(f"/{marker}.txt", "y" * 20_001, "text/plain")
    results, _ = await call_tools(harness, marker, [Call("web_fetch", {"url": url})])
    assert results[0]["text"].endswith(
        "y" * 20_000 + "\n[truncated: showing 20000 of 20001 characters]"
    )


async def test_web_fetch_refuses_non_http_urls_and_binaries(harness: Harness, marker: str) -> None:
    binary = harness.web.page(f"/{marker}.zip", b"PK\x03\x04", "application/zip")
    results, _ = await call_tools(
        harness,
        marker,
        [Call("web_fetch", {"url": "file:///etc/passwd"}), Call("web_fetch", {"url": binary})],
    )
    assert "only http and https URLs can be fetched, not 'file'" in results[0]["text"]
    assert "is application/zip, not a web page; use download_url" in results[1]["text"]


# -- search


@pytest.mark.parametrize(
    ("tool", "max_results", "expected"),
    [
        ("web_search", None, 5),
        ("web_search", 1, 1),
        ("web_search", 20, 20),
        ("web_search", 0, None),
        ("web_search", 21, None),
        ("image_search", None, 5),
        ("image_search", 20, 20),
        ("image_search", 21, None),
    ],
)
async def test_search_returns_1_to_20_results(
    harness: Harness, marker: str, tool: str, max_results: int | None, expected: int | None
) -> None:
    args = {"query": f"red bicycle {marker}"} | (
        {"max_results": max_results} if max_results is not None else {}
    )
    results, _ = await call_tools(harness, marker, [Call(tool, args)])
    if expected is None:
        assert (
            f"{tool}: invalid input" in results[0]["text"]
            and "at /max_results" in results[0]["text"]
        )
        return
    rows = json.loads(results[0]["text"])
    assert len(rows) == expected
    seen = [r for r in harness.web.search_requests if r["query"] == args["query"]][-1]
    assert seen["count"] == expected and seen["token"] == harness.web.api_key
    if tool == "web_search":
        assert set(rows[0]) == {"title", "url", "snippet"}
    else:
        assert rows[0]["image_url"] == "https://cdn.example.com/1.jpg" and (
            rows[0]["width"],
            rows[0]["height"],
        ) == (1600, 1200)
        assert rows[0]["thumbnail_url"] and rows[0]["source_page"] == "https://example.com/page/1"


# -- file_read


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def test_file_read_gives_images_as_vision_blocks_and_text_inline(
    harness: Harness, marker: str
) -> None:
    drive = harness.folder()
    (drive / marker).mkdir()
    (drive / marker / "photo.png").write_bytes(PNG)
    (drive / marker / "notes.md").write_text("# Notes\nhello")
    paths = [f"drive/{marker}/photo.png", f"{marker}/notes.md", f"{marker}/missing.txt"]
    results, _ = await call_tools(harness, marker, [Call("file_read", {"paths": paths})])
    content = results[0]["content"]
    assert content[0] == {"type": "text", "text": f"=== {marker}/photo.png (image/png, 0.1KB) ==="}
    assert content[1]["type"] == "image" and content[1]["source"]["media_type"] == "image/png"
    assert (
        content[2]["text"].startswith(f"=== {marker}/notes.md (text/markdown")
        and content[3]["text"] == "# Notes\nhello"
    )
    assert (
        content[4]["text"]
        == f"=== {marker}/missing.txt ===\nerror: drive/{marker}/missing.txt does not exist"
    )
    assert not results[0]["is_error"]


@pytest.mark.parametrize(("count", "accepted"), [(0, False), (10, True), (11, False)])
async def test_file_read_takes_1_to_10_paths(
    harness: Harness, marker: str, count: int, accepted: bool
) -> None:
    drive = harness.folder()
    (drive / f"{marker}.txt").write_text("x")
    results, _ = await call_tools(
        harness, marker, [Call("file_read", {"paths": [f"{marker}.txt"] * count})]
    )
    assert ("file_read: invalid input" in results[0]["text"]) is not accepted


@pytest.mark.parametrize(
    ("size", "accepted"), [(5 * 1024 * 1024, True), (5 * 1024 * 1024 + 1, False)]
)
async def test_file_read_caps_files_at_5_mb(
    harness: Harness, marker: str, size: int, accepted: bool
) -> None:
    (harness.folder() / f"{marker}.txt").write_bytes(b"a" * size)
    results, _ = await call_tools(
        harness, marker, [Call("file_read", {"paths": [f"{marker}.txt"]})]
    )
    text = json.dumps(results[0]["content"])
    if accepted:
        assert "[truncated:" in text and "has 5242880 characters; showing the first 100000" in text
    else:
        assert (
            f"is {size} bytes; the limit is 5242880 bytes (5 MB) per file" in text
            and results[0]["is_error"]
        )


async def test_file_read_refuses_pdfs_for_models_without_pdf_support_and_escapes(
    harness: Harness, marker: str
) -> None:
    drive = harness.folder()
    (drive / f"{marker}.pdf").write_bytes(b"%PDF-1.4\n...")
    (drive / f"{marker}.txt").write_text("fine")
    (drive / f"{marker}-link").symlink_to("/etc/passwd")
    paths = [f"{marker}.pdf", f"{marker}.txt", "../../etc/passwd", f"{marker}-link"]
    results, _ = await call_tools(
        harness, marker, [Call("file_read", {"paths": paths})], model="gpt/4o"
    )
    text = results[0]["text"]
    assert "is a PDF and gpt/4o cannot read PDFs" in text and "fine" in text
    assert "leaves the drive ('..' is not allowed)" in text
    assert "goes through a symbolic link" in text and "root:" not in text


# -- download_url


async def test_download_url_saves_into_the_drive(harness: Harness, marker: str) -> None:
    url = harness.web.page(f"/files/{marker}/report.csv", "a,b\n1,2\n", "text/csv")
    calls = [
        Call("download_url", {"url": url, "path": f"{marker}/"}),
        Call("download_url", {"url": url, "path": f"drive/{marker}/named.csv"}),
    ]
    results, _ = await call_tools(harness, marker, calls)
    first, second = (json.loads(r["text"]) for r in results)
    assert (
        first["drive_path"] == f"{marker}/report.csv"
        and second["drive_path"] == f"{marker}/named.csv"
    )
    assert first["bytes"] == 8 and first["content_type"] == "text/csv"
    assert (harness.folder() / marker / "report.csv").read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize(
    ("size", "accepted"), [(50 * 1024 * 1024, True), (50 * 1024 * 1024 + 1, False)]
)
async def test_download_url_caps_files_at_50_mb(
    harness: Harness, marker: str, size: int, accepted: bool
) -> None:
    url = harness.web.page(f"/big/{marker}.bin", b"\0" * size, "application/octet-stream")
    results, _ = await call_tools(
        harness, marker, [Call("download_url", {"url": url, "path": f"{marker}.bin"})]
    )
    harness.web.pages.pop(f"/big/{marker}.bin")
    if accepted:
        assert json.loads(results[0]["text"])["bytes"] == size
        (harness.folder() / f"{marker}.bin").unlink()
    else:
        assert "is larger than the limit of 52428800 bytes (50 MB)" in results[0]["text"]
        assert not (harness.folder() / f"{marker}.bin").exists()


# -- the skill's own tools


USER_TOOL_YAML = """
tools:
  - name: double
    description: Double a number.
    entrypoint: tools/double.py:run
    input_schema: {type: object, properties: {n: {type: integer}}, required: [n], additionalProperties: false}
    output_schema: {type: object, properties: {doubled: {type: integer}}, required: [doubled]}
"""
USER_TOOL_CODE = {
    "skills/agent/tools/double.py": """
        import os

        def run(inputs):
            if inputs["n"] == 13:
                return {"doubled": "unlucky"}
            if inputs["n"] == 7:
                raise ValueError("seven is not allowed")
            open("drive/" + os.environ["MARK"], "w").write(os.getcwd())
            return {"doubled": inputs["n"] * 2}
        """,
}


async def test_a_user_tool_runs_in_the_job_workdir_with_its_schemas_enforced_both_ways(
    harness: Harness, marker: str
) -> None:
    calls = [
        Call("double", {"n": "two"}),
        Call("double", {"n": 13}),
        Call("double", {"n": 7}),
        Call("double", {"n": 21}),
    ]
    results, outcome = await call_tools(
        harness,
        marker,
        calls,
        extra_yaml=USER_TOOL_YAML,
        files=USER_TOOL_CODE,
        secrets={"MARK": marker},
    )
    assert "double: invalid input: 'two' is not of type 'integer' at /n" in results[0]["text"]
    assert results[1]["is_error"] and (
        "tool 'double' returned output that does not match its output_schema: 'unlucky' is not of type 'integer' at /output/doubled"
        in results[1]["text"]
    )
    assert "tool 'double' raised ValueError: seven is not allowed" in results[2]["text"]
    assert json.loads(results[3]["text"]) == {"doubled": 42} and not results[3]["is_error"]
    assert outcome.status == "succeeded"
    workdir = (harness.folder() / marker).read_text()
    assert workdir.endswith(str(outcome.terminal.job_id))
