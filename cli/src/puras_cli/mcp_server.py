"""``puras mcp``: the Puras tools for coding agents, over MCP's stdio transport.

A thin layer over the public API through the Python client: each call reads the configuration
afresh (``puras login`` or the ``configure`` tool write it), so a key changed mid-session is
used at once. An API refusal reaches the agent as a tool error carrying the API's status, code
and message. Blocking HTTP runs in a worker thread, so a long ``tail_job`` never stalls the
session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio.to_thread
import httpx
import puras
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from puras._paths import api_path

from puras_cli import config, docs_index
from puras_cli.bundles import zip_project

T = TypeVar("T")

TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled"})
MAX_TAIL_SECONDS: Final = 600
MAX_LIST: Final = 200

INSTRUCTIONS = (
    "Puras runs skills (an LLM agent from SKILL.md, or a Python function main.py:run) as jobs. "
    "Call configure once with the API base and a secret key (puras_live_<prefix>.<secret>, dot "
    "included). push a project directory with skills/<name>/skill.yaml, then submit_job and "
    "tail_job. Search the platform's own documentation with search_docs."
)


def _client() -> puras.Client:
    try:
        cfg = config.resolve()
    except config.NotConfigured as exc:
        raise ToolError(f"{exc}; or call the configure tool") from None
    return puras.Client(api_key=cfg.api_key, api_base=cfg.api_base)


async def _api(work: Callable[[puras.Client], T]) -> T:
    """Run ``work`` with a fresh client in a worker thread; API errors become tool errors."""

    def run() -> T:
        with _client() as client:
            return work(client)

    try:
        return await anyio.to_thread.run_sync(run)
    except puras.PurasAPIError as exc:
        raise ToolError(f"{exc.status} {exc.code}: {exc.message}") from None
    except httpx.TransportError as exc:
        raise ToolError(f"cannot reach the Puras API: {exc or type(exc).__name__}") from None


def _request(method: str, path: str, **kwargs: Any) -> Callable[[puras.Client], Any]:
    return lambda c: c.request(method, path, **kwargs)


def build_server() -> FastMCP:
    """Every tool, with the names, arguments and answers of the MCP tools reference."""
    mcp = FastMCP("puras", instructions=INSTRUCTIONS)

    @mcp.tool()
    async def configure(api_base: str, api_key: str, project_id: str = "") -> str:
        """Check the key against the API and save it with the API base (mode 600). project_id,
        if given, must name the key's workspace (slug or id)."""
        base = api_base.rstrip("/")

        def check() -> dict[str, Any]:
            with puras.Client(api_key=api_key, api_base=base) as client:
                balance: dict[str, Any] = client.request("GET", "/v1/balance")
                return balance

        try:
            balance = await anyio.to_thread.run_sync(check)
        except puras.PurasAPIError as exc:
            raise ToolError(f"{exc.status} {exc.code}: {exc.message}") from None
        except (httpx.TransportError, ValueError) as exc:
            raise ToolError(f"cannot use {base}: {exc}") from None
        if project_id and project_id != balance["workspace"]:
            raise ToolError(
                f"the key belongs to workspace {balance['workspace']!r}, not {project_id!r}"
            )
        saved = config.Config(api_base=base, api_key=api_key, workspace=balance["workspace"])
        path = config.save(saved)
        return f"saved to {path}: workspace {saved.workspace}, key {saved.key_prefix}"

    @mcp.tool()
    async def show_config() -> dict[str, Any]:
        """The current configuration; of the key, only its prefix."""
        try:
            cfg = config.resolve()
        except config.NotConfigured as exc:
            raise ToolError(str(exc)) from None
        return {
            "api_base": cfg.api_base,
            "api_key_prefix": cfg.key_prefix,
            "workspace": cfg.workspace,
            "config_path": str(config.config_path()),
        }

    @mcp.tool()
    async def push(project_dir: str, notes: str = "", activate: bool = True) -> dict[str, Any]:
        """Zip a project directory (skills/<name>/skill.yaml inside; .git, .venv, node_modules …
        left out) and deploy it as a new version; active at once unless activate is false."""
        try:
            bundle = zip_project(Path(project_dir).expanduser())
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ToolError(str(exc)) from None
        form = {"notes": notes, "activate": "true" if activate else "false"}

        def deploy(client: puras.Client) -> dict[str, Any]:
            files = {"bundle": ("bundle.zip", bundle, "application/zip")}
            body: dict[str, Any] = client.request(
                "POST", "/v1/deployments", files=files, data=form, timeout=600
            )
            deadline = time.monotonic() + MAX_TAIL_SECONDS
            while body["status"] == "building" and time.monotonic() < deadline:
                time.sleep(1.0)
                body = client.request("GET", api_path("/v1/deployments/{}", body["id"]))
            return body

        return await _api(deploy)

    @mcp.tool()
    async def list_deployments() -> list[dict[str, Any]]:
        """Deployments of the key's skillpack, newest first."""
        page = await _api(_request("GET", "/v1/deployments", params={"limit": MAX_LIST}))
        return list(page["data"])

    @mcp.tool()
    async def activate_deployment(deployment_id: str) -> dict[str, Any]:
        """Switch new jobs to this deployment; jobs already submitted keep theirs."""
        return dict(
            await _api(_request("POST", api_path("/v1/deployments/{}/activate", deployment_id)))
        )

    @mcp.tool()
    async def delete_deployment(deployment_id: str) -> str:
        """Delete a deployment; the active one cannot be deleted."""
        await _api(_request("DELETE", api_path("/v1/deployments/{}", deployment_id)))
        return f"deleted deployment {deployment_id}"

    async def submit(
        skill: str, inputs: dict[str, Any] | None, wait: bool, timeout: int
    ) -> dict[str, Any]:
        if wait and not 1 <= timeout <= 60:
            raise ToolError(f"timeout={timeout} is out of range: wait between 1 and 60 seconds")
        return dict(await _api(lambda c: c.submit(skill, inputs or {}, wait=wait, timeout=timeout)))

    @mcp.tool()
    async def submit_job(
        skill: str, inputs: dict[str, Any] | None = None, wait: bool = False, timeout: int = 30
    ) -> dict[str, Any]:
        """Run a skill of the active deployment. wait=true holds up to timeout seconds (1–60)
        and may still answer a running job: follow long jobs with tail_job."""
        return await submit(skill, inputs, wait, timeout)

    @mcp.tool()
    async def submit_agentic_job(
        skill: str, inputs: dict[str, Any] | None = None, wait: bool = False, timeout: int = 30
    ) -> dict[str, Any]:
        """Legacy alias of submit_job (the skill's manifest decides how it runs)."""
        return await submit(skill, inputs, wait, timeout)

    @mcp.tool()
    async def submit_function_job(
        skill: str, inputs: dict[str, Any] | None = None, wait: bool = False, timeout: int = 30
    ) -> dict[str, Any]:
        """Legacy alias of submit_job (the skill's manifest decides how it runs)."""
        return await submit(skill, inputs, wait, timeout)

    @mcp.tool()
    async def get_job(job_id: str) -> dict[str, Any]:
        """A job's status, result, error and cost."""
        return dict(await _api(lambda c: c.get(job_id)))

    @mcp.tool()
    async def list_jobs(status: str = "", limit: int = 25) -> list[dict[str, Any]]:
        """Jobs, newest first; status filters by queued|running|waiting|succeeded|failed|cancelled."""
        params: dict[str, Any] = {"limit": max(1, min(limit, MAX_LIST))}
        if status:
            params["status"] = status
        page = await _api(_request("GET", "/v1/jobs", params=params))
        return list(page["data"])

    @mcp.tool()
    async def tail_job(job_id: str, max_seconds: int = 60) -> dict[str, Any]:
        """Poll the job's events until it ends, asks for input (then waiting is true: answer with
        provide_input) or max_seconds pass: {job, events, waiting?, timed_out?}."""
        budget = max(1, min(max_seconds, MAX_TAIL_SECONDS))

        def tail(client: puras.Client) -> dict[str, Any]:
            deadline = time.monotonic() + budget
            events: list[dict[str, Any]] = []
            after = 0
            while True:
                page = client.request(
                    "GET",
                    api_path("/v1/jobs/{}/events", job_id),
                    params={"after_id": after, "limit": 1000},
                )
                events.extend(page["events"])
                after = page["next_after_id"]
                if page["terminal"]:
                    return {"job": client.get(job_id), "events": events}
                if events and events[-1]["type"] == "input_requested":
                    job = client.get(job_id)  # an answer may be in that its event is not yet
                    if job["status"] == "waiting":
                        return {"job": job, "events": events, "waiting": True}
                if time.monotonic() >= deadline:
                    return {"job": client.get(job_id), "events": events, "timed_out": True}
                if not page["events"]:
                    time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

        return await _api(tail)

    @mcp.tool()
    async def cancel_job(job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (a tool call in flight still completes)."""
        return dict(await _api(_request("POST", api_path("/v1/jobs/{}/cancel", job_id))))

    @mcp.tool()
    async def provide_input(job_id: str, answer: Any, request_id: str = "") -> dict[str, Any]:
        """Answer the question a waiting job asked (the job's input_request: prompt and
        answer_schema). The answer must match answer_schema; the job then runs on with it.
        request_id, if given, must name the question the job waits on."""
        return dict(
            await _api(lambda c: c.provide_input(job_id, answer, request_id=request_id or None))
        )

    @mcp.tool()
    async def submit_job_feedback(
        job_id: str, rating: int = 0, comment: str = "", end_user_id: str = ""
    ) -> dict[str, Any]:
        """Thumbs up (1) or down (-1) and/or a comment on a job; one per (job, end user),
        overwritten when sent again."""
        body = {"rating": rating, "comment": comment, "end_user_id": end_user_id}
        return dict(
            await _api(_request("POST", api_path("/v1/jobs/{}/feedback", job_id), json=body))
        )

    @mcp.tool()
    async def list_job_feedback(job_id: str) -> list[dict[str, Any]]:
        """A job's feedback, newest first."""
        return list((await _api(_request("GET", api_path("/v1/jobs/{}/feedback", job_id))))["data"])

    @mcp.tool()
    async def job_feedback_stats(job_id: str) -> dict[str, Any]:
        """{up, down, count, score} of a job's feedback; score = up - down."""
        return dict(await _api(_request("GET", api_path("/v1/jobs/{}/feedback/stats", job_id))))

    @mcp.tool()
    async def list_secrets() -> list[dict[str, Any]]:
        """Secret names and times of the key's skillpack; values are never returned."""
        return list((await _api(_request("GET", "/v1/secrets")))["data"])

    @mcp.tool()
    async def set_secret(name: str, value: str) -> dict[str, Any]:
        """Create or overwrite a secret; name matches ^[A-Z_][A-Z0-9_]*$."""
        return dict(
            await _api(_request("PUT", api_path("/v1/secrets/{}", name), json={"value": value}))
        )

    @mcp.tool()
    async def delete_secret(name: str) -> str:
        """Delete a secret."""
        await _api(_request("DELETE", api_path("/v1/secrets/{}", name)))
        return f"deleted secret {name}"

    @mcp.tool()
    async def drive_sign(path: str, ttl: int = 3600) -> dict[str, Any]:
        """A signed URL to a drive file, living ttl seconds: {path, signed_url, expires_in}."""
        return dict(
            await _api(_request("GET", "/v1/drive/sign", params={"path": path, "ttl": ttl}))
        )

    @mcp.tool()
    async def list_docs() -> list[dict[str, Any]]:
        """Every documentation page shipped with this install: {slug, title, summary}."""
        return [
            {"slug": p.slug, "title": p.title, "summary": p.summary}
            for p in docs_index.pages().values()
        ]

    @mcp.tool()
    async def read_doc(slug: str) -> str:
        """The full markdown of one page (a slug from list_docs)."""
        page = docs_index.pages().get(slug)
        if page is None:
            raise ToolError(
                f"no page {slug!r}; list_docs names them: {', '.join(docs_index.pages())}"
            )
        return page.body

    @mcp.tool()
    async def search_docs(query: str, limit: int = 5) -> list[dict[str, Any]]:
        """Pages ranked for a query, each {slug, title, score, snippet}."""
        return docs_index.search(query, limit=limit)

    return mcp


def serve() -> None:
    """Serve the tools on stdin/stdout until the client closes them."""
    build_server().run("stdio")
