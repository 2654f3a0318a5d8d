"""Subagents over the whole platform: a three-level tree (a deterministic root, an agent, a
deterministic leaf started from the agent's shell) whose costs roll up through billing's
ledger, cancelling the root cancelling the whole tree, the tree's bounds, and targets that
cannot run."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import pytest_asyncio
from puras_testing import eventually
from puras_testing.media.fal import FalStub, Images, Video
from puras_testing.models import Call, ModelStub, Reply
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

MARKER = f"sub-{uuid.uuid4().hex[:8]}"

PROJECT: dict[str, str] = {
    "skills/planner/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 120\n",
    "skills/planner/main.py": """
        from puras import media, subagent

        def run(inputs):
            own = media.run("google/imagen-4", {"prompt": inputs["marker"]})
            written = subagent.run("writer", {"prompt": "write the script", "marker": inputs["marker"]}, timeout=120)
            return {"own": own["billed_micros"], "writer": written}
        """,
    "skills/writer/skill.yaml": """
        entrypoint: SKILL.md
        model: claude/haiku-4-5
        timeout_seconds: 120
        output_schema: {type: object, properties: {clip: {type: string}}, required: [clip]}
        """,
    "skills/writer/SKILL.md": f"You write scripts and have them rendered. {MARKER}-writer\n",
    "skills/render/skill.yaml": "entrypoint: main.py:run\n",
    "skills/render/main.py": """
        from puras import media

        def run(inputs):
            clip = media.run("bytedance/seedance-2-t2v", {"prompt": inputs["marker"], "duration": "5"}, output_path="clips/")
            return {"drive_path": clip["drive_path"], "billed": clip["billed_micros"]}
        """,
    "skills/boss/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 300\n",
    "skills/boss/main.py": """
        from puras import subagent

        def run(inputs):
            return subagent.run("middle", {"prompt": "wait"}, timeout=300)
        """,
    "skills/middle/skill.yaml": "entrypoint: SKILL.md\nmodel: claude/haiku-4-5\ntimeout_seconds: 300\n",
    "skills/middle/SKILL.md": f"You wait for the sleeper. {MARKER}-middle\n",
    "skills/sleeper/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 300\n",
    "skills/sleeper/main.py": """
        import time

        def run(inputs):
            time.sleep(290)
            return {"slept": True}
        """,
    "skills/nest/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 120\n",
    "skills/nest/main.py": """
        from puras import PurasAPIError, subagent

        def run(inputs):
            level = inputs.get("level", 0)
            try:
                return {"level": level, "deeper": subagent.run("nest", {"level": level + 1}, timeout=110)}
            except PurasAPIError as exc:
                return {"level": level, "refused": exc.status, "message": exc.message}
        """,
    "skills/fan/skill.yaml": "entrypoint: main.py:run\n",
    "skills/fan/main.py": """
        from puras import PurasAPIError, subagent

        def run(inputs):
            out = []
            for i in range(5):
                try:
                    out.append(subagent.run("echo", {"text": str(i)}))
                except PurasAPIError as exc:
                    out.append({"refused": exc.status, "message": exc.message})
            return out
        """,
    "skills/echo/skill.yaml": """
        entrypoint: main.py:run
        input_schema: {type: object, properties: {text: {type: string}}, required: [text]}
        """,
    "skills/echo/main.py": "def run(inputs):\n    return {'echoed': inputs['text']}\n",
    "skills/echo/references/critic.md": f"You criticise. {MARKER}-critic\n",
    "skills/checks/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 120\n",
    "skills/checks/main.py": """
        from puras import PurasAPIError, subagent
        from puras.subagent import SubagentRunError

        def attempt(*args, **kwargs):
            try:
                return {"ok": subagent.run(*args, **kwargs)}
            except PurasAPIError as exc:
                return {"api": exc.status, "code": exc.code, "message": exc.message, "details": exc.details}
            except SubagentRunError as exc:
                return {"run_error": exc.status, "job_id": exc.job_id, "message": exc.message}
            except ValueError as exc:
                return {"value_error": str(exc)}

        def run(inputs):
            marker = inputs["marker"]
            return {
                "invalid": attempt("echo", {}),
                "missing": attempt("nope"),
                "pinned": attempt("echo", {"text": "v"}, version=1),
                "no_version": attempt("echo", {"text": "v"}, version=99),
                "no_file": attempt("references/absent.md"),
                "escape": attempt("../../../../etc/passwd.md"),
                "both": attempt("echo", prompt="x"),
                "neither": attempt(),
                "version_with_prompt": attempt(prompt="x", version=2),
                "inline": attempt(prompt=f"Return a greeting. {marker}-inline", inputs={"who": "you"}),
                "markdown": attempt("../echo/references/critic.md", {"draft": "x"}),
            }
        """,
    "skills/impatient/skill.yaml": "entrypoint: main.py:run\n",
    "skills/impatient/main.py": """
        from puras.subagent import SubagentRunError, run as subagent

        def run(inputs):
            try:
                subagent("sleeper", timeout=1)
            except SubagentRunError as exc:
                return {"status": exc.status, "job_id": exc.job_id, "message": exc.message}
        """,
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tenant(platform: Platform) -> Tenant:
    tenant = await platform.tenant(f"subagents-{uuid.uuid4().hex[:6]}")
    pushed = await tenant.push(PROJECT)
    assert pushed.status_code == 201, pushed.text
    return tenant


async def job(tenant: Tenant, job_id: str) -> dict[str, Any]:
    return (await tenant.http.get(f"/v1/jobs/{job_id}")).json()


async def events(tenant: Tenant, job_id: str) -> list[dict[str, Any]]:
    return (await tenant.http.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000})).json()[
        "events"
    ]


async def children(tenant: Tenant, job_id: str) -> list[str]:
    """The subagents a job started, from its own history."""
    return [
        e["payload"]["child_job_id"]
        for e in await events(tenant, job_id)
        if e["type"] == "subagent"
    ]


async def test_a_three_level_tree_rolls_its_costs_up_to_the_root(
    tenant: Tenant, model_provider: ModelStub, fal_provider: FalStub
) -> None:
    marker = uuid.uuid4().hex
    fal_provider.script(Images(), Video(5), match=marker)
    shell = f"python3 -c \"import json, puras; print(json.dumps(puras.subagent.run('render', {{'marker': '{marker}'}})))\""
    model_provider.script(
        Reply(
            tool_calls=[Call("bash", {"command": shell, "timeout": 120})],
            input_tokens=1000,
            output_tokens=100,
        ),
        Reply(
            tool_calls=[Call("set_output", {"clip": "rendered"})],
            input_tokens=1500,
            output_tokens=50,
        ),
        match=f"{MARKER}-writer",
    )
    root = await tenant.run("planner", {"marker": marker}, timeout=60)
    assert root["status"] == "succeeded", root
    assert root["result"] == {"own": 60_000, "writer": {"clip": "rendered"}}
    # The tree, from each parent's own history: root → writer (an agent) → render.
    (writer_id,) = await children(tenant, root["id"])
    (render_id,) = await children(tenant, writer_id)
    writer = await eventually(lambda: _ended(tenant, writer_id), timeout=20)
    render = await eventually(lambda: _ended(tenant, render_id), timeout=20)
    assert (writer["skill_name"], writer["parent_job_id"], writer["status"]) == (
        "writer",
        root["id"],
        "succeeded",
    )
    assert (render["skill_name"], render["parent_job_id"], render["status"]) == (
        "render",
        writer_id,
        "succeeded",
    )
    notice = next(e for e in await events(tenant, root["id"]) if e["type"] == "subagent")["payload"]
    assert (notice["kind"], notice["target"], notice["skill_name"]) == ("skill", "writer", "writer")
    shell_result = next(e for e in await events(tenant, writer_id) if e["type"] == "tool_result")[
        "payload"
    ]["output"]
    assert render["result"]["drive_path"] in shell_result
    # Billing charged every call once; each job's cost is its own, the total adds its subtree.
    writer_llm = (
        1000 * 0.3 + 100 * 1.5 + 1500 * 0.3 + 50 * 1.5
    )  # claude/haiku-4-5: $0.30 / $1.50 per M tokens
    expected = {root["id"]: 60_000, writer_id: int(writer_llm), render_id: 1_820_000}

    async def settled() -> dict[str, dict[str, Any]] | None:
        jobs = {i: await job(tenant, i) for i in expected}
        return (
            jobs
            if all(
                jobs[i]["cost_micros"] == c and jobs[i]["status"] == "succeeded"
                for i, c in expected.items()
            )
            else None
        )

    jobs = await eventually(settled, timeout=30)
    assert jobs[render_id]["total_cost_micros"] == 1_820_000
    assert jobs[writer_id]["total_cost_micros"] == int(writer_llm) + 1_820_000
    assert jobs[root["id"]]["total_cost_micros"] == 60_000 + int(writer_llm) + 1_820_000
    usage = (await tenant.http.get(f"/v1/jobs/{root['id']}/usage")).json()
    assert usage["cost_micros"] == 60_000  # the root's own rows only


async def test_cancelling_the_root_cancels_the_whole_tree(
    tenant: Tenant, model_provider: ModelStub
) -> None:
    shell = (
        "python3 -c \"import puras; puras.subagent.run('sleeper', {}, timeout=280)\"; echo ended"
    )
    model_provider.script(
        Reply(tool_calls=[Call("bash", {"command": shell, "timeout": 290})]),
        Reply(tool_calls=[Call("bash", {"command": "echo never"})]),
        match=f"{MARKER}-middle",
    )
    submitted = await tenant.http.post("/v1/jobs", json={"skill": "boss", "inputs": {}})
    boss_id = submitted.json()["id"]

    async def sleeper_running() -> tuple[str, str] | None:
        middle = await children(tenant, boss_id)
        sleeper = await children(tenant, middle[0]) if middle else []
        if sleeper and (await job(tenant, sleeper[0]))["status"] == "running":
            return middle[0], sleeper[0]
        return None

    middle_id, sleeper_id = await eventually(sleeper_running, timeout=60)
    cancelled = await tenant.http.post(f"/v1/jobs/{boss_id}/cancel")
    assert cancelled.status_code == 202

    async def all_ended() -> list[dict[str, Any]] | None:
        tree = [await job(tenant, i) for i in (boss_id, middle_id, sleeper_id)]
        return (
            tree if all(j["status"] in ("succeeded", "failed", "cancelled") for j in tree) else None
        )

    boss, middle, sleeper = await eventually(all_ended, timeout=60)
    assert [boss["status"], middle["status"], sleeper["status"]] == ["cancelled"] * 3
    # The agent never took another step after its shell returned.
    steps = [e for e in await events(tenant, middle_id) if e["type"] == "step"]
    assert len(steps) == 1


async def test_the_tree_is_bounded_in_depth_and_in_children(tenant: Tenant) -> None:
    nested = await tenant.run("nest", {}, timeout=60)
    assert nested["status"] == "succeeded", nested
    levels, node = [], nested["result"]
    while "deeper" in node:
        levels.append(node["level"])
        node = node["deeper"]
    # Depth 3 (PURAS_GATEWAY_SUBAGENT_MAX_DEPTH in the test platform) is the deepest allowed.
    assert levels == [0, 1, 2] and node["level"] == 3 and node["refused"] == 400
    assert "would be at depth 4; the limit is 3" in node["message"]
    fanned = await tenant.run("fan", {}, timeout=60)
    assert fanned["result"][:4] == [{"echoed": str(i)} for i in range(4)]
    assert (
        fanned["result"][4]["refused"] == 400
        and "has started 4 subagents; the limit is 4" in fanned["result"][4]["message"]
    )


async def test_targets_are_checked_before_they_are_queued_and_failures_raise(
    tenant: Tenant, model_provider: ModelStub
) -> None:
    marker = uuid.uuid4().hex
    model_provider.script(
        Reply(tool_calls=[Call("set_output", {"output": {"greeting": "hello"}})]),
        match=f"{marker}-inline",
    )
    model_provider.script(Reply(text="Too short."), match=f"{MARKER}-critic")
    checks = await tenant.run("checks", {"marker": marker}, timeout=60)
    assert checks["status"] == "succeeded", checks
    r = checks["result"]
    assert (
        r["invalid"]["api"] == 422
        and r["invalid"]["details"][0]["pointer"] == "/inputs"
        and "'text'" in r["invalid"]["message"]
    )
    assert r["missing"]["api"] == 404 and "skill 'nope' not found" in r["missing"]["message"]
    assert r["pinned"] == {"ok": {"echoed": "v"}}
    assert (
        r["no_version"]["api"] == 404
        and "version 99 of skillpack" in r["no_version"]["message"]
        and "/default' not found" in r["no_version"]["message"]
    )
    assert (
        r["no_file"]["run_error"] == "failed"
        and "'references/absent.md' is not in deployment" in r["no_file"]["message"]
    )
    assert r["escape"]["api"] == 400 and "leaves the bundle" in r["escape"]["message"]
    assert (
        r["both"]
        == r["neither"]
        == {"value_error": "pass exactly one of target (a skill or a .md file) and prompt"}
    )
    assert r["version_with_prompt"]["value_error"].startswith("version pins a declared skill")
    assert r["inline"] == {"ok": {"greeting": "hello"}}
    assert r["markdown"] == {"ok": {"text": "Too short."}}
    kinds = {
        e["payload"]["kind"] for e in await events(tenant, checks["id"]) if e["type"] == "subagent"
    }
    assert kinds == {"skill", "markdown", "prompt"}


async def test_a_child_that_outlives_its_wait_and_its_parent_is_cancelled(tenant: Tenant) -> None:
    parent = await tenant.run("impatient", {}, timeout=60)
    late = parent["result"]
    assert (
        late["status"] in ("queued", "running") and "did not finish within 1 s" in late["message"]
    )
    # It keeps its own job timeout (290 s here) only while its parent lives.
    slow = await eventually(lambda: _ended(tenant, late["job_id"]), timeout=30)
    assert slow["status"] == "cancelled" and slow["parent_job_id"] == parent["id"]


async def _ended(tenant: Tenant, job_id: str) -> dict[str, Any] | None:
    found = await job(tenant, job_id)
    return found if found["status"] in ("succeeded", "failed", "cancelled") else None
