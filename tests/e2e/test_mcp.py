"""``puras mcp`` in a real MCP session: the official SDK's stdio client starts the server as a
coding agent would, lists its tools, and drives the running platform through them."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent
from puras_testing.platform import CHATTY_PROJECT, ECHO_PROJECT, Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

PURAS = Path(sys.executable).parent / "puras"

TOOLS = {
    "configure",
    "show_config",
    "push",
    "list_deployments",
    "activate_deployment",
    "delete_deployment",
    "submit_job",
    "get_job",
    "list_jobs",
    "tail_job",
    "cancel_job",
    "provide_input",
    "submit_agentic_job",
    "submit_function_job",
    "submit_job_feedback",
    "list_job_feedback",
    "job_feedback_stats",
    "list_secrets",
    "set_secret",
    "delete_secret",
    "drive_sign",
    "list_docs",
    "read_doc",
    "search_docs",
}


def project(root: Path) -> Path:
    files = {**ECHO_PROJECT, **CHATTY_PROJECT, ".git/HEAD": "ref: refs/heads/main\n"}
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


@contextlib.asynccontextmanager
async def mcp_session(tmp_path: Path) -> AsyncIterator[ClientSession]:
    """The server as an agent starts it. (Not a fixture: the stdio client's task group must be
    entered and left by the same task.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PURAS_")}
    env |= {"HOME": str(tmp_path), "PURAS_CONFIG": str(tmp_path / "puras" / "config.json")}
    params = StdioServerParameters(command=str(PURAS), args=["mcp"], env=env, cwd=str(tmp_path))
    with open(tmp_path / "server.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as client:
                await client.initialize()
                yield client


async def call(session: ClientSession, tool: str, **args: Any) -> Any:
    """A tool's answer, decoded; fails the test on a tool error."""
    result = await session.call_tool(tool, args)
    assert not result.isError, (tool, _text(result))
    if result.structuredContent is not None:
        content = result.structuredContent
        return content.get("result", content) if set(content) == {"result"} else content
    return _text(result)


def _text(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_an_agent_configures_pushes_runs_tails_signs_and_reads_docs(
    platform: Platform, tmp_path: Path
) -> None:
    async with mcp_session(tmp_path) as session:
        tools = await session.list_tools()
        assert {t.name for t in tools.tools} == TOOLS
        tenant: Tenant = await platform.tenant(f"mcp-{uuid.uuid4().hex[:8]}")

        unconfigured = await session.call_tool("list_jobs", {})
        assert unconfigured.isError and "no API key" in _text(unconfigured)
        saved = await call(session, "configure", api_base=platform.url, api_key=tenant.api_key)
        assert tenant.slug in saved
        config_file = tmp_path / "puras" / "config.json"
        assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
        shown = await call(session, "show_config")
        assert shown["api_key_prefix"] == tenant.api_key.split(".")[0]
        assert tenant.api_key.split(".")[1] not in json.dumps(shown)

        deployment = await call(
            session, "push", project_dir=str(project(tmp_path / "proj")), notes="first"
        )
        assert (
            deployment["status"] == "ready"
            and deployment["active"]
            and deployment["notes"] == "first"
        )
        assert sorted(s["name"] for s in deployment["skills"]) == ["boom", "chatty", "echo"]

        done = await call(
            session, "submit_job", skill="echo", inputs={"text": "hi"}, wait=True, timeout=20
        )
        assert (done["status"], done["result"]) == ("succeeded", {"echoed": "hi"})
        alias = await call(
            session, "submit_function_job", skill="echo", inputs={"text": "old"}, wait=True
        )
        assert alias["result"] == {"echoed": "old"}

        queued = await call(session, "submit_job", skill="chatty", inputs={"lines": 3})
        tailed = await call(session, "tail_job", job_id=queued["id"], max_seconds=30)
        assert tailed["job"]["status"] == "succeeded" and "timed_out" not in tailed
        assert [e["payload"]["text"] for e in tailed["events"] if e["type"] == "log"] == [
            "line 0",
            "line 1",
            "line 2",
        ]
        slow = await call(
            session, "submit_job", skill="chatty", inputs={"lines": 100, "pause": 0.1}
        )
        partial = await call(session, "tail_job", job_id=slow["id"], max_seconds=1)
        assert partial["timed_out"] is True and partial["job"]["status"] in ("queued", "running")
        assert (await call(session, "cancel_job", job_id=slow["id"]))["id"] == slow["id"]
        assert slow["id"] in [j["id"] for j in await call(session, "list_jobs", limit=5)]

        refused = await session.call_tool("submit_job", {"skill": "echo", "inputs": {"text": 1}})
        assert refused.isError and "422 validation_error: inputs do not match" in _text(refused)
        missing = await session.call_tool("get_job", {"job_id": str(uuid.uuid4())})
        assert missing.isError and "404 not_found" in _text(missing)

        async with httpx.AsyncClient(
            base_url=platform.url, headers={"Authorization": f"Bearer {tenant.api_key}"}
        ) as http:
            upload = await http.post(
                "/v1/drive/upload",
                files={"file": ("a.txt", b"hello drive")},
                data={"path": "docs/a.txt"},
            )
            assert upload.status_code == 201, upload.text
            signed = await call(session, "drive_sign", path="docs/a.txt", ttl=120)
            assert signed["expires_in"] == 120
            assert (
                await http.get(signed["signed_url"], headers={"Authorization": ""})
            ).content == b"hello drive"

        hits = await call(session, "search_docs", query="secrets encrypted at rest", limit=3)
        assert "secrets" in [hit["slug"] for hit in hits[:2]] and all(h["snippet"] for h in hits)
        pages = await call(session, "list_docs")
        assert {"secrets", "architecture"} <= {p["slug"] for p in pages}
        body = await call(session, "read_doc", slug="secrets")
        assert body.startswith("# ")
        unknown = await session.call_tool("read_doc", {"slug": "../README"})
        assert unknown.isError and "no page" in _text(unknown)


async def test_feedback_secrets_and_deployment_tools(platform: Platform, tmp_path: Path) -> None:
    async with mcp_session(tmp_path) as session:
        tenant: Tenant = await platform.tenant(f"mcp2-{uuid.uuid4().hex[:8]}")
        await call(
            session,
            "configure",
            api_base=platform.url,
            api_key=tenant.api_key,
            project_id=tenant.slug,
        )
        wrong = await session.call_tool(
            "configure",
            {"api_base": platform.url, "api_key": tenant.api_key, "project_id": "someone-else"},
        )
        assert wrong.isError and tenant.slug in _text(wrong)
        first = await call(session, "push", project_dir=str(project(tmp_path / "p")))
        second = await call(session, "push", project_dir=str(tmp_path / "p"), activate=False)
        assert not second["active"]
        listed = await call(session, "list_deployments")
        assert [d["id"] for d in listed] == [second["id"], first["id"]]
        assert (await call(session, "activate_deployment", deployment_id=second["id"]))["active"]
        busy = await session.call_tool("delete_deployment", {"deployment_id": second["id"]})
        assert busy.isError and "409 conflict" in _text(busy)
        assert "deleted" in await call(session, "delete_deployment", deployment_id=first["id"])

        job = await call(session, "submit_job", skill="echo", inputs={"text": "x"}, wait=True)
        await call(session, "submit_job_feedback", job_id=job["id"], rating=1, end_user_id="u1")
        await call(
            session,
            "submit_job_feedback",
            job_id=job["id"],
            rating=-1,
            comment="meh",
            end_user_id="u2",
        )
        assert len(await call(session, "list_job_feedback", job_id=job["id"])) == 2
        assert await call(session, "job_feedback_stats", job_id=job["id"]) == {
            "up": 1,
            "down": 1,
            "count": 2,
            "score": 0,
        }
        empty = await session.call_tool("submit_job_feedback", {"job_id": job["id"]})
        assert empty.isError and "400 invalid_request" in _text(empty)

        await call(session, "set_secret", name="OPENAI_KEY", value="sk-abc")
        assert [s["name"] for s in await call(session, "list_secrets")] == ["OPENAI_KEY"]
        assert "deleted" in await call(session, "delete_secret", name="OPENAI_KEY")
        assert await call(session, "list_secrets") == []


async def test_a_job_is_tailed_to_its_question_and_answered_with_provide_input(
    platform: Platform, tmp_path: Path
) -> None:
    root = tmp_path / "asking"
    (root / "skills" / "ask").mkdir(parents=True)
    (root / "skills" / "ask" / "skill.yaml").write_text("entrypoint: main.py:run\n")
    (root / "skills" / "ask" / "main.py").write_text(
        "import puras\n\n"
        "def run(inputs):\n"
        "    n = puras.request_input('How many?', {'type': 'integer', 'minimum': 1})\n"
        "    return {'n': n}\n"
    )
    async with mcp_session(tmp_path) as session:
        tenant: Tenant = await platform.tenant(f"mcp3-{uuid.uuid4().hex[:8]}")
        await call(session, "configure", api_base=platform.url, api_key=tenant.api_key)
        await call(session, "push", project_dir=str(root))
        job = await call(session, "submit_job", skill="ask")
        tailed = await call(session, "tail_job", job_id=job["id"], max_seconds=60)
        assert tailed.get("waiting") is True and "timed_out" not in tailed
        assert tailed["job"]["input_request"]["prompt"] == "How many?"
        wrong = await session.call_tool("provide_input", {"job_id": job["id"], "answer": 0})
        assert wrong.isError and "400 invalid_request" in _text(wrong)
        queued = await call(session, "provide_input", job_id=job["id"], answer=4)
        assert queued["status"] == "queued"
        done = await call(session, "tail_job", job_id=job["id"], max_seconds=60)
        assert done["job"]["status"] == "succeeded" and done["job"]["result"] == {"n": 4}
