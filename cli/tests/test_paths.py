"""The ``puras`` commands and the MCP tools send an id or name as one segment of the request
path, whatever it holds, and refuse an empty, ``.`` or ``..`` one before sending anything;
against a local HTTP server that records what reaches it."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mcp.server.fastmcp.exceptions import ToolError
from puras_cli.__main__ import main
from puras_cli.mcp_server import build_server

CRAFTED = "../../v1/balance"
ESCAPED = "..%2F..%2Fv1%2Fbalance"


class _Recorder(BaseHTTPRequestHandler):
    sent: list[str]

    def _answer(self) -> None:
        self.sent.append(f"{self.command} {self.path}")
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route = self.path.partition("?")[0]
        kind, body = "application/json", json.dumps({"id": "x", "status": "cancelled"}).encode()
        if route.endswith("/stream"):
            kind, body = "text/event-stream", b"event: end\ndata: {}\n\n"
        elif route.endswith("/events"):
            body = json.dumps({"events": [], "next_after_id": 0, "terminal": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """The requests that reach the API (``METHOD /raw/target``); the commands and tools are
    configured for it through the environment."""
    requests: list[str] = []
    handler = type("Handler", (_Recorder,), {"sent": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    monkeypatch.setenv("PURAS_API_BASE", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("PURAS_API_KEY", "puras_live_test.key")
    monkeypatch.setenv("PURAS_CONFIG", str(tmp_path / "config.json"))
    try:
        yield requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["jobs", "get", CRAFTED], f"GET /v1/jobs/{ESCAPED}"),
        (["jobs", "cancel", CRAFTED], f"POST /v1/jobs/{ESCAPED}/cancel"),
        (["jobs", "answer", CRAFTED, "{}"], f"POST /v1/jobs/{ESCAPED}/input"),
        (["deployments", "activate", CRAFTED], f"POST /v1/deployments/{ESCAPED}/activate"),
        (["deployments", "delete", "x/../../keys"], "DELETE /v1/deployments/x%2F..%2F..%2Fkeys"),
        (["secrets", "rm", "../keys"], "DELETE /v1/secrets/..%2Fkeys"),
        (["secrets", "set", "A?b=1#", "v"], "PUT /v1/secrets/A%3Fb%3D1%23"),
        (["keys", "revoke", "../../v1/jobs"], "DELETE /v1/keys/..%2F..%2Fv1%2Fjobs"),
    ],
)
def test_a_crafted_id_stays_one_segment(
    sent: list[str], capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    assert sent == [expected]


@pytest.mark.parametrize("value", ["", ".", ".."])
@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "get"],
        ["jobs", "cancel"],
        ["jobs", "tail"],
        ["deployments", "delete"],
        ["secrets", "rm"],
        ["keys", "revoke"],
    ],
)
def test_an_empty_dot_or_dot_dot_id_is_a_usage_error_and_sends_nothing(
    sent: list[str], capsys: pytest.CaptureFixture[str], argv: list[str], value: str
) -> None:
    assert main([*argv, value]) == 2
    assert capsys.readouterr().err == (
        f"error: usage: {value!r} is not an id or name: "
        "a request path segment is never empty, '.' or '..'\n"
    )
    assert sent == []


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("get_job", {"job_id": CRAFTED}, f"GET /v1/jobs/{ESCAPED}"),
        ("cancel_job", {"job_id": CRAFTED}, f"POST /v1/jobs/{ESCAPED}/cancel"),
        ("job_feedback_stats", {"job_id": CRAFTED}, f"GET /v1/jobs/{ESCAPED}/feedback/stats"),
        ("delete_deployment", {"deployment_id": CRAFTED}, f"DELETE /v1/deployments/{ESCAPED}"),
        ("set_secret", {"name": "../keys", "value": "v"}, "PUT /v1/secrets/..%2Fkeys"),
    ],
)
async def test_an_mcp_tool_sends_a_crafted_id_as_one_segment(
    sent: list[str], tool: str, arguments: dict[str, str], expected: str
) -> None:
    await build_server().call_tool(tool, arguments)
    assert sent == [expected]


@pytest.mark.parametrize("value", ["", ".", ".."])
@pytest.mark.parametrize(
    ("tool", "argument"),
    [
        ("get_job", "job_id"),
        ("cancel_job", "job_id"),
        ("tail_job", "job_id"),
        ("delete_deployment", "deployment_id"),
        ("delete_secret", "name"),
    ],
)
async def test_an_mcp_tool_refuses_an_empty_dot_or_dot_dot_id(
    sent: list[str], tool: str, argument: str, value: str
) -> None:
    with pytest.raises(ToolError, match=re.escape(f"{value!r} is not an id or name")):
        await build_server().call_tool(tool, {argument: value})
    assert sent == []
